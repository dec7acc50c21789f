"""Line profiles through volume layers: the same line, in world coordinates, through each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["line_profile"]


def line_profile(layer: Any, start: Sequence[float], end: Sequence[float], n: int = 200
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Values of a 3D image layer along the segment ``start``-``end`` (world coordinates).

    Returns ``(distance, values)``: the distance along the line in world units
    (nm when the layer is calibrated) and the linearly interpolated values;
    points outside the volume are NaN.
    """
    from scipy.ndimage import map_coordinates

    a, b = np.asarray(start, np.float64), np.asarray(end, np.float64)
    t = np.linspace(0.0, 1.0, int(n))
    world = a[None, :] + t[:, None] * (b - a)[None, :]
    data = np.asarray(layer.data, np.float32)
    coords = np.array([layer.world_to_data(p) for p in world]).T  # (3, n)
    inside = np.all((coords >= -0.5) & (coords <= np.array(data.shape)[:, None] - 0.5), axis=0)
    values = map_coordinates(data, coords, order=1, mode="nearest").astype(np.float64)
    values[~inside] = np.nan
    return t * float(np.linalg.norm(b - a)), values
