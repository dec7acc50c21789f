"""Tilt-axis angle and offset from the consistency of a few reconstructed slices.

Notes
-----
Seen in the canonical frame (axis vertical), an error ``delta`` in the
in-plane angle of the tilt axis displaces the axis of the slice at height
``y`` (along the axis) by ``y delta`` across it, and makes features wander
along the axis by ``delta`` times their distance from the axis as the
specimen tilts. The series is then not the projection of any volume, and
the relative reprojection residual ``||A x - y|| / ||y||`` of a
non-negative SIRT reconstruction of a few slices spread along the axis
(:func:`consistency`) is smallest at the right angle. Unlike sharpness
measures of a back-projection, this residual is not fooled by the smoothing
of sub-pixel resampling, and its minimum sharpens with more iterations.

Per-tilt shifts are nuisance parameters that partly mimic an axis error: a
shift pattern along the axis of the form ``a cos(theta) + b sin(theta)``
is exactly what the angle error does to the specimen's centre of mass, and
shift errors that vary slowly with the tilt (as a correlation chain
leaves them) bias the angle by a degree or more on small images. Each
trial angle therefore gets its own shifts (a profile likelihood): along
the axis from the common-line profile (:func:`~tomoprior.alignment.com.profile_shifts`),
across it from ``rounds`` rounds of projection matching on the trial
slices themselves. Only what no shift can explain, the slice-to-slice and
feature-to-feature differences, decides the angle. The angle is scanned on
a coarse grid, then on a finer one, and a parabola through the best three
trials gives the minimum. The axis offset (a constant shift of all tilts
across the axis) is then scanned the same way with the shifts held fixed.
This is the fiducial-less counterpart of fitting the axis to tracked
features (IMOD's *tiltalign* [1]_) and of centre-of-rotation searches that
score trial reconstructions [2]_.

References
----------
.. [1] D. N. Mastronarde, "Dual-axis tomography: an approach with alignment
   methods that preserve resolution", J. Struct. Biol. 120, 343-352 (1997).
.. [2] T. Donath, F. Beckmann and A. Schreyer, "Automated determination of
   the center of rotation in tomography data", J. Opt. Soc. Am. A 23,
   1048-1057 (2006).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from ..algorithms.sirt import sirt
from ..cancel import checkpoint
from ..frames import (
    canonical_series,
    fix_reference,
    from_canonical_shifts,
    reference_tilt,
    rotate_vectors,
    to_canonical_shifts,
)
from ..operators import make_projector
from ..registration import register_across
from ..step import last_step
from .com import profile_shifts

__all__ = ["consistency", "find_axis", "pick_slices"]


def pick_slices(n_rows: int, count: int = 16, span: float = 0.8) -> np.ndarray:
    """``count`` rows spread evenly over the central ``span`` of ``n_rows``."""
    lo = (1 - span) / 2 * (n_rows - 1)
    hi = (1 + span) / 2 * (n_rows - 1)
    return np.unique(np.round(np.linspace(lo, hi, min(count, n_rows))).astype(int))


def consistency(trials: list[np.ndarray], angles: np.ndarray, *, iterations: int = 50,
                thickness: int | None = None, device: str | torch.device = "cpu",
                x0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative reprojection residual of a non-negative SIRT, for each trial.

    Parameters
    ----------
    trials : list of arrays (n_tilts, n_slices, cols)
        Canonical images of each trial restricted to a few rows (slices
        along the axis). All trials are reconstructed in one SIRT run (the
        slices are independent), which is much faster than one run each.
    angles : array (n_tilts,)
    iterations : int
        SIRT iterations; more give a sharper minimum.
    thickness : int, optional
        Volume thickness (default: ``cols``).
    x0 : array, optional
        Warm start (the volume returned by a previous call).

    Returns
    -------
    residuals : ndarray (n_trials,)
        ``||A x - y|| / ||y||`` of each trial.
    reprojection : ndarray like the concatenated trials
    volume : ndarray
    """
    y = np.ascontiguousarray(np.concatenate(trials, axis=1), dtype=np.float32)
    n, k, w = y.shape
    A = make_projector(angles, (thickness or w, k, w), w, device=device)
    yt = torch.from_numpy(y).to(A.device)
    last = last_step(sirt(A, yt, iterations=iterations, every=iterations, x0=x0))
    with torch.no_grad():
        p = A(torch.from_numpy(last.volume).to(A.device))
        r = (p - yt).double().pow(2).sum(dim=(0, 2)).cpu().numpy()
    y2 = (y.astype(np.float64) ** 2).sum(axis=(0, 2))
    bounds = np.cumsum([0] + [t.shape[1] for t in trials])
    res = np.array([np.sqrt(r[a:b].sum() / max(y2[a:b].sum(), 1e-30))
                    for a, b in itertools.pairwise(bounds)])
    return res, p.cpu().numpy(), last.volume


def _parabola_min(xs: np.ndarray, vs: np.ndarray) -> float:
    """Minimum of the parabola through the smallest sample and its neighbours."""
    i = int(np.clip(np.argmin(vs), 1, len(xs) - 2))
    y0, y1, y2 = vs[i - 1 : i + 2]
    d = y0 - 2 * y1 + y2
    off = 0.5 * (y0 - y2) / d if d > 0 else 0.0
    return float(xs[i] + np.clip(off, -1.0, 1.0) * (xs[i + 1] - xs[i]))


