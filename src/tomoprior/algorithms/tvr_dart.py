"""TVR-DART: discrete tomography relaxed to a soft segmentation, with TV, grey levels learned.

DART's hard segmentation is replaced by a smooth staircase ``S(x)`` through
the grey levels (:func:`~tomoprior.algorithms._grey_levels.soft_segment`),
whose steps have a learnable sharpness ``k``. The volume ``S(x)`` then
minimises

.. math::

    \\tfrac12 \\|M (A S(x) - y)\\|^2 + \\lambda\\, \\mathrm{TV}(S(x))

over ``x``, the grey levels and ``k`` jointly, by Adam with torch autograd
(on the projector's device). The data are divided by a typical density, as
for CS-TV, so ``lam`` is relative and CS-TV's weights carry over.

* **Start.** A CS-TV reconstruction (``warm_start="cstv"``; with
  ``lam="auto"`` its held-out search chooses the weight, which TVR-DART then
  keeps) or SIRT (``"sirt"``; ``lam="auto"`` then searches the weight on
  held-out pixels by solving TVR-DART itself along CS-TV's grid).
* **Grey levels.** ``levels="auto"`` finds ``n_levels`` levels on the start's
  histogram (:func:`~tomoprior.algorithms._grey_levels.find_levels`, on the
  voxels away from edges) and learns them with the volume; a given list is
  learned too unless ``learn_levels`` is off.
* **A faint support.** ``S(x)`` is a staircase, not a hard segmentation:
  a density between two levels (a thin carbon support under metal
  particles) stays reachable on the flank of a step, at the price of a
  larger ``x``, while the voxels of a particle settle on its level.

Steps show ``S(x)`` (``output="soft"``), or its hard segmentation
(``"segmented"``); ``extras`` hold the learned ``levels`` (the ``levels``
parameter's format), ``sharpness``, ``lam`` and ``level_fit``
(:func:`~tomoprior.algorithms._grey_levels.level_fit` of ``S(x)``); below
``POOR_FIT`` the last step warns in one line (also ``extras["warning"]``)
that the specimen may not be made of a few densities.

References
----------
.. [1] X. Zhuge, W. J. Palenstijn, K. J. Batenburg, "TVR-DART: a more robust
   algorithm for discrete tomography from limited projection data with
   automated gray value estimation", IEEE Trans. Image Process. 25, 455-468
   (2016).
.. [2] D. P. Kingma, J. Ba, "Adam: a method for stochastic optimization",
   arXiv:1412.6980 (2014).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError, warn
from ..operators.base import Projector
from ..step import ResumeState, Step
from ._common import estimate_scale, typical_density, validation_split
from ._declare import Param, method
from ._driver import Problem, Report, Solver, iterate
from ._grey_levels import (
    POOR_FIT,
    format_levels,
    level_fit,
    parse_levels,
    segment,
    soft_segment,
)
from ._lambda_search import sample_rows, search_lambda
from ._tv import div3, grad3
from .cstv import AUTO_GRID_PATH, DEFAULT_LAM
from .dart import auto_levels, poor_fit_message

__all__ = ["OBJECTIVE", "tvr_dart"]

OBJECTIVE = "0.5||M(A S(x)-y)||^2 + lam*TV(S(x))"
WARM_STARTS = ("cstv", "sirt")
OUTPUTS = ("soft", "segmented")
_TV_EPS = 1e-8  # smooths |grad S| at 0 (units: density^2)
_LEVEL_LR = 0.2  # the levels' and sharpness' step sizes relative to the volume's


class _TVRDART(Solver):
    label = "TVR-DART"
    hint = "lower the learning rate 'lr' or raise lam"
    objective = OBJECTIVE

    def __init__(self, *, levels: str | tuple[float, ...], n_levels: int, lam: float | str,
                 warm_start: str, warm_iterations: int, sharpness: float, learn_levels: bool,
                 lr: float, val_fraction: float, output: str,
                 iterations: int) -> None:
        self.auto = levels == "auto"
        self.given = None if self.auto else levels
        self.n_levels = int(n_levels) if self.auto else len(levels)
        self.lam, self.warm_start = lam, warm_start
        self.warm_iterations = int(warm_iterations)
        self.sharpness0, self.learn_levels = float(sharpness), bool(learn_levels)
        self.lr, self.val_fraction = float(lr), float(val_fraction)
        self.output, self.iterations = output, int(iterations)
        self.search: list[dict] = []
        self.fit: float | None = None
        self.loss: float | None = None

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        self.p = p
        vol = None if x0 is None else p.start_volume(x0)
        lam = self.lam
        if vol is None or (lam == "auto" and self.warm_start == "cstv"):
            vol, lam = yield from self._warm(p, vol, start)
        self.scale = estimate_scale(p.A, p.y, p.mask) if vol is None else typical_density(vol)
        x = vol / self.scale
        levels = self._initial_levels(x)
        if lam == "auto":
            lam = yield from self._search(x, levels, start)
        self.lam = float(lam)
        self._build(x, levels, math.log(self.sharpness0))

    def _warm(self, p: Problem, vol: torch.Tensor | None, start: int):
        """The start volume (data units) and lam: CS-TV's (its held-out choice) or SIRT's."""
        from .cstv import cstv
        from .sirt import sirt

        its = max(1, self.warm_iterations)
        use_cstv = self.warm_start == "cstv"
        lam = self.lam
        if use_cstv:
            steps = cstv(p.A, p.y, iterations=its, every=max(1, its // 10), mask=p.mask,
                         seed=p.seed, lam=lam, val_fraction=max(self.val_fraction, 0.01))
            part = "CS-TV"
        else:
            steps = sirt(p.A, p.y, iterations=its, every=max(1, its // 5), mask=p.mask)
            part = "SIRT"
        last = None
        for last in steps:
            inner = last.extras.get("phase_fraction")
            if inner is None and last.total:
                inner = last.iteration / last.total
            if last.phase == "lambda search":
                inner = 0.5 * float(inner or 0.0)
            elif use_cstv and lam == "auto":
                inner = 0.5 + 0.5 * float(inner or 0.0)
            yield Step(iteration=start, volume=last.volume.copy(), loss=last.loss,
                       residual=last.residual, objective_name=last.objective_name,
                       phase="warm start", heldout=last.heldout, search=last.search,
                       extras={"warm_part": part, "warm_iteration": last.iteration,
                               **({} if inner is None else {"phase_fraction": float(inner)})})
        if use_cstv:
            lam = float(last.extras["lam"])
            self.search = [dict(r) for r in last.search]
        if vol is None:
            vol = torch.from_numpy(last.volume).to(device=p.device, dtype=p.A.dtype)
        return vol, lam

    def _initial_levels(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        if self.auto:  # the histogram's levels; the iterations learn them from the data
            return auto_levels(p.A, p.y / self.scale, x, self.n_levels, p.mask)[0]
        return torch.tensor(self.given, dtype=p.A.dtype, device=p.device) / self.scale

    def _search(self, x: torch.Tensor, levels: torch.Tensor, start: int):
        """``lam="auto"`` from a SIRT start: TVR-DART solved along CS-TV's grid, scored on
        held-out pixels (see :mod:`._lambda_search`)."""
        p = self.p
        yn = p.y / self.scale
        fraction = max(self.val_fraction, 0.01)
        train, valid = p.split(fraction)
        if valid is None:
            train, valid = validation_split(tuple(yn.shape), None, fraction, p.seed, yn)
            train, valid = train * p.mask, valid * p.mask
        log_k = math.log(self.sharpness0)
        its = max(20, self.iterations // 2)

        def solve(Ap, yp, xp, lam_eff, n, weights):
            model = _Model(xp, levels, log_k, self.learn_levels, self.lr)
            for _ in range(n):
                model.step(Ap, yp, weights, lam_eff)
                with torch.no_grad():  # scored as S(x); the next weight starts from it
                    yield model.volume()

        lam, _ = yield from search_lambda(
            p.A, yn, x, train=train, valid=valid, grid=[DEFAULT_LAM * f for f in AUTO_GRID_PATH],
            iterations=its, solve=solve,
            rule="median", scale=self.scale, start=start, search=self.search,
            rows=sample_rows(yn))
        return lam

    def _build(self, x: torch.Tensor, levels: torch.Tensor, log_k: float) -> None:
        p = self.p
        self.yn = p.y / self.scale
        wy = self.yn if p.mask is None else self.yn * p.mask
        self.y_norm = float(torch.linalg.vector_norm(wy))
        self.lam_eff = self.lam * p.A.n_tilts
        self.model = _Model(x, levels, log_k, self.learn_levels, self.lr)

    def restore(self, p: Problem, state: Mapping[str, Any], start: int) -> None:
        self.p = p
        self.scale = float(state["scale"])
        if self.lam != "auto" and float(self.lam) != float(state["lam"]):
            raise ParameterError(f"the resume state has lam={float(state['lam']):g}; a resumed "
                                 f"run keeps it (got lam={self.lam})")
        self.lam = float(state["lam"])
        dev, dt = p.device, p.A.dtype
        self._build(state["x"].to(device=dev, dtype=dt), state["levels"].to(device=dev, dtype=dt),
                    float(state["log_k"]))
        self.model.load(state["model"])
        self.search = [dict(r) for r in state.get("search", ())]

    # -- iterations ---------------------------------------------------------------------------
    def _levels_tuple(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.model.levels.detach()) if hasattr(self, "model") \
            else ()

    def update(self, k: int) -> float:
        self.loss = self.model.step(self.p.A, self.yn, self.p.mask, self.lam_eff)
        return self.loss

    def report(self, iteration: int, last: bool) -> Report:
        m = self.model
        with torch.no_grad():
            if self.output == "segmented":
                lv = m.levels.detach()
                vol = lv[segment(m.x, lv)]
            else:
                vol = m.volume()
        levels = tuple(v * self.scale for v in self._levels_tuple())
        self.fit = level_fit(vol if self.output == "soft" else m.volume().detach(),
                             self._levels_tuple())
        message = None
        if last and self.y_norm > 0 and self.fit is not None and self.fit < POOR_FIT:
            message = poor_fit_message(self.label, self.fit, levels)
            warn(message)
        extras: dict[str, Any] = {"levels": format_levels(levels), "lam": float(self.lam),
                                  "sharpness": float(math.exp(float(m.log_k.detach()))),
                                  "n_levels": len(levels)}
        if self.fit is not None:
            extras["level_fit"] = float(self.fit)
        if message is not None:  # also in the provenance's result
            extras["warning"] = message
        return Report(vol * self.scale, self.loss, search=tuple(dict(r) for r in self.search),
                      extras=extras)

    def state(self) -> dict[str, Any]:
        m = self.model
        return {"x": m.x.detach(), "levels": m.levels.detach(), "log_k": float(m.log_k.detach()),
                "scale": self.scale, "lam": float(self.lam), "model": m.state(),
                "search": [dict(r) for r in self.search]}


class _SmoothTV(torch.autograd.Function):
    """``sum sqrt(|grad s|^2 + eps)`` with its gradient ``-div(grad s / sqrt(...))`` written
    out: autograd through the differences' slices fills and copies whole volumes."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, eps: float) -> torch.Tensor:
        g = grad3(s.detach(), out=s.new_empty((3, *s.shape)))
        norm = torch.mul(g[0], g[0]).addcmul_(g[1], g[1]).addcmul_(g[2], g[2]).add_(eps).sqrt_()
        ctx.save_for_backward(g.div_(norm))
        return norm.sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (unit,) = ctx.saved_tensors
        return div3(unit, out=torch.empty_like(unit[0])).mul_(-grad_out), None


