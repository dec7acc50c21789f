"""Grey levels of a few-material specimen, found on a volume's histogram; shared by DART and TVR-DART.

A specimen made of a few materials of one density each (vacuum, a support,
metal particles) has a histogram of a few peaks. :func:`find_levels` fits
``n`` Gaussians to the histogram of a continuous reconstruction (SIRT, CS-TV)
by expectation-maximisation, started from the multi-level Otsu classes, and
returns their centres, sorted: the grey levels. The methods refine them on
the projections afterwards (DART by least squares on its segmentation,
TVR-DART by gradient descent), because a missing-wedge reconstruction lowers
a small particle's peak.

:func:`level_fit` says how well the levels describe a continuous volume at
the end of a run (TVR-DART's ``S(x)``; for DART, SIRT iterations started from
its segmentation, which move the voxels whose density the levels miss): of
the voxels that lie away from every edge (their value is not a partial-volume
or missing-wedge blend of two materials) and above the lowest segment, the
fraction within a given part of the level spacing of their level. A
few-material specimen scores near 1; ADF diffraction contrast, which changes
a particle's brightness from tilt to tilt, or a specimen of more densities
than levels leaves many flat voxels between the levels, and the methods warn
in one line. It is a heuristic: a faint graded support under bright particles
barely moves it, and a smoothly graded specimen that the method has
flattened into plateaus can pass it (docs/dart.md gives its values).

References
----------
.. [1] N. Otsu, "A threshold selection method from gray-level histograms",
   IEEE Trans. Syst. Man Cybern. 9, 62-66 (1979).
.. [2] A. P. Dempster, N. M. Laird, D. B. Rubin, "Maximum likelihood from
   incomplete data via the EM algorithm", J. R. Stat. Soc. B 39, 1-38 (1977).
.. [3] W. van Aarle, K. J. Batenburg, J. Sijbers, "Automatic parameter
   estimation for the discrete algebraic reconstruction technique (DART)",
   IEEE Trans. Image Process. 21, 4608-4621 (2012).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError

__all__ = [
    "POOR_FIT", "LevelFit", "find_levels", "flat_voxels", "format_levels", "histogram", "level_fit",
    "parse_levels", "segment", "soft_segment", "thresholds",
]

#: a level fit (:func:`level_fit`, default tolerance) below this gets a warning
POOR_FIT = 0.6
BINS = 256
_SAMPLE = 2_000_000  # voxels a histogram is computed from at most
_EM_ITERATIONS = 200
NEAR = 0.25  # a voxel fits a level when it is within NEAR x the level spacing of it
REACH = 0.5  # the highest level reaches at least this fraction of the top density
MIN_SPACING = 0.05  # ... and no two levels are closer than this fraction of the range
FLAT = 0.1  # a voxel is away from edges when its neighbourhood spans < FLAT x the top density


def parse_levels(levels: str | Sequence[float]) -> str | tuple[float, ...]:
    """``"auto"``, or a comma list (or sequence) of at least two increasing finite densities.

    Raises :class:`~tomoprior.errors.ParameterError` (one line) otherwise.
    """
    if isinstance(levels, str):
        text = levels.strip()
        if text.lower() == "auto":
            return "auto"
        parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    else:
        parts = list(levels)
    try:
        values = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise ParameterError(f"levels expects 'auto' or densities like '0,1.5', got {levels!r}"
                             ) from None
    if len(values) < 2:
        raise ParameterError(f"levels needs at least two densities (vacuum and one material), "
                             f"got {levels!r}")
    if not all(math.isfinite(v) for v in values):
        raise ParameterError(f"levels must be finite numbers, got {levels!r}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ParameterError(f"levels must increase strictly (lowest first), got {levels!r}")
    return values


def format_levels(levels: Sequence[float]) -> str:
    """``"0,1.02"``: levels as the ``levels`` parameter takes them (4 significant digits)."""
    return ",".join(f"{float(v):.4g}" for v in levels)


def thresholds(levels: torch.Tensor) -> torch.Tensor:
    """Midpoints between adjacent levels (the segmentation thresholds)."""
    return 0.5 * (levels[1:] + levels[:-1])


def segment(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Label (0 .. n-1) of the nearest level for every voxel of ``x`` (int64)."""
    return torch.bucketize(x, thresholds(levels).to(x.dtype).contiguous())


def soft_segment(x: torch.Tensor, levels: torch.Tensor, sharpness: torch.Tensor | float
                 ) -> torch.Tensor:
    """TVR-DART's soft segmentation ``S(x)``, differentiable in ``x``, the levels and sharpness.

    ``S(x) = l_0 + sum_i (l_i - l_{i-1}) sigmoid(2 k (x - t_i) / (l_i - l_{i-1}))`` with
    ``t_i`` the midpoints: a staircase through the levels whose steps sharpen with ``k``
    (``k`` is dimensionless: the slope at a threshold is ``k`` times that of ``x`` itself).
    """
    out = levels[0] + torch.zeros_like(x)
    for i in range(1, int(levels.shape[0])):
        gap = levels[i] - levels[i - 1]
        t = 0.5 * (levels[i] + levels[i - 1])
        out = out + gap * torch.sigmoid(2.0 * sharpness * (x - t) / gap)
    return out