def find_axis(
    series: np.ndarray,
    angles: np.ndarray,
    tilt_axis: float,
    shifts_c: np.ndarray,
    *,
    binning: int = 1,
    max_angle: float = 4.0,
    max_offset: float | None = None,
    slices: int = 24,
    iterations: int = 50,
    rounds: int = 4,
    coarse: bool = True,
    thickness: int | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Search the tilt-axis angle and offset that make the series most consistent.

    Parameters
    ----------
    series : array (n, rows, cols)
        Raw tilt series (input frame).
    angles : array (n,)
    tilt_axis : float
        Starting axis orientation (degrees, package convention).
    shifts_c : array (n, 2)
        Canonical corrections found so far (full-size pixels), valid for
        ``tilt_axis``.
    binning : int
        Work on images binned this much.
    max_angle : float
        Half-width of the coarse angle scan around ``tilt_axis``, degrees.
    max_offset : float, optional
        Half-width of the offset scan, full-size pixels (default: 1/16 of
        the width across the axis, at least 2 binned pixels).
    slices : int
        Number of slices (rows along the axis) reconstructed per trial.
    iterations : int
        SIRT iterations per trial reconstruction.
    rounds : int
        Projection-matching rounds (across the axis) per trial angle.
    coarse : bool
        Run the coarse angle scan (2° steps) before the fine one (0.5°).
    thickness : int, optional
        Volume thickness in full-size pixels (default: the width).

    Returns
    -------
    dict
        ``tilt_axis`` (degrees), ``angle_correction`` (degrees),
        ``offset`` (full-size pixels across the axis: a constant shift of
        all tilts on top of the starting shifts), ``shifts_c`` (canonical
        corrections for the new axis in the reference gauge: the starting
        ones turned with the axis, along the axis from the common-line
        profile, offset included), ``residual`` and ``trials``.
    """
    b = max(1, int(binning))
    geo_shifts = from_canonical_shifts(np.asarray(shifts_c, dtype=np.float64), tilt_axis)
    th = None if thickness is None else max(1, int(thickness) // b)
    ref = reference_tilt(angles)
    first = canonical_series(series[:1], tilt_axis, None, b)
    rows = pick_slices(first.shape[1], slices)
    starts: dict[float, np.ndarray] = {}
    scores: dict[float, float] = {}
    opts = {"thickness": th, "device": device}

    def start(delta: float) -> np.ndarray:
        """Corrections of a trial angle: turned with the axis, realigned along it."""
        key = round(delta, 4)
        if key not in starts:
            checkpoint()  # each trial angle warps the whole series
            axis = tilt_axis + delta
            sc = to_canonical_shifts(rotate_vectors(geo_shifts, delta), axis)
            sc[:, 0] += profile_shifts(canonical_series(series, axis, sc, b), ref) * b
            starts[key] = sc
        return starts[key].copy()

    def score(deltas: list[float], quick: bool = False) -> np.ndarray:
        """Residual of each trial angle after ``rounds`` of projection matching across."""
        new = sorted({round(d, 4) for d in deltas} - set(scores))
        n_rounds = min(1, rounds) if quick else rounds
        if new:
            sc = [start(d) for d in new]
            x0 = None
            for k in range(n_rounds + 1):
                data = []
                for d, s in zip(new, sc):  # a full warp of the series per trial angle
                    checkpoint()
                    data.append(canonical_series(series, tilt_axis + d, s, b)[:, rows])
                its = iterations if k == 0 and not quick else max(1, iterations // 2)
                res, proj, x0 = consistency(data, angles, x0=x0, iterations=its, **opts)
                if k == n_rounds:
                    break
                m = len(rows)
                for j, s in enumerate(sc):
                    s[:, 1] += register_across(proj[:, j * m : (j + 1) * m], data[j]) * b
            scores.update(zip(new, res.tolist()))
        return np.array([scores[round(d, 4)] for d in deltas])

    delta = 0.0
    if coarse and max_angle > 0:
        ds = np.arange(-max_angle, max_angle + 1e-9, 2.0)
        delta = float(ds[int(np.argmin(score(list(ds), quick=True)))])
        scores.clear()
        if log:
            log(f"axis scan: angle {tilt_axis + delta:+.2f}°")
    for _ in range(4):  # fine scan, walking while the minimum sits at an end
        ds = delta + np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
        v = score(list(ds))
        i = int(np.argmin(v))
        if 0 < i < len(ds) - 1 or abs(ds[i]) > max_angle + 2:
            break
        delta = float(ds[i])
    delta = _parabola_min(ds, v)
    if log:
        log(f"axis angle: {tilt_axis + delta:+.3f}°")
    # offset: a constant shift across the axis on top of the trial's start shifts
    axis = tilt_axis + delta
    sc = start(delta)
    width = first.shape[2]
    cmax = max(2.0 * b, width * b / 16) if max_offset is None else float(max_offset)
    cs = np.linspace(-cmax, cmax, 2 * int(np.ceil(cmax / b)) + 1)
    data = [canonical_series(series, axis, sc + np.array([0.0, c]), b)[:, rows] for c in cs]
    res, _, _ = consistency(data, angles, iterations=max(1, iterations // 2), **opts)
    c0 = _parabola_min(cs, res)
    cs = c0 + 0.25 * b * np.arange(-2, 3)
    data = [canonical_series(series, axis, sc + np.array([0.0, c]), b)[:, rows] for c in cs]
    res, _, _ = consistency(data, angles, iterations=iterations, **opts)
    offset = _parabola_min(cs, res)
    if log:
        log(f"axis offset: {offset:+.2f} px")
    sc[:, 1] += offset
    return {
        "tilt_axis": float(axis),
        "angle_correction": float(delta),
        "offset": float(offset),
        "shifts_c": fix_reference(sc, angles, ref),
        "residual": float(np.min(res)),
        "trials": len(scores),
    }
