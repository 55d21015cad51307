"""Policy registry: name -> factory. RL policies register lazy factories (Ray is imported on use)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ddecs_search.config import PolicyConfig
from ddecs_search.errors import ConfigError
from ddecs_search.policies._base import ExitPolicy

PolicyFactory = Callable[[PolicyConfig], ExitPolicy]
_REGISTRY: dict[str, PolicyFactory] = {}


def register_policy(kind: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Register ``factory(config) -> ExitPolicy`` under ``kind``."""

    def decorator(factory: PolicyFactory) -> PolicyFactory:
        if kind in _REGISTRY:
            raise ValueError(f"policy {kind!r} is already registered")
        _REGISTRY[kind] = factory
        return factory

    return decorator


def list_policies() -> list[str]:
    """Registered policy kinds, sorted."""
    return sorted(_REGISTRY)


def create_policy(config: PolicyConfig) -> ExitPolicy:
    """An unfitted policy for ``config``; unknown kinds raise a ConfigError listing the valid ones."""
    try:
        factory = _REGISTRY[config.kind]
    except KeyError:
        raise ConfigError(
            f"'policy.kind': unknown policy {config.kind!r}; valid: {', '.join(list_policies())}"
        ) from None
    return factory(config)


def load_policy(path: str | Path) -> ExitPolicy:
    """Reload a policy written by :meth:`ExitPolicy.save`."""
    data = json.loads(Path(path).read_text())
    policy = create_policy(PolicyConfig(kind=data["kind"]))
    policy.load_state_dict(data["state"])
    return policy
