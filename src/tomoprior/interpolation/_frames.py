"""Into and out of the frame the network works in (tilt axis along the rows)."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import TiltGeometry
from ..transforms import canonical_turns, orient_images, warp_images

__all__ = ["from_axis_frame", "interpolated_shifts", "to_axis_frame"]


def to_axis_frame(images: np.ndarray, tilt_axis: float, shifts: np.ndarray | None) -> np.ndarray:
    """Images with their shift corrections applied, turned so the tilt axis runs along the rows.

    Quarter turns are exact; a fine axis rotation or shifts resample (bilinear).
    """
    return orient_images(np.asarray(images, np.float32), tilt_axis, shifts)


def from_axis_frame(images: np.ndarray, tilt_axis: float, shifts: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`to_axis_frame` (as :func:`~tomoprior.transforms.series_from_canonical`):
    images as the microscope would record them."""
    k, residual = canonical_turns(tilt_axis)
    out = np.ascontiguousarray(np.rot90(np.asarray(images, np.float32), k, axes=(-2, -1)))
    has_shift = shifts is not None and np.any(np.asarray(shifts) != 0)
    if has_shift or abs(residual) > 1e-9:
        t = torch.from_numpy(out)
        with torch.no_grad():
            if has_shift:
                t = warp_images(t, -torch.as_tensor(np.asarray(shifts), dtype=torch.float32), None)
            if abs(residual) > 1e-9:
                t = warp_images(t, None, -float(residual))
        out = t.numpy()
    return np.ascontiguousarray(out, dtype=np.float32)


def interpolated_shifts(geometry: TiltGeometry, plan) -> np.ndarray:
    """Shift corrections for every frame of a plan: measured ones keep theirs,
    virtual ones get the blend of their neighbours' (by ``t``)."""
    s = np.asarray(geometry.shifts, float)
    t = plan.t[:, None]
    return s[plan.left] * (1 - t) + s[plan.right] * t
