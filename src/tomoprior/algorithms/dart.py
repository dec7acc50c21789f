"""DART: the discrete algebraic reconstruction technique, for specimens of a few densities.

A specimen made of a few materials of one density each (vacuum and metal
particles; vacuum, a support and particles) is described by a grey level
per material and a label per voxel. DART uses that knowledge:

1. a SIRT reconstruction is the start (``sirt_iterations``);
2. each iteration segments the volume by the grey levels (thresholds
   half-way between them), fixes the voxels inside a segment to their
   level, and frees the boundary voxels (a neighbour in another segment) and
   a random share ``1 - fix_probability`` of the others;
3. a few SIRT sub-iterations (``sub_iterations``) update the free voxels
   only, against the data left once the fixed voxels are projected;
4. the boundary voxels are smoothed towards their neighbours' mean
   (``smoothing``), which keeps the boundary from growing noise.

The result is the segmentation of the last iterate. The steps carry the
segmented volume (``output="segmented"``, the default) or the continuous
iterate (``output="continuous"``: fixed voxels at their levels, free ones
continuous), and the grey levels in ``extras["levels"]`` (the
``levels`` parameter's format); the last step adds ``extras["level_fit"]``.

With ``levels="auto"`` the levels are found on the histogram of the SIRT
start (:func:`~tomoprior.algorithms._grey_levels.find_levels`), then refined
at every iteration by least squares on the projections of the segmentation,
which corrects the lowered peak of small particles in a missing-wedge
reconstruction (the levels stay below twice the start's top density, so a
specimen that is not few-level cannot send them off).

At the last step the levels are checked: SIRT iterations started from the
segmentation move the voxels whose density the levels miss (the
reconstructed residual error of Roelandts et al.), and
:func:`~tomoprior.algorithms._grey_levels.level_fit` counts the flat voxels
still within a tenth of the level spacing of their level. Below
``POOR_RESIDUAL_FIT`` a one-line warning says that the specimen may not be
made of a few densities.

The random choice of free voxels comes from ``seed`` and the iteration
number, so a run resumed from its last step continues exactly.

References
----------
.. [1] K. J. Batenburg and J. Sijbers, "DART: a practical reconstruction
   algorithm for discrete tomography", IEEE Trans. Image Process. 20,
   2542-2553 (2011).
.. [2] W. van Aarle, K. J. Batenburg, J. Sijbers, "Automatic parameter
   estimation for the discrete algebraic reconstruction technique (DART)",
   IEEE Trans. Image Process. 21, 4608-4621 (2012).
.. [3] T. Roelandts, K. J. Batenburg, A. J. den Dekker, J. Sijbers, "The
   reconstructed residual error: a novel segmentation evaluation measure for
   reconstructed images in tomography", Comput. Vis. Image Underst. 126,
   28-37 (2014).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError, warn
from ..operators.base import Projector
from ..step import ResumeState, Step
from ._common import RELATIVE_RESIDUAL
from ._declare import Param, method
from ._driver import Problem, Report, Solver, iterate
from ._grey_levels import (
    POOR_FIT,
    find_levels,
    format_levels,
    level_fit,
    parse_levels,
    segment,
)

__all__ = ["dart", "fit_levels", "poor_fit_message"]

OUTPUTS = ("segmented", "continuous")
LEVEL_ROUNDS = 3  # least-squares refinements of the auto levels on the start
LEVEL_CEILING = 2.0  # auto levels stay below this multiple of the start's top density
FIT_ITERATIONS = 10  # SIRT iterations from the segmentation for the level fit
FIT_TOLERANCE = 0.1  # ... within which fraction of the level spacing a voxel fits its level
POOR_RESIDUAL_FIT = 0.8  # ... and below which DART warns (docs/dart.md: 1.0 on few-level
#                          specimens, 0.55-0.78 on graded, ADF and many-density ones)
_SEED_STRIDE = 1_000_003  # seed and iteration -> the generator of the free voxels


def poor_fit_message(label: str, fit: float, levels: tuple[float, ...],
                     limit: float = POOR_FIT) -> str:
    """The one-line warning for a volume that ``levels`` describe poorly."""
    return (f"{label}: the {len(levels)} grey levels {format_levels(levels)} fit the volume's "
            f"histogram poorly (level fit {fit:.2f} < {limit:g}): the specimen may not be "
            "made of a few densities (a graded support, ADF diffraction contrast); "
            "compare with SIRT or CS-TV")


def _neighbour_range(labels: torch.Tensor) -> torch.Tensor:
    """True where a voxel's 3x3x3 neighbourhood holds more than one label."""
    v = labels[None, None].to(torch.float32)
    hi = F.max_pool3d(v, 3, stride=1, padding=1)
    lo = -F.max_pool3d(-v, 3, stride=1, padding=1)
    return (hi != lo)[0, 0]


