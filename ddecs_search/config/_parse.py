"""Strict conversion of plain YAML/JSON data into typed, frozen dataclasses.

One generic converter validates every configuration object at the edge: unknown keys, wrong types and
missing required fields raise :class:`~ddecs_search.errors.ConfigError` with the dotted path of the
offending key (``exits.channels[1]``) and what was expected. Range rules live in each dataclass's
``__post_init__`` and raise through :func:`fail` so they carry the same path.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from ddecs_search.errors import ConfigError

T = TypeVar("T")

_NONE = type(None)


def fail(path: str, message: str) -> typing.NoReturn:
    """Raise a ConfigError for the field at ``path``."""
    where = f"'{path}'" if path else "the configuration"
    raise ConfigError(f"{where}: {message}")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    if tp is _NONE:
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            fail(path, f"expected {_describe(tp)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if _NONE in args:
                return None
            fail(path, f"expected {_describe(tp)}, got null")
        errors = []
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # ``X | None``: X's own message says more ("must be a finite number")
            raise errors[0]
        fail(path, f"expected {_describe(tp)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            fail(path, f"expected {_describe(tp)}, got {value!r}")
        inner = get_args(tp)[0]
        items = [_convert(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            fail(path, f"expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            fail(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(path, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            fail(path, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail(path, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # programming error, not user input


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping), strictly.

    Raises:
        ConfigError: on unknown keys, missing required keys, wrong types, or a failed range rule.
    """
    if not isinstance(data, dict):
        fail(path, f"expected a mapping ({cls.__name__}), got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{path}." if path else ""
        fail(
            prefix + str(unknown[0]),
            f"unknown key; valid keys here are: {', '.join(sorted(fields))}",
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(sub, "required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        msg = str(exc)
        if path and msg.startswith("'"):
            # Range rules raise with the field name only; prefix the enclosing path.
            msg = f"'{path}.{msg[1:]}"
        raise ConfigError(msg) from None


def to_dict(obj: Any) -> Any:
    """Inverse of :func:`from_dict`: plain JSON-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlay ``override`` on ``base`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
