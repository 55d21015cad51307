"""Export of a chosen configuration: the trained multi-exit model, its exit policy and predict examples.

The exported folder is what a user deploys:

- ``onnx/`` (one graph per stage and per branch, the static network, ``early_exit.onnx`` = batch-1 early
  exit as one graph with the threshold decision inside, ``manifest.json``), ``ddecs_ort.py``
  (the ONNX Runtime early-exit runner with numpy exit decisions), ``policy.json`` (JSON state, no pickle)
  and ``predict.py``, which needs only onnxruntime and numpy and reproduces the trial's test accuracy and
  exit fractions on ``test_inputs.npy`` / ``test_labels.npy`` (the preprocessed test split, float32);
- for PyTorch users: ``model.pt`` (state dict, ``weights_only=True``), ``spec.json`` (candidate, input
  shape, classes, data config) and ``predict_torch.py`` (needs ddecs-search and torch).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ddecs_search._atomic import write_bytes_atomic, write_text_atomic
from ddecs_search.errors import ConfigError

_FILES = ("model.pt", "spec.json", "policy.json")

_PREDICT = '''"""Early-exit inference with ONNX Runtime; needs only `pip install onnxruntime numpy`.

    python predict.py                 # accuracy and exit fractions on the exported test split
    python predict.py --limit 1000    # first 1000 test samples only
    python predict.py --threads 4     # ONNX Runtime intra-op threads

Each sample runs stage by stage and leaves at the first exit whose policy says so (ddecs_ort.py).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
from ddecs_ort import OnnxEarlyExitRunner, summary  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--limit", type=int, default=None)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
args = parser.parse_args()

runner = OnnxEarlyExitRunner.from_folder(here / "onnx", threads=args.threads, policy=here / "policy.json")
x = np.load(here / "test_inputs.npy", mmap_mode="r")[: args.limit]
y = np.load(here / "test_labels.npy")[: args.limit]
predictions, exits = runner.predict(x, batch_size=args.batch_size)
result = summary(predictions, exits, y, runner.num_exits)
result["torch_imported"] = "torch" in sys.modules
print(json.dumps(result))
'''

_PREDICT_TORCH = '''"""Early-exit inference in PyTorch with an exported ddecs-search model.

    python predict_torch.py                 # accuracy on the test split of the dataset it was trained on
    python predict_torch.py --limit 1000    # first 1000 test samples only

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
    """Export trial ``trial_id`` of ``exp_dir`` into ``out_dir``: ONNX graphs, runner, policy, test split,
    ``predict.py`` (onnxruntime + numpy only), and the torch model with ``predict_torch.py``.

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
    write_text_atomic(_PREDICT_TORCH, out / "predict_torch.py")
    _export_onnx_folder(out, _measurement_batch_size(exp))
    return out


def _measurement_batch_size(exp: Any) -> int:
    """The search's ``measurement.batch_size`` (the batch the reported accuracy was computed with)."""
    from ddecs_search.config import MeasurementConfig

    try:
        return exp.read_space().measurement.batch_size
    except Exception:  # no or unreadable space.yaml (e.g. an evaluate workdir): the default
        return MeasurementConfig().batch_size


def _export_onnx_folder(out: Path, batch_size: int) -> None:
    """ONNX graphs, the runner module, the preprocessed test split and the onnxruntime-only predict.py."""
    import io

    import numpy as np

    from ddecs_search.config import DataConfig, from_dict
    from ddecs_search.data import load_splits, make_loader
    from ddecs_search.runtime import ExitDecision, export_onnx, runner_source, save_onnx

    model, policy, spec = load_exported(out)
    # the batch-1 If graph scores what the policy thresholds (none for q-table / MLP decisions)
    metric = ExitDecision(policy.kind, policy.state_dict(), model.num_exits).graph_metric
    save_onnx(export_onnx(model), out / "onnx", policy_file="../policy.json", early_exit_metric=metric)
    write_text_atomic(runner_source(), out / "ddecs_ort.py")
    splits = load_splits(from_dict(DataConfig, spec["data"]), tuple(spec["input_shape"]))
    xs, ys = [], []
    for x, y in make_loader(splits.test, batch_size=512, shuffle=False, seed=0):
        xs.append(x.numpy().astype(np.float32))
        ys.append(y.numpy().astype(np.int64))
    for name, array in (("test_inputs.npy", np.concatenate(xs)), ("test_labels.npy", np.concatenate(ys))):
        buffer = io.BytesIO()
        np.save(buffer, array)
        write_bytes_atomic(buffer.getvalue(), out / name)
    write_text_atomic(_PREDICT.replace("BATCH_SIZE", str(int(batch_size))), out / "predict.py")


def load_exported(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any, dict]:
    """Rebuild ``(MultiExitNet, ExitPolicy, spec)`` from an exported folder (or a trial's artefacts)."""
    from ddecs_search.artifacts import load_trained

    trained = load_trained(model_dir, device)
    return trained.model, trained.policy, trained.spec