def _box_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of each voxel's 26 neighbours (edges: of those inside the volume)."""
    v = x[None, None]
    total = F.avg_pool3d(v, 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    count = F.avg_pool3d(torch.ones_like(v), 3, stride=1, padding=1, count_include_pad=True)
    n = count[0, 0] * 27  # voxels of the window inside the volume
    return (total * n - x) / (n - 1).clamp_min(1)


@torch.no_grad()
def fit_levels(A: Projector, y: torch.Tensor, labels: torch.Tensor, levels: torch.Tensor,
               mask: torch.Tensor | None = None,
               bounds: tuple[float, float] | None = None) -> torch.Tensor:
    """Grey levels that make the segmentation ``labels`` fit the data best (least squares).

    ``min_l ||M (sum_i l_i A 1[labels = i] - y)||^2``: one projection per level. A
    level whose segment is empty, or a solution that is not strictly increasing, keeps
    the given levels; a level moves by at most half the levels' range at a time, and
    stays within ``bounds``. (Segmenting at thresholds that follow the levels can run
    away on a specimen that is not few-level: a higher level shrinks its segment,
    which then needs a higher level still.)
    """
    n = int(levels.shape[0])
    wy = y if mask is None else y * mask
    cols = []
    for i in range(n):
        b = A((labels == i).to(y.dtype))
        cols.append(b if mask is None else b * mask)
    G = torch.empty((n, n), dtype=torch.float64)
    h = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        h[i] = float((cols[i] * wy).sum())
        for j in range(i, n):
            G[i, j] = G[j, i] = float((cols[i] * cols[j]).sum())
    diag = torch.diagonal(G)
    if not bool((diag > 1e-12 * float(diag.max().clamp_min(1e-30))).all()):
        return levels
    try:
        sol = torch.linalg.solve(G, h)
    except RuntimeError:  # singular: two segments project alike
        return levels
    old = levels.to(torch.float64).cpu()
    reach = 0.5 * float(old[-1] - old[0])
    sol = old + (sol - old).clamp(-reach, reach)
    if bounds is not None:
        sol = sol.clamp(*bounds)
    if not bool(torch.isfinite(sol).all()) or bool((sol[1:] <= sol[:-1]).any()):
        return levels
    return sol.to(device=levels.device, dtype=levels.dtype)


def auto_levels(A: Projector, y: torch.Tensor, x: torch.Tensor, n: int,
                mask: torch.Tensor | None = None, rounds: int = 0
                ) -> tuple[torch.Tensor, tuple[float, float]]:
    """``n`` levels found on ``x``'s histogram, then fitted ``rounds`` times to the
    projections of their segmentation; and the bounds they stay within (up to
    ``LEVEL_CEILING`` times the start's top density)."""
    found = find_levels(x, n)
    levels = torch.tensor(found.levels, dtype=A.dtype, device=A.device)
    flat = x.reshape(-1)[:: max(1, x.numel() // 2_000_000)].float()
    top = float(torch.quantile(flat, 0.999))
    bounds = (min(float(x.min()), 0.0), LEVEL_CEILING * max(top, float(levels[-1])))
    for _ in range(rounds):
        levels = fit_levels(A, y, segment(x, levels), levels, mask, bounds)
    return levels, bounds


class _DART(Solver):
    label = "DART"
    hint = "check the grey levels; try fewer sub-iterations or a smaller smoothing"
    objective = RELATIVE_RESIDUAL  # its loss is the residual of the volume it shows

    def __init__(self, levels: str | tuple[float, ...], n_levels: int, sirt_iterations: int,
                 fix_probability: float, smoothing: float, sub_iterations: int,
                 output: str) -> None:
        self.auto = levels == "auto"
        self.given = None if self.auto else levels
        self.n_levels = int(n_levels) if self.auto else len(levels)
        self.sirt_iterations, self.sub_iterations = int(sirt_iterations), int(sub_iterations)
        self.fix_probability, self.smoothing = float(fix_probability), float(smoothing)
        self.output = output
        self.fit: float | None = None
        self.bounds: tuple[float, float] | None = None  # where the auto levels may go

    # -- set-up ------------------------------------------------------------------------------
    @torch.no_grad()
    def _weights(self, p: Problem) -> None:
        A = p.A
        self.p = p
        one = A.for_slices(1)
        ones = torch.ones(one.range_shape, device=A.device, dtype=A.dtype)
        m = p.mask
        col = one.T(ones) if m is None else A.T(m)
        small = col <= 1e-8 * float(col.max().clamp_min(1e-30))
        self.C = col.reciprocal().masked_fill_(small, 0.0)
        wy = p.y if m is None else p.y * m
        self.y_norm = float(torch.linalg.vector_norm(wy))

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        self._weights(p)
        self.start = start
        if x0 is not None:
            self.x = p.start_volume(x0)
        else:
            self.x = yield from self._sirt_start(p, start)
        if self.auto:
            self.levels = self._auto_levels(p)
        else:
            self.levels = torch.tensor(self.given, dtype=p.A.dtype, device=p.A.device)

    def _auto_levels(self, p: Problem) -> torch.Tensor:
        levels, self.bounds = auto_levels(p.A, p.y, self.x, self.n_levels, p.mask,
                                          LEVEL_ROUNDS)
        return levels

    def _sirt_start(self, p: Problem, start: int) -> Iterator[Step]:
        from .sirt import sirt

        its = self.sirt_iterations
        if its == 0:
            return p.start_volume(None)
        last = None
        for last in sirt(p.A, p.y, iterations=its, every=max(1, its // 5), mask=p.mask):
            yield Step(iteration=start, volume=last.volume.copy(), loss=last.loss,
                       residual=last.residual, objective_name=last.objective_name,
                       phase="sirt start", extras={"sirt_iteration": last.iteration,
                                                   "phase_fraction": last.iteration / its})
        x = torch.from_numpy(last.volume).to(device=p.A.device, dtype=p.A.dtype)
        del last
        return x

    def restore(self, p: Problem, state: Mapping[str, Any], start: int) -> None:
        self._weights(p)
        self.start = start
        self.x = state["x"].to(device=p.A.device, dtype=p.A.dtype).clone()
        self.levels = state["levels"].to(device=p.A.device, dtype=p.A.dtype).clone()
        self.bounds = tuple(state["bounds"]) if state.get("bounds") is not None else None
        if not self.auto and tuple(float(v) for v in self.levels) != tuple(self.given):
            raise ParameterError(f"the resume state has levels={format_levels(self._levels())}; "
                                 f"a resumed run keeps them (got {format_levels(self.given)})")

    # -- iterations ---------------------------------------------------------------------------
    def _levels(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.levels)

    def _free_random(self, iteration: int) -> torch.Tensor:
        """The voxels freed at random in ``iteration``: from the seed and the iteration alone."""
        g = torch.Generator(device="cpu")
        g.manual_seed(self.p.seed * _SEED_STRIDE + iteration)
        draw = torch.rand(self.x.shape, generator=g)
        return (draw >= self.fix_probability).to(self.x.device)

    @torch.no_grad()
    def update(self, k: int) -> float:
        A, y, m = self.p.A, self.p.y, self.p.mask
        labels = segment(self.x, self.levels)
        boundary = _neighbour_range(labels)
        free = boundary | self._free_random(self.start + k)
        self.x = torch.where(free, self.x, self.levels[labels])
        freef = free.to(self.x.dtype)
        rows = A(freef)  # row sums of the free voxels' columns
        small = rows <= 1e-8 * float(rows.max().clamp_min(1e-30))
        R = rows.reciprocal_().masked_fill_(small, 0.0)
        if m is not None:
            R.mul_(m)
        CU = self.C * freef
        for _ in range(self.sub_iterations):
            r = y - A(self.x)
            self.x.add_(A.T(r.mul_(R)).mul_(CU))
        if self.smoothing > 0:
            smooth = torch.lerp(self.x, _box_mean(self.x), self.smoothing)
            self.x = torch.where(boundary, smooth, self.x)
        if self.auto:
            self.levels = fit_levels(A, y, segment(self.x, self.levels), self.levels, m,
                                     self.bounds)
        return None

    def _shown(self) -> torch.Tensor:
        if self.output == "continuous":
            return self.x
        return self.levels[segment(self.x, self.levels)]

    @torch.no_grad()
    def _check_fit(self) -> float | None:
        """The level fit of the segmentation plus its reconstructed residual error: SIRT
        from the segmented volume moves the voxels whose density the levels miss."""
        A, y, m = self.p.A, self.p.y, self.p.mask
        u = self.levels[segment(self.x, self.levels)]
        rows = A(torch.ones_like(u))
        small = rows <= 1e-8 * float(rows.max().clamp_min(1e-30))
        R = rows.reciprocal_().masked_fill_(small, 0.0)
        if m is not None:
            R.mul_(m)
        for _ in range(FIT_ITERATIONS):
            u.add_(A.T((y - A(u)).mul_(R)).mul_(self.C))
        return level_fit(u, self._levels(), tolerance=FIT_TOLERANCE)

    def report(self, iteration: int, last: bool) -> Report:
        vol = self._shown()
        message = None
        if last and self.y_norm > 0:
            self.fit = self._check_fit()
            if self.fit is not None and self.fit < POOR_RESIDUAL_FIT:
                message = poor_fit_message(self.label, self.fit, self._levels(), POOR_RESIDUAL_FIT)
                warn(message)
        residual = None
        if self.y_norm > 0:
            with torch.no_grad():
                r = self.p.A(vol) - self.p.y
                if self.p.mask is not None:
                    r.mul_(self.p.mask)
                residual = float(torch.linalg.vector_norm(r)) / self.y_norm
        extras: dict[str, Any] = {"levels": format_levels(self._levels()),
                                  "n_levels": int(self.levels.shape[0])}
        if self.fit is not None:
            extras["level_fit"] = float(self.fit)
        if message is not None:  # also in the provenance's result
            extras["warning"] = message
        return Report(vol, residual, residual, extras=extras)

    def state(self) -> dict[str, Any]:
        return {"x": self.x, "levels": self.levels, "bounds": self.bounds}


@method(
    "dart", label="DART", order=32,
    help="Discrete tomography for specimens of a few densities (vacuum + particles): SIRT, "
    "then segment by grey levels and refine the boundaries; levels='auto' finds them.",
    params=(
        Param("levels", "Grey levels", "Densities of the materials, lowest first, as a comma "
              "list (e.g. '0,1.5'), or 'auto': found on the SIRT start's histogram and refined "
              "on the projections"),
        Param("n_levels", "Number of levels", "Materials including vacuum, for levels='auto' "
              "(2: vacuum + one material)", min=2, max=5),
        Param("sirt_iterations", "SIRT start iterations", "Iterations of the SIRT start",
              min=0, max=10_000),
        Param("fix_probability", "Fix probability", "Chance that a voxel inside a segment is "
              "held at its level in an iteration (the rest are updated with the boundary)",
              min=0.0, max=1.0),
        Param("smoothing", "Boundary smoothing", "Weight of the neighbours' mean on the boundary "
              "voxels after each iteration (0: none)", min=0.0, max=1.0),
        Param("sub_iterations", "SIRT sub-iterations", "SIRT iterations on the free voxels per "
              "DART iteration", min=1, max=100, advanced=True),
        Param("output", "Output", "What the steps show: the segmentation, or the continuous "
              "iterate (fixed voxels at their levels, free ones continuous)", choices=OUTPUTS,
              advanced=True),
    ),
    citation="Batenburg & Sijbers, IEEE Trans. Image Process. 20 (2011) 2542",
)
def dart(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 50,
    every: int = 5,
    x0: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    resume: ResumeState | None = None,
    seed: int = 0,
    levels: str = "auto",
    n_levels: int = 2,
    sirt_iterations: int = 50,
    fix_probability: float = 0.9,
    smoothing: float = 0.2,
    sub_iterations: int = 3,
    output: str = "segmented",
) -> Iterator[Step]:
    """DART reconstruction as a generator of :class:`~tomoprior.step.Step`.

    Parameters
    ----------
    A : Projector
        Forward model in the canonical frame.
    y : (n_tilts, y, u)
        Tilt series in the canonical frame.
    iterations : int
        DART iterations (after the SIRT start).
    every : int
        Snapshot interval.
    x0 : volume, optional
        Start volume instead of the SIRT start (copied, never modified).
    mask : bool array like ``y``, optional
        Detector pixels to fit (``False`` = held out).
    start : int
        Iterations already done (numbering continues from there).
    resume : ResumeState, optional
        ``step.resume`` of the last Step of an earlier call: continues it exactly
        (the iterate, the levels; the free voxels follow from ``seed`` and the
        iteration number).
    seed : int
        Seeds the random choice of free voxels.
    levels : "auto" or str
        Grey levels, lowest first (``"0,1.5"``), or ``"auto"`` (see module notes).
        Non-finite, unsorted or fewer than two raise ParameterError.
    n_levels : int
        Number of levels found by ``levels="auto"`` (ignored for a given list).
    sirt_iterations : int
        Iterations of the SIRT start (0: start from zeros; ignored with ``x0``).
    fix_probability : float
        Chance that a voxel inside a segment is fixed in an iteration.
    smoothing : float
        Weight of the neighbours' mean given to the boundary voxels.
    sub_iterations : int
        SIRT sub-iterations on the free voxels per DART iteration.
    output : "segmented" or "continuous"
        What the steps' volumes are (see module notes).

    Yields
    ------
    Step
        "sirt start" steps, then DART iterations; ``loss`` (and ``residual``) is
        the relative residual of the step's volume; ``extras["levels"]`` the grey
        levels; on the last step ``extras["level_fit"]`` how well they describe the
        data, and ``extras["warning"]`` the warning's line when poorly.
    """
    parsed = parse_levels(levels)
    problem = Problem.build(A, y, mask, seed)
    solver = _DART(parsed, n_levels, sirt_iterations, fix_probability, smoothing, sub_iterations,
                   output)
    return iterate(solver, problem, name="dart", iterations=iterations, every=every, start=start,
                   x0=x0, resume=resume)
