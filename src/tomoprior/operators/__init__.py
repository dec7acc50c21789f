"""Projectors: the forward model of a single-axis tilt series and its adjoint.

Backends
--------
``sparse``
    The fast default (CPU and CUDA): a precomputed 2D system matrix applied
    to all slices in one sparse-dense product.
``rotate``
    Matrix-free ray sampling, differentiable in the tilt angles; used for
    pose refinement and as a second opinion.
``astra``
    ASTRA's own projectors (CPU 2D per slice, or CUDA 3D), the reference in
    tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import MethodUnavailable
from .base import Adjoint, Projector
from .pose import PoseModel, posed_forward
from .rotate import RotateProjector
from .sparse import SparseProjector

__all__ = [
    "BACKENDS",
    "Adjoint",
    "PoseModel",
    "Projector",
    "RotateProjector",
    "SparseProjector",
    "make_projector",
    "posed_forward",
]

BACKENDS = ("sparse", "rotate", "astra")


def make_projector(
    angles: Sequence[float] | np.ndarray,
    volume_shape: Sequence[int],
    det_cols: int | None = None,
    *,
    backend: str = "sparse",
    device: str | torch.device | None = "auto",
    dtype: torch.dtype = torch.float32,
    **kwargs,
) -> Projector:
    """Build a projector for tilt ``angles`` (degrees) and a canonical ``(z, y, x)`` volume."""
    if backend == "sparse":
        return SparseProjector(angles, volume_shape, det_cols, device=device, dtype=dtype, **kwargs)
    if backend == "rotate":
        return RotateProjector(angles, volume_shape, det_cols, device=device, dtype=dtype, **kwargs)
    if backend == "astra":
        from .astra_ref import AstraProjector

        return AstraProjector(angles, volume_shape, det_cols, device=device, dtype=dtype, **kwargs)
    raise MethodUnavailable(f"unknown projector backend {backend!r}: choose from {BACKENDS}")
