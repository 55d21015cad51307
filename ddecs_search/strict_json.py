"""Strict JSON out of what the package computes: NaN/inf -> null, numpy and torch values -> Python.

``json.dumps`` would write ``NaN``/``Infinity`` (not JSON) and refuse numpy scalars; every JSON the
package or the benchmarks write goes through :func:`json_safe` first.
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts.

    Dicts and lists/tuples are walked; arrays and tensors become (nested) lists, numpy/torch scalars
    Python numbers/bools; non-finite floats become ``None``. Anything else is returned unchanged.
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (str, bytes, bool, int)) or obj is None:
        return obj
    if hasattr(obj, "ndim") and getattr(obj, "ndim", 0) > 0 and hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(json_safe(obj), allow_nan=False, **kwargs)``: strict JSON or an error."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
