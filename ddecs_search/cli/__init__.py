"""The ``ddecs-search`` command line. Each verb lives in its own module and registers a sub-parser."""

from ddecs_search.cli._main import main

__all__ = ["main"]
