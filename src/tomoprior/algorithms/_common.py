"""Helpers shared by the reconstruction algorithms."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError, GeometryError
from ..operators.base import Projector
from ..step import last_step

__all__ = [
    "RELATIVE_RESIDUAL", "as_tensor", "init_volume", "relative_residual", "release",
    "residual_ratio", "robust_scale", "snapshot", "typical_density",
]

#: the name of the relative data residual, for methods whose own loss is that residual
RELATIVE_RESIDUAL = "||M(Ax-y)|| / ||My||"


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


@torch.no_grad()
def residual_ratio(r: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None
                   ) -> float | None:
    """``||W r|| / ||W y||`` for a residual ``r = A x - y``; None where ``||W y|| = 0``.

    ``weights`` (0 or 1 per detector pixel, or None for all) selects the
    measured pixels a volume was fitted to. ``r`` and ``y`` may both be
    divided by the same scale. A blank series has no relative residual, so
    it gives None, never NaN.
    """
    wy = y if weights is None else y * weights
    y_norm = float(torch.linalg.vector_norm(wy))
    if not y_norm > 0:
        return None
    wr = r if weights is None else r * weights
    return float(torch.linalg.vector_norm(wr)) / y_norm


@torch.no_grad()
def relative_residual(A: Projector, x: torch.Tensor | np.ndarray, y: torch.Tensor,
                      weights: torch.Tensor | None = None) -> float | None:
    """The relative data residual ``||W (A x - y)|| / ||W y||`` of a volume ``x``.

    The figure every Step reports as ``residual``, whatever the method: one
    forward projection, none when ``||W y|| = 0`` (then None). ``x`` is in
    data units, as a tensor or a CPU array; ``y`` and ``weights`` are on
    ``A``'s device.
    """
    wy = y if weights is None else y * weights
    if not float(torch.linalg.vector_norm(wy)) > 0:
        return None
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    r = A(t.detach().to(device=A.device, dtype=A.dtype))
    r.sub_(y)
    return residual_ratio(r, y, weights)


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
    """A short non-negative SIRT and its typical density (see :func:`estimate_scale`).

    A blank series (no positive density) has the density 1, so the methods
    built on it return a blank volume as SIRT does instead of failing.
    """
    from .sirt import sirt

    last = last_step(sirt(A, y, iterations=iterations, every=iterations, mask=mask))
    vol = torch.from_numpy(last.volume)
    # a blank series has nothing to scale (the engine refuses one up front): density 1
    return vol.to(device=A.device, dtype=A.dtype), typical_density(vol)


def typical_density(vol: torch.Tensor) -> float:
    """The 99.5th percentile of a volume (its largest magnitude if that is not positive;
    1 when it is blank), from at most about 2 million voxels."""
    flat = vol.reshape(-1)
    if flat.numel() > 2_000_000:
        flat = flat[:: flat.numel() // 2_000_000 + 1]
    c = float(torch.quantile(flat.float(), 0.995))
    if not c > 0:
        c = float(vol.abs().max())
    return c if c > 0 else 1.0


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
