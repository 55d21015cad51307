"""Export of a chosen configuration: the trained multi-exit model, its exit policy and a predict example.

The exported folder is what a user deploys: ``model.pt`` (state dict, loaded with ``weights_only=True``),
``spec.json`` (candidate, input shape, classes, data config) and ``policy.json`` (JSON state, no pickle).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ddecs_search.errors import ConfigError

_FILES = ("model.pt", "spec.json", "policy.json")

_PREDICT = '''"""Early-exit inference with an exported ddecs-search model.

    python predict.py                 # accuracy on the test split of the dataset it was trained on
    python predict.py --limit 1000    # first 1000 test samples only

Needs `pip install ddecs-search` (or the project checkout) for the model code.
"""

import argparse
import json
from pathlib import Path

import torch

from ddecs_search.analysis import load_exported
from ddecs_search.config import DataConfig, from_dict
from ddecs_search.data import load_splits, make_loader

here = Path(__file__).resolve().parent
parser = argparse.ArgumentParser()
parser.add_argument("--limit", type=int, default=None)
parser.add_argument("--device", default="cpu")
args = parser.parse_args()

model, policy, spec = load_exported(here, device=args.device)
splits = load_splits(from_dict(DataConfig, spec["data"]), tuple(spec["input_shape"]))
correct = total = 0
exits = [0] * model.num_exits
with torch.inference_mode():
    for x, y in make_loader(splits.test, batch_size=256, shuffle=False, seed=0):
        out = model.early_exit(x.to(args.device), policy)  # samples leave at the first confident exit
        correct += int((out.predictions.cpu() == y).sum())
        total += len(y)
        for k in out.exit_indices.tolist():
            exits[k] += 1
        if args.limit and total >= args.limit:
            break
print(json.dumps({"accuracy": correct / total, "samples": total,
                  "exit_fractions": [e / total for e in exits]}))
'''


def export_trial(exp_dir: str | Path, trial_id: str, out_dir: str | Path) -> Path:
    """Copy trial ``trial_id``'s model, spec and policy from ``exp_dir`` into ``out_dir`` with predict.py.

    Raises:
        ConfigError: unknown trial (the message lists the exportable ones) or missing artefacts.
    """
    from ddecs_search import storage
    from ddecs_search.experiment import Experiment

    exp = Experiment.at(str(exp_dir))
    if storage.is_uri(exp.root):  # object storage: bring the trial's files here first
        local = Path(out_dir) / ".trial"
        if storage.exists(exp.trial_dir(str(trial_id))):
            storage.download_dir(exp.trial_dir(str(trial_id)), local / str(trial_id))
        trials = local
    else:
        trials = Path(exp.root) / "trials"
    src = trials / str(trial_id)
    if not src.is_dir():
        known = (
            sorted(p.name for p in trials.iterdir() if (p / "model.pt").is_file()) if trials.is_dir() else []
        )
        raise ConfigError(
            f"--trial {trial_id!r}: no artefacts under {trials}; exportable trials: "
            f"{', '.join(known) or 'none (did any trial finish?)'}"
        )
    missing = [f for f in _FILES if not (src / f).is_file()]
    if missing:
        raise ConfigError(
            f"--trial {trial_id!r}: {src} lacks {', '.join(missing)}; "
            "the oracle policy cannot be exported, and failed trials have no model"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        shutil.copy2(src / name, out / name)
    (out / "predict.py").write_text(_PREDICT)
    return out


def load_exported(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any, dict]:
    """Rebuild ``(MultiExitNet, ExitPolicy, spec)`` from an exported folder (or a trial's artefacts)."""
    from ddecs_search.artifacts import load_trained

    trained = load_trained(model_dir, device)
    return trained.model, trained.policy, trained.spec
