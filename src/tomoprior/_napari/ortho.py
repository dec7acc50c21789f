"""Orthogonal slices of a volume and the missing-wedge view, without Qt.

napari shows one plane of a volume (y-x). The missing wedge of a tilt series
lives in the planes that contain the beam direction: x-z (across the tilt
axis, when it runs along y) and y-z. These functions cut those planes at a
point, place them with the layer's voxel aspect, and compute the log power
spectrum in which the missing wedge shows as two empty sectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["log_power", "orthogonal_slices", "to_uint8"]


def orthogonal_slices(volume: np.ndarray, point: Sequence[float]) -> dict[str, np.ndarray]:
    """The ``x-z`` (rows z, columns x) and ``y-z`` (rows z, columns y) planes through ``point``.

    ``point`` is ``(z, y, x)`` in voxels; it is clipped into the volume. A
    lazy volume (dask, zarr, memory map) is read for the two planes only.
    """
    v = volume if hasattr(volume, "shape") and hasattr(volume, "__getitem__") else np.asarray(volume)
    if len(v.shape) != 3:
        raise ValueError(f"a volume has 3 axes, got {len(v.shape)}")
    z, y, x = (int(np.clip(round(float(p)), 0, n - 1)) for p, n in zip(point, v.shape))
    return {"xz": np.asarray(v[:, y, :], np.float32), "yz": np.asarray(v[:, :, x], np.float32),
            "at": (z, y, x)}


def log_power(plane: np.ndarray) -> np.ndarray:
    """``log(1 + |FFT|²)`` of a plane, zero frequency in the centre, after removing the mean.

    A Hann window keeps the plane's borders from drawing a bright cross over
    the wedge.
    """
    p = np.asarray(plane, np.float64)
    p = p - p.mean()
    window = np.outer(np.hanning(p.shape[0]), np.hanning(p.shape[1]))
    spectrum = np.fft.fftshift(np.fft.fft2(p * window))
    return np.log1p(np.abs(spectrum) ** 2).astype(np.float32)


def to_uint8(plane: np.ndarray, limits: Sequence[float] | None = None) -> np.ndarray:
    """8-bit grey levels of ``plane`` between ``limits`` (default: 0.5-99.5 percentiles)."""
    p = np.asarray(plane, np.float32)
    finite = p[np.isfinite(p)]
    if limits is None:
        lo, hi = (np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0))
    else:
        lo, hi = limits
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + 1.0
    out = np.clip((np.nan_to_num(p, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.ascontiguousarray((out * 255.0 + 0.5).astype(np.uint8))
