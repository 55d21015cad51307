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