class _Model:
    """The unknowns (volume, levels, log-sharpness) and their Adam optimiser."""

    def __init__(self, x: torch.Tensor, levels: torch.Tensor, log_k: float,
                 learn_levels: bool, lr: float) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        self.levels = levels.detach().clone().requires_grad_(learn_levels)
        self.log_k = torch.tensor(float(log_k), dtype=x.dtype, device=x.device,
                                  requires_grad=learn_levels)
        groups = [{"params": [self.x], "lr": lr}]
        if learn_levels:
            groups.append({"params": [self.levels, self.log_k], "lr": lr * _LEVEL_LR})
        self.opt = torch.optim.Adam(groups)

    def volume(self) -> torch.Tensor:
        return soft_segment(self.x, self.levels, torch.exp(self.log_k))

    def step(self, A: Projector, y: torch.Tensor, weights: torch.Tensor | None,
             lam_eff: float) -> float:
        self.opt.zero_grad(set_to_none=True)
        s = self.volume()
        r = A(s) - y
        if weights is not None:
            r = r * weights
        loss = 0.5 * (r * r).sum() + lam_eff * _SmoothTV.apply(s, _TV_EPS)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            lv = self.levels
            if lv.requires_grad:  # keep the levels increasing
                for i in range(1, lv.shape[0]):
                    lv[i] = torch.maximum(lv[i], lv[i - 1] + 1e-3)
        return float(loss.detach())

    def state(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict()}

    def load(self, state: Mapping[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])


