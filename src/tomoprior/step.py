"""The unit every reconstruction algorithm yields."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Step", "last_step"]


@dataclass(frozen=True)
class Step:
    """One snapshot of a running reconstruction.

    Attributes
    ----------
    iteration : int
        Iterations completed so far (counting warm-start iterations given by
        the caller as ``start``), ``0`` for a one-shot method's result.
    volume : ndarray
        A CPU float32 copy of the current volume ``(z, y, x)``; never a live
        buffer, so a consumer may keep it.
    loss : float or None
        The method's data term (or objective) at this iteration.
    extras : mapping
        Method-specific values: ``"val_loss"``, ``"tv"``, ``"poses"``,
        ``"chunk"``, ...
    total : int or None
        Planned number of iterations, for progress display.
    """

    iteration: int
    volume: np.ndarray
    loss: float | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    total: int | None = None

    @property
    def progress(self) -> float | None:
        """Fraction done in ``[0, 1]`` when the total is known."""
        if not self.total:
            return None
        return min(1.0, self.iteration / self.total)


def last_step(steps: Iterable[Step]) -> Step | None:
    """Run a generator of Steps to its end; its last Step (``None`` if it yields none)."""
    last = None
    for last in steps:
        pass
    return last
