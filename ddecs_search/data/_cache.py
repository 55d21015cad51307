"""A small thread-safe LRU for datasets held in memory by one process.

One process (a Ray worker, a CLI run) may evaluate several candidates on the same dataset, possibly with
backbones of different input shapes; reading the files and resizing 60k images again each time would
dominate a short trial. Entries are large (hundreds of MB), hence explicit, tiny capacities.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """At most ``capacity`` values, least recently used evicted first.

    :meth:`get_or_create` holds the lock while creating, so two threads asking for the same missing entry
    do the work once (creation is I/O and vectorised torch code, so little parallelism is lost).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.RLock()

    def get_or_create(self, key: Hashable, create: Callable[[], V]) -> V:
        """The value under ``key``, created by ``create()`` if absent (failures are not cached)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = create()
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
