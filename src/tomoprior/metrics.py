"""Reconstruction quality measures for tests, benchmarks and the comparison widget.

Reference-based scores (:func:`psnr`, :func:`ssim`, :func:`rmse`, :func:`compare`)
compare a reconstruction ``x`` with a ground truth ``ref`` of the same shape
(``(z, y, x)`` or 2D), optionally only inside a boolean ``mask`` (the specimen).
Methods differ in output scaling (WBP filter gain, a network's last layer), so
each takes ``fit``: ``fit=True`` first maps ``x`` onto ``ref`` by the
least-squares affine map of :func:`scale_to`, fitted inside the mask.
:func:`compare` fits by default, the single scores do not. Reference-free:
Fourier shell correlation (:func:`fsc`, :func:`fsc_resolution`), data
consistency (:func:`reprojection_residual`, :func:`heldout_error`,
:func:`heldout_mask`) and artefact scores for particle specimens
(:func:`particle_elongation`, :func:`support_homogeneity`). Everything is
computed in float64 and returned as python floats or small dicts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from .errors import DataError, ParameterError

__all__ = [
    "compare",
    "fsc",
    "fsc_resolution",
    "heldout_error",
    "heldout_mask",
    "particle_elongation",
    "psnr",
    "reprojection_residual",
    "rmse",
    "scale_to",
    "ssim",
    "support_homogeneity",
]


def _array(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _prepare(x, ref, mask, fit):
    x, ref = _array(x), _array(ref)
    if x.shape != ref.shape:
        raise DataError(f"shapes differ: reconstruction {x.shape}, reference {ref.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != ref.shape:
            raise DataError(f"mask shape {mask.shape} differs from the data shape {ref.shape}")
        if not mask.any():
            raise DataError("the mask selects no voxels")
    if fit:
        x = scale_to(x, ref, mask)
    return x, ref, mask


def _inside(a: np.ndarray, mask) -> np.ndarray:
    return a.ravel() if mask is None else a[mask]


def _data_range(ref, mask, data_range) -> float:
    if data_range is None:
        r = _inside(ref, mask)
        data_range = float(r.max() - r.min())
    if not data_range > 0:
        raise DataError("the reference is constant inside the mask: pass data_range explicitly")
    return float(data_range)


def scale_to(x, ref, mask=None) -> np.ndarray:
    """Return ``a * x + b`` (float64) with ``a, b`` minimising ``||a x + b - ref||^2``.

    The fit uses the voxels in ``mask`` (all when None) and is applied to the
    whole array. A constant ``x`` maps to the mean of ``ref``.
    """
    x, ref, mask = _prepare(x, ref, mask, fit=False)
    xs, rs = _inside(x, mask), _inside(ref, mask)
    xc = xs - xs.mean()
    var = float(xc @ xc)
    a = float(xc @ (rs - rs.mean())) / var if var > 0 else 0.0
    return a * x + (rs.mean() - a * xs.mean())


def rmse(x, ref, *, mask=None, fit=False) -> float:
    """Root-mean-square error inside ``mask`` (after :func:`scale_to` if ``fit``)."""
    x, ref, mask = _prepare(x, ref, mask, fit)
    d = _inside(x, mask) - _inside(ref, mask)
    return float(np.sqrt(np.mean(d * d)))


def psnr(x, ref, *, mask=None, data_range=None, fit=False) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(R^2 / MSE)``.

    Parameters
    ----------
    x, ref, mask : array_like
        Reconstruction, reference (same shape), optional boolean region to score.
    data_range : float, optional
        ``R``; default ``ref.max() - ref.min()`` inside the mask.
    fit : bool
        Map ``x`` onto ``ref`` with :func:`scale_to` first.

    Returns
    -------
    float
        ``float('inf')`` when ``x`` equals ``ref`` inside the mask.
    """
    x, ref, mask = _prepare(x, ref, mask, fit)
    d = _inside(x, mask) - _inside(ref, mask)
    mse = float(np.mean(d * d))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(_data_range(ref, mask, data_range) ** 2 / mse)


