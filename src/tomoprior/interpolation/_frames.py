"""Into and out of the frame the network works in (tilt axis along the rows)."""

from __future__ import annotations

import numpy as np

from ..geometry import TiltGeometry
from ..projections import canonical_to_frame
from ..transforms import orient_images

__all__ = ["from_axis_frame", "interpolated_shifts", "to_axis_frame"]


def to_axis_frame(images: np.ndarray, tilt_axis: float, shifts: np.ndarray | None) -> np.ndarray:
    """Images with their shift corrections applied, turned so the tilt axis runs along the rows.

    Quarter turns are exact; a fine axis rotation or shifts resample (bilinear).
    """
    return orient_images(np.asarray(images, np.float32), tilt_axis, shifts)


def from_axis_frame(images: np.ndarray, tilt_axis: float, shifts: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`to_axis_frame`: images as the microscope would record them."""
    return canonical_to_frame(images, tilt_axis, shifts)


def interpolated_shifts(geometry: TiltGeometry, plan) -> np.ndarray:
    """Shift corrections for every frame of a plan: measured ones keep theirs,
    virtual ones get the blend of their neighbours' (by ``t``)."""
    s = np.asarray(geometry.shifts, float)
    t = plan.t[:, None]
    return s[plan.left] * (1 - t) + s[plan.right] * t
