"""Per-epoch proxy of a single accuracy-type objective, for ASHA early stopping.

After each branch-training epoch the checkpointed model's exit table on *val* is scored with a
threshold policy fitted on that same table (MAC costs, the candidate's cost weight): a cheap,
monotone stand-in for the final validation accuracy that ranks candidates at low fidelity. Only full
evaluations ever reach Optuna or the Pareto front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddecs_search.config import Candidate, Objective, PolicyConfig, SearchSpace


class EpochProxy:
    """Callable ``(checkpoint_path) -> proxy value`` of one trial's objective; loads val data once."""

    def __init__(
        self, space: SearchSpace, candidate: Candidate, objective: Objective, baseline_val_accuracy: float
    ) -> None:
        self.space, self.candidate, self.objective = space, candidate, objective
        self.baseline_val_accuracy = baseline_val_accuracy
        self._loader: Any = None

    def __call__(self, checkpoint_path: Path) -> float:
        from ddecs_search.artifacts import build_model
        from ddecs_search.models import backbone_info
        from ddecs_search.policies import ExitTable, create_policy, score_decisions
        from ddecs_search.profiling import mac_costs, resolve_device
        from ddecs_search.training import load_checkpoint

        device = resolve_device(self.space.measurement.device)
        info = backbone_info(self.candidate.backbone)
        if self._loader is None:
            from ddecs_search.data import load_splits, make_loader

            splits = load_splits(self.space.dataset, info.input_shape)
            self._loader = make_loader(
                splits.val,
                batch_size=512,
                shuffle=False,
                seed=0,
                num_workers=self.space.dataset.num_workers,
                device=device,
            )
            self._num_classes = splits.num_classes
        c = self.candidate
        model = build_model(c, self._num_classes)
        model.load_state_dict(load_checkpoint(checkpoint_path)["model"])
        model.to(device).eval()
        table = ExitTable.from_model(model, self._loader, device)
        cfg = PolicyConfig(
            kind="threshold", cost_weight=c.policy.cost_weight, cost="macs", metric=c.policy.metric
        )
        costs = mac_costs(model).normalised_path()
        policy = create_policy(cfg)
        policy.fit(table, costs, cfg.cost_weight)
        accuracy = score_decisions(table, policy.decide_table(table), costs).accuracy
        if self.objective.name == "val_accuracy_drop":
            return float(self.baseline_val_accuracy - accuracy)
        return float(accuracy)
