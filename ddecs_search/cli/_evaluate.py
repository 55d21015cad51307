"""``ddecs-search evaluate SPACE.yaml [--candidate JSON] [--out result.json] [--dataset NAME]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ddecs_search.cli._common import json_safe, override_dataset, parse_json_arg, write_json_atomic


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="train and measure one candidate end to end",
        description="Evaluate one early-exit candidate: train its branches (baseline from cache), "
        "fit its exit policy on val, measure on test. Without --candidate the space's "
        "default_candidate is used; --candidate is merged over it.",
    )
    p.add_argument("space", help="search-space YAML file (see search_spaces/)")
    p.add_argument("--candidate", help="candidate as JSON, merged over the space's default_candidate")
    p.add_argument("--dataset", help="override the space's dataset (e.g. cifar10, imagefolder:/path)")
    p.add_argument("--out", help="write the flat metrics dict as JSON to this file")
    p.add_argument("--workdir", help="keep model/policy artefacts here (default: a temporary folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddecs_search.evaluation import evaluate_candidate
    from ddecs_search.spaces import candidate_from_dict, load_space

    space = override_dataset(load_space(args.space), args.dataset)
    override = parse_json_arg(args.candidate, "--candidate") if args.candidate else {}
    candidate = candidate_from_dict(space, override, path="--candidate")
    metrics = evaluate_candidate(
        space, candidate, workdir=Path(args.workdir) if args.workdir else None, quiet=args.quiet
    )
    if args.out:
        write_json_atomic(metrics, args.out)
    if not args.quiet or not args.out:
        json.dump(json_safe(metrics), sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0
