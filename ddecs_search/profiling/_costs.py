"""The per-exit cost vector of a multi-exit network, produced by ``mac_costs`` / ``latency_costs``.

Policies are fitted and scored on ``ExitCosts.normalised_path()``; this module depends on numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExitCosts:
    """Cost of each part of the multi-exit network, in one unit (ms or MMACs).

    Attributes:
        stage: ``(E,)`` backbone cost of stage ``k`` (the last includes the head).
        branch: ``(E-1,)`` cost of early-exit branch ``k``.
        static: cost of the plain static network (all stages, no branches).
        unit: ``"ms"`` or ``"MMAC"``.
        source: where the numbers come from (``"measured:cpu"``, ``"flop_counter"``...).
    """

    stage: np.ndarray
    branch: np.ndarray
    static: float
    unit: str
    source: str

    def path(self) -> np.ndarray:
        """``(E,)`` cost of leaving at exit ``k``: stages 0..k plus branches evaluated on the way.

        Leaving at the final exit still pays every early branch (they were evaluated and declined).
        """
        branch = np.append(self.branch, 0.0)
        return np.cumsum(self.stage + branch)

    def normalised_path(self) -> np.ndarray:
        """:meth:`path` divided by the static network's cost (1.0 = static cost)."""
        return self.path() / self.static
