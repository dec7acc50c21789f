"""Projection matching: refine per-tilt shifts against reprojections of a reconstruction.

Notes
-----
Each round reconstructs the (binned) series with the current corrections
applied, by non-negative SIRT warm-started from the previous round's
volume, reprojects the volume at every measured tilt, and registers every
image to its reprojection (:func:`~tomoprior.registration.register`,
sub-pixel). The found offsets are added to the corrections. A
reconstruction averages over all tilts, so a misaligned image disagrees
with its reprojection, while the reprojection is only slightly pulled
towards it; the shifts therefore converge over a few rounds [1]_ [2]_
[3]_. Rounds stop when the root-mean-square change of the shifts falls
below ``tol`` pixels. The images are resampled from the raw series in
every round (never resampled twice). The gauge (rigid translations of the
specimen) is left free during the rounds and fixed at the end by the
caller.

References
----------
.. [1] J. C. Dengler, "A multi-resolution approach to the 3D reconstruction
   from an electron microscope tilt series solving the alignment problem
   without gold particles", Ultramicroscopy 30, 337-348 (1989).
.. [2] C. Yang, E. G. Ng and P. A. Penczek, "Unified 3-D structure and
   projection orientation refinement using quasi-Newton algorithm",
   J. Struct. Biol. 149, 53-64 (2005).
.. [3] M. Odstrčil, M. Holler, J. Raabe and M. Guizar-Sicairos, "Alignment
   methods for nanotomography with deep subpixel accuracy", Opt. Express
   27, 36637-36652 (2019).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..algorithms.sirt import sirt
from ..cancel import checkpoint
from ..frames import canonical_series
from ..operators import make_projector
from ..registration import register
from ..step import last_step

__all__ = ["project_match"]


def project_match(
    series: np.ndarray,
    angles: np.ndarray,
    tilt_axis: float,
    shifts_c: np.ndarray,
    *,
    binning: int = 1,
    rounds: int = 8,
    iterations: int = 20,
    tol: float = 0.1,
    thickness: int | None = None,
    device: str | torch.device = "cpu",
    x0: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
    **register_options: Any,
) -> dict:
    """Refine canonical corrections by projection matching.

    Parameters
    ----------
    series : array (n, rows, cols)
        Raw tilt series (input frame).
    angles : array (n,)
    tilt_axis : float
        Axis orientation (degrees), kept fixed.
    shifts_c : array (n, 2)
        Starting canonical corrections ``(along, across)``, full-size pixels.
    binning : int
        Reconstruct and register images binned this much.
    rounds : int
        Largest number of rounds.
    iterations : int
        SIRT iterations per round (the first round runs twice as many).
    tol : float
        Stop when the RMS shift change of a round is below this (full-size pixels).
    thickness : int, optional
        Volume thickness in full-size pixels (default: the width across the axis).
    x0 : array, optional
        Warm start: the ``volume`` of an earlier call with the same binning.
    **register_options
        Passed to :func:`~tomoprior.registration.register`.

    Returns
    -------
    dict
        ``shifts_c`` (refined, gauge not fixed), ``changes`` (RMS change
        per round, full-size pixels), ``residuals`` (relative reprojection
        residual per round), ``volume`` (last canonical reconstruction,
        binned), ``rounds`` (done).
    """
    b = max(1, int(binning))
    s = np.array(shifts_c, dtype=np.float64)
    changes: list[float] = []
    residuals: list[float] = []
    x = None if x0 is None else torch.from_numpy(np.asarray(x0, np.float32))
    A = None
    opts = {"max_shift": 4.0, **register_options}
    for k in range(max(1, int(rounds))):
        checkpoint()
        canon = canonical_series(series, tilt_axis, s, b)
        n, ny, nu = canon.shape
        if A is None:
            nz = nu if thickness is None else max(1, int(thickness) // b)
            A = make_projector(angles, (nz, ny, nu), nu, device=device)
            if x is not None and tuple(x.shape) != (nz, ny, nu):
                x = None
        y = torch.from_numpy(np.ascontiguousarray(canon, np.float32)).to(A.device)
        its = iterations * (2 if x is None else 1)
        last = last_step(sirt(A, y, iterations=its, every=its, x0=x))
        x = torch.from_numpy(last.volume)
        with torch.no_grad():
            proj = A(x.to(A.device)).cpu().numpy()
        residuals.append(float(last.loss))
        t = register(proj, canon, **opts) * b
        s += t
        change = float(np.sqrt(np.mean(np.sum((t - t.mean(axis=0)) ** 2, axis=1))))
        changes.append(change)
        if log:
            log(f"projection matching round {k + 1}: residual {last.loss:.4f}, "
                f"RMS shift change {change:.3f} px")
        if change < tol:
            break
    return {
        "shifts_c": s,
        "changes": changes,
        "residuals": residuals,
        "volume": None if x is None else x.numpy(),
        "rounds": len(changes),
    }
