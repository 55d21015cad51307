"""``ddecs-search run`` / ``resume`` / ``status``: start, continue and inspect a distributed search."""

from __future__ import annotations

import argparse
import json
import sys

from ddecs_search.cli._common import json_safe, override_dataset

# exit codes of run/resume (README "Exit codes"; 2 = user error / locked / broken state, set in _main)
EXIT_OK = 0  # finished, every trial evaluated
EXIT_SOME_FAILED = 3  # finished, some trials failed; the others are evaluated and kept
EXIT_NONE_EVALUATED = 4  # finished, but no trial was evaluated
EXIT_INTERRUPTED = 130  # Ctrl-C; `resume` continues


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a multi-objective search (Ray Tune + Optuna)",
        description="Search a space of early-exit candidates. Without --address a private Ray "
        "starts on this machine (127.0.0.1 only). Ctrl-C stops gracefully; the "
        "printed `ddecs-search resume` command continues the search.",
    )
    p.add_argument("space", help="search-space YAML file (see search_spaces/ and docs/search_space.md)")
    p.add_argument("--name", help="experiment name (default: <space name>-<timestamp>)")
    p.add_argument(
        "--storage",
        help="folder or URI holding experiments (default: ./experiments); "
        "shared storage (NFS, s3://) on a multi-node cluster",
    )
    _address(p)
    p.add_argument("--num-samples", type=int, help="number of trials (overrides search.num_samples)")
    p.add_argument("--max-concurrent", type=int, help="trials at a time (overrides search.max_concurrent)")
    p.add_argument("--seed", type=int, help="sampler seed (overrides search.seed)")
    p.add_argument("--algorithm", choices=("nsga2", "tpe", "gp", "random"), help="overrides search.algorithm")
    p.add_argument("--dataset", help="override the space's dataset (e.g. cifar10, imagefolder:/path)")
    p.add_argument(
        "--resume-if-exists",
        action="store_true",
        help="when STORAGE/NAME exists already: resume it if unfinished, else show its status (needs --name)",
    )
    _common_flags(p)
    p.set_defaults(func=run)

    p = sub.add_parser(
        "resume",
        help="continue an interrupted search",
        description="Finished trials are kept, running ones continue from their last "
        "epoch checkpoint, failed ones are retried, and the sampler continues "
        "its sequence.",
    )
    p.add_argument("experiment", help="experiment directory (or URI) that `ddecs-search run` created")
    _address(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="take the experiment's driver lock even if another driver seems to hold it "
        "(only when that driver is known to be gone; README: stale lock)",
    )
    _common_flags(p)
    p.set_defaults(func=resume)

    p = sub.add_parser("status", help="trials by state, best values, time spent")
    p.add_argument("experiment", help="experiment directory (or URI)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=status)


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        help="join an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
        "(default: start a local Ray on 127.0.0.1)",
    )


def _common_flags(p: argparse.ArgumentParser) -> None:
    loudness = p.add_mutually_exclusive_group()
    loudness.add_argument(
        "--quiet", action="store_true", help="no live progress (no bars, no per-trial lines)"
    )
    loudness.add_argument(
        "--verbose",
        action="store_true",
        help="also stream each trial's log: its epochs and its workers' own output",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON summary as the last line (experiment, exit_code, counts, evaluated, failed)",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip re-measuring the final Pareto picks end to end (search.verify)",
    )


def _overridden(args: argparse.Namespace):  # -> SearchSpace
    from ddecs_search.config import to_dict
    from ddecs_search.spaces import load_space, parse_space

    space = override_dataset(load_space(args.space), args.dataset)
    search = {
        k: v
        for k, v in (
            ("num_samples", args.num_samples),
            ("max_concurrent", args.max_concurrent),
            ("seed", args.seed),
            ("algorithm", args.algorithm),
        )
        if v is not None
    }
    if not search:
        return space
    data = to_dict(space)
    data["search"].update(search)
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in search.items())
    return parse_space(data, flags)


def run(args: argparse.Namespace) -> int:
    from ddecs_search.search import run_search

    space = _overridden(args)
    if args.resume_if_exists:
        existing = _existing_experiment(args, space)
        if existing is not None:
            return existing
    try:
        outcome = run_search(
            space,
            name=args.name,
            storage=args.storage,
            address=args.address,
            quiet=args.quiet,
            verify=False if args.no_verify else None,
            verbose=args.verbose,
        )
    except KeyboardInterrupt as exc:
        return _interrupted(getattr(exc, "exp_root", None), args)
    return _report(outcome, args)


