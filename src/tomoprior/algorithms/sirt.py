"""SIRT: the simultaneous iterative reconstruction technique.

.. math::

    x_{k+1} = x_k + \\lambda\\, C A^T R\\, M (y - A x_k)

with ``R = 1 / (A 1)`` (inverse row sums), ``C = 1 / (A^T M 1)`` (inverse
column sums), an optional mask ``M`` of the detector pixels used for
fitting (held-out pixels get weight 0), relaxation ``lambda`` and an
optional projection onto ``x >= 0`` after every update.

The state is the volume alone, so a warm start with ``x0`` continues a run
exactly: 30 iterations equal 10 + 10 + 10, and ``resume`` does the same.

References
----------
.. [1] P. Gilbert, "Iterative methods for the three-dimensional reconstruction
   of an object from projections", J. Theor. Biol. 36, 105-117 (1972).
.. [2] J. Gregor and T. Benson, "Computational analysis and improvement of
   SIRT", IEEE Trans. Med. Imaging 27, 918-924 (2008).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..operators.base import Projector
from ..step import ResumeState, Step
from ._common import RELATIVE_RESIDUAL
from ._declare import Param, method
from ._driver import Problem, Report, Solver, iterate

__all__ = ["sirt"]


_SLAB_BYTES = 8 * 2**20  # volume + tilt-series bytes of the y-slices updated at a time


def _inverse(t: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 / t`` where ``t > eps * max(t)``, else 0; in place."""
    small = t <= eps * float(t.max().clamp_min(1e-30))
    return t.reciprocal_().masked_fill_(small, 0.0)


def _slabs(A: Projector) -> list[tuple[slice, Projector]]:
    """Groups of y-slices and their projectors, each below ``_SLAB_BYTES`` (volume + series)."""
    z, ny, nx = A.domain_shape
    t, _, nu = A.range_shape
    itemsize = torch.empty((), dtype=A.dtype).element_size()
    k = max(1, _SLAB_BYTES // ((z * nx + t * nu) * itemsize))
    if k >= ny:
        return [(slice(0, ny), A)]
    ops: dict[int, Projector] = {}
    out = []
    for s in range(0, ny, k):
        n = min(ny, s + k) - s
        if n not in ops:
            ops[n] = A.for_slices(n)
        out.append((slice(s, s + n), ops[n]))
    return out


def _part(w: torch.Tensor, sl: slice) -> torch.Tensor:
    """Slices ``sl`` of a weight that is either per y-slice or the same for all (size 1)."""
    return w[:, sl] if w.shape[1] > 1 else w


class _SIRT(Solver):
    """SIRT, a group of y-slices at a time (the projector contract makes them independent).

    Without a mask the weights are the same for every y-slice and are kept
    for one. The update and the residual run in place, group by group, so a
    run holds the volume, the residual and the data, plus one group's
    temporaries; the residual goes before the last snapshot.
    """

    label = "SIRT"
    hint = "lower the relaxation"
    objective = RELATIVE_RESIDUAL  # its loss is the residual itself
    hands_over_state = True

    def __init__(self, relaxation: float, nonneg: bool) -> None:
        self.relaxation, self.nonneg = relaxation, nonneg

    @torch.no_grad()
    def _weights(self, p: Problem) -> None:
        A, m = p.A, p.mask
        self.p = p
        self.slabs = _slabs(A)
        one = A.for_slices(1)
        self.R = _inverse(one(torch.ones(one.domain_shape, device=A.device, dtype=A.dtype)))
        if m is None:
            self.C = _inverse(one.T(torch.ones(one.range_shape, device=A.device, dtype=A.dtype)))
        else:
            self.R = self.R * m
            self.C = _inverse(A.T(m))
        self.y_norm = float(torch.linalg.vector_norm(p.y if m is None else p.y * m))
        self.r = torch.empty_like(p.y)

    @torch.no_grad()
    def _residual(self) -> float:
        y, m = self.p.y, self.p.mask
        for sl, op in self.slabs:
            r = self.r[:, sl]
            torch.sub(y[:, sl], op(self.x[:, sl]), out=r)
            if m is not None:
                r.mul_(m[:, sl])
        self.loss = float(torch.linalg.vector_norm(self.r)) / max(self.y_norm, 1e-30)
        return self.loss

    @property
    def residual(self) -> float | None:
        """The relative residual of the current iterate (None for a blank series)."""
        return self.loss if self.y_norm > 0 else None

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        self._weights(p)
        self.x = p.start_volume(x0)
        self._residual()
        return iter(())

    def restore(self, p: Problem, state: Mapping[str, Any], start: int) -> None:
        self._weights(p)
        self.x = state["x"].to(device=p.A.device, dtype=p.A.dtype).clone()
        self._residual()

    @torch.no_grad()
    def update(self, k: int) -> float:
        for sl, op in self.slabs:
            step = op.T(self.r[:, sl].mul_(_part(self.R, sl))).mul_(_part(self.C, sl))
            x = self.x[:, sl]
            x.add_(step, alpha=self.relaxation)
            if self.nonneg:
                x.clamp_(min=0)
        return self._residual()

    def report(self, iteration: int, last: bool) -> Report:
        if last:  # no update follows: the residual's memory goes before the snapshot
            self.r = None
        return Report(self.x, self.loss, self.residual)

    def state(self) -> dict[str, Any]:
        return {"x": self.x}


@method(
    "sirt", label="SIRT", order=20, separable=True,
    help="Simultaneous iterative reconstruction: robust, smooth, smeared along the missing wedge.",
    params=(
        Param("relaxation", "Relaxation", "Step length (0-2)", min=0.01, max=1.99),
        Param("nonneg", "Non-negative", "Clip negative densities after each update"),
    ),
    citation="Gilbert, J. Theor. Biol. 36 (1972) 105",
)
def sirt(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 100,
    every: int = 5,
    x0: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    resume: ResumeState | None = None,
    relaxation: float = 1.0,
    nonneg: bool = True,
) -> Iterator[Step]:
    """Run SIRT, yielding a :class:`~tomoprior.step.Step` every ``every`` iterations.

    Parameters
    ----------
    A : Projector
        Forward model in the canonical frame.
    y : (n_tilts, y, u)
        Tilt series in the canonical frame.
    iterations : int
        Iterations to run in this call.
    every : int
        Snapshot interval; the last iteration is always yielded.
    x0 : volume, optional
        Warm start (copied, never modified).
    mask : bool array like ``y``, optional
        Detector pixels to fit (``False`` = held out).
    start : int
        Iterations already done (numbering continues from there).
    resume : ResumeState, optional
        ``step.resume`` of the last Step of an earlier call: continues it.
    relaxation : float
        Step length ``lambda`` in ``(0, 2)``.
    nonneg : bool
        Clip negative densities after each update.

    Yields
    ------
    Step
        ``loss`` is the relative residual ``||M(A x - y)|| / ||M y||``, the
        same as ``residual`` (0 for a blank series, whose ``residual`` is None).
    """
    problem = Problem.build(A, y, mask)
    return iterate(_SIRT(relaxation, nonneg), problem, name="sirt", iterations=iterations,
                   every=every, start=start, x0=x0, resume=resume)
