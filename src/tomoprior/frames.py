"""Frames and gauges: moving shift corrections between the geometry and the canonical frame.

The alignment works in the canonical frame of :mod:`tomoprior.transforms`
(tilt axis vertical: image rows run *along* the axis, columns *across* it).
A canonical correction ``(dy_c, dx_c)`` = (along, across) relates to the
geometry's ``(dy, dx)`` (applied after the fine axis rotation, before the
exact quarter turns) by the quarter turn ``k`` of
:func:`~tomoprior.transforms.canonical_turns`: ``s_c = R(90 k) s``.

Gauge: a rigid translation ``(x0, y0, z0)`` of the specimen changes the
projections by ``y0`` along the axis and ``x0 cos(theta) + z0 sin(theta)``
across it; no method can observe it. The package fixes ``y0`` and ``x0`` by
keeping the reference tilt (nearest 0°) at zero correction, see
:func:`fix_reference`.
"""

from __future__ import annotations

import math

import numpy as np

from .geometry import TiltGeometry, parse_tilt_axis
from .transforms import bin_images, canonical_turns, orient_images, rotate_vectors

__all__ = [
    "aligned_geometry",
    "canonical_series",
    "fix_reference",
    "from_canonical_shifts",
    "nominal_axis",
    "reference_tilt",
    "rotate_vectors",
    "to_canonical_shifts",
]


def to_canonical_shifts(shifts: np.ndarray, tilt_axis: float) -> np.ndarray:
    """Geometry corrections ``(dy, dx)`` as canonical ``(along, across)`` corrections."""
    k, _ = canonical_turns(tilt_axis)
    return rotate_vectors(shifts, 90.0 * k)


def from_canonical_shifts(shifts_c: np.ndarray, tilt_axis: float) -> np.ndarray:
    """Inverse of :func:`to_canonical_shifts`."""
    k, _ = canonical_turns(tilt_axis)
    return rotate_vectors(shifts_c, -90.0 * k)


def nominal_axis(tilt_axis: float) -> float:
    """The quarter-turn orientation nearest to ``tilt_axis`` (0, 90, 180 or -90)."""
    k, _ = canonical_turns(tilt_axis)
    return parse_tilt_axis(90.0 - 90.0 * k) + 0.0


def aligned_geometry(geometry: TiltGeometry) -> TiltGeometry:
    """Geometry of the aligned series returned by :func:`~tomoprior.alignment.align_series`.

    The aligned images have no shift corrections left and their tilt axis
    lies exactly at the nominal quarter-turn orientation.
    """
    return geometry.replace(tilt_axis=nominal_axis(geometry.tilt_axis), shifts=None)


def reference_tilt(angles: np.ndarray) -> int:
    """Index of the tilt nearest 0°."""
    return int(np.argmin(np.abs(np.asarray(angles, dtype=np.float64))))


def fix_reference(shifts_c: np.ndarray, angles: np.ndarray, ref: int | None = None) -> np.ndarray:
    """Canonical corrections in the reference gauge: the reference tilt gets ``(0, 0)``.

    Subtracts a constant along the axis (``y0``) and ``x0 cos(theta)``
    across it; both are specimen translations, so a reconstruction only
    moves as a whole. ``z0 sin(theta)`` (a translation along the beam) is
    left as it is.
    """
    s = np.array(shifts_c, dtype=np.float64).reshape(-1, 2)
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))
    ref = reference_tilt(angles) if ref is None else int(ref)
    s[:, 0] -= s[ref, 0]
    s[:, 1] -= s[ref, 1] * np.cos(a) / math.cos(a[ref])
    return s


def canonical_series(
    series: np.ndarray,
    tilt_axis: float,
    shifts_c: np.ndarray | None = None,
    binning: int = 1,
) -> np.ndarray:
    """Binned canonical images with canonical corrections (full-size pixels) applied once.

    When a side is not a multiple of ``binning`` the remainder is cropped
    evenly from both ends, so the binned image centre stays within half a
    pixel of the full image centre (the rotation centre).
    """
    b = max(1, int(binning))
    s = None
    if shifts_c is not None:
        s = from_canonical_shifts(np.asarray(shifts_c, np.float64) / b, tilt_axis)
    if b > 1:
        h, w = series.shape[-2:]
        r0, c0 = (h % b) // 2, (w % b) // 2
        series = series[:, r0 : r0 + h - h % b, c0 : c0 + w - w % b]
    return orient_images(bin_images(series, b), tilt_axis, s)
