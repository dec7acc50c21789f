"""Helpers shared by the reconstruction algorithms."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError, GeometryError
from ..operators.base import Projector
from ..step import last_step

__all__ = [
    "as_tensor", "init_volume", "masked_residual_norm", "release", "robust_scale", "snapshot",
]


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


def estimate_scale(A: Projector, y: torch.Tensor, mask: torch.Tensor | None = None,
                   iterations: int = 10) -> float:
    """Typical density of the specimen: the 99.5th percentile of a short SIRT.

    Methods divide the data by this scale so that their default parameters
    (TV weights, learning rates) work for any intensity range.
    """
    return quick_sirt(A, y, mask, iterations)[1]


def quick_sirt(A: Projector, y: torch.Tensor, mask: torch.Tensor | None = None,
               iterations: int = 10) -> tuple[torch.Tensor, float]:
    """A short non-negative SIRT and its typical density (see :func:`estimate_scale`)."""
    from .sirt import sirt

    last = last_step(sirt(A, y, iterations=iterations, every=iterations, mask=mask))
    vol = torch.from_numpy(last.volume)
    flat = vol.reshape(-1)
    if flat.numel() > 2_000_000:
        flat = flat[:: flat.numel() // 2_000_000 + 1]
    c = float(torch.quantile(flat.float(), 0.995))
    if not c > 0:
        c = float(vol.abs().max())
    if not c > 0:
        raise DataError("the tilt series is blank (no signal to reconstruct)")
    return vol.to(device=A.device, dtype=A.dtype), c


def validation_split(
    shape: tuple[int, ...], mask: torch.Tensor | None, fraction: float, seed: int, like: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(train, validation)`` float masks of detector pixels.

    A caller's ``mask`` (``True`` = fit) defines the split: its complement is
    the validation set. Without one, ``fraction`` of the pixels are held out
    at random (seeded); with ``fraction == 0`` there is no validation.
    """
    if mask is not None:
        train = mask.to(like.dtype)
        val = 1.0 - train
        return train, (val if float(val.sum()) > 0 else None)
    if fraction <= 0:
        return None, None
    from ..metrics import heldout_mask

    held = torch.from_numpy(heldout_mask(tuple(shape), fraction=fraction, seed=seed)).to(like.device)
    return (~held).to(like.dtype), held.to(like.dtype)


def robust_scale(volume: np.ndarray) -> float:
    """The 99.5th percentile of a volume (its largest value if that is not positive)."""
    flat = np.asarray(volume, np.float32).ravel()
    flat = flat[:: max(1, flat.size // 2_000_000)]
    c = float(np.percentile(flat, 99.5))
    if not c > 0:
        c = float(np.abs(flat).max())
    return c if c > 0 else 1.0
