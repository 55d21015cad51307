"""``ddecs-search datasets``: which datasets are available here, and how to get the others."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list datasets and where they are available")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddecs_search.data import availability

    rows = availability()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<16}{'available':<11}{'classes':<9}{'where / how to get it'}")
    for row in rows:
        where = row.get("location") or row.get("how", "")
        available = "yes" if row["available"] else "no"
        print(f"{row['name']:<16}{available:<11}{row.get('num_classes', ''):<9}{where}")
    print("imagefolder:<path>  your own data: <path>/train/<class>/*.png (and optionally <path>/test/)")
    return 0