@method(
    "tvr_dart", label="TVR-DART", order=33,
    help="Discrete tomography relaxed: a soft segmentation with learned grey levels and TV, "
    "started from CS-TV; for particles of a few densities (levels='auto' finds them).",
    params=(
        Param("levels", "Grey levels", "Densities of the materials, lowest first, as a comma "
              "list (e.g. '0,1.5'), or 'auto': found on the start's histogram; both are "
              "learned with the volume unless learn_levels is off"),
        Param("n_levels", "Number of levels", "Materials including vacuum, for levels='auto' "
              "(2: vacuum + one material)", min=2, max=5),
        Param("lam", "TV weight λ", "Relative TV weight (as CS-TV), or 'auto': CS-TV's "
              "held-out choice (warm_start='cstv') or TVR-DART's own search", min=0.0, max=100.0,
              log=True, allow_auto=True),
        Param("warm_start", "Warm start", "Start volume", choices=WARM_STARTS),
        Param("warm_iterations", "Warm-start iterations", "Iterations of the warm start",
              min=1, max=10_000, advanced=True),
        Param("sharpness", "Sharpness", "Initial steepness of the soft segmentation's steps "
              "(learned with the levels)", min=0.5, max=100.0, log=True, advanced=True),
        Param("learn_levels", "Learn levels", "Learn the grey levels and sharpness with the "
              "volume", advanced=True),
        Param("lr", "Learning rate", "Adam step size of the volume (density units)",
              min=1e-5, max=1.0, log=True, advanced=True),
        Param("val_fraction", "Validation fraction", "Held-out pixels for lam='auto'",
              min=0.0, max=0.5, advanced=True),
        Param("output", "Output", "What the steps show: the soft segmentation S(x) or its hard "
              "segmentation", choices=OUTPUTS, advanced=True),
    ),
    citation="Zhuge, Palenstijn & Batenburg, IEEE Trans. Image Process. 25 (2016) 455",
)
def tvr_dart(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 200,
    every: int = 20,
    x0: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    resume: ResumeState | None = None,
    seed: int = 0,
    levels: str = "auto",
    n_levels: int = 2,
    lam: float | str = "auto",
    warm_start: str = "cstv",
    warm_iterations: int = 300,
    sharpness: float = 8.0,
    learn_levels: bool = True,
    lr: float = 0.01,
    val_fraction: float = 0.05,
    output: str = "soft",
) -> Iterator[Step]:
    """TVR-DART reconstruction as a generator of :class:`~tomoprior.step.Step`.

    Parameters
    ----------
    A : Projector
        Forward model in the canonical frame.
    y : (n_tilts, y, u)
        Tilt series in the canonical frame.
    iterations : int
        Adam iterations (after the warm start).
    every : int
        Snapshot interval.
    x0 : volume, optional
        Start volume instead of the warm start (copied, never modified).
    mask : bool array like ``y``, optional
        Detector pixels to fit (``False`` = held out).
    start : int
        Iterations already done (numbering continues from there).
    resume : ResumeState, optional
        ``step.resume`` of the last Step of an earlier call: continues it exactly.
    seed : int
        Seeds the held-out split of ``lam="auto"``.
    levels : "auto" or str
        Grey levels, lowest first (``"0,1.5"``), or ``"auto"``; non-finite, unsorted
        or fewer than two raise ParameterError.
    n_levels : int
        Number of levels found by ``levels="auto"``.
    lam : float or "auto"
        Relative TV weight (see module notes).
    warm_start : "cstv" or "sirt"
        Start volume.
    warm_iterations : int
        Iterations of the warm start.
    sharpness : float
        Initial steepness ``k`` of the soft segmentation.
    learn_levels : bool
        Learn the levels and ``k`` with the volume.
    lr : float
        Adam step size of the volume.
    val_fraction : float
        Held-out fraction of ``lam="auto"`` when no ``mask`` is given.
    output : "soft" or "segmented"
        What the steps' volumes are.

    Yields
    ------
    Step
        "warm start" steps (and "lambda search" ones from a SIRT start), then the
        iterations; ``loss`` is ``OBJECTIVE`` (data divided by their typical density).
    """
    parsed = parse_levels(levels)
    problem = Problem.build(A, y, mask, seed)
    solver = _TVRDART(levels=parsed, n_levels=n_levels, lam=lam, warm_start=warm_start,
                      warm_iterations=warm_iterations, sharpness=sharpness,
                      learn_levels=learn_levels, lr=lr,
                      val_fraction=val_fraction, output=output, iterations=iterations)
    return iterate(solver, problem, name="tvr_dart", iterations=iterations, every=every,
                   start=start, x0=x0, resume=resume)
