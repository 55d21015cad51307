"""Optuna's samplers made picklable whatever the Optuna version: Ray Tune pickles its searcher.

``tune.Tuner(...)`` pickles the search algorithm into its state file at once, and Tune checkpoints the
searcher (sampler included) while the search runs, for a resume. Optuna 5.1 gave its genetic samplers
(NSGA-II, NSGA-III) a ``threading.Lock`` (``BaseGASampler._thread_lock``) without a ``__getstate__``, so
``pickle.dumps(NSGAIISampler())`` raises "cannot pickle '_thread.lock' object" and a fresh install could not
start the default job. A lock guards the threads of one process; a copy loaded in another process needs a
lock of its own, not the original's state. So the subclasses below pickle every lock attribute as a marker
and make a new lock of the same kind when loaded; everything else is pickled as Optuna would.

The GP sampler also makes its suggestion on one torch thread: see :class:`GPSampler`.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

from ddecs_search._threads import torch_threads

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
    """``optuna.samplers.GPSampler``, picklable, suggesting on one torch intra-op thread.

    The sampler fits its model and optimises the acquisition in the search's driver, by default on as
    many torch threads as the driver's node has cores, while trials train on those cores. On two cores,
    one suggestion (48 trials done, one running) took 2.26 s on one thread and 4.74 s on two while one
    core ran a training-like load (2.0x, 10 of 10 pairs side by side), and 2.26 s against 1.99 s on an
    idle box (one thread 13 % slower: the price where the driver's cores are otherwise idle). In a whole
    48-trial search the gain was smaller (≈ 2.4 s against 2.6 s a suggestion; one search each, not
    paired): docs/session-notes/2026-12-01/issue-14-searcheff.md, session 32.
    """

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        with torch_threads(1):
            return super().sample_relative(study, trial, search_space)
