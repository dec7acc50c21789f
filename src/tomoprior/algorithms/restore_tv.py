"""CS-TV pulled towards the trained network's restoration: a learned prior that fits the data.

``restore`` predicts a volume from a base reconstruction and never looks at
the projections again; CS-TV fits them but only knows that a specimen is
piecewise constant. This method does both: it runs the base reconstruction
and the restoration network (as ``restore`` does), then solves

    min_x  1/2 ||A x - y||^2 + lam TV(x) + mu ||A||^2 / 2 ||x - x_net||^2,   x >= 0

by the same primal-dual iterations as CS-TV, started from the network's
volume ``x_net``. The quadratic term is a Gaussian prior centred on the
network's prediction: where the data determine the volume (inside the
measured wedge) they win; where they do not (the missing wedge, and data no
volume can fit, such as ADF diffraction contrast) the fit stays near the
learned prediction instead of TV's smearing. ``mu`` is relative to the
projector's squared norm, so it does not depend on the volume size or the
number of tilts; ``mu=0`` is CS-TV (started from the network's volume) and
a large ``mu`` returns the network's volume.

The default ``mu`` was chosen on simulated specimens of the training
generator's validation stream, never on the benchmark specimens
(docs/quality.md gives both).

References
----------
.. [1] B. Kelly, T. P. Matthews, M. A. Anastasio, "Deep learning-guided image
   reconstruction from incomplete data", arXiv:1709.00584 (2017).
.. [2] A. Chambolle, T. Pock, J. Math. Imaging Vis. 40, 120 (2011).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError
from ..operators.base import Projector
from ..step import ResumeState, Step
from ._adapt import ADAPT_PARAMS, DEFAULT_LR, AdaptOptions
from ._common import estimate_scale
from ._declare import Param, method
from ._driver import Problem, Report, iterate
from ._network_start import network_volume
from ._restore_model import RestoreModel, load_model
from .cstv import _CSTV, DEFAULT_TOL, OBJECTIVE, SOLVER_PARAMS
from .restore import MODEL_PARAMS

__all__ = ["DEFAULT_MU", "restore_tv"]

DEFAULT_MU = 0.01


class _RestoreTV(_CSTV):
    label = "Restore + TV"
    hint = "the data may be inconsistent; try a larger lam or mu"
    objective = f"{OBJECTIVE} + mu/2*||A||^2*||x-x_net||^2"

    def __init__(self, model: RestoreModel, mu: float, base_iterations: int, batch: int,
                 adapt: AdaptOptions, **cstv: Any) -> None:
        super().__init__(**cstv)
        self.model, self.mu, self.adapt = model, float(mu), adapt
        self.adapted: dict = {}
        self.base_iterations, self.batch = int(base_iterations), int(batch)

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        self.p = p
        x_net, self.adapted = yield from network_volume(
            p, self.model, self.base_iterations, self.batch, start, self.adapt, p.seed)
        self.scale = estimate_scale(p.A, p.y, p.mask)
        self.yn = p.y / self.scale
        self.anchor = x_net.to(p.device, p.A.dtype) / self.scale
        if self.lam == "auto":  # CS-TV's search (from zero, without the prior)
            self.lam, _ = yield from self._search_lambda(torch.zeros_like(self.anchor), start)
        self._start(self.anchor.clone(), None)

    def restore(self, p: Problem, state: Mapping[str, Any], start: int) -> None:
        if float(state["mu"]) != self.mu:
            raise ParameterError(f"the resume state has mu={float(state['mu']):g}; a resumed run "
                                 f"keeps it (got mu={self.mu:g})")
        self.anchor = state["anchor"].to(device=p.device, dtype=p.A.dtype)
        super().restore(p, state, start)

    def report(self, iteration: int, last: bool) -> Report:
        r = super().report(iteration, last)
        if r.loss is not None:  # the prior's share of the objective, in CS-TV's units
            with torch.no_grad():
                d = self.x - self.anchor
                prior = 0.5 * self.mu * self.p.A.norm() ** 2 * float((d * d).sum())
            r.loss += prior
            r.extras["prior"] = prior
        r.extras.update(mu=self.mu, model=self.model.name)
        if last:
            r.extras.update(self.adapted)
        return r

    def state(self) -> dict[str, Any]:
        return {**super().state(), "anchor": self.anchor, "mu": self.mu}


@method(
    "restore_tv", label="Restore + TV (learned prior)", order=36,
    help="CS-TV pulled towards the trained network's restoration: fits the projections like "
    "CS-TV, fills the missing wedge from the network instead of smearing it.",
    params=(
        Param("mu", "Prior weight μ", "Pull towards the network's volume, relative to the "
              "projector (0: CS-TV)", min=0.0, max=100.0, log=True),
        Param("lam", "TV weight λ", "Relative TV weight, or 'auto': CS-TV's choice by the "
              "error on held-out pixels", min=0.0, max=100.0, log=True, allow_auto=True),
        Param("base_iterations", "Base iterations", "Iterations of the SIRT the network "
              "restores (the shipped model was trained on 100)", min=1, max=10000,
              advanced=True),
        *MODEL_PARAMS,
        *ADAPT_PARAMS,
        Param("nonneg", "Non-negative", "Constrain densities to >= 0", advanced=True),
        *SOLVER_PARAMS,
    ),
    citation="Kelly, Matthews, Anastasio, arXiv:1709.00584 (2017); Zhou et al., DLMIA 2018 "
    "(UNet++); Chambolle & Pock, J. Math. Imaging Vis. 40 (2011) 120",
)
def restore_tv(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 300,
    every: int = 10,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    resume: ResumeState | None = None,
    seed: int = 0,
    mu: float = DEFAULT_MU,
    lam: float | str = "auto",
    base_iterations: int = 100,
    model: str = "",
    batch: int = 8,
    adapt: int = 0,
    adapt_loss: str = "wedge",
    adapt_lr: float = DEFAULT_LR,
    adapt_save: str = "",
    nonneg: bool = True,
    adaptive: bool = True,
    val_fraction: float = 0.05,
    lam_rule: str = "median",
    lam_search: str = "sample",
    tol: float = DEFAULT_TOL,
) -> Iterator[Step]:
    """CS-TV with a quadratic prior centred on the restoration network's volume.

    Parameters
    ----------
    A : Projector
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Primal-dual iterations of the final fit.
    every : int
        Snapshot interval.
    mask : bool array like ``y``, optional
        Detector pixels to fit (``False`` = held out by the caller).
    resume : ResumeState, optional
        Continues an earlier run exactly (its network volume, lambda and mu included).
    seed : int
        Seeds the held-out split of ``lam="auto"``.
    mu : float
        Weight of ``||x - x_net||^2 / 2`` relative to ``||A||^2`` (module notes).
    lam, nonneg, adaptive, val_fraction, lam_rule, lam_search, tol
        As for :func:`~tomoprior.algorithms.cstv.cstv`.
    base_iterations : int
        Iterations of the SIRT the network restores.
    model : str
        Path of a restoration model file; empty for the shipped model.
    batch : int
        Slices per network call.
    adapt, adapt_loss, adapt_lr, adapt_save
        Test-time adaptation of the network before it predicts
        (:mod:`~tomoprior.algorithms._adapt`); ``adapt=0`` runs it as shipped.

    Yields
    ------
    Step
        ``phase="base"`` steps (the SIRT), one ``phase="restore"`` step (the
        network's volume), CS-TV's "lambda search" steps with ``lam="auto"``,
        then the fit; ``loss`` is the whole objective (in CS-TV's units), and
        ``extras`` hold its ``data``, ``tv`` and ``prior`` parts.
    """
    if not (np.isfinite(mu) and mu >= 0):
        raise ParameterError(f"mu must be a number >= 0, got {mu}")
    if base_iterations < 1:
        raise ParameterError(f"base_iterations must be >= 1, got {base_iterations}")
    opts = AdaptOptions.check(adapt, adapt_loss, adapt_lr, adapt_save)
    problem = Problem.build(A, y, mask, seed)
    net = load_model(model or None, A.device)  # a bad model file fails before any computation
    solver = _RestoreTV(net, mu, base_iterations, batch, opts, lam=lam, nonneg=nonneg,
                        adaptive=adaptive, val_fraction=val_fraction, lam_rule=lam_rule,
                        iterations=iterations, lam_search=lam_search, tol=tol)
    return iterate(solver, problem, name="restore_tv", iterations=iterations, every=every,
                   start=start, resume=resume)
