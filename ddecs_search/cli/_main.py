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

# the shared exit codes (run/resume use all of them; other verbs 0, 1, 2)
EXIT_CODES = (
    (0, "finished: every trial evaluated (other verbs: done)"),
    (1, "unexpected internal error"),
    (2, "bad input or user error, experiment locked, broken state file"),
    (3, "some trials failed (the others were evaluated; results kept)"),
    (4, "no trial was evaluated"),
    (130, "interrupted (Ctrl-C): `ddecs-search resume EXPERIMENT` continues"),
)

# one example per verb, shown under its --help (a test checks that every verb has one)
EXAMPLES = {
    "evaluate": "ddecs-search evaluate search_spaces/fashion_mnist_quick.yaml "
    "--candidate '{\"exit_points\": [0]}' --out result.json",
    "datasets": "ddecs-search datasets --json",
    "run": "ddecs-search run search_spaces/fashion_mnist_quick.yaml --name demo --storage experiments",
    "resume": "ddecs-search resume experiments/demo",
    "status": "ddecs-search status experiments/demo --json",
    "pareto": "ddecs-search pareto experiments/demo --constraint 'val_accuracy_drop<=0.01' --format csv",
    "report": "ddecs-search report experiments/demo --out report.html",
    "export": "ddecs-search export experiments/demo --trial 3f2a1_00004 --out model_dir",
}


def _exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep the message short and clear
        self.print_usage(sys.stderr)
        print(f"ddecs-search: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from ddecs_search import __version__

    parser = _Parser(
        prog="ddecs-search",
        description="Multi-objective architecture search for early-exit neural networks.",
        epilog="example:\n  ddecs-search run search_spaces/fashion_mnist_quick.yaml --name demo\n\n"
        + _exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ddecs-search {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for name in _VERBS:
        try:
            module = importlib.import_module(f"ddecs_search.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ddecs_search.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    for verb, verb_parser in sub.choices.items():
        example = EXAMPLES.get(verb)
        verb_parser.formatter_class = argparse.RawDescriptionHelpFormatter
        codes = "\n\n" + _exit_codes_text() if verb in ("run", "resume") else ""
        verb_parser.epilog = (f"example:\n  {example}" if example else "") + codes
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (:data:`EXIT_CODES`)."""
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
