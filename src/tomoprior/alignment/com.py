"""Centre-of-mass alignment across the tilt axis, common-line alignment along it.

Works on canonical images (rows along the axis, columns across it).

Notes
-----
In a parallel projection the mass of a specimen is conserved, and its
centre of mass projects like a point: at tilt ``theta`` it lies at
``x_c cos(theta) + z_c sin(theta)`` across the axis, where ``(x_c, z_c)``
is the centre of mass of the specimen. Shifting every image so that its
centre of mass (across the axis) sits on the image centre therefore
aligns the series exactly, and puts the specimen's centre of mass on the
tilt axis, which also centres it in the reconstructed volume [1]_ [2]_.
This needs the whole specimen in every image (no mass entering or
leaving the field of view) and intensities linear in the projected mass
(HAADF-STEM). Errors do not accumulate along the series, unlike chained
cross-correlation.

Along the axis the projected profile ``p(y) = sum_u image(y, u)`` is the
same for all tilts (the "common line"), so each profile is registered to
that of the reference tilt by 1D cross-correlation.

References
----------
.. [1] M. C. Scott et al., "Electron tomography at 2.4-ångström resolution",
   Nature 483, 444-447 (2012) (centre-of-mass alignment of HAADF tilt series).
.. [2] L. Houben and M. Bar Sadan, "Refinement procedure for the image
   alignment in high-resolution electron tomography", Ultramicroscopy 111,
   1512-1520 (2011).
"""

from __future__ import annotations

import numpy as np

from ..frames import reference_tilt
from ..registration import register

__all__ = ["background", "centres", "com_across", "com_shifts", "profile_shifts"]


def background(canon: np.ndarray, border: int = 2) -> np.ndarray:
    """Per-image background: the median of the outermost ``border`` pixels."""
    a = np.asarray(canon)
    edge = np.concatenate(
        [a[:, :border].reshape(a.shape[0], -1), a[:, -border:].reshape(a.shape[0], -1),
         a[:, :, :border].reshape(a.shape[0], -1), a[:, :, -border:].reshape(a.shape[0], -1)],
        axis=1,
    )
    return np.median(edge, axis=1)


def centres(canon: np.ndarray) -> np.ndarray:
    """Centre of mass ``(along, across)`` of each image, in pixels from the image centre."""
    a = np.asarray(canon, dtype=np.float64)
    m = np.clip(a - background(a)[:, None, None], 0, None)
    total = np.maximum(m.sum(axis=(1, 2)), 1e-30)
    y = np.arange(a.shape[1]) - (a.shape[1] - 1) / 2
    x = np.arange(a.shape[2]) - (a.shape[2] - 1) / 2
    return np.stack(((m.sum(2) * y).sum(1) / total, (m.sum(1) * x).sum(1) / total), axis=1)


def com_across(canon: np.ndarray, bg: np.ndarray | None = None) -> np.ndarray:
    """Centre of mass of each image across the axis, in pixels from the image centre."""
    a = np.asarray(canon, dtype=np.float64)
    bg = background(a) if bg is None else np.asarray(bg, np.float64)
    m = np.clip(a - bg[:, None, None], 0, None).sum(axis=1)  # (n, cols)
    u = np.arange(a.shape[2]) - (a.shape[2] - 1) / 2
    total = m.sum(axis=1)
    return (m * u).sum(axis=1) / np.where(total > 0, total, 1.0)


def profile_shifts(canon: np.ndarray, ref: int, **register_options) -> np.ndarray:
    """Along-axis corrections from 1D registration of the projected profiles to the reference."""
    a = np.asarray(canon, dtype=np.float64)
    prof = a.sum(axis=2)  # (n, rows): profile along the axis
    prof = np.repeat(prof[:, :, None], 8, axis=2)  # thin 2D images for the 2D register
    opts = dict(register_options)
    opts.pop("max_shift", None)
    ms = register_options.get("max_shift")
    ms_y = a.shape[1] / 4 if ms is None else float(np.max(ms))
    t = register(prof[ref], prof, max_shift=(ms_y, 0.0), taper_fraction=0.1, **opts)
    return t[:, 0]


def com_shifts(canon: np.ndarray, angles: np.ndarray, *, along: str = "profile",
               **register_options) -> np.ndarray:
    """Canonical corrections ``(n, 2)``: centre of mass across, common line along the axis.

    Parameters
    ----------
    canon : array (n, rows, cols)
    angles : array (n,)
    along : {"profile", "none"}
        How to align along the axis (``"none"`` leaves it at zero).

    Returns
    -------
    ndarray (n, 2)
        ``(along, across)``; across the axis each image's centre of mass is
        moved onto the image centre (the reference tilt is *not* zero).
    """
    ref = reference_tilt(angles)
    out = np.zeros((len(angles), 2))
    out[:, 1] = -com_across(canon)
    if along == "profile":
        out[:, 0] = profile_shifts(canon, ref, **register_options)
    return out