def ssim(x, ref, *, mask=None, data_range=None, sigma=1.5, fit=False) -> float:
    """Mean structural similarity with a Gaussian window, in 2D or 3D.

    Parameters
    ----------
    x, ref : array_like
        Reconstruction and reference, same shape; 3D windows for volumes, 2D for images.
    mask : array_like of bool, optional
        Average the SSIM map (computed on the whole array) over these voxels.
        Without a mask it is averaged over the interior a window radius away
        from the border, as scikit-image does.
    data_range, fit
        As for :func:`psnr`.
    sigma : float
        Standard deviation of the Gaussian window (truncated at 3.5 sigma).

    Returns
    -------
    float
        Mean SSIM, 1.0 for identical inputs.

    Notes
    -----
    With local means ``mu``, variances ``s^2`` and covariance ``s_xr`` under the
    window, ``SSIM = (2 mu_x mu_r + C1)(2 s_xr + C2) / ((mu_x^2 + mu_r^2 + C1)
    (s_x^2 + s_r^2 + C2))``, ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``. Without a
    mask this equals scikit-image's ``structural_similarity(x, ref,
    gaussian_weights=True, sigma=sigma, use_sample_covariance=False, data_range=R)``.

    References
    ----------
    .. [1] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality
       assessment: from error visibility to structural similarity", IEEE Trans.
       Image Process. 13(4), 600-612 (2004). https://doi.org/10.1109/TIP.2003.819861
    """
    x, ref, mask = _prepare(x, ref, mask, fit)
    r = _data_range(ref, mask, data_range)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2

    def blur(a):
        return ndi.gaussian_filter(a, sigma, mode="reflect", truncate=3.5)

    mx, mr = blur(x), blur(ref)
    vx = blur(x * x) - mx * mx
    vr = blur(ref * ref) - mr * mr
    cxr = blur(x * ref) - mx * mr
    smap = ((2 * mx * mr + c1) * (2 * cxr + c2)) / ((mx * mx + mr * mr + c1) * (vx + vr + c2))
    if mask is not None:
        return float(smap[mask].mean())
    pad = int(3.5 * sigma + 0.5)
    inner = tuple(slice(pad, n - pad) if n > 2 * pad else slice(None) for n in smap.shape)
    return float(smap[inner].mean())


def compare(x, ref, *, mask=None, fit=True) -> dict[str, float]:
    """``{"ssim", "psnr", "rmse"}`` of ``x`` against ``ref``, for comparison tables.

    ``fit=True`` (default) maps ``x`` onto ``ref`` with :func:`scale_to` first,
    so methods with different output scalings are compared on structure and noise.
    """
    x, ref, mask = _prepare(x, ref, mask, fit)
    scores = {"ssim": ssim, "psnr": psnr, "rmse": rmse}
    return {name: f(x, ref, mask=mask) for name, f in scores.items()}


