"""ASTRA reference projector, for tests and benchmarks.

On the CPU it runs ASTRA's own 2D forward and back projection (``FP`` and
``BP`` with the ``linear`` projector) one y-slice at a time, the way ASTRA is
usually driven from Python. When ``astra.use_cuda()`` is true it uses
ASTRA's 3D CUDA projector over the whole volume instead (``FP3D_CUDA`` /
``BP3D_CUDA`` on a ``parallel3d_vec`` geometry that encodes the same
convention). Data go through numpy, so this backend carries no gradients.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MethodUnavailable
from .base import Projector

__all__ = ["AstraProjector", "astra_available", "astra_system_matrix"]


def astra_available() -> bool:
    """Whether ASTRA can be imported (it is an optional extra, ``[astra]``)."""
    try:
        _astra()
    except MethodUnavailable:
        return False
    return True


def _astra():
    try:
        import astra
    except ImportError:
        raise MethodUnavailable(
            "the 'astra' projector needs the ASTRA Toolbox: pip install 'napari-tomoprior[astra]' "
            "(Linux and Windows), or use --backend sparse"
        ) from None
    return astra


def astra_system_matrix(angles_deg, nz: int, nx: int, n_det: int, kernel: str = "linear"):
    """ASTRA's own 2D parallel system matrix (scipy CSR, float64): the reference.

    Same layout as :func:`tomoprior.operators.joseph.linear_matrix`; ``kernel``
    may also be ``"strip"`` or ``"line"``.
    """
    astra = _astra()
    vg = astra.create_vol_geom(int(nz), int(nx))
    pg = astra.create_proj_geom("parallel", 1.0, int(n_det), np.deg2rad(np.asarray(angles_deg)))
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


class AstraProjector(Projector):
    """ASTRA-driven projector (CPU 2D per slice, or CUDA 3D)."""

    backend = "astra"

    def __init__(self, *args, use_cuda: bool | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        astra = _astra()
        self.use_cuda = bool(astra.use_cuda()) if use_cuda is None else bool(use_cuda)
        z, _, x = self.volume_shape
        rad = np.deg2rad(self.angles)
        self._vg2 = astra.create_vol_geom(z, x)
        self._pg2 = astra.create_proj_geom("parallel", 1.0, self.det_cols, rad)

    def for_slices(self, n_slices: int) -> AstraProjector:
        z, _, x = self.volume_shape
        return AstraProjector(
            self.angles, (z, int(n_slices), x), self.det_cols,
            device=self.device, dtype=self.dtype, use_cuda=self.use_cuda,
        )

    # -- 2D CPU, slice by slice ---------------------------------------------------
    def _run2d(self, algo: str, data: np.ndarray, out_shape) -> np.ndarray:
        astra = _astra()
        pid = astra.create_projector("linear", self._pg2, self._vg2)
        try:
            if algo == "FP":
                in_id = astra.data2d.create("-vol", self._vg2, data)
                out_id = astra.data2d.create("-sino", self._pg2, 0)
                cfg = astra.astra_dict("FP")
                cfg["VolumeDataId"], cfg["ProjectionDataId"] = in_id, out_id
            else:
                in_id = astra.data2d.create("-sino", self._pg2, data)
                out_id = astra.data2d.create("-vol", self._vg2, 0)
                cfg = astra.astra_dict("BP")
                cfg["ProjectionDataId"], cfg["ReconstructionDataId"] = in_id, out_id
            cfg["ProjectorId"] = pid
            aid = astra.algorithm.create(cfg)
            astra.algorithm.run(aid)
            res = astra.data2d.get(out_id)
            astra.algorithm.delete(aid)
            astra.data2d.delete([in_id, out_id])
        finally:
            astra.projector.delete(pid)
        return res.reshape(out_shape)

    # -- 3D CUDA ------------------------------------------------------------------------
    def _geom3d(self, ny: int):
        astra = _astra()
        z, _, x = self.volume_shape
        # ASTRA 3D volume (slices, rows, cols) = our (y, z, x); rotation about ASTRA's z = our y.
        vg = astra.create_vol_geom(z, x, ny)  # rows(Y_astra)=z, cols(X_astra)=x, slices=y
        th = np.deg2rad(self.angles)
        vec = np.zeros((th.size, 12))
        # ray direction d, detector centre 0, u (column) step, v (row) step in ASTRA (x, y, z).
        # ASTRA's Y axis runs opposite to the row index, so our z = -Y_astra.
        # u = x cos t - z sin t  =>  detector u-vector (cos t, sin t, 0) in (X, Y_astra).
        vec[:, 0], vec[:, 1] = -np.sin(th), np.cos(th)
        vec[:, 6], vec[:, 7] = np.cos(th), np.sin(th)
        vec[:, 11] = 1.0
        pg = astra.create_proj_geom("parallel3d_vec", ny, self.det_cols, vec)
        return vg, pg

    def _run3d(self, algo: str, data: np.ndarray) -> np.ndarray:
        astra = _astra()
        ny = self.volume_shape[1]
        vg, pg = self._geom3d(ny)
        if algo == "FP":
            in_id = astra.data3d.create("-vol", vg, np.ascontiguousarray(data.transpose(1, 0, 2)))
            out_id = astra.data3d.create("-sino", pg, 0)
            cfg = astra.astra_dict("FP3D_CUDA")
            cfg["VolumeDataId"], cfg["ProjectionDataId"] = in_id, out_id
        else:
            in_id = astra.data3d.create("-sino", pg, np.ascontiguousarray(data.transpose(1, 0, 2)))
            out_id = astra.data3d.create("-vol", vg, 0)
            cfg = astra.astra_dict("BP3D_CUDA")
            cfg["ProjectionDataId"], cfg["ReconstructionDataId"] = in_id, out_id
        aid = astra.algorithm.create(cfg)
        try:
            astra.algorithm.run(aid)
            res = astra.data3d.get(out_id)
        finally:
            astra.algorithm.delete(aid)
            astra.data3d.delete([in_id, out_id])
        return res.transpose(1, 0, 2)  # (y, t, u) -> (t, y, u) or (y, z, x) -> (z, y, x)

    # -- contract ---------------------------------------------------------------------------
    def _forward(self, v: torch.Tensor) -> torch.Tensor:
        arr = v.detach().cpu().numpy().astype(np.float64 if self.dtype == torch.float64 else np.float32)
        b, nz, ny, nx = arr.shape
        out = np.zeros((b, self.n_tilts, ny, self.det_cols), dtype=arr.dtype)
        for i in range(b):
            if self.use_cuda:
                out[i] = self._run3d("FP", arr[i].astype(np.float32))
            else:
                for j in range(ny):
                    out[i, :, j, :] = self._run2d("FP", arr[i, :, j, :], (self.n_tilts, self.det_cols))
        return torch.from_numpy(out).to(device=self.device, dtype=self.dtype)

    def _adjoint(self, p: torch.Tensor) -> torch.Tensor:
        arr = p.detach().cpu().numpy().astype(np.float64 if self.dtype == torch.float64 else np.float32)
        b, t, ny, nu = arr.shape
        nz, nx = self.volume_shape[0], self.volume_shape[2]
        out = np.zeros((b, nz, ny, nx), dtype=arr.dtype)
        for i in range(b):
            if self.use_cuda:
                out[i] = self._run3d("BP", arr[i].astype(np.float32))
            else:
                for j in range(ny):
                    out[i, :, j, :] = self._run2d("BP", arr[i, :, j, :], (nz, nx))
        return torch.from_numpy(out).to(device=self.device, dtype=self.dtype)
