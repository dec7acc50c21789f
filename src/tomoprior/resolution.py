"""Resolution of a reconstruction: spherical and directional (conical) Fourier shell correlation.

Two reconstructions of the same specimen from independent data (the even and
odd tilts of a series, :mod:`tomoprior.engine.halves`) agree where the data
determine the volume and disagree where noise or a prior decide it. Their
Fourier shell correlation (FSC) per spatial frequency gives the resolution
where it falls below a threshold: 0.143 [2]_ or the ½-bit information curve
[1]_. A tilt series leaves a missing wedge of directions around the beam, so
the resolution depends on the direction: :func:`directional_fsc` computes, in
one pass over the spectrum, the spherical FSC (as :func:`tomoprior.metrics.fsc`),
the FSC in cones around the beam (``"z"``) and near the x-y plane (``"xy"``)
and in cones at every angle of the tilt plane (the plane perpendicular to the
tilt axis, where the missing wedge shows as a dip around z), after the
conical FSC of 3DFSC [3]_.

Everything here is numpy (no torch): the command line's ``assess`` starts
quickly. A pair of 256³ volumes takes about a second on one core.

References
----------
.. [1] M. van Heel, M. Schatz, "Fourier shell correlation threshold criteria",
   J. Struct. Biol. 151(3), 250-262 (2005). https://doi.org/10.1016/j.jsb.2005.05.009
.. [2] P. B. Rosenthal, R. Henderson, "Optimal determination of particle
   orientation, absolute hand, and contrast loss in single-particle electron
   cryomicroscopy", J. Mol. Biol. 333(4), 721-745 (2003).
.. [3] Y. Z. Tan, P. R. Baldwin, J. H. Davis, J. R. Williamson, C. S. Potter,
   B. Carragher, D. Lyumkis, "Addressing preferred specimen orientation in
   single-particle cryo-EM through tilting", Nat. Methods 14, 793-796 (2017).
.. [4] D. Cardone, K. Grünewald, A. C. Steven, "A resolution criterion for
   electron tomography based on cross-validation", J. Struct. Biol. 151(2),
   117-129 (2005).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import fft as sfft

from .errors import DataError, ParameterError

__all__ = [
    "CONE",
    "MIN_COUNT",
    "THRESHOLDS",
    "DirectionalFSC",
    "crossing",
    "directional_fsc",
    "half_bit",
]

#: half-angle of the cones, degrees (3DFSC's default cone is 20° wide on each side)
CONE = 20.0
#: the thresholds reported: the name shown and the value (or the ½-bit curve)
THRESHOLDS: dict[str, float | str] = {"0.143": 0.143, "half-bit": "half-bit"}
#: shells of a cone with fewer Fourier voxels than this are not used for a crossing
MIN_COUNT = 8
_BIN_DEG = 3.0  # angular bins of the one-pass histogram (cones are decided at bin centres)


def half_bit(n: np.ndarray) -> np.ndarray:
    """The ½-bit threshold curve of [1]_ for ``n`` Fourier voxels per shell."""
    rn = np.sqrt(np.maximum(np.asarray(n, np.float64), 1.0))
    return (0.2071 + 1.9102 / rn) / (1.2071 + 0.9102 / rn)


def crossing(frequency: np.ndarray, fsc: np.ndarray, n: np.ndarray,
             threshold: float | str = 0.143, min_count: int = MIN_COUNT) -> float:
    """The frequency where ``fsc`` first falls below ``threshold``, interpolated linearly.

    The curve starts at FSC 1 at zero frequency; shells with fewer than
    ``min_count`` voxels (a thin cone near the origin) are skipped. A curve
    that stays above the threshold gives the frequency of its last shell (a
    bound, not a measurement); ``nan`` when no shell has enough voxels.

    Parameters
    ----------
    frequency, fsc, n : array
        Shell centres, correlations and voxel counts.
    threshold : float or "half-bit"
    """
    freq = np.asarray(frequency, np.float64)
    c = np.asarray(fsc, np.float64)
    n = np.asarray(n, np.float64)
    if isinstance(threshold, str):
        if threshold.lower().replace("_", "-") not in ("half-bit", "1/2-bit"):
            raise ParameterError(f"unknown FSC threshold {threshold!r}: a number or 'half-bit'")
        thr = half_bit(n)
    else:
        thr = np.full_like(c, float(threshold))
    ok = (n >= min_count) & np.isfinite(c)
    if not ok.any():
        return float("nan")
    f = np.concatenate([[0.0], freq[ok]])
    d = np.concatenate([[1.0 - thr[ok][0]], (c - thr)[ok]])
    below = np.flatnonzero(d[1:] < 0)
    if below.size == 0:
        return float(f[-1])
    k = below[0] + 1
    if d[k - 1] < 0:  # the threshold is above 1 at the first shell (few voxels): no crossing
        return float(f[k])
    step = d[k - 1] - d[k]
    return float(f[k - 1] + (f[k] - f[k - 1]) * (d[k - 1] / step if step > 0 else 0.0))


@dataclass(frozen=True)
class DirectionalFSC:
    """FSC curves of two volumes: spherical, per direction and over the tilt plane.

    Attributes
    ----------
    frequency : ndarray
        Shell centres in cycles per pixel, ``k * 0.5 / n_shells``, ``k = 1..n_shells``.
    curves, counts : dict of ndarray
        ``"spherical"``, ``"xy"`` (within ``cone`` of the x-y plane) and ``"z"``
        (within ``cone`` of the beam): the FSC per shell and the Fourier voxels
        in it (the whole spectrum, as :func:`tomoprior.metrics.fsc` counts).
    polar_angles : ndarray
        Directions in the tilt plane, degrees from z (the beam) towards the
        image plane, 0 to 180.
    polar, polar_counts : ndarray
        ``(angles, shells)`` FSC and counts of the cone around each direction.
    pixel_size, pixel_unit
        The voxel size (None: resolutions in pixels).
    cone : float
        Half-angle of the cones, degrees.
    tilt_axis : float
        The tilt-axis orientation the tilt plane was taken from (degrees, as
        :class:`~tomoprior.geometry.TiltGeometry`).
    """

    frequency: np.ndarray
    curves: Mapping[str, np.ndarray]
    counts: Mapping[str, np.ndarray]
    polar_angles: np.ndarray
    polar: np.ndarray
    polar_counts: np.ndarray
    pixel_size: float | None
    pixel_unit: str
    cone: float
    tilt_axis: float

    @property
    def unit(self) -> str:
        """The unit of the resolutions: the pixel unit, or ``"px"``."""
        return self.pixel_unit if self.pixel_size else "px"

    def _length(self, f: float) -> float:
        if not np.isfinite(f) or f <= 0:
            return float("nan")
        return float((1.0 / f) * (self.pixel_size or 1.0))

    def resolution(self, which: str = "spherical", threshold: float | str = 0.143) -> float:
        """Resolution (a length, in :attr:`unit`) where curve ``which`` crosses ``threshold``.

        A curve that never falls below it gives the Nyquist limit (2 pixels),
        a bound rather than a measurement: see :meth:`at_nyquist`.
        """
        if which not in self.curves:
            raise ParameterError(f"no FSC curve {which!r}: choose from {', '.join(self.curves)}")
        return self._length(crossing(self.frequency, self.curves[which], self.counts[which],
                                     threshold))

    def at_nyquist(self, which: str = "spherical", threshold: float | str = 0.143) -> bool:
        """Whether curve ``which`` stays above ``threshold`` up to the last shell."""
        f = crossing(self.frequency, self.curves[which], self.counts[which], threshold)
        return bool(np.isfinite(f) and f >= self.frequency[-1])

    def polar_resolution(self, threshold: float | str = 0.143) -> np.ndarray:
        """Resolution per tilt-plane direction (:attr:`polar_angles`), in :attr:`unit`."""
        return np.array([self._length(crossing(self.frequency, c, n, threshold))
                         for c, n in zip(self.polar, self.polar_counts)])

    def summary(self, curves: bool = True) -> dict[str, Any]:
        """JSON-ready: the resolutions at 0.143 and ½-bit per direction; with ``curves``,
        the curves themselves."""
        res = {which: {name: _rounded(self.resolution(which, thr))
                       for name, thr in THRESHOLDS.items()} for which in self.curves}
        out: dict[str, Any] = {
            "unit": self.unit,
            "cone_degrees": self.cone,
            "tilt_axis": self.tilt_axis,
            "resolution": res,
            "at_nyquist": {which: self.at_nyquist(which) for which in self.curves},
            "polar": {"angles": [float(a) for a in self.polar_angles],
                      **{name: [_rounded(v) for v in self.polar_resolution(thr)]
                         for name, thr in THRESHOLDS.items()}},
        }
        if curves:
            out["frequency"] = [float(f) for f in self.frequency]
            out["frequency_unit"] = f"1/{self.unit}"
            out["frequency_scale"] = 1.0 / (self.pixel_size or 1.0)
            out["curves"] = {k: [round(float(v), 5) for v in c] for k, c in self.curves.items()}
            out["counts"] = {k: [int(v) for v in c] for k, c in self.counts.items()}
        return out


def _rounded(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


def _real32(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 3:
        raise DataError(f"{name} must be a 3D volume (z, y, x), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} holds NaN or infinite values")
    return a.astype(np.float32, copy=False)


def directional_fsc(
    a: Any,
    b: Any,
    *,
    pixel_size: float | None = None,
    pixel_unit: str = "nm",
    tilt_axis: float = 0.0,
    cone: float = CONE,
    polar_step: float = 10.0,
    n_shells: int | None = None,
) -> DirectionalFSC:
    """Spherical, directional and tilt-plane FSC of two volumes, in one pass over the spectrum.

    Parameters
    ----------
    a, b : array_like
        Same-shape ``(z, y, x)`` volumes from independent data (half sets), or a
        reconstruction and the ground truth.
    pixel_size, pixel_unit : optional
        Voxel size: resolutions in this unit (else in pixels).
    tilt_axis : float
        Orientation of the tilt axis in the image plane, degrees from +x towards
        +y (``0``: horizontal, along x; ``90``: vertical, along y). The tilt plane
        is spanned by z and the in-plane direction perpendicular to the axis.
    cone : float
        Half-angle of the cones, degrees (0 < cone <= 45).
    polar_step : float
        Spacing of the tilt-plane directions, degrees (1 to 45).
    n_shells : int, optional
        Shells up to Nyquist; default ``min(shape) // 2``, as :func:`tomoprior.metrics.fsc`.

    Returns
    -------
    DirectionalFSC

    Notes
    -----
    ``FSC(k) = Re sum F_a conj(F_b) / sqrt(sum |F_a|^2 sum |F_b|^2)`` over the Fourier
    voxels of shell ``k`` (radial frequency in cycles per pixel on every axis, so shells
    stay spherical for a thin volume) and, for a cone, only those whose direction lies
    within ``cone`` degrees of the cone's axis (either sense). The sums are gathered
    once into a histogram over shell and direction (3° bins), so every cone costs a
    weighted sum of the histogram; a voxel belongs to a cone when its bin's centre
    does. The spherical curve equals :func:`tomoprior.metrics.fsc`.
    """
    a, b = _real32(a, "the first volume"), _real32(b, "the second volume")
    if a.shape != b.shape:
        raise DataError(f"the volumes differ in shape: {a.shape} and {b.shape}")
    if not 0 < float(cone) <= 45:
        raise ParameterError(f"cone must be a half-angle in (0, 45] degrees, got {cone}")
    if not 1 <= float(polar_step) <= 45:
        raise ParameterError(f"polar_step must be 1 to 45 degrees, got {polar_step}")
    n_shells = int(n_shells or min(a.shape) // 2)
    if n_shells < 2:
        raise DataError(f"volumes of shape {a.shape} are too small for an FSC (2 shells at least)")
    sums, nb = _histogram(a, b, n_shells, float(tilt_axis))
    centres = (np.arange(nb) + 0.5) * math.radians(_BIN_DEG)
    psi, phi = np.meshgrid(centres, centres, indexing="ij")  # from the axis; in the tilt plane
    uz = np.sin(psi) * np.cos(phi)
    cos_c = math.cos(math.radians(cone))
    masks = {"spherical": np.ones_like(uz, bool), "xy": np.abs(uz) <= math.sin(math.radians(cone)),
             "z": np.abs(uz) >= cos_c}
    angles = np.arange(0.0, 180.0 - 1e-9, float(polar_step))
    polar_masks = [np.abs(np.sin(psi) * np.cos(phi - math.radians(t))) >= cos_c for t in angles]
    stack = np.stack([*masks.values(), *polar_masks]).astype(np.float64)  # (cones, psi, phi)
    num, pa, pb, cnt = (np.einsum("spq,cpq->cs", s, stack) for s in sums)
    den = np.sqrt(pa * pb)
    corr = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    freq = np.arange(1, n_shells + 1) * (0.5 / n_shells)
    k = len(masks)
    return DirectionalFSC(
        frequency=freq,
        curves=dict(zip(masks, corr[:k])),
        counts=dict(zip(masks, np.rint(cnt[:k]))),
        polar_angles=angles,
        polar=corr[k:],
        polar_counts=np.rint(cnt[k:]),
        pixel_size=float(pixel_size) if pixel_size else None,
        pixel_unit=str(pixel_unit),
        cone=float(cone),
        tilt_axis=float(tilt_axis),
    )


def _histogram(a: np.ndarray, b: np.ndarray, n_shells: int, tilt_axis: float):
    """Sums of ``Re(F_a F_b*)``, ``|F_a|²``, ``|F_b|²`` and voxel counts per (shell, ψ, φ).

    ψ is the angle of the frequency from the tilt axis, φ its angle in the tilt
    plane from z; ``k`` and ``-k`` (the same information) share a bin. Shells
    ``1..n_shells``; the rfft half-spectrum counts its mirrored columns twice.
    """
    fa, fb = sfft.rfftn(a), sfft.rfftn(b)
    nz, ny, nx = a.shape
    kz = sfft.fftfreq(nz).astype(np.float32)[:, None, None]
    ky = sfft.fftfreq(ny).astype(np.float32)[None, :, None]
    kx = sfft.rfftfreq(nx).astype(np.float32)[None, None, :]
    t = math.radians(tilt_axis)
    # unit vectors in (y, x): along the axis, and across it in the image plane
    ka = ky * np.float32(math.sin(t)) + kx * np.float32(math.cos(t))
    kp = ky * np.float32(math.cos(t)) - kx * np.float32(math.sin(t))
    r = np.sqrt(kz * kz + ka * ka + kp * kp)
    width = 0.5 / n_shells
    shell = np.rint(r / np.float32(width)).astype(np.int32)
    nb = int(round(180.0 / _BIN_DEG))
    with np.errstate(invalid="ignore", divide="ignore"):
        psi = np.arccos(np.clip(ka / r, -1.0, 1.0))
    phi = np.arctan2(kp, kz)
    flip = phi < 0  # -k: same direction line
    phi = np.where(flip, phi + np.float32(math.pi), phi)
    psi = np.where(flip, np.float32(math.pi) - psi, psi)
    scale = np.float32(1.0 / math.radians(_BIN_DEG))
    ipsi = np.minimum((np.nan_to_num(psi) * scale).astype(np.int32), nb - 1)
    iphi = np.minimum((phi * scale).astype(np.int32), nb - 1)
    del psi, phi, flip, r
    sink = n_shells + 1  # DC and the corners beyond Nyquist
    shell = np.where((shell >= 1) & (shell <= n_shells), shell, sink)
    index = ((shell.astype(np.int64) * nb + ipsi) * nb + iphi).ravel()
    del shell, ipsi, iphi
    half = np.full(fa.shape[-1], 2.0, np.float32)
    half[0] = 1.0
    if nx % 2 == 0:
        half[-1] = 1.0
    w = np.broadcast_to(half, fa.shape)
    size = (sink + 1) * nb * nb

    def total(values: np.ndarray) -> np.ndarray:
        h = np.bincount(index, weights=values.ravel(), minlength=size)
        return h.reshape(sink + 1, nb, nb)[1:sink]

    cross = total(w * (fa.real * fb.real + fa.imag * fb.imag))
    pa = total(w * (fa.real * fa.real + fa.imag * fa.imag))
    pb = total(w * (fb.real * fb.real + fb.imag * fb.imag))
    cnt = total(np.ascontiguousarray(w))
    return (cross, pa, pb, cnt), nb