# -- Fourier shell correlation ---------------------------------------------------------------
def fsc(a, b, *, n_shells=None, pixel_size=None) -> dict[str, np.ndarray]:
    """Fourier shell (3D) or ring (2D) correlation of two volumes.

    Parameters
    ----------
    a, b : array_like
        Same-shape reconstructions from independent data (e.g. even and odd tilts).
    n_shells : int, optional
        Number of shells up to Nyquist; default ``min(shape) // 2``.
    pixel_size : float, optional
        Report frequencies in cycles per unit instead of cycles per pixel.

    Returns
    -------
    dict
        ``frequency``: shell centres ``k * 0.5 / n_shells``, ``k = 1..n_shells``
        (DC left out); ``fsc``: the correlation per shell; ``n``: Fourier voxels per shell.

    Notes
    -----
    ``FSC(k) = Re sum F_a conj(F_b) / sqrt(sum |F_a|^2 sum |F_b|^2)`` over the
    voxels whose radial frequency (cycles/pixel on every axis, so shells stay
    spherical for non-cubic arrays) rounds to shell ``k``; corners beyond
    Nyquist are ignored.

    References
    ----------
    .. [1] M. van Heel, M. Schatz, "Fourier shell correlation threshold
       criteria", J. Struct. Biol. 151(3), 250-262 (2005).
       https://doi.org/10.1016/j.jsb.2005.05.009
    """
    a, b = _array(a), _array(b)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise DataError(f"fsc needs two 2D or 3D arrays of one shape, got {a.shape}, {b.shape}")
    n_shells = int(n_shells or min(a.shape) // 2)
    if n_shells < 1:
        raise DataError("fsc needs at least one shell (arrays too small?)")
    fa, fb = sfft.rfftn(a), sfft.rfftn(b)
    axes = [sfft.fftfreq(n) for n in a.shape[:-1]] + [sfft.rfftfreq(a.shape[-1])]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    width = 0.5 / n_shells
    shell = np.rint(np.sqrt(sum(g * g for g in grids)) / width).astype(np.int64)
    # rfftn stores half the spectrum: count the mirrored half twice
    half = np.full(fa.shape[-1], 2.0)
    half[0] = 1.0
    if a.shape[-1] % 2 == 0:
        half[-1] = 1.0
    keep = shell <= n_shells
    idx, w = shell[keep], np.broadcast_to(half, fa.shape)[keep]

    def total(v):
        return np.bincount(idx, weights=w * v[keep], minlength=n_shells + 1)[1:]

    num = total((fa * np.conj(fb)).real)
    den = np.sqrt(total(np.abs(fa) ** 2) * total(np.abs(fb) ** 2))
    corr = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    freq = np.arange(1, n_shells + 1) * width
    if pixel_size is not None:
        freq = freq / float(pixel_size)
    return {"frequency": freq, "fsc": corr, "n": total(np.ones(fa.shape))}


def fsc_resolution(a, b, threshold=0.143, *, n_shells=None, pixel_size=None) -> float:
    """Resolution where the FSC of ``a`` and ``b`` first drops below ``threshold``.

    Parameters
    ----------
    a, b, n_shells, pixel_size
        As for :func:`fsc`.
    threshold : float or {"half-bit"}
        A fixed value (0.143, or 0.5), or the half-bit information curve
        ``(0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))`` of [1]_.

    Returns
    -------
    float
        ``1 / frequency`` at the first crossing, linearly interpolated between
        shells (from FSC = 1 at zero frequency), in pixels or, with
        ``pixel_size``, in units. Never crossing gives the Nyquist limit (2 px).

    Notes
    -----
    0.143 [2]_ is meant for the FSC of two half-data reconstructions.

    References
    ----------
    .. [1] M. van Heel, M. Schatz, "Fourier shell correlation threshold
       criteria", J. Struct. Biol. 151(3), 250-262 (2005).
    .. [2] P. B. Rosenthal, R. Henderson, J. Mol. Biol. 333(4), 721-745 (2003).
    """
    curve = fsc(a, b, n_shells=n_shells, pixel_size=pixel_size)
    freq, c = curve["frequency"], curve["fsc"]
    if isinstance(threshold, str):
        if threshold.lower().replace("_", "-") not in ("half-bit", "1/2-bit"):
            raise ParameterError(f"unknown FSC threshold {threshold!r}: a number or 'half-bit'")
        rn = np.sqrt(np.maximum(curve["n"], 1.0))
        thr = (0.2071 + 1.9102 / rn) / (1.2071 + 0.9102 / rn)
    else:
        thr = np.full_like(c, float(threshold))
    d = np.concatenate([[max(1.0 - thr[0], 0.0)], c - thr])
    f = np.concatenate([[0.0], freq])
    below = np.flatnonzero(d[1:] < 0)
    if below.size == 0:
        return float(1.0 / freq[-1])
    k = below[0] + 1
    step = d[k - 1] - d[k]
    f_cross = f[k - 1] + (f[k] - f[k - 1]) * (d[k - 1] / step if step > 0 else 0.0)
    return float(1.0 / f_cross) if f_cross > 0 else float("inf")


# -- consistency with the measured tilt series -------------------------------------------------
def _tensor(a):
    import torch

    if isinstance(a, torch.Tensor):
        return a.detach()
    a = np.asarray(a)
    return torch.from_numpy(np.require(a, a.dtype.newbyteorder("="), ["W"]))


def _residual(A, volume, tilt_series):
    """``(A x - y, y)`` in float64 on ``A.device``, without gradients."""
    import torch

    with torch.no_grad():
        ax = A(_tensor(volume))
        y = _tensor(tilt_series).to(device=ax.device, dtype=ax.dtype)
        if y.shape != ax.shape:
            raise DataError(f"tilt series {tuple(y.shape)} != projector range {tuple(ax.shape)}")
        return (ax - y).double(), y.double()


def reprojection_residual(A, volume, tilt_series) -> float:
    """Relative reprojection residual ``||A x - y|| / ||y||``.

    ``A`` is a projector from :mod:`tomoprior.operators`, ``volume`` a
    canonical ``(z, y, x)`` numpy array or torch tensor and ``tilt_series`` the
    measured ``(n_tilts, y, u)`` data; computed in torch on ``A.device``
    without gradients. Returns 0 for data made by the same operator.
    """
    import torch

    r, y = _residual(A, volume, tilt_series)
    num, den = float(torch.linalg.vector_norm(r)), float(torch.linalg.vector_norm(y))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def heldout_mask(shape, fraction=0.05, seed=0) -> np.ndarray:
    """Boolean mask holding out ``round(fraction * size)`` detector pixels at random.

    Deterministic for a given ``seed``; ``fraction=0`` gives all False. Fit on
    the pixels outside the mask, score with :func:`heldout_error` inside it.
    """
    if not 0.0 <= fraction < 1.0:
        raise ParameterError(f"held-out fraction must be in [0, 1), got {fraction}")
    shape = tuple(int(s) for s in shape)
    size = math.prod(shape)
    mask = np.zeros(size, dtype=bool)
    count = round(fraction * size)
    if count:
        mask[np.random.default_rng(seed).choice(size, count, replace=False)] = True
    return mask.reshape(shape)


def heldout_error(A, volume, tilt_series, mask) -> float:
    """Mean squared reprojection error on held-out detector pixels.

    ``||(A x - y)[mask]||^2 / mask.sum()``, with ``mask`` a boolean array of
    the tilt series' shape (e.g. from :func:`heldout_mask`). Used to pick
    iteration counts and regularisation weights without a ground truth: a
    reconstruction that fits noise raises it.
    """
    import torch

    r, _ = _residual(A, volume, tilt_series)
    m = _tensor(mask).to(device=r.device, dtype=torch.bool)
    if tuple(m.shape) != tuple(r.shape):
        raise DataError(f"held-out mask shape {tuple(m.shape)} differs from {tuple(r.shape)}")
    count = int(m.sum())
    if count == 0:
        raise DataError("the held-out mask selects no pixels")
    return float((r[m] ** 2).sum()) / count


# -- artefact scores for particle specimens ------------------------------------------------------
def particle_elongation(volume, centers, radii, *, window=2.0) -> dict:
    """Elongation along z of reconstructed particles (the missing-wedge artefact).

    Parameters
    ----------
    volume : array_like
        Reconstruction ``(z, y, x)``.
    centers, radii : array_like
        Particle centres ``(n, 3)`` in voxels ``(z, y, x)``; radii in voxels (scalar or ``(n,)``).
    window : float
        Half-size of the analysis box, in radii.

    Returns
    -------
    dict
        ``values``: per particle ``sqrt(M_zz) / mean(sqrt(M_yy), sqrt(M_xx))``
        (NaN without signal; 1.0 round, > 1 stretched along the beam); ``median``.

    Notes
    -----
    In each box the background is the median; the blob is the connected region
    above half-way from background to the local maximum that holds the centre
    (or the maximum); ``M`` are the second central moments of its
    background-subtracted intensity (with zero background: half the local max).
    """
    v = _array(volume)
    centers = np.atleast_2d(np.asarray(centers, dtype=np.float64))
    radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(centers),))
    values = np.full(len(centers), np.nan)
    for i, (c, r) in enumerate(zip(centers, radii)):
        h = max(1, math.ceil(window * r))
        lo = [max(0, round(ci) - h) for ci in c]
        box = v[tuple(slice(a, min(n, round(ci) + h + 1)) for a, ci, n in zip(lo, c, v.shape))]
        if box.size == 0:
            continue
        bg, peak = float(np.median(box)), float(box.max())
        if not peak > bg:
            continue
        labels, _ = ndi.label(box >= bg + 0.5 * (peak - bg))
        centre = tuple(min(max(round(ci) - a, 0), n - 1) for ci, a, n in zip(c, lo, box.shape))
        lab = labels[centre] or labels[np.unravel_index(np.argmax(box), box.shape)]
        w = np.where(labels == lab, box - bg, 0.0)
        grids = np.meshgrid(*[np.arange(n) for n in box.shape], indexing="ij", sparse=True)
        mean = [float((w * g).sum() / w.sum()) for g in grids]
        sd = [math.sqrt(float((w * (g - m) ** 2).sum() / w.sum())) for g, m in zip(grids, mean)]
        if sd[1] + sd[2] > 0:
            values[i] = sd[0] / (0.5 * (sd[1] + sd[2]))
    finite = values[np.isfinite(values)]
    return {"values": values, "median": float(np.median(finite)) if finite.size else float("nan")}


