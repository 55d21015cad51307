"""User-facing errors.

Everything a user can get wrong (a YAML key, a candidate JSON, a missing data folder) raises a
subclass of :class:`UserError`. The CLI prints the message and exits with code 2; library callers get
an ordinary exception whose text names the field or file and says how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """Base class of mistakes a user can fix; the CLI turns these into exit code 2."""


class ConfigError(UserError, ValueError):
    """An invalid configuration value (search-space YAML, candidate JSON, CLI flag)."""


class DataError(UserError, FileNotFoundError):
    """A dataset that is missing or malformed; the message says how to obtain it."""
