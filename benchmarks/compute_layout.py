"""Training and proxy passes in the default (NCHW) layout vs channels-last, side by side in one process.

What a search trial computes before its evaluation, in both layouts (``ddecs_search.models.compute_layout``;
``DDECS_CHANNELS_LAST=0`` is the default-layout arm), interleaved in every repeat on the same images,
the same seed and the same thread count:

- one training epoch of the space's default candidate (``training.mode`` as the space's default: joint
  on the default job) and of a ``frozen`` candidate with its exit at the backbone's last exit point
  (the frozen stages are most of its epoch);
- one rung pass: the trained default candidate's exit table over validation (the early-stopping proxy).

Reported per row: median seconds per arm, the per-repeat ratio default / channels-last (median and
range), and the two arms' last training loss (they differ by float rounding only: not bit-identical).

    python benchmarks/compute_layout.py [--quick] [--json] [--space FILE] [--repeats N] [--threads N]
        [--train N]

Quick: 5 000 training images, 2 repeats; full: the space's subsets, 3 repeats.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, emit_json, parser, print_table

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("default", "channels_last")


def _arm(name: str) -> None:
    os.environ["DDECS_CHANNELS_LAST"] = "1" if name == "channels_last" else "0"


def _train_epoch(candidate: Any, splits: Any, device: Any) -> tuple[float, float, Any]:
    """Seconds and last loss of one fresh epoch of ``candidate`` (seeded: both arms start equal)."""
    import dataclasses

    import torch

    from ddecs_search.artifacts import build_model
    from ddecs_search.training import train_branches

    torch.manual_seed(candidate.seed)
    model = build_model(candidate, splits.num_classes)
    cfg = dataclasses.replace(candidate.training, epochs=1)
    with tempfile.TemporaryDirectory(prefix="ddecs-layout-") as tmp:
        start = time.perf_counter()
        info = train_branches(
            model, splits.train, cfg, device=device, checkpoint_path=Path(tmp, "c.pt"), seed=candidate.seed,
            quiet=True,
        )  # fmt: skip
        return time.perf_counter() - start, float(info["last_loss"]), model


def _table_pass(model: Any, splits: Any, device: Any, channels_last: bool) -> float:
    from ddecs_search.data import make_loader
    from ddecs_search.policies import ExitTable

    loader = make_loader(splits.val, batch_size=512, shuffle=False, seed=0, device=device)  # as the rung's
    start = time.perf_counter()
    ExitTable.from_model(model, loader, device, channels_last=channels_last)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "fashion_mnist_quick.yaml"))
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (quick 2, full 3)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (a trial with resources.cpu 1)")
    p.add_argument("--train", type=int, default=None, help="training images (quick 5000, full the space's)")
    args = p.parse_args(argv)
    os.environ.setdefault("DDECS_OFFLINE", "1")
    import dataclasses

    import torch

    from ddecs_search.data import load_splits
    from ddecs_search.models import backbone_info
    from ddecs_search.profiling import device_name, resolve_device
    from ddecs_search.spaces import candidate_from_dict, load_space

    banner("compute layout: default vs channels-last", args.quick)
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    train = args.train or (5000 if args.quick else None)
    if train:
        space = dataclasses.replace(space, dataset=dataclasses.replace(space.dataset, train_subset=train))
    repeats = args.repeats or (2 if args.quick else 3)
    device = resolve_device(args.device)
    default = candidate_from_dict(space, {})
    last_point = len(backbone_info(default.backbone).exit_point_names) - 1
    frozen = candidate_from_dict(
        space, {"exit_points": [last_point], "branches": [dataclasses.asdict(default.branches[0])],
                "training": {"mode": "frozen"}},
    )  # fmt: skip
    splits = load_splits(space.dataset, backbone_info(default.backbone).input_shape)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows: dict[str, dict[str, list[float]]] = {}

    def record(row: str, arm: str, key: str, value: float) -> None:
        rows.setdefault(row, {}).setdefault(f"{arm}:{key}", []).append(value)

    for r in range(repeats):
        for arm in ARMS if r % 2 == 0 else ARMS[::-1]:  # alternate which arm goes first
            _arm(arm)
            for label, cand in ((f"epoch, default candidate ({default.training.mode})", default),
                                (f"epoch, frozen exit at point {last_point}", frozen)):  # fmt: skip
                seconds, loss, model = _train_epoch(cand, splits, device)
                record(label, arm, "s", seconds)
                record(label, arm, "loss", loss)
                if cand is default:
                    seconds = _table_pass(model, splits, device, channels_last=arm == "channels_last")
                    record("rung pass (validation exit table)", arm, "s", seconds)
        print(f"repeat {r + 1}/{repeats} done", flush=True)
    os.environ.pop("DDECS_CHANNELS_LAST", None)

    out = []
    for label, v in rows.items():
        ratios = [a / b for a, b in zip(v["default:s"], v["channels_last:s"], strict=True)]
        row = {
            "row": label,
            "default_s": statistics.median(v["default:s"]),
            "channels_last_s": statistics.median(v["channels_last:s"]),
            "speedup": statistics.median(ratios),
            "speedup_min": min(ratios),
            "speedup_max": max(ratios),
        }
        if "default:loss" in v:
            row["loss_default"], row["loss_channels_last"] = (
                v["default:loss"][-1],
                v["channels_last:loss"][-1],
            )
        out.append(row)
    print_table(out, ["row", "default_s", "channels_last_s", "speedup", "speedup_min", "speedup_max",
                      "loss_default", "loss_channels_last"])  # fmt: skip
    machine = f"{device_name(device)}, {os.cpu_count()} CPUs, {platform.machine()}"
    load_after = [round(x, 2) for x in os.getloadavg()]
    sizes = f"train images {len(splits.train)}, validation {len(splits.val)}"
    print(f"machine: {machine}; torch {torch.__version__}, {args.threads} thread(s); repeats {repeats}; "
          f"{sizes}; load {load_before} -> {load_after}")  # fmt: skip
    if args.json:
        emit_json({"rows": out, "machine": machine, "torch": torch.__version__, "threads": args.threads,
                   "repeats": repeats, "train_images": len(splits.train), "val_images": len(splits.val),
                   "load_before": load_before, "load_after": load_after, "quick": args.quick})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
