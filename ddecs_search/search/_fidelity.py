"""Per-epoch proxy of a single accuracy-type objective, for ASHA early stopping.

After each branch-training epoch the checkpointed model's exit table on validation is scored with a
threshold policy fitted on its fit part and scored on its selection part (MAC costs, the candidate's
cost weight): a cheap stand-in for the final validation accuracy that ranks candidates at low
fidelity. Only full evaluations ever reach Optuna or the Pareto front.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddecs_search.config import Candidate, Objective, PolicyConfig, SearchSpace

if TYPE_CHECKING:  # the trial imports torch; the driver never needs it for this module's names
    from ddecs_search.training import BatchCallback


class CheckpointScorer:
    """``(checkpoint_path) -> (accuracy, cost)`` of one trial's epoch checkpoint; loads val data once.

    The checkpointed model's exit table on validation is split like a full evaluation's: a threshold
    policy (MAC costs, the candidate's λ) is fitted on the fit part and scored on the selection part,
    giving the selection-part accuracy and the mean normalised MAC cost of the exits it takes. Shared
    by ASHA's per-epoch proxy and the multi-objective rung scheduler.

    After each call, ``final_exit_accuracy`` is the selection-part accuracy of the model's last exit
    alone: for a ``frozen`` candidate that exit *is* the static network (backbone in eval mode, weights
    untouched), so it is the static network's point (cost 1.0) at the same rung, on the same samples.
    """

    def __init__(
        self, space: SearchSpace, candidate: Candidate, on_batch: BatchCallback | None = None
    ) -> None:
        self.space, self.candidate = space, candidate
        self._on_batch = on_batch  # the trial's pause point: a rung's pass waits while a neighbour times
        self._loader: Any = None
        self._num_classes = 0
        self.final_exit_accuracy = float("nan")
        self._last: tuple[str, Any] | None = None  # (weights digest, validation ExitTable) of the last call

    def __call__(self, checkpoint_path: Path, *, reusable: bool = False) -> tuple[float, float]:
        """Score the checkpoint; ``reusable``: the evaluation may take this call's table (``table_for``).

        A reusable table is computed as the evaluation computes its own (the default layout, equal to
        live inference bit for bit); any other pass runs channels-last on a CPU, 1.77x faster here
        (``models.compute_layout``, ``benchmarks/compute_layout.py``), since a proxy only needs the
        values to float rounding.
        """
        from ddecs_search.artifacts import build_model
        from ddecs_search.evaluation import pausing
        from ddecs_search.models import backbone_info, weights_digest
        from ddecs_search.policies import ExitTable, create_policy, score_decisions
        from ddecs_search.profiling import mac_costs, resolve_device
        from ddecs_search.training import load_checkpoint

        device = resolve_device(self.space.measurement.device)
        c = self.candidate
        if self._loader is None:
            from ddecs_search.data import load_splits, make_loader

            splits = load_splits(self.space.dataset, backbone_info(c.backbone).input_shape)
            self._loader = make_loader(
                splits.val,
                batch_size=512,
                shuffle=False,
                seed=0,
                num_workers=self.space.dataset.num_workers,
                device=device,
            )
            self._num_classes = splits.num_classes
        model = build_model(c, self._num_classes)
        model.load_state_dict(load_checkpoint(checkpoint_path)["model"])
        model.to(device).eval()
        batches = pausing(self._loader, self._on_batch)
        table = ExitTable.from_model(model, batches, device, channels_last=not reusable)
        self._last = (weights_digest(model), table) if reusable else None
        data = self.space.dataset
        fit, select = table.split_selection(data.selection_fraction, data.split_seed)
        cfg = PolicyConfig(
            kind="threshold", cost_weight=c.policy.cost_weight, cost="macs", metric=c.policy.metric
        )
        costs = mac_costs(model).normalised_path()
        policy = create_policy(cfg)
        policy.fit(fit, costs, cfg.cost_weight)
        stats = score_decisions(select, policy.decide_table(select), costs)
        self.final_exit_accuracy = float(select.correct[:, -1].mean())
        return float(stats.accuracy), float(stats.cost)

    def table_for(self, model: Any, feature_spec: Any = None) -> Any:
        """The last call's validation ExitTable if it was ``reusable`` and ``model`` has exactly its
        weights, else None.

        The evaluation after training asks (``known_val_table``): the final rung scored the last epoch's
        checkpoint, which holds the weights the evaluation scores, with the same loader (validation,
        batches of 512, in order) in the same process, so the table is the one it would compute. Only
        for the four confidence features (a policy with rich features needs other columns).
        """
        from ddecs_search.models import weights_digest

        if self._last is None or feature_spec is not None:
            return None
        digest, table = self._last
        return table if weights_digest(model) == digest else None


class EpochProxy:
    """Callable ``(checkpoint_path) -> proxy value`` of one trial's single accuracy-type objective."""

    def __init__(
        self,
        space: SearchSpace,
        candidate: Candidate,
        objective: Objective,
        baseline_val_accuracy: float,
        on_batch: BatchCallback | None = None,
    ) -> None:
        self.objective = objective
        self.baseline_val_accuracy = baseline_val_accuracy
        self._score = CheckpointScorer(space, candidate, on_batch)

    def __call__(self, checkpoint_path: Path) -> float:
        accuracy, _ = self._score(checkpoint_path)
        if self.objective.name == "val_accuracy_drop":
            return float(self.baseline_val_accuracy - accuracy)
        return accuracy
