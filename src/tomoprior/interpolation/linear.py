"""Linear interpolation: a virtual frame is the angle-weighted blend of its two neighbours."""

from __future__ import annotations

import numpy as np

from ._plan import AnglePlan

__all__ = ["linear_frames"]


def linear_frames(series: np.ndarray, plan: AnglePlan) -> np.ndarray:
    """The virtual frames of ``plan`` (in plan order), ``(1 - t) left + t right``.

    Works in the frame of the input images: blending is the same in any
    frame, and no resampling touches the data.
    """
    idx = np.flatnonzero(~plan.measured)
    out = np.empty((idx.size, *series.shape[1:]), np.float32)
    for k, i in enumerate(idx):
        t = np.float32(plan.t[i])
        left = series[plan.left[i]].astype(np.float32, copy=False)
        right = series[plan.right[i]].astype(np.float32, copy=False)
        out[k] = left + t * (right - left)
    return out
