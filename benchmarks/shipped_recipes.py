"""Do the shipped search spaces' training recipes train? The first epoch(s) of each recipe on real images.

For every ``search_spaces/*.yaml`` (or ``--space FILE``): the baseline recipe (``backbone.baseline``)
trains the backbone from scratch for ``--epochs`` epochs (no early stopping), then each branch recipe —
the space's ``training`` section in each of its modes, and ``default_candidate.training`` — trains the
default candidate's branches for ``--epochs`` epochs from that baseline. Every optimiser step's loss is
recorded; a recipe *trains* when the mean loss of the **first** epoch's last quarter of steps is below
95 % of its first quarter's (the issue's rule: the loss must fall in the first epoch). Validation
accuracy is measured after the last epoch (final exit; every exit for branch recipes). The data is
whatever ``--dataset`` names (offline default: Fashion-MNIST, which ``load_splits`` adapts to each
backbone's input shape, e.g. 3x32x32 for the CIFAR backbones), cut to ``--train`` images.

    python benchmarks/shipped_recipes.py [--quick] [--json] [--space FILE ...] [--dataset NAME]
        [--root DIR] [--train N] [--val N] [--epochs N] [--baseline-only] [--device auto|cpu|cuda]

A few epochs on a few thousand images say whether a recipe starts learning, not what it reaches on the
full data: docs/search_space.md gives the figures with the data, subset and epochs they were measured on.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, emit_json, parser, print_table

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
FALL = 0.95  # last quarter's mean loss must be below FALL x the first quarter's


def quarters(losses: list[float]) -> tuple[float, float]:
    """Mean loss of the first and of the last quarter of the steps (at least one step each)."""
    q = max(1, len(losses) // 4)
    return sum(losses[:q]) / q, sum(losses[-q:]) / q


def verdict(losses: list[float]) -> dict[str, Any]:
    first, last = quarters(losses)
    ok = bool(losses) and math.isfinite(last) and last < FALL * first
    return {"steps": len(losses), "first_q_loss": first, "last_q_loss": last, "falls": ok}


def branch_recipes(space: Any, epochs: int = 1) -> list[tuple[str, Any]]:
    """``(label, TrainingConfig)`` with ``epochs``: the space's training section per mode, and the default."""
    from ddecs_search.config import TrainingConfig
    from ddecs_search.spaces import candidate_from_dict

    t, cand = space.training, candidate_from_dict(space, {})
    n = len(cand.exit_points)
    weights = None if t.loss_weights is None else (*t.loss_weights[:n], t.loss_weights[-1])
    out = [
        (f"training ({mode})", TrainingConfig(mode=mode, epochs=epochs, lr=t.lr, batch_size=t.batch_size,
                                              weight_decay=t.weight_decay, optimizer=t.optimizer,
                                              loss_weights=weights, label_smoothing=t.label_smoothing))
        for mode in t.mode
    ]  # fmt: skip
    default = dataclasses.replace(cand.training, epochs=epochs)
    if all(_recipe(default) != _recipe(cfg) for _, cfg in out):  # not already checked above
        out.append((f"default_candidate ({default.mode})", default))
    return out


def _recipe(cfg: Any) -> tuple:
    """What changes branch training (every field but the epochs)."""
    return (cfg.mode, cfg.lr, cfg.batch_size, cfg.optimizer, cfg.weight_decay, cfg.label_smoothing,
            cfg.loss_weights)  # fmt: skip


def _row(losses: list[tuple[int, float]]) -> dict[str, Any]:
    """The verdict on the first epoch's steps, and each epoch's mean loss."""
    epochs = sorted({e for e, _ in losses})
    means = [sum(v for e, v in losses if e == k) / sum(1 for e, _ in losses if e == k) for k in epochs]
    return {**verdict([v for e, v in losses if e == epochs[0]] if epochs else []), "epoch_mean_losses": means}


