"""Fast projector: one 2D system matrix applied to all y-slices at once.

The 2D system matrix of ASTRA's ``linear`` (Joseph) parallel-beam projector
is built once on the CPU for the slice geometry ``(z, x) -> (tilt, u)`` and
stored as a torch CSR matrix with 32-bit indices, together with its
transpose. Projecting a volume is then a single sparse-dense product whose
dense columns are the y-slices, which keeps both CPU cores (or a GPU) busy,
where ASTRA's CPU path works one slice at a time. The adjoint uses the
explicit transpose, so it is exact.

Memory: the matrix holds about ``2 x z x x x n_tilts`` non-zeros (8 bytes
each, twice with the transpose): 0.2 GB for 256^2 and 120 tilts, 0.8 GB for
512^2. Volumes are processed in chunks of y-slices so temporaries stay below
``max_chunk_bytes``.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict

import numpy as np
import torch

from .base import Projector

__all__ = ["SparseProjector", "system_matrix"]

_CACHE: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def system_matrix(angles_deg: np.ndarray, nz: int, nx: int, n_det: int, kernel: str = "linear"):
    """ASTRA 2D parallel system matrix (scipy CSR, float64), rows ``t*n_det+u``, cols ``z*nx+x``."""
    import astra  # imported lazily: astra's import is slow and prints on some systems

    vg = astra.create_vol_geom(int(nz), int(nx))
    pg = astra.create_proj_geom("parallel", 1.0, int(n_det), np.deg2rad(angles_deg))
    pid = astra.create_projector(kernel, pg, vg)
    mid = astra.projector.matrix(pid)
    try:
        w = astra.matrix.get(mid).tocsr()
    finally:
        astra.matrix.delete(mid)
        astra.projector.delete(pid)
    w.eliminate_zeros()
    w.sort_indices()
    return w


def _to_torch_csr(m, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    crow = torch.from_numpy(m.indptr.astype(np.int32))
    col = torch.from_numpy(m.indices.astype(np.int32))
    val = torch.from_numpy(m.data).to(dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        t = torch.sparse_csr_tensor(crow, col, val, size=m.shape, check_invariants=False)
    return t.to(device)


def _matrices(angles: np.ndarray, nz: int, nx: int, nu: int, dtype, device):
    key = (tuple(np.round(angles, 9)), nz, nx, nu, dtype, str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    w = system_matrix(angles, nz, nx, nu)
    pair = (_to_torch_csr(w, dtype, device), _to_torch_csr(w.T.tocsr(), dtype, device))
    with _CACHE_LOCK:
        _CACHE[key] = pair
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return pair


class _SparseApply(torch.autograd.Function):
    """``W @ X`` with gradient ``W^T @ G``: makes the product differentiable in ``X``."""

    @staticmethod
    def forward(ctx, x, w, wt):  # type: ignore[override]
        ctx.wt = wt
        return w @ x

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return ctx.wt @ g.contiguous(), None, None


def _apply(w: torch.Tensor, wt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x.requires_grad:
        return _SparseApply.apply(x, w, wt)
    return w @ x


class SparseProjector(Projector):
    """Sparse-matrix projector (CPU and CUDA), exact adjoint, autograd-ready."""

    backend = "sparse"

    def __init__(self, *args, max_chunk_bytes: int = 512 * 2**20, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_chunk_bytes = int(max_chunk_bytes)
        z, _, x = self.volume_shape
        self._w, self._wt = _matrices(
            self.angles, z, x, self.det_cols, self.dtype, self.device
        )

    def for_slices(self, n_slices: int) -> SparseProjector:
        z, _, x = self.volume_shape
        return SparseProjector(
            self.angles,
            (z, int(n_slices), x),
            self.det_cols,
            device=self.device,
            dtype=self.dtype,
            max_chunk_bytes=self.max_chunk_bytes,
        )

    def _chunks(self, b: int, ny: int):
        z, _, x = self.volume_shape
        per_slice = (z * x + self.n_tilts * self.det_cols) * 4 * 2
        step = max(1, self.max_chunk_bytes // max(per_slice, 1))
        for i in range(0, ny, step):
            yield slice(i, min(ny, i + step))

    def _forward(self, v: torch.Tensor) -> torch.Tensor:
        b, nz, ny, nx = v.shape
        t, nu = self.n_tilts, self.det_cols
        parts = []
        for sl in self._chunks(b, ny):
            k = sl.stop - sl.start
            cols = v[:, :, sl, :].permute(1, 3, 0, 2).reshape(nz * nx, b * k)
            p = _apply(self._w, self._wt, cols)
            parts.append(p.reshape(t, nu, b, k).permute(2, 0, 3, 1))
        return parts[0].contiguous() if len(parts) == 1 else torch.cat(parts, dim=2)

    def _adjoint(self, p: torch.Tensor) -> torch.Tensor:
        b, t, ny, nu = p.shape
        nz, nx = self.volume_shape[0], self.volume_shape[2]
        parts = []
        for sl in self._chunks(b, ny):
            k = sl.stop - sl.start
            cols = p[:, :, sl, :].permute(1, 3, 0, 2).reshape(t * nu, b * k)
            v = _apply(self._wt, self._w, cols)
            parts.append(v.reshape(nz, nx, b, k).permute(2, 0, 3, 1))
        return parts[0].contiguous() if len(parts) == 1 else torch.cat(parts, dim=2)
