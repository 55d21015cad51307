"""Search-space files and candidates: read, resolve, and validate against the registries.

This module sits above :mod:`ddecs_search.config` (types, ranges, finiteness: a leaf) and the data, model
and policy packages, whose registries it checks names and indices against: the dataset, the backbone and
its exit points, the policy kinds and each kind's ``policy.options``. Relative paths in a space file
(``dataset.name: imagefolder:data/x``, ``dataset.root``) are resolved against the folder of the file when
it is read, so trials (whose working directory differs) see absolute paths.

Every mistake raises :class:`~ddecs_search.errors.ConfigError` naming the file, the key, the rule and the
value; the CLI turns it into exit code 2 before any folder is written or Ray starts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ddecs_search.config import Candidate, PolicyConfig, SearchSpace, deep_merge, from_dict
from ddecs_search.errors import ConfigError

IMAGEFOLDER_PREFIX = "imagefolder:"

__all__ = ["candidate_from_dict", "load_space", "parse_space", "resolve_paths"]


def fail(path: str, message: str) -> NoReturn:
    """Raise a ConfigError for the key at ``path`` (the same form config's own rules use)."""
    raise ConfigError(f"'{path}': {message}")


def resolve_paths(data: Any, base: str | Path | None = None) -> Any:
    """A copy of raw space data whose relative data paths are absolute, relative to ``base`` (default cwd).

    ``~`` is expanded. Only ``dataset.name: imagefolder:<path>`` and ``dataset.root`` are paths.
    """
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), dict):
        return data
    base_dir = Path(base) if base is not None else Path.cwd()
    data = copy.deepcopy(data)
    dataset = data["dataset"]
    name = dataset.get("name")
    folder = name[len(IMAGEFOLDER_PREFIX) :].strip() if isinstance(name, str) else ""
    if name.startswith(IMAGEFOLDER_PREFIX) and folder:
        dataset["name"] = f"{IMAGEFOLDER_PREFIX}{_absolute(folder, base_dir)}"
    root = dataset.get("root")
    if isinstance(root, str) and root.strip():
        dataset["root"] = str(_absolute(root.strip(), base_dir))
    return data


def _absolute(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path).absolute()


def parse_space(data: Any, source: str = "<space>", *, base: str | Path | None = None) -> SearchSpace:
    """Validate already-loaded YAML data into a :class:`SearchSpace`.

    Relative data paths are resolved against ``base`` (default: the working directory).

    Raises:
        ConfigError: naming ``source`` and the offending key, rule and value.
    """
    try:
        space = from_dict(SearchSpace, resolve_paths(data, base))
        _validate_against_registries(space)
        candidate_from_dict(space, {})  # the default candidate must itself be valid
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (``yaml.safe_load``); relative paths are file-relative."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: search-space file not found; see search_spaces/ for examples")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_space(data, str(path), base=path.resolve().parent)


def _validate_against_registries(space: SearchSpace) -> None:
    """Check names and indices that depend on the data/model/policy registries."""
    from ddecs_search.data import list_datasets
    from ddecs_search.models import backbone_info
    from ddecs_search.policies import list_policies

    ds = space.dataset.name
    if not ds.startswith(IMAGEFOLDER_PREFIX) and ds not in list_datasets():
        valid = ", ".join(list_datasets())
        fail("dataset.name", f"unknown dataset {ds!r}; valid: {valid}, imagefolder:<path>")
    info = backbone_info(space.backbone.name, path="backbone.name")
    n_points = len(info.exit_point_names)
    points = space.exits.points if space.exits.points is not None else tuple(range(n_points))
    if points and points[-1] >= n_points:
        fail(
            "exits.points",
            f"backbone {space.backbone.name!r} has exit points 0..{n_points - 1} "
            f"({', '.join(info.exit_point_names)}), got {list(points)}",
        )
    if space.exits.count[1] > len(points):
        fail("exits.count", f"allows {space.exits.count[1]} exits but only {len(points)} exit points exist")
    for i, kind in enumerate(space.policy.kind):
        if kind not in list_policies():
            fail(f"policy.kind[{i}]", f"unknown policy {kind!r}; valid: {', '.join(list_policies())}")
    for kind in space.policy.kind:
        _check_policy_options(
            f"policy.options.{kind}",
            PolicyConfig(
                kind=kind,
                cost=space.policy.cost,
                metric=space.policy.metric,
                options=dict(space.policy.options.get(kind, {})),
            ),
        )


def _check_policy_options(path: str, config: PolicyConfig) -> None:
    """The policy kind's own factory checks its options (unknown names list the valid ones; ranges)."""
    from ddecs_search.policies import create_policy

    try:
        create_policy(config)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith("'policy.options") and "': " in message:
            inner, message = message[1:].split("': ", 1)
            suffix = inner[len("policy.options") :]  # ".iterations" or ""
            path += suffix
        fail(path, message)
    except TypeError as exc:  # a factory that takes no keyword options
        fail(path, f"the {config.kind} policy does not accept these options ({exc})")


def candidate_from_dict(space: SearchSpace, override: dict[str, Any], path: str = "candidate") -> Candidate:
    """The space's ``default_candidate`` overlaid with ``override`` (deep merge), validated.

    The candidate's backbone defaults to the space's; exit points are checked against the backbone, the
    policy kind against the registry and its options by the policy itself. An override that changes the
    policy's kind does not inherit the default's policy options: they belong to the other kind (the
    default job's threshold ``max_drop`` is no option of a gate), and merging them made every such
    override an error.
    """
    from ddecs_search.models import backbone_info
    from ddecs_search.policies import list_policies

    if not isinstance(override, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {override!r}")
    data = deep_merge({"backbone": space.backbone.name}, space.default_candidate)
    policy, new_policy = data.get("policy"), override.get("policy")
    kind = policy.get("kind", PolicyConfig.kind) if isinstance(policy, dict) else None
    if kind is not None and isinstance(new_policy, dict) and new_policy.get("kind", kind) != kind:
        data["policy"] = {k: v for k, v in policy.items() if k != "options"}
    data = deep_merge(data, override)
    cand = from_dict(Candidate, data, path)
    info = backbone_info(cand.backbone, path=f"{path}.backbone")
    n = len(info.exit_point_names)
    if cand.exit_points[-1] >= n:
        fail(
            f"{path}.exit_points",
            f"backbone {cand.backbone!r} has exit points 0..{n - 1} ({', '.join(info.exit_point_names)}), "
            f"got {list(cand.exit_points)}",
        )
    if cand.policy.kind not in list_policies():
        valid = ", ".join(list_policies())
        fail(f"{path}.policy.kind", f"unknown policy {cand.policy.kind!r}; valid: {valid}")
    _check_policy_options(f"{path}.policy.options", cand.policy)
    return cand
