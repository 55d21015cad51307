"""Optuna's samplers made picklable whatever the Optuna version: Ray Tune pickles its searcher.

``tune.Tuner(...)`` pickles the search algorithm into its state file at once, and Tune checkpoints the
searcher (sampler included) while the search runs, for a resume. Optuna 5.1 gave its genetic samplers
(NSGA-II, NSGA-III) a ``threading.Lock`` (``BaseGASampler._thread_lock``) without a ``__getstate__``, so
``pickle.dumps(NSGAIISampler())`` raises "cannot pickle '_thread.lock' object" and a fresh install could not
start the default job. A lock guards the threads of one process; a copy loaded in another process needs a
lock of its own, not the original's state. So the subclasses below pickle every lock attribute as a marker
and make a new lock of the same kind when loaded; everything else is pickled as Optuna would.

The GP sampler also makes its suggestion on one torch thread and without Optuna's CPU device mode where
the CPU is the default device anyway: see :class:`GPSampler`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
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
        """The GP's suggestion, except for a warm-start point: there its free parameters are drawn at random.

        A warm-start point (``study.enqueue_trial``: ``fixed_params``) fixes every parameter the network
        reads; in the flat encoding the slots it leaves free (a second branch's widths for one exit) are
        read by nothing. Optuna still ran the whole suggestion for them once the startup trials were done
        (checked: 0 calls with every parameter fixed, 1 call of 5.4 s with ``branch1/*`` left free), so a
        paired replay, whose 48 trials are all warm-start points, spent ≈ 1.7 s of driver time a trial
        on suggestions nothing evaluated read (issue-14 notes, session 35). Returning no relative
        parameters sends those slots to the sampler's independent (random) sampler, as in the startup
        trials; nothing a trial evaluates changes.
        """
        if trial.system_attrs.get("fixed_params"):
            return {}
        with torch_threads(1):
            return super().sample_relative(study, trial, search_space)

    def _sample_relative_impl(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Optuna's suggestion, with its ``torch.device("cpu")`` mode popped where it changes nothing.

        Optuna 5.1 runs the whole suggestion inside ``with torch.device("cpu")`` (for users whose default
        device is CUDA, optuna issue 6113), a Python torch-function mode that every torch call of the fit
        and the acquisition search dispatches through (77 740 calls in one suggestion at 48 trials). When
        no other device mode is active the default device is the CPU without it: the same computation,
        ≈ 1.2x faster (48 trials and one running: 2.12 s against 2.40 s, 10 of 10 pairs faster, the same
        suggestion in all of them; issue-14 notes, session 33). Otherwise Optuna's path runs unchanged.
        """
        with _cpu_device_mode_popped():
            return super()._sample_relative_impl(*args, **kwargs)


@contextlib.contextmanager
def _cpu_device_mode_popped() -> Iterator[None]:
    """Pop the torch-function mode on top for the block iff it is a CPU ``DeviceContext`` and every other
    device mode beneath it is a CPU one too (so the default device stays the CPU without it)."""
    from torch.overrides import _get_current_function_mode_stack, _pop_mode_temporarily
    from torch.utils._device import DeviceContext

    stack = _get_current_function_mode_stack()
    devices = [m.device.type for m in stack if isinstance(m, DeviceContext)]
    if not stack or not isinstance(stack[-1], DeviceContext) or set(devices) != {"cpu"}:
        yield
        return
    with _pop_mode_temporarily():
        yield
