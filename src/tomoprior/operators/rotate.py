"""Matrix-free projector, differentiable in the tilt angles.

Each ray is sampled every ``step`` pixels along the beam with bilinear
interpolation in the ``(z, x)`` plane of every y-slice (``grid_sample`` with
the y-slices as channels), and the samples are summed. The adjoint is the
exact transpose of that sampling (torch's own ``grid_sample`` backward), so
``<A x, y> = <x, A^T y>`` to rounding error.

Because the sample positions are computed from the angles inside the torch
graph, gradients flow to the angles: alignment and INR-style pose learning
can refine tilt-angle offsets through this backend. It needs no system
matrix, so its memory is that of the volume plus one chunk of tilts. It is
slower than the sparse backend on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Projector

__all__ = ["RotateProjector"]


class _GridSampleAdjoint(torch.autograd.Function):
    """Transpose of bilinear ``grid_sample`` (zeros padding, corners aligned)."""

    @staticmethod
    def forward(ctx, g, grid, in_shape):  # type: ignore[override]
        ctx.save_for_backward(grid)
        dummy = torch.zeros(in_shape, dtype=g.dtype, device=g.device)
        grad_in, _ = torch.ops.aten.grid_sampler_2d_backward(
            g.contiguous(), dummy, grid, 0, 0, True, [True, False]
        )
        return grad_in

    @staticmethod
    def backward(ctx, gg):  # type: ignore[override]
        (grid,) = ctx.saved_tensors
        out = F.grid_sample(gg, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out, None, None


class RotateProjector(Projector):
    """Ray-sampling projector; ``angle_offsets`` may carry gradients."""

    backend = "rotate"

    def __init__(self, *args, step: float = 1.0, max_chunk_bytes: int = 256 * 2**20, **kwargs):
        super().__init__(*args, **kwargs)
        z, _, x = self.volume_shape
        if z < 2 or x < 2:
            from ..errors import GeometryError

            raise GeometryError("the rotate projector needs at least 2 voxels in z and x")
        self.step = float(step)
        self.max_chunk_bytes = int(max_chunk_bytes)
        half = 0.5 * math.hypot(z, x) + 1.0
        n = int(math.ceil(half / self.step))
        self._s = torch.arange(-n, n + 1, dtype=torch.float64) * self.step
        self._angles_t = torch.as_tensor(self.angles, dtype=torch.float64)

    def for_slices(self, n_slices: int) -> RotateProjector:
        z, _, x = self.volume_shape
        return RotateProjector(
            self.angles,
            (z, int(n_slices), x),
            self.det_cols,
            device=self.device,
            dtype=self.dtype,
            step=self.step,
            max_chunk_bytes=self.max_chunk_bytes,
        )

    # -- sampling grid ---------------------------------------------------------------
    def _grid(self, theta_deg: torch.Tensor) -> torch.Tensor:
        """Normalised ``(x, z)`` sample positions, shape ``(1, n_t * n_s, n_u, 2)``."""
        z, _, x = self.volume_shape
        dev, dt = self.device, self.dtype
        th = torch.deg2rad(theta_deg.to(device=dev, dtype=dt))
        c, s = torch.cos(th)[:, None, None], torch.sin(th)[:, None, None]
        u = (torch.arange(self.det_cols, device=dev, dtype=dt) - (self.det_cols - 1) / 2)[None, None, :]
        r = self._s.to(device=dev, dtype=dt)[None, :, None]
        px = u * c + r * s  # (t, s, u)
        pz = -u * s + r * c
        gx = px / ((x - 1) / 2)
        gz = pz / ((z - 1) / 2)
        grid = torch.stack((gx, gz), dim=-1)
        return grid.reshape(1, -1, self.det_cols, 2)

    def _tilt_chunks(self, b: int, ny: int):
        per_tilt = b * ny * self._s.numel() * self.det_cols * 4 * 3
        step = max(1, self.max_chunk_bytes // max(per_tilt, 1))
        for i in range(0, self.n_tilts, step):
            yield slice(i, min(self.n_tilts, i + step))

    # -- forward / adjoint ----------------------------------------------------------------
    def project(self, v: torch.Tensor, angle_offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Forward projection with optional per-tilt angle offsets (degrees, differentiable)."""
        v, batched = self._check(v, self.domain_shape, "volume")
        theta = self._angles_t.to(self.device)
        if angle_offsets is not None:
            theta = theta.to(angle_offsets.dtype) + angle_offsets.to(self.device)
        out = self._project(v, theta)
        return out if batched else out[0]

    def _project(self, v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        b, nz, ny, nx = v.shape
        inp = v.permute(0, 2, 1, 3)  # (b, y, z, x): y-slices as channels
        ns = self._s.numel()
        parts = []
        for sl in self._tilt_chunks(b, ny):
            grid = self._grid(theta[sl]).expand(b, -1, -1, -1)
            smp = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            nt = sl.stop - sl.start
            parts.append(smp.reshape(b, ny, nt, ns, self.det_cols).sum(3) * self.step)
        out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        return out.permute(0, 2, 1, 3).contiguous()  # (b, t, y, u)

    def _forward(self, v: torch.Tensor) -> torch.Tensor:
        return self._project(v, self._angles_t)

    def _adjoint(self, p: torch.Tensor) -> torch.Tensor:
        b, t, ny, nu = p.shape
        nz, nx = self.volume_shape[0], self.volume_shape[2]
        ns = self._s.numel()
        g_all = p.permute(0, 2, 1, 3)  # (b, y, t, u)
        acc = None
        for sl in self._tilt_chunks(b, ny):
            nt = sl.stop - sl.start
            grid = self._grid(self._angles_t[sl]).expand(b, -1, -1, -1).contiguous()
            g = g_all[:, :, sl, :].unsqueeze(3).expand(b, ny, nt, ns, nu) * self.step
            g = g.reshape(b, ny, nt * ns, nu)
            part = _GridSampleAdjoint.apply(g, grid, (b, ny, nz, nx))
            acc = part if acc is None else acc + part
        return acc.permute(0, 2, 1, 3).contiguous()  # (b, z, y, x)
