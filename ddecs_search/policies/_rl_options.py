"""Strict parsing of the learned policies' ``PolicyConfig.options`` (unknown names and bad values raise)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ddecs_search.errors import ConfigError
from ddecs_search.policies._features import FeatureSpec


@dataclass(frozen=True)
class Option:
    """One option: its default, its type (``int``, ``float``, ``ints`` = list of ints, ``choice``) and range.

    ``low`` and ``high`` are inclusive; ``positive`` excludes 0; ``None`` is accepted only where it is
    the default.
    """

    default: Any
    type: str
    low: float = 0.0
    high: float = float("inf")
    positive: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


def resolve_options(kind: str, given: Mapping[str, Any], spec: Mapping[str, Option]) -> dict[str, Any]:
    """``spec`` defaults overridden by ``given``, each value checked; raises ConfigError naming the option."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ConfigError(
            f"'policy.options': the {kind} policy has no option(s) {unknown}; valid: {sorted(spec)}"
        )
    out = {name: opt.default for name, opt in spec.items()}
    for name, value in given.items():
        out[name] = _check(f"policy.options.{name}", value, spec[name])
    return out


def _check(path: str, value: Any, opt: Option) -> Any:
    if value is None and opt.default is None:
        return None
    if opt.type == "choice":
        if value not in opt.choices:
            raise ConfigError(f"'{path}': must be one of {list(opt.choices)}, got {value!r}")
        return value
    if opt.type == "ints":
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v > 0 for v in value):
            raise ConfigError(f"'{path}': must be a list of positive integers, got {value!r}")
        return [int(v) for v in value]
    ok_type = _is_int(value) if opt.type == "int" else (_is_int(value) or isinstance(value, float))
    if not ok_type:
        raise ConfigError(
            f"'{path}': must be {'an integer' if opt.type == 'int' else 'a number'}, got {value!r}"
        )
    if not opt.low <= value <= opt.high or (opt.positive and value <= 0):
        bound = f"{'>' if opt.positive else '>='} {opt.low:g}" + (
            f" and <= {opt.high:g}" if opt.high < float("inf") else ""
        )
        raise ConfigError(f"'{path}': must be {bound}, got {value!r}")
    return int(value) if opt.type == "int" else float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The observation options shared by the learned policies (``gate``, ``ppo``, ``dqn``).
OBSERVATION_OPTIONS: dict[str, Option] = {
    "observation": Option(
        "confidence",
        "choice",
        choices=("confidence", "rich"),
        help="confidence: the 4 confidence features; rich: + top-k, history, hidden projection, cost",
    ),
    "topk": Option(3, "int", low=1, help="rich: sorted top probabilities"),
    "hidden_dim": Option(8, "int", low=0, help="rich: width of the hidden-feature projection (0 = none)"),
    "projection_seed": Option(0, "int", help="rich: seed of the fixed hidden-feature projection"),
}


def feature_spec_from_options(options: Mapping[str, Any]) -> FeatureSpec | None:
    """The table layout a policy with these (resolved) options reads: ``None`` = confidence features."""
    if options.get("observation", "confidence") != "rich":
        return None
    return FeatureSpec(
        topk=options["topk"], hidden_dim=options["hidden_dim"], seed=options["projection_seed"]
    )