def _existing_experiment(args: argparse.Namespace, space) -> int | None:
    """``run --resume-if-exists``: resume STORAGE/NAME or show it finished; None when it does not exist."""
    from ddecs_search import storage
    from ddecs_search.config import to_dict
    from ddecs_search.errors import UserError
    from ddecs_search.search import DEFAULT_STORAGE, Experiment, format_status, search_status

    if not args.name:
        raise UserError("--resume-if-exists needs --name (which experiment to continue)")
    exp = Experiment.at(storage.join(storage.normalise(args.storage or DEFAULT_STORAGE), args.name))
    if not storage.exists(exp.path("space.yaml")):
        return None
    if to_dict(exp.read_space()) != to_dict(space):
        print(
            f"note: {exp.root} was started from a different space; it continues with its own "
            f"space.yaml (choose another --name for a new search)",
            file=sys.stderr,
        )
    if exp.read_record().get("status") == "finished":
        print(f"{exp.root} is finished already (a new search needs another --name):")
        print(format_status(search_status(exp.root)))
        return 0
    print(f"{exp.root} exists and is unfinished: resuming it")
    args.experiment = exp.root
    return resume(args)


def resume(args: argparse.Namespace) -> int:
    from ddecs_search.search import resume_search

    try:
        outcome = resume_search(
            args.experiment,
            address=args.address,
            quiet=args.quiet,
            verify=False if args.no_verify else None,
            force=getattr(args, "force", False),  # run --resume-if-exists has no --force
            verbose=args.verbose,
        )
    except KeyboardInterrupt:
        return _interrupted(args.experiment, args)
    return _report(outcome, args)


def _report(outcome, args: argparse.Namespace) -> int:
    from ddecs_search.search import Experiment, format_status, search_status

    if not outcome.finished:
        return _interrupted(outcome.exp_root, args)
    print(format_status(search_status(outcome.exp_root)))
    for error in outcome.errors:
        print(f"failed trial: {error}", file=sys.stderr)
    trials = Experiment.at(outcome.exp_root).read_trials()
    evaluated = int((trials["evaluated"] == True).sum()) if "evaluated" in trials else 0  # noqa: E712
    failed = int((trials["state"] == "ERROR").sum()) if "state" in trials else 0
    if evaluated == 0:
        code = EXIT_NONE_EVALUATED
        print(
            f"no trial was evaluated ({failed} failed); see the errors above and trials.csv", file=sys.stderr
        )
    elif failed:
        code = EXIT_SOME_FAILED
        print(
            f"{failed} trial(s) failed, {evaluated} evaluated (kept); "
            f"`{outcome.resume_command}` retries the failed ones",
            file=sys.stderr,
        )
    else:
        code = EXIT_OK
    print(f"done in {outcome.wall_s:.0f} s -> {outcome.exp_root} (trials.csv, trials/, space.yaml)")
    _summary(
        args,
        outcome.exp_root,
        code,
        finished=True,
        counts=outcome.counts,
        evaluated=evaluated,
        failed=failed,
        verified=outcome.verified,
        errors=list(outcome.errors),
        wall_s=outcome.wall_s,
    )
    return code


def _summary(args: argparse.Namespace, exp_root: str | None, code: int, **fields) -> None:
    if getattr(args, "json", False):
        from ddecs_search.search import resume_command

        summary = {
            "experiment": exp_root,
            "exit_code": code,
            **fields,
            "resume_command": resume_command(exp_root) if exp_root else None,
        }
        print(json.dumps(json_safe(summary)), flush=True)


def _interrupted(exp_root: str | None, args: argparse.Namespace | None = None) -> int:
    from ddecs_search.search import resume_command

    if exp_root:
        print(f"search interrupted; continue with: {resume_command(exp_root)}", file=sys.stderr)
    else:
        print("search interrupted; continue it with `ddecs-search resume EXPERIMENT_DIR`", file=sys.stderr)
    if args is not None:
        _summary(args, exp_root, EXIT_INTERRUPTED, finished=False)
    return EXIT_INTERRUPTED


def status(args: argparse.Namespace) -> int:
    from ddecs_search.search import format_status, search_status

    info = search_status(args.experiment)
    if args.json:
        print(json.dumps(json_safe(info), indent=2))
    else:
        print(format_status(info))
    return 0
