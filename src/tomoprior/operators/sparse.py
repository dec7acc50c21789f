"""Fast projector: one 2D system matrix applied to all y-slices at once.

The 2D system matrix ``W`` of the linear (Joseph) parallel-beam projector,
ASTRA's ``linear`` kernel (:mod:`.joseph`, no ASTRA needed), is built once on
the CPU for the slice geometry
``(z, x) -> (tilt, u)``, a few tilts at a time, straight into a CSR matrix
with 32-bit indices in the projector's dtype. Projecting a volume is then a
sparse-dense product whose dense columns are the y-slices, which keeps every
core (or a GPU) busy, where ASTRA's CPU path works one slice at a time.

The adjoint multiplies by the transpose of the same matrix, so it is exact.
On CUDA that is an explicit transposed copy. On the CPU it is scipy's CSC
view of the very buffers of ``W``, no copy: its kernel scatters the rows of
``W`` into the result and releases the GIL, so the calling thread and
``torch.get_num_threads() - 1`` helpers, which end with the call, share the
y-slices.

Memory: ``W`` holds about ``1.7 x z x x x n_tilts`` non-zeros, 8 bytes each
in float32: 66 MB for the needle (256^2, 77 tilts), 0.4 GB for 512^2 and
120 tilts; twice that on CUDA. Products run over groups of y-slices (on the
CPU 16 dense columns, where the kernels are fastest; temporaries below
``max_chunk_bytes``) and write straight into the result.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse
import torch

from .base import Projector
from .joseph import linear_matrix

__all__ = ["SparseProjector", "system_matrix"]

_CACHE: OrderedDict[tuple, _Matrix] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4
_BLOCK_NNZ = 2**20  # non-zeros built per block (about 60 bytes each while building)
_THREADED_WORK = 2**26  # multiply-adds from which the CPU adjoint is worth several threads
_CPU_COLUMNS = 16  # dense columns per product on the CPU: blocks that stay in cache


def system_matrix(angles_deg: np.ndarray, nz: int, nx: int, n_det: int) -> scipy.sparse.csr_matrix:
    """The linear (Joseph) parallel system matrix (scipy CSR, float64), rows ``t*n_det+u``, cols ``z*nx+x``.

    Built by :func:`tomoprior.operators.joseph.linear_matrix`, ASTRA's ``linear``
    kernel without ASTRA.
    """
    return linear_matrix(angles_deg, nz, nx, n_det, dtype=np.float64)


def _build(angles: np.ndarray, nz: int, nx: int, nu: int,
           dtype: np.dtype) -> scipy.sparse.csr_matrix:
    """:func:`system_matrix` in ``dtype`` with int32 indices, a few tilts at a time.

    Every tilt's rows depend on that tilt alone, so the blocks stacked are the
    matrix of all tilts; the build's float64 temporaries exist for one block
    at a time.
    """
    per_block = max(1, _BLOCK_NNZ // (2 * nu * max(nz, nx)))
    indptr, indices, data = [np.zeros(1, np.int32)], [], []
    for i in range(0, angles.size, per_block):
        w = linear_matrix(angles[i : i + per_block], nz, nx, nu, dtype=dtype)
        indptr.append((w.indptr[1:] + int(indptr[-1][-1])).astype(np.int32))
        indices.append(w.indices)
        data.append(w.data)
    data = np.concatenate(data)  # one array at a time: the blocks of the last are freed
    indices = np.concatenate(indices)
    return scipy.sparse.csr_matrix((data, indices, np.concatenate(indptr)),
                                   shape=(angles.size * nu, nz * nx))


def _to_torch_csr(m: scipy.sparse.csr_matrix, device: torch.device) -> torch.Tensor:
    """``m`` as a torch CSR tensor on ``device``; on the CPU it shares ``m``'s buffers."""
    arrays = (torch.from_numpy(m.indptr), torch.from_numpy(m.indices), torch.from_numpy(m.data))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        t = torch.sparse_csr_tensor(*arrays, size=m.shape, check_invariants=False)
    return t.to(device)