def support_homogeneity(volume, support_mask, *, reference=None, erosion=1) -> dict:
    """Coefficient of variation ``std / |mean|`` inside the eroded support.

    A solid, uniform specimen (a nanoparticle, a needle) should reconstruct
    with constant intensity inside. Noise and CS-TV's "porous" texture raise
    the coefficient of variation; over-smoothing lowers it below the truth's,
    so read it against a reference when there is one.

    Parameters
    ----------
    volume, support_mask : array_like
        Reconstruction and the boolean specimen region, eroded by ``erosion``
        voxels to leave out the partial-volume edge (0: as is).
    reference : array_like, optional
        Ground truth; adds its ``cv_reference`` and ``ratio = cv / cv_reference``
        (1.0 = as homogeneous as the truth, > 1 rougher, < 1 smoother).

    Returns
    -------
    dict
        ``cv`` and, with a reference, ``cv_reference`` and ``ratio``.
    """
    v = _array(volume)
    support = np.asarray(support_mask, dtype=bool)
    if support.shape != v.shape:
        raise DataError(f"support mask shape {support.shape} differs from {v.shape}")
    if erosion > 0:
        support = ndi.binary_erosion(support, iterations=int(erosion))
    if not support.any():
        raise DataError("the support mask is empty after erosion")

    def cv(a):
        vals = a[support]
        m = abs(float(vals.mean()))
        return float(vals.std()) / m if m > 0 else float("inf")

    out = {"cv": cv(v)}
    if reference is not None:
        ref = _array(reference)
        if ref.shape != v.shape:
            raise DataError(f"reference shape {ref.shape} differs from {v.shape}")
        out["cv_reference"] = cv(ref)
        out["ratio"] = out["cv"] / out["cv_reference"] if out["cv_reference"] > 0 else float("inf")
    return out
