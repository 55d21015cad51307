"""A trained trial's files: one module writes them, one function rebuilds the trained candidate.

A finished evaluation leaves ``model.pt`` (state dict, loaded with ``weights_only=True``), ``spec.json``
(candidate, classes, input shape, data), ``policy.json`` (JSON state, no pickle; absent for the oracle)
and ``test_exits.npz`` (per-sample exits on test). The search publishes them to ``EXP/trials/<id>/``,
verify re-measures from them, the report reads the exits and ``export`` deploys them; all of these go
through :func:`write_trial_files` and :func:`load_trained`, so the file set and the way a
``MultiExitNet`` is rebuilt exist once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ddecs_search._atomic import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:
    import torch

    from ddecs_search.config import Candidate
    from ddecs_search.models import MultiExitNet
    from ddecs_search.policies import ExitPolicy

MODEL_FILE, SPEC_FILE, POLICY_FILE, EXITS_FILE = "model.pt", "spec.json", "policy.json", "test_exits.npz"
TRIAL_FILES = (MODEL_FILE, SPEC_FILE, POLICY_FILE, EXITS_FILE)
DEPLOY_FILES = (MODEL_FILE, SPEC_FILE, POLICY_FILE)


@dataclass(frozen=True)
class TrainedCandidate:
    """A rebuilt trained candidate: the network in eval mode, its exit policy and its spec."""

    model: MultiExitNet
    policy: ExitPolicy
    spec: dict[str, Any]


def build_model(candidate: Candidate, num_classes: int) -> MultiExitNet:
    """The untrained ``MultiExitNet`` of ``candidate`` (the one constructor every reader uses)."""
    from ddecs_search.models import MultiExitNet, create_backbone

    backbone = create_backbone(candidate.backbone, num_classes=num_classes)
    return MultiExitNet(backbone, candidate.exit_points, candidate.branches)


def write_trial_files(
    folder: str | Path,
    *,
    model: MultiExitNet,
    spec: Mapping[str, Any],
    policy: ExitPolicy,
    exit_indices: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    table_exits: np.ndarray,
) -> None:
    """Write a trial's files atomically (the policy only when it is deployable).

    Args:
        exit_indices: ``(N,)`` exit of each test sample in real inference.
        labels: ``(N,)`` test labels.
        predictions: ``(N, E)`` every exit's prediction per test sample (the cached table).
        table_exits: ``(N,)`` the policy's exits on the cached table.
    """
    from ddecs_search.training import save_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_atomic(model.state_dict(), folder / MODEL_FILE)
    write_text_atomic(json.dumps(dict(spec), indent=2), folder / SPEC_FILE)
    if policy.deployable:
        policy.save(folder / POLICY_FILE)
    buf = io.BytesIO()
    np.savez(buf, exit_indices=exit_indices, labels=labels, predictions=predictions, table_exits=table_exits)
    write_bytes_atomic(buf.getvalue(), folder / EXITS_FILE)


def load_trained(folder: str | Path, device: str | torch.device = "cpu") -> TrainedCandidate:
    """Rebuild the trained candidate of a trial folder or an exported folder.

    Raises:
        FileNotFoundError: ``spec.json``, ``model.pt`` or ``policy.json`` missing.
    """
    import torch

    from ddecs_search.config import Candidate, from_dict
    from ddecs_search.policies import load_policy

    folder = Path(folder)
    spec = json.loads((folder / SPEC_FILE).read_text())
    candidate = from_dict(Candidate, spec["candidate"], f"{folder / SPEC_FILE}: candidate")
    model = build_model(candidate, spec["num_classes"])
    model.load_state_dict(torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True))
    model.to(device).eval()
    return TrainedCandidate(model, load_policy(folder / POLICY_FILE), spec)
