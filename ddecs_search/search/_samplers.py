"""Optuna's samplers made picklable whatever the Optuna version: Ray Tune pickles its searcher.

``tune.Tuner(...)`` pickles the search algorithm into its state file at once, and Tune checkpoints the
searcher (sampler included) while the search runs, for a resume. Optuna 5.1 gave its genetic samplers
(NSGA-II, NSGA-III) a ``threading.Lock`` (``BaseGASampler._thread_lock``) without a ``__getstate__``, so
``pickle.dumps(NSGAIISampler())`` raises "cannot pickle '_thread.lock' object" and a fresh install could not
start the default job. A lock guards the threads of one process; a copy loaded in another process needs a
lock of its own, not the original's state. So the subclasses below pickle every lock attribute as a marker
and make a new lock of the same kind when loaded; everything else is pickled as Optuna would.

The GP sampler also makes its suggestion on one torch thread and without Optuna's CPU device mode where
the CPU is the default device anyway, and can see the flat encoding's unused parameters pinned: see
:class:`GPSampler`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from ddecs_search._threads import torch_threads

if TYPE_CHECKING:
    import torch

    from ddecs_search.search._space_fn import ConditionalSpace

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
    """``optuna.samplers.GPSampler``, picklable, suggesting on one torch intra-op thread, and optionally
    seeing the parameters a network does not read pinned (``pin_unused``, ``search.gp.pin_unused``).

    Pinning: on the flat encoding every trial draws every parameter, and those its network does not read
    (a one-exit candidate's second branch, the width of a branch without convolutions) are noise to the
    GP. Its kernel sees each such variant of a known network as a new, uncertain point, so the acquisition
    keeps proposing them: in three 48-trial searches every one of 14-24 draws of an evaluated candidate
    was such a variant of one of two networks, each a full suggestion (≈ 2 s of driver time) told and
    drawn again (issue-14 notes, session 33). With ``pin_unused`` (the space function) the GP sees every
    trial with those parameters at their first choice (its data, running trials included) and evaluates
    its acquisition at the pinned point of whatever it searches, so one network is one point to it (the
    usual imputation of inactive dimensions in Bayesian optimisation of conditional spaces); its
    suggestion is pinned too. Trials' stored parameters are the ones drawn.

    The sampler fits its model and optimises the acquisition in the search's driver, by default on as
    many torch threads as the driver's node has cores, while trials train on those cores. On two cores,
    one suggestion (48 trials done, one running) took 2.26 s on one thread and 4.74 s on two while one
    core ran a training-like load (2.0x, 10 of 10 pairs side by side), and 2.26 s against 1.99 s on an
    idle box (one thread 13 % slower: the price where the driver's cores are otherwise idle). In a whole
    48-trial search the gain was smaller (≈ 2.4 s against 2.6 s a suggestion; one search each, not
    paired): docs/session-notes/2026-12-01/issue-14-searcheff.md, session 32.
    """

    def __init__(self, *, pin_unused: ConditionalSpace | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pin_space = pin_unused
        self._pins: _UnusedPins | None = None  # set during one suggestion only

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

    def _sample_relative_impl(
        self, study: Any, completed: list[Any], running: list[Any], search_space: dict[str, Any]
    ) -> dict[str, Any]:
        """Optuna's suggestion, on pinned trials when pinning, with its ``torch.device("cpu")`` mode popped
        where it changes nothing.

        Optuna 5.1 runs the whole suggestion inside ``with torch.device("cpu")`` (for users whose default
        device is CUDA, optuna issue 6113), a Python torch-function mode that every torch call of the fit
        and the acquisition search dispatches through (77 740 calls in one suggestion at 48 trials). When
        no other device mode is active the default device is the CPU without it: the same computation,
        ≈ 1.2x faster (48 trials and one running: 2.12 s against 2.40 s, 10 of 10 pairs faster, the same
        suggestion in all of them; issue-14 notes, session 33). Otherwise Optuna's path runs unchanged.
        """
        space = getattr(self, "_pin_space", None)  # a sampler pickled before pinning existed pins nothing
        if space is not None:
            from optuna.samplers._gp.sampler import _get_params  # a running trial's relative parameters too

            completed = [_with_params(t, space.pin_unused(t.params)) for t in completed]
            running = [_with_params(t, space.pin_unused(_get_params(t))) for t in running]
            self._pins = _UnusedPins(space, search_space)
        try:
            with _cpu_device_mode_popped():
                return super()._sample_relative_impl(study, completed, running, search_space)
        finally:
            self._pins = None

    def _optimize_acqf(self, acqf: Any, best_params: np.ndarray | None) -> np.ndarray:
        """Optuna's acquisition search (its documented override point), on pinned points when pinning."""
        pins = getattr(self, "_pins", None)
        if pins is None:
            return super()._optimize_acqf(acqf, best_params)
        return pins.pin_array(super()._optimize_acqf(_pinned_acquisition(acqf, pins), best_params))


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


def _with_params(trial: Any, params: dict[str, Any]) -> Any:
    """A shallow copy of a ``FrozenTrial`` with other parameter values (the study's trial stays as drawn)."""
    twin = copy.copy(trial)
    twin._params = params
    return twin


class _UnusedPins:
    """:meth:`ConditionalSpace.unused_params` on Optuna's normalised GP encoding (a categorical parameter is
    its choice index), batched for the acquisition search.

    Which parameters a point leaves unused depends only on its exit placement and its branches'
    convolution counts, so the rule is tabulated once per suggestion: one row per combination of those
    choices, computed by the space's own rule (one definition of "unused"). Only categorical parameters
    are pinned (every branch dimension is one), to index 0, the first choice.
    """

    def __init__(self, space: ConditionalSpace, search_space: dict[str, Any]) -> None:
        import torch

        names = list(search_space)
        categorical = [
            isinstance(d, optuna.distributions.CategoricalDistribution) for d in search_space.values()
        ]
        key_names = ["exit_points/all", *(f"branch{k}/conv_layers" for k in range(space.exits.count[1]))]
        keys = [names.index(n) for n in key_names if n in search_space and categorical[names.index(n)]]
        sizes = [len(search_space[names[i]].choices) for i in keys]
        base = {n: search_space[n].choices[0] if c else None for n, c in zip(names, categorical, strict=True)}
        rows = []
        for combo in itertools.product(*(range(n) for n in sizes)):  # row-major, as the strides below
            params = dict(base)
            for i, choice in zip(keys, combo, strict=True):
                params[names[i]] = search_space[names[i]].choices[choice]
            unused = set(space.unused_params(params))
            rows.append([c and n in unused for n, c in zip(names, categorical, strict=True)])
        self._masks = torch.tensor(rows, dtype=torch.bool)  # (combinations, parameters)
        self._keys = torch.tensor(keys, dtype=torch.long)
        strides = np.cumprod([1, *sizes[::-1]])[:-1][::-1] if sizes else np.zeros(0, dtype=int)
        self._strides = torch.tensor(np.ascontiguousarray(strides), dtype=torch.long)

    def pin(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., parameters) with every unused parameter at 0; differentiable in the others."""
        import torch

        row = (x[..., self._keys].round().long() * self._strides).sum(-1)
        return torch.where(self._masks[row], torch.zeros((), dtype=x.dtype), x)

    def pin_array(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self.pin(torch.from_numpy(np.asarray(x, dtype=float))).numpy()


@functools.cache
def _pinned_acquisition_type() -> type:
    from optuna._gp.acqf import BaseAcquisitionFunc  # private: what ``_optimize_acqf`` is handed

    class PinnedAcquisition(BaseAcquisitionFunc):
        """An acquisition function evaluated at the pinned point of every point asked."""

        def __init__(self, inner: Any, pins: _UnusedPins) -> None:
            super().__init__(inner.length_scales, inner.search_space)
            self._inner, self._pins = inner, pins

        def eval_acqf(self, x: torch.Tensor) -> torch.Tensor:
            return self._inner.eval_acqf(self._pins.pin(x))

    return PinnedAcquisition


def _pinned_acquisition(acqf: Any, pins: _UnusedPins) -> Any:
    return _pinned_acquisition_type()(acqf, pins)