def check_space(path: Path, args: Any, device: Any, tmp: Path) -> list[dict[str, Any]]:
    import torch

    from ddecs_search.data import load_splits, make_loader
    from ddecs_search.models import MultiExitNet, backbone_info
    from ddecs_search.spaces import candidate_from_dict, load_space
    from ddecs_search.training import accuracy, train_baseline, train_branches

    space = load_space(path)
    epochs = getattr(args, "epochs", 1)
    data = dataclasses.replace(space.dataset, name=args.dataset, root=getattr(args, "root", None),
                               train_subset=args.train, val_subset=args.val, test_subset=args.val,
                               num_workers=0)  # fmt: skip
    base_cfg = dataclasses.replace(space.backbone.baseline, epochs=epochs, patience=None, pretrained=None)
    splits = load_splits(data, backbone_info(space.backbone.name).input_shape)
    val = make_loader(splits.val, batch_size=256, shuffle=False, seed=0, device=device)
    rows = []
    losses: list[tuple[int, float]] = []
    t = time.perf_counter()
    torch.manual_seed(0)
    base = train_baseline(space.backbone.name, splits, data, base_cfg, device=device,
                          cache_dir=tmp / path.stem, quiet=True,
                          on_batch=lambda e, s, loss: losses.append((e, loss)))  # fmt: skip
    b = space.backbone.baseline
    rows.append({
        "space": path.stem, "recipe": "baseline", "optimizer": b.optimizer, "lr": b.lr,
        "batch": b.batch_size, "epochs": epochs, **_row(losses),
        "val_acc": accuracy(base.backbone, val, device), "seconds": time.perf_counter() - t,
    })  # fmt: skip
    print(
        f"  {path.stem} baseline: {rows[-1]['first_q_loss']:.3f} -> {rows[-1]['last_q_loss']:.3f}", flush=True
    )
    if getattr(args, "baseline_only", False):
        return rows
    cand = candidate_from_dict(space, {})
    for label, cfg in branch_recipes(space, epochs):
        losses = []
        t = time.perf_counter()
        torch.manual_seed(0)
        model = MultiExitNet(copy.deepcopy(base.backbone), cand.exit_points, cand.branches).to(device)
        train_branches(model, splits.train, cfg, device=device,
                       checkpoint_path=tmp / f"{path.stem}-{len(rows)}.pt", quiet=True,
                       on_batch=lambda e, s, loss, out=losses: out.append((e, loss)))  # fmt: skip
        with torch.no_grad():
            exits = [accuracy(lambda x, k=k, m=model: m(x)[k], val, device) for k in range(model.num_exits)]
        rows.append({
            "space": path.stem, "recipe": label, "optimizer": cfg.optimizer, "lr": cfg.lr,
            "batch": cfg.batch_size, "epochs": epochs,
            **_row(losses), "val_acc": exits[-1], "exit_val_accs": exits,
            "seconds": time.perf_counter() - t,
        })  # fmt: skip
        print(
            f"  {path.stem} {label}: {rows[-1]['first_q_loss']:.3f} -> {rows[-1]['last_q_loss']:.3f}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--space", action="append", default=None, help="a space file (repeatable; default: all)")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (offline default), cifar10, ...")
    p.add_argument("--train", type=int, default=None, help="training images (default 4096, --quick 1024)")
    p.add_argument("--val", type=int, default=500, help="validation images for the accuracy after training")
    p.add_argument("--epochs", type=int, default=1, help="epochs per recipe (the verdict reads the first)")
    p.add_argument("--root", default=None, help="data root (default: the dataset's own)")
    p.add_argument("--baseline-only", action="store_true", help="check the baseline recipe only")
    args = p.parse_args(argv)
    args.train = args.train or (1024 if args.quick else 4096)
    if args.epochs < 1 or args.train < 1 or args.val < 1:
        p.error(f"--epochs, --train and --val must be >= 1, got {args.epochs}, {args.train}, {args.val}")
    banner("shipped_recipes", args.quick)
    import torch

    from ddecs_search.profiling import device_name, resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    paths = [Path(s) for s in args.space] if args.space else SPACES
    print(f"dataset {args.dataset}: {args.train} training images, {args.val} validation, {args.epochs} "
          f"epoch(s) per recipe, on {device_name(device)} ({torch.get_num_threads()} threads)")  # fmt: skip
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ddecs-recipes-") as tmp:
        for path in paths:
            rows.extend(check_space(path, args, device, Path(tmp)))
    print()
    print_table(rows, ["space", "recipe", "optimizer", "lr", "batch", "steps", "first_q_loss", "last_q_loss",
                       "falls", "epoch_mean_losses", "val_acc", "seconds"])  # fmt: skip
    failing = [f"{r['space']}: {r['recipe']}" for r in rows if not r["falls"]]
    print(
        f"\nloss falls in the first epoch (last quarter < {FALL} x first quarter): "
        f"{len(rows) - len(failing)}/{len(rows)}" + (f"; NOT: {', '.join(failing)}" if failing else "")
    )
    wall = time.perf_counter() - start
    print(f"wall time {wall:.0f} s")
    if args.json:
        emit_json({"rows": rows, "dataset": args.dataset, "train": args.train, "val": args.val,
                   "epochs": args.epochs, "device": device_name(device),
                   "failing": failing, "wall_time_s": wall})  # fmt: skip


if __name__ == "__main__":
    main()
