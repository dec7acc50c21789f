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

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..cancel import checkpoint
from ..errors import ParameterError
from ..operators.base import Projector
from ..step import ResumeState, Step
from ._common import estimate_scale, validation_split
from ._declare import Param, method
from ._driver import Problem, Report, Solver, iterate
from ._lambda_search import sample_rows, search_lambda
from ._tv import GRAD_NORM, div3, grad3

__all__ = ["DEFAULT_LAM", "cstv", "cstv_objective"]

DEFAULT_LAM = 0.02
#: what CS-TV's loss is (the data divided by their typical density, ``lam`` relative)
OBJECTIVE = "0.5||M(Ax-y)||^2 + lam*TV(x)"
AUTO_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)  # multiples of DEFAULT_LAM tried by lam="auto"
AUTO_GRID_PATH = tuple(sorted(AUTO_GRID, reverse=True))  # solved strong to weak, warm-started
LAM_RULES = ("median", "mean square")
LAM_SEARCHES = ("sample", "whole")  # where lam="auto" solves its candidates
DEFAULT_TOL = 1e-3  # mean relative change per iteration at which a solve has converged
WINDOW = 10  # iterations the relative change is averaged over  # statistic of the held-out residual that lam="auto" minimises
#: the solver's own parameters, declared once for every method built on :class:`_CSTV`
SOLVER_PARAMS = (
    Param("adaptive", "Adaptive steps", "Residual-balancing primal/dual steps", advanced=True),
    Param("val_fraction", "Validation fraction", "Held-out pixels for lam='auto'",
          min=0.0, max=0.5, advanced=True),
    Param("tol", "Tolerance", "Stop once the volume changes by less than this fraction per "
          "iteration (mean of the last 10); iterations is then a maximum. 0: run them all",
          min=0.0, max=0.1, advanced=True),
    Param("lam_search", "λ search on", "Where lam='auto' is chosen: a few sample slabs of "
          "slices ('sample', quick) or every slice ('whole')", choices=LAM_SEARCHES,
          advanced=True),
    Param("lam_rule", "λ rule", "Statistic of the held-out residual that lam='auto' "
          "minimises", choices=LAM_RULES, advanced=True),
)


