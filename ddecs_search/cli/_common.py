"""Helpers shared by CLI verbs: JSON arguments, atomic output files, dataset overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ddecs_search._atomic import write_text_atomic
from ddecs_search.config import SearchSpace, to_dict
from ddecs_search.errors import ConfigError
from ddecs_search.spaces import parse_space
from ddecs_search.strict_json import json_safe


def parse_json_arg(text: str, flag: str) -> Any:
    """Parse a JSON command-line value, naming the flag on failure."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag}: not valid JSON ({exc.msg} at position {exc.pos}): {text!r}") from None


def override_dataset(space: SearchSpace, dataset: str | None) -> SearchSpace:
    """``--dataset NAME`` replaces the space's dataset name (subsets and split settings are kept)."""
    if not dataset:
        return space
    data = to_dict(space)
    data["dataset"]["name"] = dataset
    return parse_space(data, f"--dataset {dataset}")


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """Write strict JSON via a temp file + rename so a crash never leaves half a file."""
    write_text_atomic(json.dumps(json_safe(obj), indent=2) + "\n", path)
