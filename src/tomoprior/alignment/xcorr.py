"""Coarse translation alignment: cross-correlation of neighbouring tilts, chained outwards.

Works on canonical images (tilt axis vertical: rows along the axis,
columns across it) and returns canonical corrections ``(along, across)``
in pixels, with the tilt nearest 0° as the zero reference.

Notes
-----
A thin specimen feature at ``x`` across the axis projects to
``x cos(theta)``, so the image at the higher ``|theta|`` of a pair is
foreshortened across the axis. Following IMOD's *tiltxcorr* [1]_, that
image is stretched across the axis by ``f = cos(theta_low) / cos(theta_high)``
about the image centre before the pair is correlated. If the found
translation moving the stretched image onto its neighbour is ``t`` and the
neighbour's correction is ``s_low``, the correction of the higher tilt is
``s_high = (s_low + t) / f`` across the axis and ``s_low + t`` along it
(the stretch also scales the drift). The pairs are registered in one
batch (:func:`~tomoprior.registration.register`) and the relative
shifts are accumulated from the reference tilt towards both ends of the
series. Errors of a chain add up like a random walk; projection matching
(:mod:`tomoprior.alignment.pm`) or centre-of-mass alignment
(:mod:`tomoprior.alignment.com`) remove what accumulates across the axis.

References
----------
.. [1] D. N. Mastronarde, "Dual-axis tomography: an approach with alignment
   methods that preserve resolution", J. Struct. Biol. 120, 343-352 (1997).
.. [2] J. R. Kremer, D. N. Mastronarde and J. R. McIntosh, "Computer
   visualization of three-dimensional image data using IMOD",
   J. Struct. Biol. 116, 71-76 (1996).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frames import reference_tilt
from ..registration import register

__all__ = ["chain_pairs", "stretch_across", "xcorr_shifts"]


def stretch_across(images: np.ndarray, factors: np.ndarray | float) -> np.ndarray:
    """Stretch canonical images across the axis (along columns) about their centre.

    The output column ``u`` shows the input at ``c + (u - c) / f`` (linear
    interpolation, zero outside), so content expands by ``f``.
    """
    a = np.asarray(images, dtype=np.float32)
    n, _, w = a.shape
    f = np.broadcast_to(np.asarray(factors, dtype=np.float64), (n,))
    c = (w - 1) / 2
    src = c + (np.arange(w)[None, :] - c) / f[:, None]  # (n, w)
    i0 = np.floor(src).astype(np.int64)
    frac = (src - i0).astype(np.float32)
    valid0 = (i0 >= 0) & (i0 < w)
    valid1 = (i0 + 1 >= 0) & (i0 + 1 < w)
    rows = np.arange(n)[:, None]
    left = np.where(valid0[:, None, :], a[rows, :, np.clip(i0, 0, w - 1)].transpose(0, 2, 1), 0)
    right = np.where(valid1[:, None, :], a[rows, :, np.clip(i0 + 1, 0, w - 1)].transpose(0, 2, 1), 0)
    return (left * (1 - frac[:, None, :]) + right * frac[:, None, :]).astype(np.float32)


def chain_pairs(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(high, low, ref)``: each non-reference tilt and its neighbour towards the reference.

    Returned in chain order (outwards from the reference), so a correction
    is always known for ``low`` before it is needed for ``high``.
    """
    a = np.asarray(angles, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    ref = reference_tilt(a)
    p0 = int(np.flatnonzero(order == ref)[0])
    high, low = [], []
    for p in range(p0 + 1, a.size):
        high.append(order[p])
        low.append(order[p - 1])
    for p in range(p0 - 1, -1, -1):
        high.append(order[p])
        low.append(order[p + 1])
    return np.asarray(high, dtype=int), np.asarray(low, dtype=int), ref


def xcorr_shifts(
    canon: np.ndarray,
    angles: np.ndarray,
    *,
    stretch: bool = True,
    **register_options: Any,
) -> np.ndarray:
    """Canonical corrections ``(n, 2)`` from chained neighbour cross-correlation.

    Parameters
    ----------
    canon : array (n, rows, cols)
        Canonical images (axis vertical), already binned if wanted.
    angles : array (n,)
        Tilt angles in degrees.
    stretch : bool
        Cosine-stretch the higher tilt of each pair across the axis.
    **register_options
        Passed to :func:`~tomoprior.registration.register`
        (``sigma1``, ``radius2``, ``max_shift``, ``phase``, ...).

    Returns
    -------
    ndarray (n, 2)
        ``(along, across)`` corrections in pixels of ``canon``; the tilt
        nearest 0° has ``(0, 0)``.
    """
    a = np.asarray(angles, dtype=np.float64)
    high, low, ref = chain_pairs(a)
    shifts = np.zeros((a.size, 2))
    if high.size == 0:
        return shifts
    cos = np.cos(np.deg2rad(a))
    f = cos[low] / cos[high] if stretch else np.ones(high.size)
    moving = canon[high]
    if stretch:
        moving = stretch_across(moving, f)
    t = register(canon[low], moving, **register_options)
    for h, lo, fi, (ty, tx) in zip(high, low, f, t):
        shifts[h, 0] = shifts[lo, 0] + ty
        shifts[h, 1] = (shifts[lo, 1] + tx) / fi
    return shifts
