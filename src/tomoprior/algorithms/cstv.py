"""CS-TV: total-variation regularised least squares (compressed sensing).

Solves

.. math::

    \\min_{x \\ge 0} \\tfrac12 \\|M (A x - y)\\|^2 + \\lambda\\, \\mathrm{TV}(x)

with isotropic 3D TV by the primal-dual hybrid gradient method of Chambolle
and Pock. Two measures make it converge for any lambda and noise level:

* the gradient operator is scaled to the projector's norm, so the two
  blocks of ``K = [A; s grad]`` are balanced;
* the primal and dual step sizes are adapted on the fly by residual
  balancing (Goldstein et al.), so no fixed step ratio has to suit every
  problem.

The data are divided by a typical density (see
:func:`~tomoprior.algorithms._common.estimate_scale`) so that ``lam`` is
relative: the effective weight is ``lam * n_tilts`` in units where the
specimen's density is about 1. ``lam="auto"`` picks lambda from a grid by
the median absolute error on held-out detector pixels.

References
----------
.. [1] A. Chambolle and T. Pock, "A first-order primal-dual algorithm for
   convex problems with applications to imaging", J. Math. Imaging Vis. 40,
   120-145 (2011).
.. [2] T. Goldstein, M. Li, X. Yuan, E. Esser, R. Baraniuk, "Adaptive
   primal-dual hybrid gradient methods for saddle-point problems",
   arXiv:1305.0546 (2013/2015).
.. [3] E. Y. Sidky, J. H. Jorgensen, X. Pan, "Convex optimization problem
   prototyping for image reconstruction in computed tomography with the
   Chambolle-Pock algorithm", Phys. Med. Biol. 57, 3065 (2012).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..operators.base import Projector
from ..step import Step
from ._common import as_tensor, estimate_scale, init_volume, release, snapshot, validation_split
from ._tv import GRAD_NORM, div3, grad3

__all__ = ["DEFAULT_LAM", "cstv", "cstv_objective"]

DEFAULT_LAM = 0.02
AUTO_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)  # multiples of DEFAULT_LAM tried by lam="auto"
LAM_RULES = ("median", "mean square")  # statistic of the held-out residual that lam="auto" minimises


def cstv_objective(A: Projector, x: torch.Tensor, y: torch.Tensor, lam_eff: float,
                   mask: torch.Tensor | None = None) -> tuple[float, float, float]:
    """``(objective, data term, TV)`` in the units of ``x`` and ``y``."""
    with torch.no_grad():
        r = A(x) - y
        if mask is not None:
            r = r * mask
        data = 0.5 * float((r * r).sum())
        g = grad3(x)
        tv = float(torch.sqrt((g * g).sum(0)).sum())
    return data + lam_eff * tv, data, tv


@torch.no_grad()
def _pdhg(
    A: Projector,
    y: torch.Tensor,
    x: torch.Tensor,
    lam_eff: float,
    iterations: int,
    mask: torch.Tensor | None,
    nonneg: bool,
    adaptive: bool,
    state: dict | None = None,
) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Adaptive Chambolle-Pock iterations; yields ``(k, x, info)`` after each.

    ``info["state"]`` (dual variables and step sizes) lets a later call
    continue exactly where this one stopped.
    """
    norm_a = A.norm()
    s = norm_a / GRAD_NORM  # grad scaled to the projector's norm
    L = norm_a * 2**0.5  # ||[A; s grad]||
    tau = sigma = 0.99 / L
    alpha, eta, delta = 0.5, 0.95, 1.5
    bound = lam_eff / s  # dual ball radius of the scaled TV term
    if state is not None:  # exact continuation of an earlier call
        p, q = state["p"].to(y), state["q"].to(x)
        tau, sigma, alpha = state["tau"], state["sigma"], state["alpha"]
    else:
        p = torch.zeros_like(y)  # dual of the data term
        q = x.new_zeros((3, *x.shape))  # dual of the TV term
    ax, gx = A(x), grad3(x) * s
    atp = A.T(p)
    for k in range(1, iterations + 1):
        x_old, atp_old, ax_old, gx_old = x, atp, ax, gx
        # primal step: x <- prox(x - tau K^T [p; q])
        x = x - tau * (atp - s * div3(q))
        if nonneg:
            x.clamp_(min=0)
        ax, gx = A(x), grad3(x) * s
        # dual step at the extrapolated point: K x_bar = 2 K x - K x_old
        p_old, q_old = p, q
        p = (p + sigma * (2 * ax - ax_old) - sigma * y) / (1 + sigma)
        if mask is not None:
            p = p * mask
        q = q + sigma * (2 * gx - gx_old)
        q = q / torch.clamp(torch.sqrt((q * q).sum(0, keepdim=True)) / bound, min=1.0)
        atp = A.T(p)
        info: dict = {"tau": tau, "sigma": sigma}
        state_now = {"p": p, "q": q, "alpha": alpha}
        if adaptive:
            # residuals of Goldstein et al. (their eq. 7) with K^T dy = A^T dp - s div dq
            dx = x_old - x
            kt_dy = (atp_old - atp) - s * div3(q_old - q)
            primal = float(torch.linalg.vector_norm(dx / tau - kt_dy))
            dp_, dq_ = p_old - p, q_old - q
            dual = float(
                torch.sqrt(
                    torch.linalg.vector_norm(dp_ / sigma - (ax_old - ax)) ** 2
                    + torch.linalg.vector_norm(dq_ / sigma - (gx_old - gx)) ** 2
                )
            )
            if primal > delta * dual:
                tau, sigma, alpha = tau / (1 - alpha), sigma * (1 - alpha), alpha * eta
            elif primal < dual / delta:
                tau, sigma, alpha = tau * (1 - alpha), sigma / (1 - alpha), alpha * eta
            info.update(primal_residual=primal, dual_residual=dual)
        state_now.update(tau=tau, sigma=sigma, alpha=alpha)
        info["state"] = state_now
        yield k, x, info


