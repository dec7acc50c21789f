"""Sub-pixel image registration by band-passed, tapered cross-correlation.

:func:`register` finds, for pairs of images, the translation that moves
``moving`` onto ``reference``; everything is batched numpy FFTs, no loops
over pixels.

Notes
-----
Each image has its mean removed and is tapered to zero at its edges with a
cosine (Tukey) window, which suppresses the edge discontinuity that would
otherwise dominate the correlation. The spectrum of the correlation is
band-passed as in IMOD's *tiltxcorr* [1]_: a Gaussian high-pass
``1 - exp(-f^2 / (2 sigma1^2))`` removes slow intensity gradients, and a
Gaussian roll-off of width ``sigma2`` beyond ``radius2`` (cycles/pixel)
removes noise. With ``phase=True`` the spectrum is whitened first (phase
correlation [2]_), which sharpens the peak for well-exposed images. The
peak is refined to sub-pixel precision with a 1D parabola through the peak
and its two neighbours along each axis.

References
----------
.. [1] D. N. Mastronarde, "Dual-axis tomography: an approach with alignment
   methods that preserve resolution", J. Struct. Biol. 120, 343-352 (1997).
.. [2] C. D. Kuglin and D. C. Hines, "The phase correlation image alignment
   method", Proc. IEEE Conf. Cybernetics and Society, 163-165 (1975).
"""

from __future__ import annotations

import numpy as np
import torch

from .cancel import checkpoint
from .transforms import warp_images

__all__ = ["bandpass", "register", "taper"]


def taper(shape: tuple[int, int], fraction: float = 0.1) -> np.ndarray:
    """Separable cosine edge taper: 1 inside, falling to 0 over ``fraction`` of each side."""
    def win(n: int) -> np.ndarray:
        m = max(1, int(round(fraction * n)))
        w = np.ones(n)
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        w[:m] = ramp
        w[n - m :] = np.minimum(w[n - m :], ramp[::-1])
        return w

    return np.outer(win(shape[0]), win(shape[1]))


def bandpass(
    shape: tuple[int, int], sigma1: float = 0.03, radius2: float = 0.25, sigma2: float = 0.05
) -> np.ndarray:
    """Real-FFT band-pass ``(rows, cols // 2 + 1)``; frequencies in cycles/pixel."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.hypot(fy, fx)
    h = np.ones_like(f)
    if sigma1 > 0:
        h *= 1.0 - np.exp(-(f**2) / (2 * sigma1**2))
    if sigma2 > 0:
        h *= np.where(f > radius2, np.exp(-((f - radius2) ** 2) / (2 * sigma2**2)), 1.0)
    else:
        h *= f <= radius2
    return h


def _prepare(images: np.ndarray, window: np.ndarray) -> np.ndarray:
    a = np.asarray(images, dtype=np.float64)
    a = a - (a * window).sum(axis=(-2, -1), keepdims=True) / window.sum()
    return a * window


def _parabola(cm: np.ndarray, c0: np.ndarray, cp: np.ndarray) -> np.ndarray:
    """Offset of the vertex of the parabola through three equally spaced samples."""
    d = cm - 2 * c0 + cp
    safe = np.where(d < 0, d, -1.0)
    return np.where(d < 0, np.clip(0.5 * (cm - cp) / safe, -0.5, 0.5), 0.0)


def shift_images(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move each image's content by ``(dy, dx)`` (bilinear, border values extended)."""
    a = np.asarray(images, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(a.reshape((-1, *a.shape[-2:]))))
    sh = torch.as_tensor(np.asarray(shifts, np.float32).reshape(-1, 2)).expand(t.shape[0], 2)
    with torch.no_grad():
        out = warp_images(t, sh.contiguous(), None, padding_mode="border")
    return out.numpy().reshape(a.shape)


