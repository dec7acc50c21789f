"""The unit every reconstruction algorithm yields, and the state that resumes a run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SCALAR_TYPES", "ResumeState", "Step", "last_step"]

SCALAR_TYPES = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class ResumeState:
    """What a method needs to continue a run exactly where it stopped.

    Produced on the last Step of a resumable method and passed back as
    ``resume=``; the driver checks that it belongs to the same method and
    volume shape. ``data`` is the method's own (CPU tensors and numbers).
    """

    method: str
    iteration: int
    shape: tuple[int, ...]
    data: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Step:
    """One snapshot of a running reconstruction.

    Attributes
    ----------
    iteration : int
        Iterations completed so far (counting those given by the caller as
        ``start``); a set-up phase reports the iteration it started from.
    volume : ndarray
        A CPU float32 copy of the current volume ``(z, y, x)``; never a live
        buffer, so a consumer may keep it.
    loss : float or None
        The method's own objective at this iteration (what it minimises; its
        meaning differs between methods, see ``objective_name``).
    residual : float or None
        The relative data residual ``||A x - y|| / ||y||`` of this step's
        volume over the measured pixels it was fitted to: the same number for
        every method and phase, the one to compare and display. None for a
        blank series (``||y|| = 0``), where no relative residual exists.
    objective_name : str or None
        What ``loss`` is for this method, e.g. ``"0.5||Ax-y||^2 + lam TV(x)"``.
    total : int or None
        Planned number of iterations of the current phase, for progress.
    phase : str
        What the method is doing: ``"iterate"`` for its main loop, or a
        set-up phase such as ``"lambda search"`` or ``"warm start"``.
    heldout : float or None
        Mean square error on held-out detector pixels (validation).
    poses : mapping or None
        Learned alignment in the canonical frame (methods that learn poses).
    geometry : mapping or None
        The learned poses folded into the run's geometry
        (:meth:`TiltGeometry.to_dict`), filled in by :func:`tomoprior.run`.
    chunk : (index, count) or None
        Which slab of a chunked run this step belongs to.
    search : tuple of mappings
        A parameter search table (CS-TV's lambda search).
    model : object or None
        A fitted model the method returns (the INR's
        :class:`~tomoprior.algorithms.inr.INRModel`), on the last step.
    extras : mapping
        Method-specific display scalars (numbers, strings, booleans).
    resume : ResumeState or None
        On the last step of a resumable method: pass it as ``resume=`` to
        continue.
    """

    iteration: int
    volume: np.ndarray
    loss: float | None = None
    residual: float | None = None
    objective_name: str | None = None
    total: int | None = None
    phase: str = "iterate"
    heldout: float | None = None
    poses: Mapping[str, Any] | None = None
    geometry: Mapping[str, Any] | None = None
    chunk: tuple[int, int] | None = None
    search: tuple[Mapping[str, float], ...] = ()
    model: Any = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    resume: ResumeState | None = None

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