def cstv(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 200,
    lam: float | str = "auto",
    x0: torch.Tensor | np.ndarray | None = None,
    every: int = 10,
    nonneg: bool = True,
    adaptive: bool = True,
    mask: torch.Tensor | np.ndarray | None = None,
    val_fraction: float = 0.05,
    lam_rule: str = "median",
    seed: int = 0,
    start: int = 0,
    resume: dict | None = None,
    **_: object,
) -> Iterator[Step]:
    """CS-TV reconstruction as a generator of :class:`~tomoprior.step.Step`.

    Parameters
    ----------
    A : Projector
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Primal-dual iterations (of the final fit when ``lam="auto"``).
    lam : float or "auto"
        Relative TV weight (see module notes); ``"auto"`` chooses it from
        ``AUTO_GRID x DEFAULT_LAM`` by the error on held-out pixels.
    lam_rule : "median" or "mean square"
        Statistic of the held-out residual that ``lam="auto"`` minimises.
        The median follows the bulk of the pixels: on data that no volume
        fits (ADF particles changing brightness from tilt to tilt) the mean
        square rewards the smoothest volume. DIP-TV's warm start uses the
        mean square, which suits its network (see docs/quality_adf_analysis.md).
    x0 : volume, optional
        Warm start of the primal variable (dual variables start at zero).
    every : int
        Snapshot interval.
    nonneg : bool
        Constrain densities to be non-negative.
    adaptive : bool
        Residual-balancing step sizes (recommended); else fixed balanced steps.
    mask : bool array like ``y``, optional
        Detector pixels to fit (``False`` = held out by the caller).
    val_fraction, seed :
        Held-out split used by ``lam="auto"`` when no ``mask`` is given
        (with a mask, its held-out pixels are the validation set).
    resume : dict, optional
        ``extras["resume"]`` of the last Step of an earlier call: continues
        that run exactly (primal and dual variables, step sizes, lambda), so
        30 iterations equal 10 + 10 + 10. ``x0`` instead restarts the solver
        from a volume.

    Yields
    ------
    Step
        ``loss`` is the objective in data units; ``extras`` hold ``data``,
        ``tv``, ``lam`` (relative) and, with ``lam="auto"``, ``val_loss`` and
        the search table ``lam_search``.
    """
    if lam_rule not in LAM_RULES:
        raise ValueError(f"lam_rule must be one of {LAM_RULES}, got {lam_rule!r}")
    y = as_tensor(y, A)
    m = None if mask is None else as_tensor(mask, A, "mask")
    every = max(1, int(every))
    try:
        search: list[dict] = []
        if resume is not None:
            scale, lam = float(resume["scale"]), float(resume["lam"])
            x = resume["x"].to(device=A.device, dtype=A.dtype).clone()
            yn = y / scale
        else:
            scale = estimate_scale(A, y, m)
            yn = y / scale
            x = init_volume(A, x0) / scale
            if isinstance(lam, str):
                if lam.strip().lower() != "auto":
                    lam = float(lam)
                else:
                    lam, x_best, search = yield from _auto_lambda(
                        A, yn, x, m, iterations, nonneg, adaptive, val_fraction, seed, scale, start,
                        lam_rule,
                    )
                    x = x_best
        lam = float(lam)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        lam_eff = lam * A.n_tilts
        total = start + iterations
        if iterations == 0:
            yield Step(start, snapshot(x * scale), None, {"lam": lam}, total)
            return
        state = None if resume is None else resume["solver"]
        for k, xk, info in _pdhg(A, yn, x, lam_eff, iterations, m, nonneg, adaptive, state):
            if k % every == 0 or k == iterations:
                obj, data, tv = cstv_objective(A, xk, yn, lam_eff, m)
                solver = info.pop("state")
                extras = {"data": data, "tv": tv, "lam": lam, **info}
                if search:
                    extras["lam_search"] = search
                if k == iterations:
                    extras["resume"] = {
                        "x": xk.detach().cpu(), "scale": scale, "lam": lam,
                        "solver": {n: (v.detach().cpu() if torch.is_tensor(v) else v)
                                   for n, v in solver.items()},
                    }
                yield Step(start + k, snapshot(xk * scale), obj, extras, total)
    finally:
        release(A.device)