def _sample(volume: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().to("cpu", torch.float32).numpy()
    flat = np.asarray(volume, np.float32).reshape(-1)
    return flat[:: max(1, flat.size // _SAMPLE)]


def histogram(volume: np.ndarray | torch.Tensor, bins: int = BINS
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of a volume's values between its 0.01 and 99.99 percentiles."""
    v = _sample(volume)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.zeros(bins), np.linspace(0.0, 1.0, bins + 1)
    lo, hi = (float(q) for q in np.percentile(v, [0.01, 99.99]))
    if not hi > lo:
        lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        hi = lo + 1.0
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    return counts.astype(np.float64), edges


def _otsu(counts: np.ndarray, centres: np.ndarray, n: int) -> list[slice]:
    """Multi-level Otsu: the ``n`` runs of bins with the least within-class variance
    (dynamic programming over the bins)."""
    w = np.concatenate([[0.0], np.cumsum(counts)])
    s1 = np.concatenate([[0.0], np.cumsum(counts * centres)])
    s2 = np.concatenate([[0.0], np.cumsum(counts * centres * centres)])
    b = counts.size
    a_idx, e_idx = np.meshgrid(np.arange(b + 1), np.arange(b + 1), indexing="ij")
    with np.errstate(divide="ignore", invalid="ignore"):
        wn = w[e_idx] - w[a_idx]
        sn = s1[e_idx] - s1[a_idx]
        cost = np.where(wn > 0, s2[e_idx] - s2[a_idx] - sn * sn / wn, 0.0)
    cost = np.where(e_idx > a_idx, cost, np.inf)  # a class is at least one bin
    best = cost[0].copy()  # one class: bins [0, e)
    back = []
    for _ in range(1, n):
        total = best[:, None] + cost
        arg = np.argmin(total, axis=0)
        back.append(arg)
        best = total[arg, np.arange(b + 1)]
    cuts, e = [b], b
    for arg in reversed(back):
        e = int(arg[e])
        cuts.append(e)
    cuts.append(0)
    cuts.reverse()
    return [slice(cuts[i], cuts[i + 1]) for i in range(n)]


@dataclass(frozen=True)
class LevelFit:
    """Grey levels found on a histogram: Gaussian centres, widths and weights (sorted)."""

    levels: tuple[float, ...]
    widths: tuple[float, ...]
    weights: tuple[float, ...]


def _em(counts: np.ndarray, centres: np.ndarray, means: np.ndarray, sds: np.ndarray,
        weights: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expectation-maximisation of a 1D Gaussian mixture on histogram bins."""
    total = counts.sum()
    for _ in range(_EM_ITERATIONS):
        z = (centres[None, :] - means[:, None]) / sds[:, None]
        logp = np.log(np.maximum(weights, 1e-300))[:, None] - np.log(sds)[:, None] - 0.5 * z * z
        logp -= logp.max(axis=0, keepdims=True)
        r = np.exp(logp)
        r /= r.sum(axis=0, keepdims=True)
        rw = r * counts[None, :]
        nk = rw.sum(axis=1)
        keep = nk > 1e-9 * total
        new_means = np.where(keep, (rw * centres).sum(axis=1) / np.maximum(nk, 1e-300), means)
        var = (rw * (centres[None, :] - new_means[:, None]) ** 2).sum(axis=1)
        new_sds = np.where(keep, np.sqrt(var / np.maximum(nk, 1e-300)), sds)
        new_sds = np.maximum(new_sds, floor)
        new_weights = nk / total
        change = float(np.abs(new_means - means).max())
        means, sds, weights = new_means, new_sds, new_weights
        if change < 1e-4 * floor:
            break
    return means, sds, weights


def flat_voxels(volume: np.ndarray | torch.Tensor, rel: float = FLAT) -> np.ndarray:
    """The values of the voxels away from edges: their 3x3x3 neighbourhood spans less than
    ``rel`` times the volume's 99.9th percentile (all values when none qualifies)."""
    x = volume if isinstance(volume, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(volume, np.float32))
    x = x.detach().to("cpu", torch.float32)
    v = x[None, None]
    span = (torch.nn.functional.max_pool3d(v, 3, stride=1, padding=1)
            + torch.nn.functional.max_pool3d(-v, 3, stride=1, padding=1))[0, 0]
    top = float(np.percentile(_sample(x), 99.9))
    flat = x[span < rel * top] if top > 0 else x.reshape(-1)
    return (flat if flat.numel() else x.reshape(-1)).numpy()


def _mixture(values: np.ndarray, n: int) -> LevelFit:
    """A Gaussian mixture of ``n`` components fitted to the histogram of ``values``."""
    counts, edges = histogram(values)
    centres = 0.5 * (edges[1:] + edges[:-1])
    width = float(edges[1] - edges[0])
    if np.count_nonzero(counts) < n:
        lo, hi = float(edges[0]), float(edges[-1])
        levels = tuple(float(v) for v in np.linspace(lo, hi, n))
        return LevelFit(levels, (width,) * n, (1.0 / n,) * n)
    classes = _otsu(counts, centres, n)
    means, sds, weights = [], [], []
    for c in classes:
        w = counts[c]
        tot = max(float(w.sum()), 1e-300)
        m = float((w * centres[c]).sum() / tot)
        means.append(m)
        sds.append(max(math.sqrt(float((w * (centres[c] - m) ** 2).sum() / tot)), width))
        weights.append(tot / counts.sum())
    m, s, w = _em(counts, centres, np.array(means), np.array(sds), np.array(weights), width)
    order = np.argsort(m)
    m, s, w = m[order], s[order], w[order]
    for i in range(1, n):  # two components on one peak: keep the levels distinct
        m[i] = max(m[i], m[i - 1] + width)
    return LevelFit(tuple(float(v) for v in m), tuple(float(v) for v in s),
                    tuple(float(v) for v in w))


def _plausible(levels: Sequence[float], top: float) -> bool:
    """Levels that span the volume's densities: the highest at least ``REACH`` of its top
    density, no two closer than ``MIN_SPACING`` of the range."""
    lo, hi = levels[0], levels[-1]
    if not top > lo:
        return True  # a blank volume: nothing better to find
    gaps = [b - a for a, b in itertools.pairwise(levels)]
    return hi - lo >= REACH * (top - lo) and min(gaps) >= MIN_SPACING * (top - lo)


def find_levels(volume: np.ndarray | torch.Tensor, n: int, *, flat: bool = True) -> LevelFit:
    """``n`` grey levels of ``volume``: a Gaussian mixture fitted to its histogram (EM),
    started from the multi-level Otsu classes; sorted, strictly increasing.

    With ``flat`` only the voxels away from edges count (:func:`flat_voxels`): the
    blend of two materials at a boundary (partial volume, missing-wedge blur) would
    otherwise take a level of its own. Small particles have no such voxels, and the
    mixture then splits the background's noise: levels that do not span the volume
    (the highest below ``REACH`` of its 99.9th percentile, or two closer than
    ``MIN_SPACING`` of that range) are found again on all voxels, and failing that
    spread evenly up to the 99.9th percentile. A blank volume gets levels spread over
    its range, so the methods still run.
    """
    values = _sample(volume)
    top = float(np.percentile(values, 99.9)) if values.size else 0.0
    found = _mixture(flat_voxels(volume), n) if flat else _mixture(values, n)
    if flat and not _plausible(found.levels, top):
        found = _mixture(values, n)
    if not _plausible(found.levels, top):
        lo = found.levels[0]
        levels = tuple(float(v) for v in np.linspace(lo, top, n))
        found = LevelFit(levels, found.widths, found.weights)
    return found


def level_fit(volume: np.ndarray | torch.Tensor, levels: Sequence[float], *,
              tolerance: float = NEAR) -> float | None:
    """How well ``levels`` describe ``volume``, in ``[0, 1]`` (see module notes).

    Of the voxels away from edges (their 3x3x3 neighbourhood spans less than half
    the level spacing) and not in the lowest segment (the vacuum around a specimen
    fits any level set), the fraction within ``tolerance`` times the level spacing of
    their level. None when no voxel qualifies.
    """
    x = volume if isinstance(volume, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(volume, np.float32))
    x = x.detach().to(torch.float32)
    lv = torch.tensor([float(v) for v in levels], dtype=torch.float32, device=x.device)
    gaps = lv[1:] - lv[:-1]
    if gaps.numel() == 0 or not float(gaps.min()) > 0:
        return None
    labels = segment(x, lv)
    v = x[None, None]
    span = (torch.nn.functional.max_pool3d(v, 3, stride=1, padding=1)
            + torch.nn.functional.max_pool3d(-v, 3, stride=1, padding=1))[0, 0]
    # the spacing around each level: the smaller of the gaps below and above it
    below = torch.cat([gaps[:1], gaps])
    above = torch.cat([gaps, gaps[-1:]])
    local = torch.minimum(below, above)[labels]
    chosen = (span < 0.5 * local) & (labels > 0)
    count = int(chosen.sum())
    if count == 0:
        return None
    near = (x - lv[labels]).abs() <= tolerance * local
    return float((near & chosen).sum()) / count
