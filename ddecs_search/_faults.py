"""Fault injection for the crash tests: SIGKILL this process at a named point of a search's life.

``DDECS_TEST_KILL_AT=NAME[@N]`` (set by ``tests/test_faults.py`` only) makes the driver kill itself with
SIGKILL the N-th time (default 1st) it passes :func:`point` ``NAME``. The CLI calls :func:`arm` first, which
takes the variable out of the environment, so only the driver reacts, never the Ray workers it starts.
Without the variable every :func:`point` is a dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "DDECS_TEST_KILL_AT"
_armed: dict[str, int] = {}  # point name -> hits left before the kill
_hits: dict[str, int] = {}


def arm() -> None:
    """Read (and remove) ``DDECS_TEST_KILL_AT`` for this process."""
    spec = os.environ.pop(ENV, "")
    if spec:
        name, _, count = spec.partition("@")
        _armed[name] = int(count or 1)


def point(name: str) -> None:
    """A named point; SIGKILL here when armed for it (see the module docstring)."""
    if name in _armed:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= _armed[name]:
            os.kill(os.getpid(), signal.SIGKILL)