def _auto_lambda(A, yn, x0, m, iterations, nonneg, adaptive, val_fraction, seed, scale, start,
                 rule="median"):
    """Try each lambda of the grid on a training split; return the best by held-out error.

    Both statistics of the held-out residual are recorded (``val_loss``, the
    mean square, and ``val_median_abs``); ``rule`` says which one decides.
    """
    fraction = max(val_fraction, 0.01)
    train, valid = validation_split(tuple(yn.shape), m, fraction, seed, yn)
    if valid is None:  # the caller's mask holds nothing out: split its pixels
        train, valid = validation_split(tuple(yn.shape), None, fraction, seed, yn)
        train, valid = train * m, valid * m
    held = valid > 0
    n_val = float(valid.sum().clamp_min(1))
    its = max(20, iterations // 2)
    search: list[dict] = []
    best = (np.inf, None, None)
    x = x0
    # from strong to weak regularisation, each warm-started from the previous
    for i, f in enumerate(sorted(AUTO_GRID, reverse=True)):
        lam = DEFAULT_LAM * f
        for _, xk, _info in _pdhg(A, yn, x, lam * A.n_tilts, its, train, nonneg, adaptive):
            x = xk
        with torch.no_grad():
            r = (A(x) - yn) * valid
            val = float((r * r).sum()) / n_val
            mad = float(r[held].abs().median())
        search.append({"lam": lam, "val_loss": val, "val_median_abs": mad})
        score = mad if rule == "median" else val
        if score < best[0]:
            best = (score, lam, x.clone())
        yield Step(
            start, snapshot(x * scale), None,
            {"lam": lam, "val_loss": val, "val_median_abs": mad, "lam_search": list(search),
             "phase": "lambda search",
             "candidate": i + 1, "candidates": len(AUTO_GRID)},
            None,
        )
    return best[1], best[2], search