class _Matrix:
    """A slice's system matrix ``W`` on a device: products with ``W`` and ``W^T``."""

    def __init__(self, w: scipy.sparse.csr_matrix, device: torch.device) -> None:
        self.nnz = int(w.nnz)
        self.w = _to_torch_csr(w, device)
        # the CPU's W^T is a CSC view of the buffers self.w shares; CUDA's a transposed copy
        self.wt = w.T if device.type == "cpu" else _to_torch_csr(w.T.tocsr(), device)

    @property
    def scatters(self) -> bool:
        """Whether ``W^T`` products run in scipy (the CPU), where they may share threads."""
        return not isinstance(self.wt, torch.Tensor)

    def mm(self, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if not transpose:
            return self.w @ x
        if not self.scatters:
            return self.wt @ x
        return torch.from_numpy(self.wt @ x.detach().numpy())


def _matrix(angles: np.ndarray, nz: int, nx: int, nu: int, dtype: torch.dtype,
            device: torch.device) -> _Matrix:
    key = (tuple(np.round(angles, 9)), nz, nx, nu, dtype, str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    m = _Matrix(_build(angles, nz, nx, nu, np_dtype), device)
    with _CACHE_LOCK:
        _CACHE[key] = m
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return m


class _SparseApply(torch.autograd.Function):
    """``W @ X`` (``W^T @ X``) with gradient ``W^T @ G`` (``W @ G``): differentiable in ``X``."""

    @staticmethod
    def forward(ctx, x, m, transpose):  # type: ignore[override]
        ctx.m, ctx.transpose = m, transpose
        return m.mm(x, transpose)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return ctx.m.mm(g.contiguous(), not ctx.transpose), None, None


def _apply(m: _Matrix, x: torch.Tensor, transpose: bool) -> torch.Tensor:
    if x.requires_grad:
        return _SparseApply.apply(x, m, transpose)
    return m.mm(x, transpose)


class SparseProjector(Projector):
    """Sparse-matrix projector (CPU and CUDA), exact adjoint, autograd-ready."""

    backend = "sparse"

    def __init__(self, *args, max_chunk_bytes: int = 512 * 2**20, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_chunk_bytes = int(max_chunk_bytes)
        z, _, x = self.volume_shape
        self._m = _matrix(self.angles, z, x, self.det_cols, self.dtype, self.device)

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

    def _groups(self, b: int, ny: int, parts: int = 1) -> list[slice]:
        """Groups of y-slices covering ``range(ny)``, at least ``parts`` of them if possible.

        Their temporaries stay below ``max_chunk_bytes``; on the CPU a group is
        also at most ``_CPU_COLUMNS`` dense columns (``b`` per y-slice): with the
        dense block in cache, torch's product runs about four times faster per
        column on the needle than with all 256 at once, scipy's 1.5 times.
        """
        z, _, x = self.volume_shape
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        per_slice = (z * x + self.n_tilts * self.det_cols) * itemsize * 2 * b
        step = max(1, self.max_chunk_bytes // per_slice)
        if self.device.type == "cpu":
            step = min(step, max(1, _CPU_COLUMNS // b))
        step = min(step, -(-ny // parts))
        return [slice(i, min(ny, i + step)) for i in range(0, ny, step)]

    def _forward(self, v: torch.Tensor) -> torch.Tensor:
        b, nz, ny, nx = v.shape
        t, nu = self.n_tilts, self.det_cols
        out = v.new_empty((b, t, ny, nu))
        for sl in self._groups(b, ny):  # torch's product uses every core itself
            k = sl.stop - sl.start
            cols = v[:, :, sl, :].permute(1, 3, 0, 2).reshape(nz * nx, b * k)
            p = _apply(self._m, cols, False)
            out[:, :, sl, :] = p.reshape(t, nu, b, k).permute(2, 0, 3, 1)
        return out

    def _adjoint(self, p: torch.Tensor) -> torch.Tensor:
        b, t, ny, nu = p.shape
        nz, nx = self.volume_shape[0], self.volume_shape[2]
        out = p.new_empty((b, nz, ny, nx))

        def gather(sl: slice) -> torch.Tensor:
            return p[:, :, sl, :].permute(1, 3, 0, 2).reshape(t * nu, -1)

        def scatter(sl: slice, v: torch.Tensor) -> None:
            out[:, :, sl, :] = v.reshape(nz, nx, b, sl.stop - sl.start).permute(2, 0, 3, 1)

        workers = torch.get_num_threads()
        if (workers == 1 or not self._m.scatters or (p.requires_grad and torch.is_grad_enabled())
                or self._m.nnz * b * ny < _THREADED_WORK):
            for sl in self._groups(b, ny):
                scatter(sl, _apply(self._m, gather(sl), True))
            return out
        groups = self._groups(b, ny, workers)
        with ThreadPoolExecutor(workers - 1) as pool:
            for i in range(0, len(groups), workers):
                # the helpers run scipy's kernel only (it releases the GIL); the calling
                # thread gathers, takes a product itself and scatters, so that the
                # helpers' heaps (which glibc does not trim) hold one result at most
                batch = groups[i : i + workers]
                cols = [gather(sl) for sl in batch]
                helpers = [pool.submit(self._m.mm, c, True) for c in cols[1:]]
                scatter(batch[0], self._m.mm(cols[0], True))
                for sl, h in zip(batch[1:], helpers):
                    scatter(sl, h.result())
        return out
