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
from ._declare import Param, method
from ._driver import Problem, Report, Solver, iterate

__all__ = ["sirt"]


def _inverse(t: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    out = torch.zeros_like(t)
    nz = t > eps * float(t.max().clamp_min(1e-30))
    out[nz] = 1.0 / t[nz]
    return out


class _SIRT(Solver):
    label = "SIRT"
    hint = "lower the relaxation"

    def __init__(self, relaxation: float, nonneg: bool) -> None:
        self.relaxation, self.nonneg = relaxation, nonneg

    @torch.no_grad()
    def _weights(self, p: Problem) -> None:
        A, m = p.A, p.mask
        self.p = p
        ones = torch.ones(A.domain_shape, device=A.device, dtype=A.dtype)
        self.R = _inverse(A(ones))
        if m is not None:
            self.R = self.R * m
        self.C = _inverse(A.T(torch.ones_like(p.y) if m is None else m))
        self.y_norm = float(torch.linalg.vector_norm(p.y if m is None else p.y * m))

    @torch.no_grad()
    def _residual(self) -> float:
        self.r = self.p.y - self.p.A(self.x)
        if self.p.mask is not None:
            self.r.mul_(self.p.mask)
        self.loss = float(torch.linalg.vector_norm(self.r)) / max(self.y_norm, 1e-30)
        return self.loss

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
        self.x.add_(self.C * self.p.A.T(self.r * self.R), alpha=self.relaxation)
        if self.nonneg:
            self.x.clamp_(min=0)
        return self._residual()

    def report(self, iteration: int, last: bool) -> Report:
        return Report(self.x, self.loss)

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
        ``loss`` is the relative residual ``||M(A x - y)|| / ||M y||``.
    """
    problem = Problem.build(A, y, mask)
    return iterate(_SIRT(relaxation, nonneg), problem, name="sirt", iterations=iterations,
                   every=every, start=start, x0=x0, resume=resume)
