"""The measured wedge of a slice across the tilt axis, and the rotate-and-re-wedge loss.

A slice across the tilt axis (``(z, x)`` in the canonical frame) of a
limited-angle reconstruction knows its Fourier transform only inside the
double wedge of directions the tilts measured; the missing wedge around
``k_z`` is empty. Rotating the slice by an angle ``phi`` rotates its spectrum:
the rotated slice knows a rotated wedge. Multiplying the rotated slice's
spectrum by the measured wedge again ("re-wedging") removes what a tilt
series at the original angles would not have measured, so a network can be
trained on the user's own volume to restore what the re-wedging removed,
with the loss counted only where the rotated target was measured (IsoNet;
DeepDeWedge weights twice the part the input lost, and takes input and
target from independent even/odd tilt halves so that noise is not learned).

The sign of the tilt angles in the slice plane is read off the projector
(a back-projected ray of the largest tilt), so the wedge is right for any
asymmetric range and any projector backend.

References
----------
.. [1] Y.-T. Liu et al., "Isotropic reconstruction for electron tomography
   with deep learning", Nat. Commun. 13, 6482 (2022) (IsoNet).
.. [2] S. Wiedemann, R. Heckel, "A deep learning method for simultaneous
   denoising and missing wedge reconstruction in cryogenic electron
   tomography", Nat. Commun. 15, 8255 (2024) (DeepDeWedge).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..operators.base import Projector

__all__ = ["rotate_patches", "slice_plane_angles", "wedge_loss", "wedge_mask"]


@torch.no_grad()
def slice_plane_angles(A: Projector) -> np.ndarray:
    """Direction (degrees, from ``k_x`` towards ``k_z``) of the Fourier line each tilt measures.

    The ray of the largest tilt is back-projected through one slice; the
    principal axis of that line gives the sign the projector gives the angles.
    """
    angles = np.asarray(A.angles, np.float64)
    i = int(np.argmax(np.abs(angles)))
    if abs(angles[i]) < 1e-6:
        return -angles.copy()
    A1 = A.for_slices(1)
    n, _, u = A1.range_shape
    y = torch.zeros((n, 1, u), dtype=A1.dtype, device=A1.device)
    y[i, 0, u // 2] = 1.0
    img = A1.T(y)[:, 0, :].abs().double().cpu()  # (z, x)
    z, x = torch.meshgrid(torch.arange(img.shape[0], dtype=torch.float64),
                          torch.arange(img.shape[1], dtype=torch.float64), indexing="ij")
    w = img / img.sum()
    mz, mx = float((w * z).sum()), float((w * x).sum())
    czz = float((w * (z - mz) ** 2).sum())
    cxx = float((w * (x - mx) ** 2).sum())
    cxz = float((w * (x - mx) * (z - mz)).sum())
    ray = 0.5 * math.degrees(math.atan2(2 * cxz, cxx - czz))  # from x towards z
    line = ray - 90.0  # the measured Fourier line is perpendicular to the ray
    line = (line + 90.0) % 180.0 - 90.0
    sign = 1.0 if line * angles[i] > 0 else -1.0
    return sign * angles


def wedge_mask(size: int, line_angles: np.ndarray, rotation: torch.Tensor | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """1 where a ``size`` x ``size`` patch's spectrum was measured, 0 in the missing wedge.

    ``rotation`` (degrees, one per patch) gives the wedge of patches rotated
    by :func:`rotate_patches` with the same angles: shape ``(n, size, size)``,
    else ``(size, size)``. Frequencies are in :func:`torch.fft.fft2` order.
    """
    a = np.sort(np.asarray(line_angles, np.float64))
    half = 0.5 * float(np.median(np.diff(a))) if a.size > 1 else 1.0
    lo, hi = float(a[0]) - half, float(a[-1]) + half
    k = torch.fft.fftfreq(size, device=device)
    kz, kx = torch.meshgrid(k, k, indexing="ij")
    alpha = torch.rad2deg(torch.atan2(kz, kx))  # (size, size)
    if rotation is not None:
        alpha = alpha[None] - rotation.to(device, torch.float64).float()[:, None, None]
    if hi - lo >= 180.0:
        inside = torch.ones_like(alpha, dtype=torch.bool)
    else:  # line directions are taken modulo 180 degrees
        inside = torch.remainder(alpha - lo, 180.0) <= hi - lo
    dc = (kz == 0) & (kx == 0)
    return (inside | dc).float()


def rotate_patches(images: torch.Tensor, centres: torch.Tensor, angles: torch.Tensor,
                   size: int) -> torch.Tensor:
    """``size`` x ``size`` patches of ``images`` (n, 1, h, w), rotated by ``angles`` (degrees).

    ``centres`` are ``(n, 2)`` pixel positions ``(row, col)`` in each image;
    a patch is bilinear, reflected at the image border. A patch rotated by
    ``phi`` has the spectrum of the image rotated by ``phi`` (the direction
    convention of :func:`wedge_mask`).
    """
    n, _, h, w = images.shape
    t = torch.deg2rad(angles.to(images.device, torch.float32))
    c, s = torch.cos(t), torch.sin(t)
    r = (torch.arange(size, device=images.device, dtype=torch.float32) - (size - 1) / 2)
    pz, px = torch.meshgrid(r, r, indexing="ij")  # patch coordinates (rows, cols)
    # sample the image at R(-phi) p: the patch is the image turned by +phi
    sx = c[:, None, None] * px + s[:, None, None] * pz
    sz = -s[:, None, None] * px + c[:, None, None] * pz
    sz = sz + centres[:, 0, None, None].to(sz)
    sx = sx + centres[:, 1, None, None].to(sx)
    grid = torch.stack((2 * sx / max(w - 1, 1) - 1, 2 * sz / max(h - 1, 1) - 1), dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear",
                         padding_mode="reflection", align_corners=True)


def rewedge(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The patches with the measured wedge ``mask`` applied to their spectra."""
    return torch.fft.ifft2(torch.fft.fft2(patches) * mask).real


def wedge_loss(pred: torch.Tensor, target: torch.Tensor, measured: torch.Tensor,
               rotated: torch.Tensor) -> torch.Tensor:
    """Mean squared spectral error where the rotated target was measured.

    ``measured`` is the wedge the input kept, ``rotated`` the target's
    (rotated) wedge; frequencies the input lost count twice.
    """
    weight = rotated * (2.0 - measured)
    diff = torch.fft.fft2(pred - target) * weight
    return (diff.real ** 2 + diff.imag ** 2).sum() / (weight.sum() * pred[0].numel())
