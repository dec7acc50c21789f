"""Image-plane transforms of tilt series: shift, rotate, bin, orient.

All rotations follow the package convention: a positive angle turns image
content from the ``+x`` (column) direction towards ``+y`` (row), about the
image centre ``((rows - 1) / 2, (cols - 1) / 2)``.

The reconstruction engine works in a *canonical* frame in which the tilt
axis is vertical (along y, the rows), so that every y-slice of the volume is
an independent 2D problem. :func:`to_canonical` brings a tilt series into
that frame (applying the geometry's shift corrections and the fine axis
rotation in one resampling, and exact 90° turns without resampling), and
:func:`volume_from_canonical` brings the reconstructed volume back so that
its ``y, x`` match the input images at 0° tilt.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .geometry import TiltGeometry

__all__ = [
    "bin_images",
    "canonical_turns",
    "compose_corrections",
    "orient_images",
    "rotate_vectors",
    "series_from_canonical",
    "to_canonical",
    "volume_from_canonical",
    "warp_images",
]


def warp_images(
    images: torch.Tensor,
    shifts: torch.Tensor | None = None,
    rotation_deg: torch.Tensor | float | None = None,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    inverse: bool = False,
) -> torch.Tensor:
    """Rotate then shift each image; differentiable in images and parameters.

    Content at pixel ``q`` moves to ``R(rotation) (q - c) + c + shift``.
    With ``inverse=True`` the inverse map is applied in one resampling: the
    output at ``q`` shows the input at ``R(rotation) (q - c) + c + shift``.

    Parameters
    ----------
    images : tensor (n, rows, cols)
    shifts : tensor (n, 2), optional
        ``(dy, dx)`` per image in pixels.
    rotation_deg : tensor (n,) or float, optional
        In-plane rotation per image (or one for all) in degrees.
    """
    n, h, w = images.shape
    dev, dt = images.device, images.dtype
    if shifts is None and rotation_deg is None:
        return images
    ys = torch.arange(h, device=dev, dtype=dt) - (h - 1) / 2
    xs = torch.arange(w, device=dev, dtype=dt) - (w - 1) / 2
    py, px = torch.meshgrid(ys, xs, indexing="ij")  # output pixel coords (centred)
    py = py.expand(n, h, w)
    px = px.expand(n, h, w)
    s = None if shifts is None else torch.as_tensor(shifts, device=dev, dtype=dt).reshape(n, 2)
    if rotation_deg is not None:
        r = torch.as_tensor(rotation_deg, device=dev, dtype=dt)
        r = torch.deg2rad(r).reshape(-1, 1, 1).expand(n, 1, 1)
        c, sn = torch.cos(r), torch.sin(r)
    if not inverse:
        # output p samples the input at R(-r) (p - s)
        if s is not None:
            py = py - s[:, 0, None, None]
            px = px - s[:, 1, None, None]
        if rotation_deg is not None:
            px, py = c * px + sn * py, -sn * px + c * py
    else:
        # output q samples the input at R(r) q + s
        if rotation_deg is not None:
            px, py = c * px - sn * py, sn * px + c * py
        if s is not None:
            py = py + s[:, 0, None, None]
            px = px + s[:, 1, None, None]
    gx = (2 * (px + (w - 1) / 2) + 1) / w - 1
    gy = (2 * (py + (h - 1) / 2) + 1) / h - 1
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(
        images[:, None], grid, mode=mode, padding_mode=padding_mode, align_corners=False
    )
    return out[:, 0]


def bin_images(series: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of each image (remainder cropped)."""
    factor = int(factor)
    if factor <= 1:
        return series
    n, h, w = series.shape
    h2, w2 = h // factor, w // factor
    if h2 < 1 or w2 < 1:
        raise DataError(f"binning by {factor} leaves no pixels of a {h}x{w} image")
    s = np.asarray(series[:, : h2 * factor, : w2 * factor], dtype=np.float32)
    return s.reshape(n, h2, factor, w2, factor).mean(axis=(2, 4), dtype=np.float32)


def canonical_turns(tilt_axis: float) -> tuple[int, float]:
    """Quarter turns ``k`` and residual rotation bringing the axis to vertical.

    The image content is rotated by ``90 k + residual`` degrees in total,
    with ``|residual| <= 45``.
    """
    phi = 90.0 - float(tilt_axis)
    k = int(round(phi / 90.0))
    residual = phi - 90.0 * k
    return k % 4, residual


def _rot90_content(a: np.ndarray, k: int) -> np.ndarray:
    """Rotate image content by ``90 k`` degrees (x towards y) in the last two axes."""
    return np.rot90(a, -k, axes=(-2, -1))


