"""Entry point: argument parsing, and the one place user errors become exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ddecs_search.errors import UserError

# verb modules, each with ``add_parser(subparsers)`` setting ``func`` on its parser
_VERBS = ("_evaluate", "_datasets", "_search_verbs", "_analysis_verbs")

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep the message short and clear
        self.print_usage(sys.stderr)
        print(f"ddecs-search: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddecs-search", description=__doc__ or "")
    parser.description = "Multi-objective architecture search for early-exit neural networks."
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for name in _VERBS:
        try:
            module = importlib.import_module(f"ddecs_search.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ddecs_search.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    0 finished (every trial evaluated), 1 unexpected internal error, 2 bad input / user error / experiment
    locked / broken state file, 3 some trials failed (the others evaluated, kept), 4 no trial evaluated,
    130 interrupted (``resume`` continues).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ddecs_search import _faults

    _faults.arm()  # crash tests only (DDECS_TEST_KILL_AT); a no-op otherwise
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"ddecs-search: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("ddecs-search: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
