"""Session 40, exploratory (#14): would a rung inside the first epoch stop the trials rung 1 stops?

Draws N candidates of the default job's space (its own searcher, no results told: the GP's random start),
trains each as a trial does (the cached shared baseline, ``train_branches`` with the candidate's recipe) and
scores the rung point (``CheckpointScorer``: threshold policy fitted on the fit part of validation, accuracy
and normalised MACs on the selection part) after a quarter and a half of the first epoch, after epoch 1 (the
default rung) and at the end of training (the final rung). The stopping rule (``should_stop``, the default
``min_dominators``) is then replayed per rung in draw order. Not a goal measurement: random draws, not a GP
search's; one draw order; the final rung point stands in for the objectives.

Usage (repository root): PYTHONPATH=$PWD DDECS_OFFLINE=1 .venv/bin/python THIS_FILE OUT_DIR [N] [SEED]
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from ddecs_search.config import to_dict
from ddecs_search.data import load_splits
from ddecs_search.evaluation import default_cache
from ddecs_search.models import MultiExitNet, backbone_info
from ddecs_search.profiling import resolve_device
from ddecs_search.search import effective_objectives
from ddecs_search.search._fidelity import CheckpointScorer
from ddecs_search.search._scheduler import should_stop
from ddecs_search.search._searcher import make_search_alg
from ddecs_search.search._space_fn import ConditionalSpace, build_candidate
from ddecs_search.spaces import load_space
from ddecs_search.training import train_baseline, train_branches

ROOT = Path(__file__).resolve().parents[3]
out = Path(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 40
out.mkdir(parents=True, exist_ok=True)
space = load_space(ROOT / "search_spaces" / "fashion_mnist_quick.yaml")
space = dataclasses.replace(space, search=dataclasses.replace(space.search, seed=seed))
fn = ConditionalSpace.from_space(space)
objectives, _ = effective_objectives(space, energy_available=False)
searcher = make_search_alg(space, objectives).searcher
device = resolve_device(space.measurement.device)
splits = load_splits(space.dataset, backbone_info(space.backbone.name).input_shape)
base = train_baseline(
    space.backbone.name,
    splits,
    space.dataset,
    space.backbone.baseline,
    device=device,
    cache_dir=default_cache() / "baselines",
    seed=0,
    quiet=True,
)
steps = -(-len(splits.train) // space.training.batch_size)  # per epoch
marks = {max(steps // 4, 1) - 1: "q", max(steps // 2, 1) - 1: "h"}
rows = []
for i in range(n):
    config = searcher.suggest(f"t{i}")
    cand = build_candidate(space, fn, config)
    work = out / f"t{i}"
    work.mkdir(exist_ok=True)
    torch.manual_seed(cand.seed)
    model = MultiExitNet(copy.deepcopy(base.backbone), cand.exit_points, cand.branches).to(device)

    def on_batch(epoch: int, step: int, loss: float, model=model, work=work) -> None:
        if epoch == 0 and step in marks:
            torch.save({"model": model.state_dict()}, work / f"{marks[step]}.pt")

    def on_epoch(epoch: int, stats: dict, path: Path, work=work) -> None:
        if epoch == 0:
            shutil.copy2(path, work / "e1.pt")

    t0 = time.perf_counter()
    info = train_branches(
        model,
        splits.train,
        cand.training,
        device=device,
        checkpoint_path=work / "ck.pt",
        seed=cand.seed,
        num_workers=space.dataset.num_workers,
        quiet=True,
        on_epoch=on_epoch,
        on_batch=on_batch,
    )
    torch.save({"model": model.state_dict()}, work / "final.pt")
    scorer = CheckpointScorer(space, cand)
    points = {r: list(scorer(work / f"{r}.pt")) for r in ("q", "h", "e1", "final")}
    row = {
        "trial": f"t{i}",
        "candidate": to_dict(cand),
        "epochs": cand.training.epochs,
        "mode": cand.training.mode,
        "train_s": info["train_time_s"],
        "points": points,
        "static_selection_accuracy": scorer.final_exit_accuracy,
        "wall_s": time.perf_counter() - t0,
    }
    rows.append(row)
    print(json.dumps({k: v for k, v in row.items() if k != "candidate"}), flush=True)
    for f in work.glob("*.pt"):
        f.unlink()
(out / "points.json").write_text(json.dumps(rows, indent=1))

# the rule per rung, in draw order (peers: every earlier trial's point at that rung)
md = space.search.early_stopping.min_dominators
dirs = ("max", "min")
finals = [r["points"]["final"] for r in rows]
static = [r["static_selection_accuracy"] for r in rows if r["mode"] == "frozen"]  # its exact point
peers_final = finals + ([[static[0], 1.0]] if static else [])
front = {
    r["trial"]
    for r, p in zip(rows, finals, strict=True)
    if not should_stop(p, [q for q in peers_final if q is not p], dirs, 1)
}
summary = {"n": n, "seed": seed, "min_dominators": md, "final_front": sorted(front)}
for rung in ("q", "h", "e1"):
    pts = [r["points"][rung] for r in rows]
    stopped = [rows[k]["trial"] for k in range(n) if should_stop(pts[k], pts[:k], dirs, md)]
    summary[rung] = {"stopped": stopped, "front_members_stopped": sorted(set(stopped) & front)}
e1 = set(summary["e1"]["stopped"])
for rung in ("q", "h"):
    s = set(summary[rung]["stopped"])
    summary[rung]["also_stopped_at_e1"] = len(s & e1)
    summary[rung]["only_here"] = sorted(s - e1)
    summary[rung]["missed_of_e1"] = sorted(e1 - s)
print(json.dumps(summary))