def register(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    max_shift: float | tuple[float, float] | None = None,
    sigma1: float = 0.03,
    radius2: float = 0.25,
    sigma2: float = 0.05,
    taper_fraction: float = 0.1,
    phase: bool = False,
    window: np.ndarray | None = None,
    refine: int = 2,
) -> np.ndarray:
    """Translations ``(dy, dx)`` that move each ``moving`` image onto its ``reference``.

    Parameters
    ----------
    reference, moving : array (rows, cols) or (n, rows, cols)
        Pairs of images; broadcast against each other.
    max_shift : float or (float, float), optional
        Largest translation searched along (rows, cols), in pixels
        (default: a quarter of the image size).
    sigma1, radius2, sigma2 : float
        Band-pass (cycles/pixel), see the module notes; ``sigma1=0``
        disables the high-pass.
    taper_fraction : float
        Width of the cosine edge taper as a fraction of each side.
    phase : bool
        Phase correlation (whitened spectrum) instead of plain correlation.
    window : array (rows, cols), optional
        Replaces the taper (e.g. a mask of valid pixels times a taper).
    refine : int
        Extra passes in which ``moving`` is first shifted by the estimate
        so far and the remaining offset is measured; this removes the pull
        towards zero shift caused by the fixed taper and the sub-pixel
        interpolation bias.

    Returns
    -------
    ndarray (n, 2) or (2,)
        Shifting ``moving[i]`` by ``(dy, dx)`` (content moves by ``+dx``
        columns) makes it match ``reference[i]``.
    """
    ref = np.asarray(reference)
    mov = np.asarray(moving)
    single = ref.ndim == 2 and mov.ndim == 2
    ref, mov = np.broadcast_arrays(
        ref.reshape((-1, *ref.shape[-2:])), mov.reshape((-1, *mov.shape[-2:]))
    )
    h, w = ref.shape[-2:]
    win = taper((h, w), taper_fraction) if window is None else np.asarray(window, np.float64)
    fr = np.fft.rfft2(_prepare(ref, win))
    filt = bandpass((h, w), sigma1, radius2, sigma2)
    if max_shift is None:
        lim = (h / 4, w / 4)
    else:
        lim = tuple(np.broadcast_to(np.asarray(max_shift, dtype=np.float64), (2,)))
    total = _peak(fr, np.fft.rfft2(_prepare(mov, win)), filt, phase, lim, (h, w))
    for _ in range(max(0, int(refine))):
        checkpoint()
        moved = shift_images(mov, total)
        total = total + _peak(fr, np.fft.rfft2(_prepare(moved, win)), filt, phase, (1.5, 1.5), (h, w))
    return total[0] if single else total


def _peak(fr, fm, filt, phase: bool, lim, shape) -> np.ndarray:
    """Sub-pixel peak of the band-passed cross-correlation within ``lim`` = (my, mx)."""
    spec = fr * np.conj(fm)
    if phase:
        spec = spec / (np.abs(spec) + 1e-12 * np.abs(spec).max())
    cc = np.fft.irfft2(spec * filt, s=shape)
    h, w = shape
    my, mx = lim
    ky = np.abs(np.fft.fftfreq(h, 1.0 / h)) <= my
    kx = np.abs(np.fft.fftfreq(w, 1.0 / w)) <= mx
    masked = np.where(ky[:, None] & kx[None, :], cc, -np.inf)
    n = cc.shape[0]
    iy, ix = np.unravel_index(masked.reshape(n, -1).argmax(axis=1), (h, w))
    i = np.arange(n)
    c0 = cc[i, iy, ix]
    fy = _parabola(cc[i, (iy - 1) % h, ix], c0, cc[i, (iy + 1) % h, ix])
    fx = _parabola(cc[i, iy, (ix - 1) % w], c0, cc[i, iy, (ix + 1) % w])
    out = np.stack(((iy + h // 2) % h - h // 2 + fy, (ix + w // 2) % w - w // 2 + fx), axis=1)
    return out


def register_across(reference: np.ndarray, moving: np.ndarray, *, max_shift: float = 3.0,
                    sigma1: float = 0.03, radius2: float = 0.25, sigma2: float = 0.05) -> np.ndarray:
    """Column shifts ``(n,)`` moving each ``moving[i]`` onto ``reference[i]`` (rows pooled).

    The rows of an image need not be neighbours (e.g. a few slices picked
    along the tilt axis): the 1D cross-correlations of all rows along the
    columns are summed, band-passed and the sub-pixel peak is taken.
    """
    ref = np.asarray(reference, dtype=np.float64)
    mov = np.asarray(moving, dtype=np.float64)
    w = ref.shape[-1]
    win = taper((1, w), 0.1)[0]
    ref = (ref - ref.mean(axis=-1, keepdims=True)) * win
    mov = (mov - mov.mean(axis=-1, keepdims=True)) * win
    f = np.fft.rfftfreq(w)
    h = bandpass((1, w), sigma1, radius2, sigma2)[0] if w > 2 else np.ones_like(f)
    spec = (np.fft.rfft(ref) * np.conj(np.fft.rfft(mov))).sum(axis=-2) * h
    cc = np.fft.irfft(spec, n=w)
    k = np.abs(np.fft.fftfreq(w, 1.0 / w)) <= max_shift
    i = np.where(k, cc, -np.inf).argmax(axis=-1)
    n = np.arange(cc.shape[0])
    frac = _parabola(cc[n, (i - 1) % w], cc[n, i], cc[n, (i + 1) % w])
    return (i + w // 2) % w - w // 2 + frac
