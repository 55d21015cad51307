"""A model's weights as one digest: equal digests, equal weights (every parameter and buffer, by name).

Used where a computed value is reused only for exactly the weights it was computed from: the final rung's
validation table handed to the evaluation, and the static network's outputs a worker keeps between trials.
"""

from __future__ import annotations

import hashlib
from typing import Any


def weights_digest(model: Any) -> str:
    """SHA-256 of ``model.state_dict()`` (names, dtypes, shapes and bytes; any dtype, 0-d tensors too)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
