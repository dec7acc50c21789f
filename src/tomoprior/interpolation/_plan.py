"""Angle bookkeeping: where the virtual frames go between the measured ones."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import GeometryError, ParameterError

__all__ = ["AnglePlan", "plan_angles"]


@dataclass(frozen=True)
class AnglePlan:
    """The denser series' frames, in output order.

    Attributes
    ----------
    angles : ndarray (n_out,)
        Every frame's tilt angle: ascending, or descending when the measured
        angles are (a series recorded from + to -); a bidirectional or
        dose-symmetric order becomes ascending.
    measured : ndarray of bool (n_out,)
        True for a measured frame, False for a virtual one.
    source : ndarray of int (n_out,)
        Index of a measured frame in the input stack, -1 for a virtual one.
    left, right : ndarray of int (n_out,)
        Input indices of the measured neighbours a virtual frame lies
        between (for a measured frame both are its own index).
    t : ndarray (n_out,)
        Position between ``left`` (0) and ``right`` (1): a fraction of the
        angle gap (0 for a measured frame).
    input_angles : ndarray
        The measured angles in input order.
    """

    angles: np.ndarray
    measured: np.ndarray
    source: np.ndarray
    left: np.ndarray
    right: np.ndarray
    t: np.ndarray

    input_angles: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        """Angle between each frame's two measured neighbours (0 for measured frames)."""
        return np.abs(self.input_angles[self.right] - self.input_angles[self.left])

    @property
    def n_virtual(self) -> int:
        return int((~self.measured).sum())

    def to_dict(self) -> dict:
        return {"angles": [float(a) for a in self.angles],
                "measured": [bool(m) for m in self.measured],
                "source_index": [int(i) for i in self.source]}


def plan_angles(angles, *, factor: int | None = None, step: float | None = None) -> AnglePlan:
    """Where to put virtual frames: ``factor - 1`` in every gap, or gaps of at most ``step``.

    Parameters
    ----------
    angles : array of float
        The measured tilt angles (degrees, any order, distinct, at least 2).
    factor : int, optional
        Every gap between angle-neighbours gets ``factor - 1`` virtual
        frames at equal spacing (``factor >= 2``).
    step : float, optional
        Every gap is split into the fewest equal parts no wider than
        ``step`` degrees (a gap already that narrow gets nothing). Exactly
        one of ``factor`` and ``step`` is given.

    Returns
    -------
    AnglePlan
    """
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if a.size < 2:
        raise GeometryError(f"interpolation needs at least 2 measured tilts, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise GeometryError("tilt angles contain NaN or infinite values")
    if (factor is None) == (step is None):
        raise ParameterError("give either a factor or a step")
    if factor is not None:
        if int(factor) != factor or factor < 2:
            raise ParameterError(f"the factor must be a whole number >= 2, got {factor}")
        factor = int(factor)
    else:
        if not (math.isfinite(step) and step > 0):
            raise ParameterError(f"the step must be a positive number of degrees, got {step}")
    descending = bool(np.all(np.diff(a) < 0))
    order = np.argsort(-a if descending else a, kind="stable")
    s = a[order]
    if np.any(np.diff(s) == 0):
        raise GeometryError("duplicate tilt angles: there is no gap to fill between them")
    ang, meas, src, lft, rgt, tt = [s[0]], [True], [order[0]], [order[0]], [order[0]], [0.0]
    for k in range(len(s) - 1):
        i, j = int(order[k]), int(order[k + 1])
        gap = abs(s[k + 1] - s[k])
        parts = factor if factor is not None else max(1, math.ceil(gap / step - 1e-9))
        for m in range(1, parts):
            ang.append(s[k] + (s[k + 1] - s[k]) * m / parts)
            meas.append(False)
            src.append(-1)
            lft.append(i)
            rgt.append(j)
            tt.append(m / parts)
        ang.append(s[k + 1])
        meas.append(True)
        src.append(j)
        lft.append(j)
        rgt.append(j)
        tt.append(0.0)
    return AnglePlan(np.asarray(ang), np.asarray(meas, bool), np.asarray(src, int),
                     np.asarray(lft, int), np.asarray(rgt, int), np.asarray(tt), a)
