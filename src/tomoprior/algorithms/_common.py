"""Helpers shared by the reconstruction algorithms."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError, GeometryError
from ..operators.base import Projector

__all__ = ["as_tensor", "init_volume", "masked_residual_norm", "release", "snapshot"]


def as_tensor(y: torch.Tensor | np.ndarray, A: Projector, what: str = "tilt series") -> torch.Tensor:
    """``y`` as a tensor on ``A``'s device and dtype, checked against ``A.range_shape``."""
    t = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(y))
    if tuple(t.shape) != tuple(A.range_shape):
        raise GeometryError(f"{what} has shape {tuple(t.shape)}, the projector expects {A.range_shape}")
    t = t.to(device=A.device, dtype=A.dtype)
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"the {what} contains NaN or infinite values")
    return t


def init_volume(A: Projector, x0: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    """A fresh volume tensor: a copy of ``x0`` (warm start) or zeros."""
    if x0 is None:
        return A.zeros_domain()
    t = x0 if isinstance(x0, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x0))
    if tuple(t.shape) != tuple(A.domain_shape):
        raise GeometryError(
            f"warm-start volume has shape {tuple(t.shape)}, expected {A.domain_shape}"
        )
    t = t.detach().to(device=A.device, dtype=A.dtype).clone()
    if not bool(torch.isfinite(t).all()):
        raise DataError("the warm-start volume contains NaN or infinite values")
    return t


def snapshot(x: torch.Tensor) -> np.ndarray:
    """A CPU float32 numpy copy of ``x`` (never a view of a live buffer)."""
    return x.detach().to("cpu", torch.float32).numpy().copy()


def masked_residual_norm(r: torch.Tensor, y_norm: float) -> float:
    return float(torch.linalg.vector_norm(r)) / max(y_norm, 1e-30)


def release(device: torch.device) -> None:
    """Return cached GPU memory after a run (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
