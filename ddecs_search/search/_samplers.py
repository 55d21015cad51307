"""Optuna's samplers made picklable whatever the Optuna version: Ray Tune pickles its searcher.

``tune.Tuner(...)`` pickles the search algorithm into its state file at once, and Tune checkpoints the
searcher (sampler included) while the search runs, for a resume. Optuna 5.1 gave its genetic samplers
(NSGA-II, NSGA-III) a ``threading.Lock`` (``BaseGASampler._thread_lock``) without a ``__getstate__``, so
``pickle.dumps(NSGAIISampler())`` raises "cannot pickle '_thread.lock' object" and a fresh install could not
start the default job. A lock guards the threads of one process; a copy loaded in another process needs a
lock of its own, not the original's state. So the subclasses below pickle every lock attribute as a marker
and make a new lock of the same kind when loaded; everything else is pickled as Optuna would.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())
_MARKER = "__ddecs_locks__"  # state key: {attribute: "lock" | "rlock"} of the locks left out


class _FreshLocks:
    """Pickles lock attributes as markers and recreates them on load (mixin before the Optuna class)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        kinds = {
            k: "rlock" if isinstance(v, _RLOCK) else "lock"
            for k, v in state.items()
            if isinstance(v, (_LOCK, _RLOCK))
        }
        for key in kinds:
            del state[key]
        state[_MARKER] = kinds
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        kinds = state.pop(_MARKER, {})
        self.__dict__.update(state)
        for key, kind in kinds.items():
            setattr(self, key, threading.RLock() if kind == "rlock" else threading.Lock())


class RandomSampler(_FreshLocks, optuna.samplers.RandomSampler):
    """``optuna.samplers.RandomSampler``, picklable."""


class TPESampler(_FreshLocks, optuna.samplers.TPESampler):
    """``optuna.samplers.TPESampler``, picklable."""


class NSGAIISampler(_FreshLocks, optuna.samplers.NSGAIISampler):
    """``optuna.samplers.NSGAIISampler``, picklable (Optuna >= 5.1 holds a lock in it)."""


class GPSampler(_FreshLocks, optuna.samplers.GPSampler):
    """``optuna.samplers.GPSampler``, picklable."""
