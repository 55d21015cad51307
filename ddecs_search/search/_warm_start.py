"""Warm start: known candidates (``search.warm_start``) evaluated first and given to the sampler.

Each entry is a candidate written like ``default_candidate`` (or ``evaluate --candidate``): a partial
dict overlaid on the space's ``default_candidate``, so ``{}`` is the default candidate itself. It is
mapped to the parameters of the define-by-run space (:class:`ConditionalSpace`: ``num_early_exits``,
``exit_points/n<k>`` or, flat, ``exit_points/all``, ``branch<k>/<dim>``, ``training/mode``,
``training/epochs``, ``policy/kind``, ``policy/cost_weight``) and handed to Ray's
``OptunaSearch(points_to_evaluate=...)``, which enqueues them in the Optuna study
(``study.enqueue_trial``): they are the first trials Tune creates (the first rows of ``trials.csv``),
and their results are told to the sampler like any other trial's.

Only what the space searches is taken from an entry; training hyper-parameters the space fixes (``lr``,
``batch_size``, ...) and the policy's ``cost``/``metric`` come from the space, as for every trial. An
entry outside the space (a channel count or exit point the space does not offer, a cost weight outside
its range, another backbone) is a configuration error that names the entry and the field.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ddecs_search.config import SearchSpace
from ddecs_search.errors import ConfigError
from ddecs_search.search._space_fn import ConditionalSpace, _encode_points, active_branch_dims
from ddecs_search.spaces import candidate_from_dict


def fail(path: str, message: str) -> NoReturn:
    raise ConfigError(f"'{path}': {message}")


def _pick(params: dict[str, Any], name: str, value: Any, choices: Any, path: str) -> None:
    choices = list(choices)
    if value not in choices:
        fail(path, f"{value!r} is not in the search space (choices: {choices})")
    if len(choices) > 1:
        params[name] = value


def candidate_params(
    space: SearchSpace, fn: ConditionalSpace, override: dict[str, Any], path: str
) -> dict[str, Any]:
    """The define-by-run parameters (flat Optuna names) of one warm-start entry.

    Raises:
        ConfigError: the entry is not a valid candidate, or not inside the space (names ``path`` + field).
    """
    cand = candidate_from_dict(space, override, path)
    if cand.backbone != space.backbone.name:
        fail(f"{path}.backbone", f"the space searches {space.backbone.name!r}, got {cand.backbone!r}")
    params: dict[str, Any] = {}
    n = len(cand.exit_points)
    lo, hi = fn.exits.count
    if not lo <= n <= hi:
        fail(f"{path}.exit_points", f"{n} early exit(s), the space allows {lo}..{hi} (exits.count)")
    placement = _encode_points(cand.exit_points)
    if fn.flat:  # one parameter for count and placement; unused slots and widths are left to the sampler
        _pick(params, "exit_points/all", placement, fn.placements(), f"{path}.exit_points")
    else:
        if lo < hi:
            params["num_early_exits"] = n
        _pick(params, f"exit_points/n{n}", placement, fn.placements(n), f"{path}.exit_points")
    for k, branch in enumerate(cand.branches):
        for dim in active_branch_dims(branch.conv_layers):  # (no width without convolutions)
            _pick(
                params,
                f"branch{k}/{dim}",
                getattr(branch, dim),
                getattr(fn.exits, dim),
                f"{path}.branches[{k}].{dim}",
            )
    _pick(params, "training/mode", cand.training.mode, fn.training.mode, f"{path}.training.mode")
    _pick(params, "training/epochs", cand.training.epochs, fn.training.epochs, f"{path}.training.epochs")
    _pick(params, "policy/kind", cand.policy.kind, fn.policy.kind, f"{path}.policy.kind")
    low, high = fn.policy.cost_weight
    weight = float(cand.policy.cost_weight)
    if not low <= weight <= high:
        fail(f"{path}.policy.cost_weight", f"{weight} is outside the space's range [{low}, {high}]")
    if low < high:
        params["policy/cost_weight"] = weight
    return params


def warm_start_points(space: SearchSpace, fn: ConditionalSpace | None = None) -> list[dict[str, Any]]:
    """``points_to_evaluate`` for OptunaSearch, in the order of ``search.warm_start``.

    Raises:
        ConfigError: an entry outside the space (see :func:`candidate_params`).
    """
    fn = fn or ConditionalSpace.from_space(space)
    return [
        candidate_params(space, fn, dict(entry), f"search.warm_start[{i}]")
        for i, entry in enumerate(space.search.warm_start)
    ]


def check_warm_start(space: SearchSpace, source: str = "") -> None:
    """Validate ``search.warm_start`` before any work (ConfigError naming ``source`` and the entry)."""
    try:
        warm_start_points(space)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
