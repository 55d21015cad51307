"""``ddecs-search pareto | report | export``: which configuration to deploy, with numbers and pictures."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pareto", help="print the Pareto front of one or more experiments")
    p.add_argument("experiments", nargs="+", help="experiment directories (several = compare runs)")
    p.add_argument(
        "--objectives",
        nargs="+",
        metavar="METRIC:min|max",
        help="objectives (default: those of the experiment's space.yaml)",
    )
    p.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="EXPR",
        help="feasibility bound on a metric computed without test labels, e.g. 'val_accuracy_drop<=0.01' "
        "(repeatable)",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=_pareto)

    r = sub.add_parser("report", help="write a self-contained HTML report (plotly) of an experiment")
    r.add_argument("experiments", nargs="+", help="experiment directories")
    r.add_argument("--out", help="HTML file (default: EXPERIMENT/report.html)")
    r.add_argument("--png", metavar="DIR", help="also export every figure as PNG (needs Chromium)")
    r.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="EXPR",
        help="feasibility bound as for pareto, e.g. 'val_accuracy_drop<=0.01' (repeatable)",
    )
    r.add_argument(
        "--budget",
        type=float,
        help="bound for 'best under budget' on the first minimised latency/energy objective (ms, mJ), "
        "else on the first minimised one, in its unit (default: the front's median)",
    )
    r.set_defaults(func=_report)

    e = sub.add_parser("export", help="export a trial's trained model, exit policy and a predict example")
    e.add_argument("experiment", help="experiment directory")
    e.add_argument("--trial", required=True, help="trial id (see `ddecs-search pareto`)")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(func=_export)


def _pareto(args: argparse.Namespace) -> int:
    from ddecs_search.analysis import experiment_front, format_front, parse_objective

    objectives = [parse_objective(s) for s in args.objectives] if args.objectives else None
    _, result = experiment_front(args.experiments, objectives=objectives, constraints=args.constraint)
    for note in result.notices + _what_the_numbers_are(result.front):
        print(f"note: {note}", file=sys.stderr)
    sys.stdout.write(format_front(result.with_static(), args.format))
    return 0


def _what_the_numbers_are(front) -> list[str]:
    """One line per source: which numbers chose the front and what the measured ones are."""
    notes = [
        "chosen on the objectives (val_* = selection part of validation, expected_* = latency "
        "table); accuracy / accuracy_drop are test figures, shown beside them and never used to choose"
    ]
    sources = (
        ("expected_latency_source", "expected_latency_ms"),
        ("latency_source", "latency_ms"),
        ("verified_latency_source", "verified_latency_ms"),
    )
    for column, label in sources:
        if column in front.columns:
            for source in sorted(map(str, front[column].dropna().unique())):
                notes.append(f"{label}: {source}")
    return notes


def _report(args: argparse.Namespace) -> int:
    from ddecs_search.analysis import write_report

    path = write_report(
        args.experiments if len(args.experiments) > 1 else args.experiments[0],
        out=args.out,
        png_dir=args.png,
        constraints=args.constraint,
        budget=args.budget,
    )
    print(f"report written: {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ddecs_search.analysis import export_trial

    out = export_trial(args.experiment, args.trial, args.out)
    print(f"exported to {out} (run: python {out}/predict.py)")
    return 0
