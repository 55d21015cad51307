"""Torch's intra-op thread count, set for a block and restored after (the count is process-wide)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the count it had.

    Small torch problems (an exit gate, RLlib's 32x32 policy, the GP sampler's model) run several times
    slower on threads that compete with trials training on the same cores; timing runs on a fixed count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
