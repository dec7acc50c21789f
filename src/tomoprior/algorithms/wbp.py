"""Weighted (filtered) back-projection.

Each tilt image is filtered along the direction perpendicular to the tilt
axis with a ramp filter (optionally apodised), weighted by the angular
interval it represents, and back-projected with ``A.T``. One pass, so it is
an instant preview; with a missing wedge it shows the usual elongation and
streaks.

References
----------
.. [1] A. C. Kak and M. Slaney, *Principles of Computerized Tomographic
   Imaging*, IEEE Press, 1988, ch. 3 (spatial-domain ramp filter).
.. [2] M. Radermacher, "Weighted back-projection methods", in *Electron
   Tomography*, J. Frank (ed.), Springer, 2006.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..errors import GeometryError
from ..operators.base import Projector
from ..step import Step
from ._common import RELATIVE_RESIDUAL, as_tensor, release, residual_ratio, snapshot
from ._declare import Param, method

__all__ = ["FILTERS", "angular_weights", "ramp_filter", "wbp"]

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann", "none")


def ramp_filter(n: int, name: str = "ram-lak") -> np.ndarray:
    """Frequency response (length ``n``, FFT order) of an apodised ramp filter.

    Built from the spatial-domain ramp of Kak & Slaney, which avoids the DC
    offset of a sampled ``|f|``.
    """
    name = name.lower()
    if name not in FILTERS:
        raise GeometryError(f"unknown filter {name!r}: choose from {', '.join(FILTERS)}")
    if name == "none":
        return np.ones(n)
    k = np.concatenate((np.arange(0, n // 2 + 1), np.arange(-(n - n // 2 - 1), 0)))
    h = np.zeros(n)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    resp = np.real(np.fft.fft(h))  # ~ |f| in cycles per pixel
    f = np.fft.fftfreq(n)
    w = np.pi * f
    if name == "shepp-logan":
        resp *= np.sinc(f)
    elif name == "cosine":
        resp *= np.cos(w)
    elif name == "hamming":
        resp *= 0.54 + 0.46 * np.cos(2 * w)
    elif name == "hann":
        resp *= 0.5 + 0.5 * np.cos(2 * w)
    return resp


def angular_weights(angles_deg: np.ndarray) -> np.ndarray:
    """Angular interval (radians) each tilt represents, for non-uniform schemes.

    Half the distance to each neighbour in sorted order; the end tilts count
    a full interval on their open side (duplicate angles share).
    """
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    if a.size == 1:
        return np.array([np.pi])
    order = np.argsort(a)
    s = a[order]
    gaps = np.diff(s)
    w = np.empty_like(s)
    w[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    w[0] = gaps[0]
    w[-1] = gaps[-1]
    out = np.empty_like(w)
    out[order] = w
    return out


@method(
    "wbp", label="WBP", order=10, separable=True,
    help="Weighted back-projection: instant preview, streaks and elongation in the missing wedge.",
    params=(
        Param("filter", "Filter", "Apodisation of the ramp filter", choices=FILTERS),
        Param("nonneg", "Clip negatives", "Set negative densities to zero", advanced=True),
    ),
    citation="Radermacher, in Electron Tomography (Frank, ed.), Springer 2006",
)
def wbp(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    start: int = 0,
    filter: str = "ram-lak",
    nonneg: bool = False,
) -> Iterator[Step]:
    """Weighted back-projection as a one-step generator.

    Parameters
    ----------
    A : Projector
    y : (n_tilts, y, u) tilt series in the canonical frame
    start : int
        Iteration number to report (for consistency with iterative methods).
    filter : str
        One of ``FILTERS``; ``"none"`` gives a plain (blurred) back-projection.
    nonneg : bool
        Clip negative values of the result.

    Yields
    ------
    Step
        A single step holding the reconstruction; ``loss`` and ``residual``
        are its relative reprojection residual (None for a blank series).
    """
    y = as_tensor(y, A)
    return _wbp(A, y, start, filter, nonneg)


def _wbp(A: Projector, y: torch.Tensor, start: int, filter: str, nonneg: bool) -> Iterator[Step]:
    n_u = A.det_cols
    pad = 1 << int(np.ceil(np.log2(2 * n_u)))
    resp = torch.as_tensor(ramp_filter(pad, filter), device=A.device, dtype=A.dtype)
    weights = torch.as_tensor(angular_weights(A.angles), device=A.device, dtype=A.dtype)
    try:
        with torch.no_grad():
            spec = torch.fft.rfft(y, n=pad, dim=-1)
            filt = torch.fft.irfft(spec * resp[: pad // 2 + 1], n=pad, dim=-1)[..., :n_u]
            filt = filt * weights[:, None, None]
            x = A.T(filt)
            if nonneg:
                x.clamp_(min=0)
            residual = residual_ratio(A(x) - y, y)
        yield Step(iteration=start + 1, volume=snapshot(x), loss=residual, residual=residual,
                   objective_name=RELATIVE_RESIDUAL, total=start + 1, extras={"filter": filter})
    finally:
        release(A.device)