def to_canonical(
    series: np.ndarray, geometry: TiltGeometry, *, apply_shifts: bool = True
) -> np.ndarray:
    """Bring a tilt series into the canonical frame (tilt axis vertical).

    Shift corrections and the fine (non-quarter-turn) part of the axis
    rotation are applied in one bilinear resampling; quarter turns are exact.
    """
    return orient_images(series, geometry.tilt_axis, geometry.shifts if apply_shifts else None)


def orient_images(series: np.ndarray, tilt_axis: float, shifts: np.ndarray | None = None) -> np.ndarray:
    """:func:`to_canonical` for any number of images, from the axis and shifts alone."""
    k, residual = canonical_turns(tilt_axis)
    out = np.asarray(series, dtype=np.float32)
    has_shift = shifts is not None and np.any(shifts != 0)
    if has_shift or abs(residual) > 1e-9:
        t = torch.from_numpy(np.ascontiguousarray(out))
        sh = torch.from_numpy(np.asarray(shifts, np.float32)) if has_shift else None
        rot = float(residual) if abs(residual) > 1e-9 else None
        with torch.no_grad():
            out = warp_images(t, sh, rot, padding_mode="border").numpy()
    return np.ascontiguousarray(_rot90_content(out, k))


def series_from_canonical(series_c: np.ndarray, geometry: TiltGeometry) -> np.ndarray:
    """Inverse of :func:`to_canonical`: images as the microscope would record them.

    Used by simulation: canonical projections are turned back, rotated by the
    negative residual and displaced by the negative shift corrections.
    """
    k, residual = canonical_turns(geometry.tilt_axis)
    out = np.ascontiguousarray(_rot90_content(np.asarray(series_c, np.float32), -k))
    has_shift = np.any(geometry.shifts != 0)
    if has_shift or abs(residual) > 1e-9:
        t = torch.from_numpy(out)
        with torch.no_grad():
            # to_canonical maps q -> R(r) q + s; its inverse shifts by -s, then turns by -r
            if has_shift:
                t = warp_images(t, -torch.from_numpy(geometry.shifts).float(), None)
            if abs(residual) > 1e-9:
                t = warp_images(t, None, -float(residual))
        out = t.numpy()
    return np.ascontiguousarray(out)


def volume_from_canonical(
    volume_c: np.ndarray, geometry: TiltGeometry, *, copy: bool = True
) -> np.ndarray:
    """Turn a canonical ``(z, y, x)`` volume back to the input image frame.

    Quarter turns are undone exactly; a fine axis rotation is not undone, so
    the volume lies in the frame of the axis-corrected images. With
    ``copy=False`` the result is a view of ``volume_c`` (strided, read it as
    any array) and costs no memory.
    """
    k, _ = canonical_turns(geometry.tilt_axis)
    turned = _rot90_content(volume_c, -k)
    return np.ascontiguousarray(turned) if copy else turned


def volume_to_canonical(volume: np.ndarray, geometry: TiltGeometry) -> np.ndarray:
    """Inverse of :func:`volume_from_canonical` (quarter turns only)."""
    k, _ = canonical_turns(geometry.tilt_axis)
    return np.ascontiguousarray(_rot90_content(volume, k))


def rotate_vectors(v: np.ndarray, deg: float) -> np.ndarray:
    """Rotate ``(dy, dx)`` vectors by ``deg`` (from +x towards +y)."""
    v = np.asarray(v, dtype=np.float64).reshape(-1, 2)
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    out = np.empty_like(v)
    out[:, 1] = c * v[:, 1] - s * v[:, 0]
    out[:, 0] = s * v[:, 1] + c * v[:, 0]
    return np.round(out, 12) if deg % 90 == 0 else out


def compose_corrections(
    geometry: TiltGeometry,
    shifts_c: np.ndarray,
    rotation_c: float,
    angle_offsets: np.ndarray | None = None,
) -> TiltGeometry:
    """Fold corrections found in the canonical frame back into a raw-frame geometry.

    A method that aligns the canonical series (content at ``q`` moving to
    ``R(rotation_c) (q - c) + c + shifts_c``) leaves the input images
    aligned by ``to_canonical(raw, result)`` where ``result`` has the axis
    ``tilt_axis - rotation_c`` and shifts ``R(rotation_c) s0 + Q^-1 shifts_c``
    (``s0`` the geometry's own shifts, ``Q`` its quarter turns).
    """
    k, _ = canonical_turns(geometry.tilt_axis)
    shifts = rotate_vectors(geometry.shifts, rotation_c) + rotate_vectors(shifts_c, -90.0 * k)
    angles = geometry.angles if angle_offsets is None else geometry.angles + np.asarray(angle_offsets)
    return geometry.replace(
        angles=angles, tilt_axis=geometry.tilt_axis - float(rotation_c), shifts=np.round(shifts, 6)
    )


def is_quarter_turn(deg: float) -> bool:
    return math.isclose(math.remainder(deg, 90.0), 0.0, abs_tol=1e-9)
