"""Shared benchmark plumbing: --quick/--json flags, a results table, and the one-JSON-line ending."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller subsets: <= 5 min on a 2-core CPU")
    p.add_argument("--json", action="store_true", help="end with one JSON line holding the figures")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return p


def banner(name: str, quick: bool) -> None:
    mode = "QUICK (reduced subsets; figures are indicative)" if quick else "full"
    print(f"== {name} — mode: {mode}")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)))
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=False)))


def emit_json(obj: dict[str, Any]) -> None:
    """The last stdout line: one JSON object."""
    from ddecs_search.strict_json import dumps

    sys.stdout.flush()
    print(dumps(obj))
