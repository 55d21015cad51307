"""The conditional search space as an Optuna define-by-run function.

Branch specs exist only for the exits a candidate has, so the space is sampled in order: the number of
early exits ``n``, then their placement (one categorical over the ordered, distinct ``n``-subsets of
the allowed exit points, a separate parameter per ``n`` so that every parameter keeps one fixed
distribution), then each exit slot's branch (``branch0/conv_layers``, ``branch0/channels``, ...), then
training and policy choices. Dimensions with a single choice are constants, not parameters, and a
dimension the candidate would not use is not sampled: a branch without convolutions has no width, so
``branch<k>/channels`` exists only where ``branch<k>/conv_layers > 0`` (:func:`active_branch_dims`).
Sampling it anyway made two trials that differ only in an unused width look different to the sampler
(TPE re-trained the same network under another name) and gave the width an importance it cannot have.

That is the *conditional* encoding, the default. The *flat* one (``search.encoding: flat``, the default of
``algorithm: gp``) samples every parameter in every trial: one categorical ``exit_points/all`` over the
placements of every allowed count, and every dimension of every branch slot up to the largest count; the
network reads only what it uses. Optuna's GP sampler models only the parameters that all finished trials
share (``IntersectionSearchSpace``), so on the conditional encoding it would draw the exit placement, the
second branch and every width at random.
On the flat encoding a parameter the network does not read still varies from trial to trial;
:meth:`ConditionalSpace.unused_params` names those, and ``search.gp.pin_unused`` shows them to the GP
pinned to their first choice (search/_samplers.py).

Parameter names use ``/`` because Ray's OptunaSearch unflattens them into a nested trial config
(``{"branch0": {"channels": 32}, ...}``); :meth:`ConditionalSpace.candidate_override` maps that config
back to a candidate.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddecs_search.config import Candidate, ExitSpace, PolicySpace, SearchSpace, TrainingSpace, from_dict

if TYPE_CHECKING:
    import optuna

BRANCH_DIMS = ("conv_layers", "channels", "pool", "pool_size", "hidden", "dropout")
_BRANCH_PARAM = re.compile(r"branch(\d+)/(\w+)")


def active_branch_dims(conv_layers: int) -> tuple[str, ...]:
    """The branch dimensions a branch with ``conv_layers`` convolutions uses, in sampling order.

    ``conv_layers`` comes first so that the others can depend on it; ``channels`` is the width of the
    convolutions and means nothing without them (``models/_branch.py`` never reads it then).
    """
    return tuple(d for d in BRANCH_DIMS if d != "channels" or conv_layers > 0)


def _encode_points(points: tuple[int, ...]) -> str:
    return ",".join(str(p) for p in points)


def _decode_points(text: str | int) -> list[int]:
    return [int(p) for p in str(text).split(",")]


@dataclass(frozen=True)
class ConditionalSpace:
    """Define-by-run function of a search space (picklable: Tune saves it with the searcher state).

    Call it with an ``optuna.Trial``; the sampled parameters become the trial config.
    """

    exits: ExitSpace
    training: TrainingSpace
    policy: PolicySpace
    points: tuple[int, ...]
    flat: bool = False

    @classmethod
    def from_space(cls, space: SearchSpace) -> ConditionalSpace:
        """Build from a validated space; ``exits.points: null`` means every exit point of the backbone."""
        from ddecs_search.models import backbone_info

        points = space.exits.points
        if points is None:
            points = tuple(range(len(backbone_info(space.backbone.name).exit_point_names)))
        flat = space.search.space_encoding == "flat"
        return cls(space.exits, space.training, space.policy, tuple(points), flat)

    def placements(self, count: int | None = None) -> list[str]:
        """The exit placements of ``count`` exits, else of every count the space allows (fewest exits
        first), encoded as ``"0,2"``: the choices of ``exit_points/n<count>`` resp. ``exit_points/all``."""
        lo, hi = self.exits.count
        counts = range(lo, hi + 1) if count is None else (count,)
        return [_encode_points(c) for n in counts for c in itertools.combinations(self.points, n)]

    # ------------------------------------------------------------------------------------------ sampling
    def __call__(self, trial: optuna.Trial) -> None:
        if self.flat:
            self._sample_flat(trial)
        else:
            self._sample_conditional(trial)
        _choose(trial, "training/mode", self.training.mode)
        _choose(trial, "training/epochs", self.training.epochs)
        _choose(trial, "policy/kind", self.policy.kind)
        low, high = self.policy.cost_weight
        if low < high:
            trial.suggest_float("policy/cost_weight", low, high, log=True)
        return None

    def _sample_flat(self, trial: optuna.Trial) -> None:
        _choose(trial, "exit_points/all", self.placements())
        for k in range(self.exits.count[1]):
            for dim in BRANCH_DIMS:
                _choose(trial, f"branch{k}/{dim}", getattr(self.exits, dim))

    def _sample_conditional(self, trial: optuna.Trial) -> None:
        lo, hi = self.exits.count
        n = trial.suggest_int("num_early_exits", lo, hi) if lo < hi else lo
        _choose(trial, f"exit_points/n{n}", self.placements(n))
        for k in range(n):
            conv_layers = _choose(trial, f"branch{k}/conv_layers", self.exits.conv_layers)
            for dim in active_branch_dims(int(conv_layers))[1:]:
                _choose(trial, f"branch{k}/{dim}", getattr(self.exits, dim))

    def size(self) -> float:
        """Number of distinct discrete candidates (``inf`` when the cost weight is a range).

        Distinct as networks: a branch without convolutions counts once, whatever ``channels`` offers.
        """
        per_branch = sum(
            math.prod(len(getattr(self.exits, d)) for d in active_branch_dims(c)[1:])
            for c in self.exits.conv_layers
        )
        lo, hi = self.exits.count
        placements = sum(math.comb(len(self.points), n) * per_branch**n for n in range(lo, hi + 1))
        total = placements * len(self.training.mode) * len(self.training.epochs) * len(self.policy.kind)
        low, high = self.policy.cost_weight
        return math.inf if low < high else float(total)

    def unused_params(self, params: Mapping[str, Any]) -> list[str]:
        """The names in ``params`` (a flat-encoding trial's parameters) that the candidate does not read.

        Every dimension of a branch slot at or past the placement's exit count (a one-exit candidate's
        ``branch1/*``), and every dimension :func:`active_branch_dims` leaves out of a slot it has (the
        width of a branch without convolutions). Two draws that differ only there build the same network
        (:func:`config_key` says so); a model that sees them as different points keeps proposing such
        variants of a network it knows. Empty on the conditional encoding, which never samples them.
        """
        if not self.flat:
            return []
        placement = params.get("exit_points/all", self.placements()[0])
        count = len(_decode_points(placement))
        unused = []
        for name in params:
            match = _BRANCH_PARAM.fullmatch(name)
            if match is None:
                continue
            slot, dim = int(match.group(1)), match.group(2)
            convs = params.get(f"branch{slot}/conv_layers", self.exits.conv_layers[0])
            if slot >= count or dim not in active_branch_dims(int(convs)):
                unused.append(name)
        return unused

    def pin_unused(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with every :meth:`unused_params` entry set to its dimension's first choice: one
        representative per network, what a model of the flat encoding should see."""
        pinned = dict(params)
        for name in self.unused_params(params):
            pinned[name] = getattr(self.exits, name.split("/", 1)[1])[0]
        return pinned

    # ------------------------------------------------------------------------------------------ decoding
    def candidate_override(self, config: dict[str, Any]) -> dict[str, Any]:
        """The trial config (nested, as Tune passes it) as a partial candidate for ``candidate_from_dict``.

        Every candidate field is set explicitly (see :func:`build_candidate`); a dimension the trial did
        not sample takes the space's first choice (a single choice; ``channels`` of a branch without
        convolutions, which :class:`~ddecs_search.config.BranchSpec` then sets to 0).
        """
        lo, _ = self.exits.count
        n = int(config.get("num_early_exits", lo))
        points_choices = config.get("exit_points", {})
        if "all" in points_choices:  # the flat encoding: the placement gives the count
            exit_points = _decode_points(points_choices["all"])
            n = len(exit_points)
        elif self.flat:  # one placement in the whole space (a constant)
            exit_points = _decode_points(self.placements()[0])
            n = len(exit_points)
        elif f"n{n}" in points_choices:
            exit_points = _decode_points(points_choices[f"n{n}"])
        else:  # only one placement exists for this count (a constant, not a parameter)
            exit_points = _decode_points(self.placements(n)[0])
        branches = []
        for k in range(n):
            sampled = config.get(f"branch{k}", {})
            branches.append({d: sampled.get(d, getattr(self.exits, d)[0]) for d in BRANCH_DIMS})
        training = config.get("training", {})
        policy = config.get("policy", {})
        t = self.training
        weights = None if t.loss_weights is None else [*t.loss_weights[:n], t.loss_weights[-1]]
        return {
            "exit_points": exit_points,
            "branches": branches,
            "training": {
                "mode": training.get("mode", t.mode[0]),
                "epochs": int(training.get("epochs", t.epochs[0])),
                "lr": t.lr,
                "batch_size": t.batch_size,
                "weight_decay": t.weight_decay,
                "optimizer": t.optimizer,
                "lr_schedule": t.lr_schedule,
                "loss_weights": weights,
                "label_smoothing": t.label_smoothing,
                "distill": t.distill,
                "distill_temperature": t.distill_temperature,
            },
            "policy": {
                "kind": policy.get("kind", self.policy.kind[0]),
                "cost_weight": float(policy.get("cost_weight", self.policy.cost_weight[0])),
                "cost": self.policy.cost,
                "metric": self.policy.metric,
                "options": dict(self.policy.options.get(policy.get("kind", self.policy.kind[0]), {})),
            },
        }


def _choose(trial: optuna.Trial, name: str, choices: tuple | list) -> Any:
    """A categorical parameter, or the constant itself when there is only one choice."""
    choices = list(choices)
    if len(choices) == 1:
        return choices[0]
    return trial.suggest_categorical(name, choices)


def build_candidate(space: SearchSpace, fn: ConditionalSpace, config: dict[str, Any]) -> Candidate:
    """The validated candidate of a trial config.

    Built from the space alone (backbone, ``default_candidate``'s seed): merging over the whole
    ``default_candidate`` would leak its policy options into candidates of another policy kind.
    """
    data = {
        "backbone": space.backbone.name,
        "seed": space.default_candidate.get("seed", 0),
        **fn.candidate_override(config),
    }
    return from_dict(Candidate, data, "candidate")


def config_key(space: SearchSpace, fn: ConditionalSpace, config: dict[str, Any]) -> str:
    """:func:`~ddecs_search.experiment.candidate_key` of a trial config: equal for two configs that train
    the same network and fit the same policy (on the flat encoding, also when they differ only in what the
    network does not read). Bind ``space`` and ``fn`` with ``functools.partial`` for the searcher."""
    from ddecs_search.experiment import candidate_key

    return candidate_key(build_candidate(space, fn, config))