def cstv_objective(A: Projector, x: torch.Tensor, y: torch.Tensor, lam_eff: float,
                   mask: torch.Tensor | None = None) -> tuple[float, float, float]:
    """``(objective, data term, TV)`` in the units of ``x`` and ``y``."""
    with torch.no_grad():
        r = A(x) - y
        if mask is not None:
            r = r * mask
        data = 0.5 * float((r * r).sum())
        g = grad3(x)
        tv = float(torch.sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sum())
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
    anchor: torch.Tensor | None = None,
    mu: float = 0.0,
) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Adaptive Chambolle-Pock iterations; yields ``(k, x, info)`` after each.

    ``info["state"]`` (dual variables and step sizes) lets a later call
    continue exactly where this one stopped. With an ``anchor`` volume the
    objective gains ``mu ||A||^2 / 2 ||x - anchor||^2`` (a prior the fit is
    pulled towards; ``mu`` is relative to the projector's squared norm), whose
    proximal map joins the primal step.
    """
    norm_a = A.norm()
    pull = float(mu) * norm_a**2 if anchor is not None else 0.0
    s = norm_a / GRAD_NORM  # grad scaled to the projector's norm
    L = norm_a * 2**0.5  # ||[A; s grad]||
    tau = sigma = 0.99 / L
    alpha, eta, delta = 0.5, 0.95, 1.5
    bound = lam_eff / s  # dual ball radius of the scaled TV term
    x = x.clone()  # the iterates live in this loop's buffers; the caller's start is kept
    if state is not None:  # exact continuation of an earlier call
        p, q = state["p"].to(y, copy=True), state["q"].to(x, copy=True)
        tau, sigma, alpha = state["tau"], state["sigma"], state["alpha"]
    else:
        p = torch.zeros_like(y)  # dual of the data term
        q = x.new_zeros((3, *x.shape))  # dual of the TV term
    ax, gx = A(x), grad3(x).mul_(s)
    atp = A.T(p)
    # Every volume-sized intermediate has a buffer allocated once: at 256³ fresh temporaries
    # (about 4 GB per iteration) cost more in page faults than the projector itself.
    x_old, gx_old, work = torch.empty_like(x), torch.empty_like(gx), torch.empty_like(x)
    norms = x.new_empty((1, *x.shape))
    if adaptive:
        p_old, q_old, work2 = torch.empty_like(p), torch.empty_like(q), torch.empty_like(x)
    for k in range(1, iterations + 1):
        checkpoint()  # a λ search runs many of these between two pictures
        x_old, x = x, x_old  # x_old: the last iterate; x: the buffer the new one goes to
        gx_old, gx = gx, gx_old
        ax_old, atp_old = ax, atp
        # primal step: x <- prox(x_old - tau K^T [p; q]),  K^T [p; q] = A^T p - s div q
        torch.add(atp_old, div3(q, out=work), alpha=-s, out=x)
        x.mul_(-tau).add_(x_old)
        if pull:
            x.add_(anchor, alpha=tau * pull).div_(1 + tau * pull)
        if nonneg:
            x.clamp_(min=0)
        ax = A(x)
        grad3(x, out=gx).mul_(s)
        if adaptive:
            p_old.copy_(p)
            q_old.copy_(q)
        # dual step at the extrapolated point: K x_bar = 2 K x - K x_old
        p.add_(ax, alpha=2 * sigma).sub_(ax_old, alpha=sigma).sub_(y, alpha=sigma)
        p.div_(1 + sigma)
        if mask is not None:
            p.mul_(mask)
        q.add_(gx, alpha=2 * sigma).sub_(gx_old, alpha=sigma)
        # |q| per voxel, component by component (a reduction over the first axis is slow)
        n = torch.mul(q[0], q[0], out=norms[0])
        n.addcmul_(q[1], q[1]).addcmul_(q[2], q[2]).sqrt_()
        q.div_(norms.div_(bound).clamp_(min=1.0))
        atp = A.T(p)
        torch.sub(x, x_old, out=work)  # the step taken
        size = float(torch.linalg.vector_norm(x))
        info: dict = {"tau": tau, "sigma": sigma,
                      "change": float(torch.linalg.vector_norm(work)) / size if size > 0 else 0.0}
        state_now = {"p": p, "q": q, "alpha": alpha}
        if adaptive:
            # residuals of Goldstein et al. (their eq. 7) with K^T dy = A^T dp - s div dq:
            # primal = dx / tau - K^T dy, dx = x_old - x = -work, dy = y_old - y
            dq = q_old.sub_(q)
            r = div3(dq, out=work2).mul_(s).add_(atp).sub_(atp_old).sub_(work, alpha=1 / tau)
            primal = float(torch.linalg.vector_norm(r))
            dp_term = p_old.sub_(p).div_(sigma).sub_(ax_old).add_(ax)  # dp/sigma - (Kx_old-Kx)
            dq_term = dq.div_(sigma).sub_(gx_old).add_(gx)
            dual = float(torch.sqrt(torch.linalg.vector_norm(dp_term) ** 2
                                    + torch.linalg.vector_norm(dq_term) ** 2))
            if primal > delta * dual:
                tau, sigma, alpha = tau / (1 - alpha), sigma * (1 - alpha), alpha * eta
            elif primal < dual / delta:
                tau, sigma, alpha = tau * (1 - alpha), sigma / (1 - alpha), alpha * eta
            info.update(primal_residual=primal, dual_residual=dual)
        state_now.update(tau=tau, sigma=sigma, alpha=alpha)
        info["state"] = state_now
        yield k, x, info


def _settled(changes: list[float], tol: float) -> bool:
    """A full window of relative changes whose mean is below ``tol`` (never when tol is 0)."""
    return tol > 0 and len(changes) == WINDOW and sum(changes) / WINDOW < tol


class _CSTV(Solver):
    label = "CS-TV"
    hint = "the data may be inconsistent; try a larger lam or fewer iterations"
    objective = OBJECTIVE
    anchor: torch.Tensor | None = None  # a prior's centre (restore_tv); CS-TV has none
    mu = 0.0

    def __init__(self, lam: float | str, nonneg: bool, adaptive: bool, val_fraction: float,
                 lam_rule: str, iterations: int, lam_search: str = "sample",
                 tol: float = DEFAULT_TOL) -> None:
        self.lam, self.nonneg, self.adaptive = lam, nonneg, adaptive
        self.tol = float(tol)
        self.changes: list[float] = []  # the last WINDOW relative changes of the iterate
        self.val_fraction, self.lam_rule, self.iterations = val_fraction, lam_rule, iterations
        self.sample_search = lam_search == "sample"
        self.search: list[dict] = []

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        self.p = p
        self.scale = estimate_scale(p.A, p.y, p.mask)
        self.yn = p.y / self.scale
        x = p.start_volume(x0) / self.scale
        if self.lam == "auto":
            self.lam, x = yield from self._search_lambda(x, start)
        self._start(x, None)

    def restore(self, p: Problem, state: Mapping[str, Any], start: int) -> None:
        self.p = p
        self.scale = float(state["scale"])
        self.yn = p.y / self.scale
        if self.lam != "auto" and float(self.lam) != float(state["lam"]):
            raise ParameterError(f"the resume state has lam={float(state['lam']):g}; a resumed run "
                                 f"keeps it (got lam={self.lam})")
        self.lam = float(state["lam"])
        self.changes = list(state.get("changes", ()))
        self.restored_solver = state["solver"]
        self._start(state["x"].to(device=p.A.device, dtype=p.A.dtype).clone(), state["solver"])

    def _start(self, x: torch.Tensor, solver_state: dict | None) -> None:
        self.lam_eff = float(self.lam) * self.p.A.n_tilts
        wy = self.yn if self.p.mask is None else self.yn * self.p.mask
        self.y_norm = float(torch.linalg.vector_norm(wy))  # for the residual
        self.x, self.info = x, {}
        self._it = _pdhg(self.p.A, self.yn, x, self.lam_eff, self.iterations, self.p.mask,
                         self.nonneg, self.adaptive, solver_state, anchor=self.anchor,
                         mu=self.mu)

    def update(self, k: int) -> float | None:
        _, self.x, self.info = next(self._it)
        self.changes = [*self.changes, self.info["change"]][-WINDOW:]
        return self.info.get("primal_residual")

    def converged(self) -> bool:
        return _settled(self.changes, self.tol)

    def report(self, iteration: int, last: bool) -> Report:
        extras = {"lam": float(self.lam)}
        loss = residual = None
        if self.info:
            loss, data, tv = cstv_objective(self.p.A, self.x, self.yn, self.lam_eff, self.p.mask)
            extras.update(data=data, tv=tv,
                          **{n: v for n, v in self.info.items() if n != "state"})
            if self.y_norm > 0:  # the data term is half the squared residual
                residual = (2.0 * data) ** 0.5 / self.y_norm
        return Report(self.x * self.scale, loss, residual,
                      search=tuple(dict(r) for r in self.search), extras=extras)

    def state(self) -> dict[str, Any]:
        solver = self.info.get("state") or getattr(self, "restored_solver", None)
        if solver is None:  # no iteration ran: continue from the start of the solver
            solver = {"p": torch.zeros_like(self.yn), "q": self.x.new_zeros((3, *self.x.shape)),
                      "alpha": 0.5, "tau": 0.99 / (self.p.A.norm() * 2**0.5),
                      "sigma": 0.99 / (self.p.A.norm() * 2**0.5)}
        return {"x": self.x, "scale": self.scale, "lam": float(self.lam), "solver": solver,
                "changes": list(self.changes)}

    def _search_lambda(self, x: torch.Tensor, start: int):
        """``lam="auto"``: the grid's best weight by the error on held-out pixels (see
        :mod:`._lambda_search`); returns ``(lam, x)``, ``x`` the best candidate's volume when
        the whole volume was searched, else the volume the search started from."""
        A, yn, m = self.p.A, self.yn, self.p.mask
        fraction = max(self.val_fraction, 0.01)
        train, valid = self.p.split(fraction)
        if valid is None:  # the caller's mask holds nothing out: split its pixels
            train, valid = validation_split(tuple(yn.shape), None, fraction, self.p.seed, yn)
            train, valid = train * m, valid * m

        def solve(Ap, yp, xp, lam_eff, its, weights):
            changes: list[float] = []
            for _, xk, info in _pdhg(Ap, yp, xp, lam_eff, its, weights, self.nonneg,
                                     self.adaptive):
                yield xk
                changes = [*changes, info["change"]][-WINDOW:]
                if _settled(changes, self.tol):
                    return

        lam, best = yield from search_lambda(
            A, yn, x, train=train, valid=valid, grid=[DEFAULT_LAM * f for f in AUTO_GRID_PATH],
            iterations=max(20, self.iterations // 2), solve=solve, rule=self.lam_rule,
            scale=self.scale, start=start, search=self.search,
            rows=sample_rows(yn) if self.sample_search else None)
        return lam, (x if best is None else best)


@method(
    "cstv", label="CS-TV", order=30,
    help="Total-variation compressed sensing (Chambolle-Pock): sharp edges, piecewise-constant "
    "look; lam='auto' picks the weight by held-out pixels.",
    params=(
        Param("lam", "TV weight λ", "Relative TV weight, or 'auto': chosen from a grid by the "
              "error on held-out pixels", min=0.0, max=100.0, log=True, allow_auto=True),
        Param("nonneg", "Non-negative", "Constrain densities to >= 0"),
        *SOLVER_PARAMS,
    ),
    citation="Sidky, Jorgensen & Pan, Phys. Med. Biol. 57 (2012) 3065; "
    "Chambolle & Pock, J. Math. Imaging Vis. 40 (2011) 120",
)
def cstv(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 200,
    every: int = 10,
    x0: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    resume: ResumeState | None = None,
    seed: int = 0,
    lam: float | str = "auto",
    nonneg: bool = True,
    adaptive: bool = True,
    val_fraction: float = 0.05,
    lam_rule: str = "median",
    lam_search: str = "sample",
    tol: float = DEFAULT_TOL,
) -> Iterator[Step]:
    """CS-TV reconstruction as a generator of :class:`~tomoprior.step.Step`.

    Parameters
    ----------
    A : Projector
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Primal-dual iterations (of the final fit when ``lam="auto"``).
    every : int
        Snapshot interval.
    x0 : volume, optional
        Warm start of the primal variable (dual variables start at zero).
    mask : bool array like ``y``, optional
        Detector pixels to fit (``False`` = held out by the caller).
    resume : ResumeState, optional
        ``step.resume`` of the last Step of an earlier call: continues that
        run exactly (primal and dual variables, step sizes, lambda), so 30
        iterations equal 10 + 10 + 10. ``x0`` instead restarts the solver
        from a volume.
    seed : int
        Seeds the held-out split of ``lam="auto"`` when no ``mask`` is given
        (with a mask, its held-out pixels are the validation set).
    lam : float or "auto"
        Relative TV weight (see module notes); ``"auto"`` chooses it from
        ``AUTO_GRID x DEFAULT_LAM`` by the error on held-out pixels.
    nonneg : bool
        Constrain densities to be non-negative.
    adaptive : bool
        Residual-balancing step sizes (recommended); else fixed balanced steps.
    val_fraction : float
        Held-out fraction used by ``lam="auto"`` when no ``mask`` is given.
    lam_rule : "median" or "mean square"
        Statistic of the held-out residual that ``lam="auto"`` minimises.
        The median follows the bulk of the pixels: on data that no volume
        fits (ADF particles changing brightness from tilt to tilt) the mean
        square rewards the smoothest volume. DIP-TV's warm start uses the
        mean square, which suits its network (see docs/quality_adf_analysis.md).
    tol : float
        The fit (and each λ candidate) stops once the mean relative change of
        the volume per iteration over the last 10 iterations falls below
        ``tol``: ``iterations`` is then a maximum. 0 runs every iteration.
    lam_search : "sample" or "whole"
        Where ``lam="auto"`` solves its candidates: on a few sample slabs of
        y-slices (``"sample"``, a fraction of the cost: λ is one number for
        the whole volume) or on the whole volume, whose best candidate then
        warm-starts the fit. Volumes of at most 36 slices are searched whole
        either way (see :mod:`._lambda_search`).

    Yields
    ------
    Step
        ``loss`` is the objective ``OBJECTIVE`` (the data divided by their
        typical density); ``extras`` hold ``data``,
        ``tv`` and ``lam`` (relative); with ``lam="auto"``, "lambda search"
        steps come first (``heldout`` is each candidate's mean square
        held-out error) and every step carries the search table ``search``.
    """
    problem = Problem.build(A, y, mask, seed)
    solver = _CSTV(lam, nonneg, adaptive, val_fraction, lam_rule, iterations, lam_search, tol)
    return iterate(solver, problem, name="cstv", iterations=iterations, every=every, start=start,
                   x0=x0, resume=resume)
