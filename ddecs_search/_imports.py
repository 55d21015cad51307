"""Deferred imports of heavy optional dependencies (optuna's ``try_import`` pattern).

``import ddecs_search`` must stay light: Ray, RLlib, plotly and pynvml are imported where they are used,
through :func:`require`, which raises an ImportError that says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_INSTALL_HINTS = {
    "ray": "pip install 'ray[tune,rllib]==2.60.*'",
    "optuna": "pip install optuna",
    "plotly": "pip install plotly",
    "pynvml": "pip install nvidia-ml-py",
    "kaleido": "pip install 'ddecs-search[png]' (and a Chromium, e.g. Debian's 'chromium')",
    "gymnasium": "pip install gymnasium==1.2.2",
    "pandas": "pip install pandas pyarrow",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        top = module.split(".")[0]
        hint = _INSTALL_HINTS.get(top, f"pip install {top}")
        raise ImportError(f"ddecs-search needs '{module}' for this feature: {hint}") from exc
