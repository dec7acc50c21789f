"""SIRT: the simultaneous iterative reconstruction technique.

.. math::

    x_{k+1} = x_k + \\lambda\\, C A^T R\\, M (y - A x_k)

with ``R = 1 / (A 1)`` (inverse row sums), ``C = 1 / (A^T M 1)`` (inverse
column sums), an optional mask ``M`` of the detector pixels used for
fitting (held-out pixels get weight 0), relaxation ``lambda`` and an
optional projection onto ``x >= 0`` after every update.

The state is the volume alone, so a warm start with ``x0`` continues a run
exactly: 30 iterations equal 10 + 10 + 10.

References
----------
.. [1] P. Gilbert, "Iterative methods for the three-dimensional reconstruction
   of an object from projections", J. Theor. Biol. 36, 105-117 (1972).
.. [2] J. Gregor and T. Benson, "Computational analysis and improvement of
   SIRT", IEEE Trans. Med. Imaging 27, 918-924 (2008).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..operators.base import Projector
from ..step import Step
from ._common import as_tensor, init_volume, release, snapshot

__all__ = ["sirt"]


def _inverse(t: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    out = torch.zeros_like(t)
    nz = t > eps * float(t.max().clamp_min(1e-30))
    out[nz] = 1.0 / t[nz]
    return out


def sirt(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 100,
    x0: torch.Tensor | np.ndarray | None = None,
    every: int = 1,
    relaxation: float = 1.0,
    nonneg: bool = True,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    **_: object,
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
    x0 : volume, optional
        Warm start (copied, never modified).
    every : int
        Snapshot interval; the last iteration is always yielded.
    relaxation : float
        Step length ``lambda`` in ``(0, 2)``.
    nonneg : bool
        Clip negative densities after each update.
    mask : bool array like ``y``, optional
        Detector pixels to fit (``False`` = held out).
    start : int
        Iterations already done (numbering continues from there).

    Yields
    ------
    Step
        ``loss`` is the relative residual ``||M(A x - y)|| / ||M y||``.
    """
    if iterations < 0:
        raise ValueError("iterations must be >= 0")
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must lie in (0, 2), got {relaxation}")
    every = max(1, int(every))
    y = as_tensor(y, A)
    x = init_volume(A, x0)
    m = None if mask is None else as_tensor(mask, A, "mask")
    try:
        with torch.no_grad():
            ones = torch.ones(A.domain_shape, device=A.device, dtype=A.dtype)
            R = _inverse(A(ones))
            if m is not None:
                R = R * m
            C = _inverse(A.T(torch.ones_like(y) if m is None else m))
            y_norm = float(torch.linalg.vector_norm(y if m is None else y * m))
        total = start + iterations

        @torch.no_grad()
        def residual() -> tuple[torch.Tensor, float]:
            r = y - A(x)
            if m is not None:
                r.mul_(m)
            return r, float(torch.linalg.vector_norm(r)) / max(y_norm, 1e-30)

        @torch.no_grad()
        def update() -> None:
            x.add_(C * A.T(r * R), alpha=relaxation)
            if nonneg:
                x.clamp_(min=0)

        r, loss = residual()
        if iterations == 0:
            yield Step(start, snapshot(x), loss, {}, total)
            return
        for k in range(1, iterations + 1):
            update()
            r, loss = residual()
            if k % every == 0 or k == iterations:
                yield Step(start + k, snapshot(x), loss, {}, total)
    finally:
        release(A.device)
