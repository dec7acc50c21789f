"""The projector contract shared by every backend.

A projector ``A`` maps a volume in the canonical frame (tilt axis along y),
shaped ``(z, y, x)`` or batched ``(b, z, y, x)``, to tilt images
``(n_tilts, y, u)`` (batched ``(b, n_tilts, y, u)``). ``A.T`` is its exact
adjoint. Both accept and return torch tensors, work under autograd, and run
on ``A.device``.

Geometry: parallel beam, single tilt axis along y through the centre of the
volume. At tilt ``theta`` a voxel at centred coordinates ``(z, x)`` lands on
detector coordinate ``u = x cos(theta) - z sin(theta)`` (centred), the
convention of ASTRA's 2D parallel geometry with the slice stored as
``(rows=z, cols=x)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from ..device import resolve_device
from ..errors import GeometryError

__all__ = ["Adjoint", "Projector"]


class Projector(ABC):
    """Abstract tilt-series projector; see the module notes for the contract."""

    backend: str = "abstract"

    def __init__(
        self,
        angles: Sequence[float] | np.ndarray,
        volume_shape: Sequence[int],
        det_cols: int | None = None,
        *,
        device: str | torch.device | None = "auto",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        angles = np.asarray(angles, dtype=np.float64).reshape(-1)
        if angles.size < 1 or not np.all(np.isfinite(angles)):
            raise GeometryError("projector needs at least one finite tilt angle")
        if len(volume_shape) != 3 or min(volume_shape) < 1:
            raise GeometryError(f"volume shape must be (z, y, x) positive, got {volume_shape}")
        self.angles = angles
        self.volume_shape = tuple(int(s) for s in volume_shape)
        z, y, x = self.volume_shape
        self.det_cols = int(det_cols) if det_cols is not None else x
        self.device = resolve_device(device)
        self.dtype = dtype
        self._norm: float | None = None

    # -- contract ------------------------------------------------------------------
    @property
    def domain_shape(self) -> tuple[int, int, int]:
        return self.volume_shape

    @property
    def range_shape(self) -> tuple[int, int, int]:
        return (int(self.angles.size), self.volume_shape[1], self.det_cols)

    @property
    def n_tilts(self) -> int:
        return int(self.angles.size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @property
    def T(self) -> Adjoint:
        return Adjoint(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, batched = self._check(x, self.domain_shape, "volume")
        y = self._forward(x)
        return y if batched else y[0]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        y, batched = self._check(y, self.range_shape, "tilt series")
        x = self._adjoint(y)
        return x if batched else x[0]

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, z, y, x) -> (b, n_tilts, y, u)."""

    @abstractmethod
    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """(b, n_tilts, y, u) -> (b, z, y, x)."""

    @abstractmethod
    def for_slices(self, n_slices: int) -> Projector:
        """The same 2D geometry applied to ``n_slices`` y-slices (shares caches)."""

    # -- helpers --------------------------------------------------------------------------
    def _check(self, t: torch.Tensor, shape: tuple[int, ...], what: str):
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(np.asarray(t))
        batched = t.ndim == 4
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or tuple(t.shape[1:]) != tuple(shape):
            raise GeometryError(
                f"{self.backend} projector expects a {what} of shape {shape} "
                f"(optionally batched), got {tuple(t.shape)}"
            )
        if t.device != self.device or t.dtype != self.dtype:
            t = t.to(device=self.device, dtype=self.dtype)
        return t, batched

    def zeros_domain(self) -> torch.Tensor:
        return torch.zeros(self.domain_shape, device=self.device, dtype=self.dtype)

    def zeros_range(self) -> torch.Tensor:
        return torch.zeros(self.range_shape, device=self.device, dtype=self.dtype)

    def norm(self, iterations: int = 30, seed: int = 0) -> float:
        """Operator norm ``||A||_2`` by power iteration on ``A^T A`` (cached).

        Uses a few y-slices: the 2D geometry is identical for every slice, so
        the norm of the full operator equals that of one slice.
        """
        if self._norm is None:
            op = self.for_slices(min(4, self.volume_shape[1]))
            g = torch.Generator(device="cpu").manual_seed(seed)
            x = torch.rand(op.domain_shape, generator=g, dtype=torch.float64)
            x = x.to(device=op.device, dtype=op.dtype)
            s = 0.0
            with torch.no_grad():
                for _ in range(iterations):
                    x = x / torch.linalg.vector_norm(x)
                    x = op.adjoint(op.forward(x))
                    s = float(torch.linalg.vector_norm(x))
            self._norm = math.sqrt(s)
        return self._norm

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(tilts={self.n_tilts}, volume={self.domain_shape}, "
            f"detector={self.det_cols}, device={self.device}, dtype={self.dtype})"
        )


class Adjoint:
    """``A.T``: applies the adjoint, and ``A.T.T`` is ``A`` again."""

    def __init__(self, op: Projector) -> None:
        self.op = op

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(y)

    @property
    def T(self) -> Projector:
        return self.op

    @property
    def domain_shape(self) -> tuple[int, int, int]:
        return self.op.range_shape

    @property
    def range_shape(self) -> tuple[int, int, int]:
        return self.op.domain_shape

    @property
    def device(self) -> torch.device:
        return self.op.device
