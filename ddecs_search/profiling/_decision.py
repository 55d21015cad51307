"""The time an exit decision costs at batch 1, for the latency table.

The per-module table times stages and branches; real early-exit inference also pays, at every early
exit it passes, the policy's decision on the branch's logits and the host synchronisation that reading
it forces. Without that term the table under-estimates the end-to-end time of a configuration, more so
for small networks and richer policies. Measured with the fitted policy on real logits of one sample.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from ddecs_search.profiling._device import eval_mode, synchronize
from ddecs_search.profiling._latency import ForcedExit, check_counts, host_timer, round_robin

if TYPE_CHECKING:
    from ddecs_search.models import MultiExitNet, OnlineExitPolicy


def decision_costs(
    model: MultiExitNet,
    policy: OnlineExitPolicy,
    sample: torch.Tensor,
    device: torch.device,
    *,
    warmup: int = 10,
    repeats: int = 30,
) -> np.ndarray:
    """``(E-1,)`` median ms of deciding at each early exit (decision + reading the result on the host).

    Args:
        model: the ``MultiExitNet`` on ``device``.
        policy: the fitted policy (``exit_mask_from_logits``).
        sample: one input ``(1, C, H, W)`` on ``device``.
    """
    with eval_mode(model), torch.inference_mode():
        logits = model(sample)  # every exit's (1, C) logits
        prevs = [None] + [lg.argmax(dim=1) for lg in logits[:-1]]
        out = np.empty((len(logits) - 1, repeats), dtype=np.float64)
        for r in range(warmup + repeats):
            for k in range(len(logits) - 1):
                synchronize(device)
                t0 = time.perf_counter()
                bool(policy.exit_mask_from_logits(k, logits[k], prevs[k])[0])  # .item() syncs the device
                if r >= warmup:
                    out[k, r - warmup] = (time.perf_counter() - t0) * 1e3
    return np.median(out, axis=1) if out.size else np.zeros(0)


class _DecideThenForce:
    """Runs the fitted policy's decision at every exit passed (read on the host, as real early exit
    does), then leaves at the forced exit whatever it said: the forced path plus real decisions."""

    def __init__(self, policy: OnlineExitPolicy, forced: ForcedExit) -> None:
        self.policy, self.forced = policy, forced

    def exit_mask_from_logits(
        self, exit_index: int, logits: torch.Tensor, prev_pred: torch.Tensor | None
    ) -> torch.Tensor:
        bool(self.policy.exit_mask_from_logits(exit_index, logits, prev_pred)[0])
        return self.forced.exit_mask_from_logits(exit_index, logits, prev_pred)


def decision_costs_in_loop(
    model: MultiExitNet,
    policy: OnlineExitPolicy,
    sample: torch.Tensor,
    device: torch.device,
    *,
    warmup: int = 10,
    repeats: int = 30,
) -> np.ndarray:
    """``(E-1,)`` ms each early exit's decision adds to eager early exit, measured inside the loop.

    Timed in isolation (:func:`decision_costs`) a decision is cheaper than inside ``early_exit``
    (measured: ~9 us alone vs ~20 us in the loop for a threshold on LeNet), so the table under-estimated
    eager early exit. Here ``model.early_exit`` forced out at every exit is timed with and without the
    policy deciding on the way, interleaved round-robin; the per-exit decision cost is the increase of
    the difference from one exit to the next (floored at 0 against timing noise; the final path, which
    passes every decision, is averaged with the last early one). Policies with a rich observation run
    another loop: their isolated decision cost is returned.
    """
    check_counts(warmup=warmup, repeats=repeats)
    if getattr(policy, "feature_spec", None) is not None or model.num_exits < 2:
        return decision_costs(model, policy, sample, device, warmup=warmup, repeats=repeats)
    e = model.num_exits
    forced = [ForcedExit(k, device) for k in range(e)]
    deciding = [_DecideThenForce(policy, f) for f in forced]
    with eval_mode(model), torch.inference_mode():
        jobs = [(lambda t, p=p: model.early_exit(t, p), sample) for p in (*forced, *deciding)]
        med = np.median(round_robin(jobs, host_timer(device), warmup, repeats), axis=1)
    extra = med[e:] - med[:e]  # (E,) decisions passed on the way to exit k: exits 0..min(k, E-2)
    cumulative = extra[: e - 1].copy()
    cumulative[-1] = (extra[e - 2] + extra[e - 1]) / 2
    return np.maximum(np.diff(cumulative, prepend=0.0), 0.0)
