"""Analytic rendering: voxel grids, soft shape coverage and random fields.

Every phantom is described in *normalised* coordinates whose unit is the
nominal lateral size of the volume (``size`` coarse voxels) and whose origin
is the centre of the volume, so a description does not depend on the size or
the supersampling it is rendered at. A volume rendered at ``supersample=s``
has ``s`` fine voxels per coarse voxel along each axis, and the fine voxel
centres are placed so that the mean of each ``s x s x s`` block sits at the
centre of the coarse voxel it bins into (see :class:`Grid`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import DataError

__all__ = [
    "Field",
    "Grid",
    "accumulate",
    "coverage",
    "downsample_mask",
    "downsample_volume",
    "ellipsoid_sd",
    "mark",
    "polyhedron_sd",
    "random_rotation",
    "sphere_sd",
]


class Grid:
    """Fine voxel centres of a volume rendered at ``supersample`` times its nominal size.

    Parameters
    ----------
    coarse_shape : tuple of int
        Nominal ``(z, y, x)`` shape in coarse voxels.
    size : int
        Length of the normalised unit in coarse voxels (the lateral size).
    supersample : int
        Fine voxels per coarse voxel along each axis.

    Notes
    -----
    Along an axis with ``n`` coarse voxels, fine voxel ``i`` has the
    normalised coordinate ``((i + 0.5) / s - n / 2) / size``. The ``s`` fine
    centres inside coarse voxel ``j`` average to ``(j - (n - 1) / 2) / size``,
    the coarse voxel centre, so block-averaging a fine rendering gives a
    coarse volume on the same coordinates as a direct coarse rendering.
    """

    def __init__(self, coarse_shape: Sequence[int], size: int, supersample: int = 1) -> None:
        self.coarse_shape = tuple(int(n) for n in coarse_shape)
        self.size = int(size)
        self.s = int(supersample)
        self.shape = tuple(n * self.s for n in self.coarse_shape)
        #: edge of one fine voxel in normalised units
        self.h = 1.0 / (self.size * self.s)
        #: edge of one coarse voxel in normalised units
        self.unit = 1.0 / self.size
        self.axes = [self._axis(d) for d in range(3)]

    def _axis(self, d: int) -> np.ndarray:
        n = self.coarse_shape[d]
        i = np.arange(n * self.s, dtype=np.float64)
        return ((i + 0.5) / self.s - n / 2) / self.size

    def half_extent(self, d: int) -> float:
        """Half the length of axis ``d`` in normalised units."""
        return self.coarse_shape[d] / (2 * self.size)

    def to_voxel(self, points: np.ndarray) -> np.ndarray:
        """Normalised ``(..., 3)`` points to fractional fine voxel indices."""
        p = np.asarray(points, dtype=np.float64)
        n = np.asarray(self.coarse_shape, dtype=np.float64)
        return (p * self.size + n / 2) * self.s - 0.5

    def block(self, lo: Sequence[float], hi: Sequence[float]):
        """Fine voxels whose centres lie in the box ``[lo, hi]`` (normalised).

        Returns
        -------
        slices : tuple of slice or None
            Index of the block in the full volume; ``None`` when it is empty.
        coords : tuple of arrays
            Open-grid coordinates ``(z[:, None, None], y[None, :, None],
            x[None, None, :])`` of the block.
        """
        slices = []
        coords = []
        for d in range(3):
            n = self.shape[d]
            i0 = math.floor((lo[d] * self.size + self.coarse_shape[d] / 2) * self.s - 0.5)
            i1 = math.ceil((hi[d] * self.size + self.coarse_shape[d] / 2) * self.s - 0.5) + 1
            i0, i1 = max(i0, 0), min(i1, n)
            if i1 <= i0:
                return None, None
            slices.append(slice(i0, i1))
            shape = [1, 1, 1]
            shape[d] = i1 - i0
            coords.append(self.axes[d][i0:i1].reshape(shape))
        return tuple(slices), tuple(coords)

    def full(self):
        """Open-grid coordinates of the whole volume (see :meth:`block`)."""
        return self.block([-np.inf] * 3, [np.inf] * 3)[1]


def coverage(sd: np.ndarray, h: float) -> np.ndarray:
    """Fraction of a voxel of edge ``h`` inside a shape, from its signed distance.

    Notes
    -----
    ``sd`` is negative inside. The linear ramp ``clip(0.5 - sd / h, 0, 1)``
    is the exact covered fraction for a planar boundary crossing a voxel
    parallel to one of its faces, and a good anti-aliasing approximation in
    general: smooth shapes get partial-volume voxels instead of staircases.
    """
    out = np.asarray(sd, dtype=np.float32) * np.float32(-1.0 / h)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def sphere_sd(coords, centre: Sequence[float], radius: float) -> np.ndarray:
    """Signed distance to a sphere (exact)."""
    z, y, x = coords
    return np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) - radius


def ellipsoid_sd(
    coords, centre: Sequence[float], semi_axes: Sequence[float], rotation: np.ndarray
) -> np.ndarray:
    """First-order signed distance to an ellipsoid.

    Parameters
    ----------
    coords : tuple of arrays
        Broadcastable ``(z, y, x)`` coordinates.
    centre : sequence of 3 floats
        ``(z, y, x)`` centre.
    semi_axes : sequence of 3 floats
        Semi-axis lengths along the body axes.
    rotation : array (3, 3)
        Rows are the body axes expressed in world ``(z, y, x)`` components.

    Notes
    -----
    With body coordinates ``w = R (p - c)`` and ``q = |w / a|``, the
    distance to the surface ``q = 1`` is approximated by ``(q - 1) / |grad q|``,
    exact on the surface to first order, which is all the anti-aliasing
    ramp of :func:`coverage` needs.
    """
    d = [coords[k] - centre[k] for k in range(3)]
    w = [rotation[i, 0] * d[0] + rotation[i, 1] * d[1] + rotation[i, 2] * d[2] for i in range(3)]
    q2 = sum((w[i] / semi_axes[i]) ** 2 for i in range(3))
    g2 = sum((w[i] / semi_axes[i] ** 2) ** 2 for i in range(3))
    q = np.sqrt(q2)
    return (q - 1.0) * q / np.sqrt(g2 + 1e-30)


def polyhedron_sd(
    coords, centre: Sequence[float], normals: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Signed distance bound of the convex polyhedron ``n_k . (p - c) <= d_k`` for all k.

    Notes
    -----
    ``max_k (n_k . (p - c) - d_k)`` with unit normals is the exact distance
    inside and near the faces, and a lower bound near edges and corners.
    """
    d = [coords[k] - centre[k] for k in range(3)]
    out = None
    for n, off in zip(normals, offsets):
        v = n[0] * d[0] + n[1] * d[1] + n[2] * d[2] - off
        out = v if out is None else np.maximum(out, v)
    return out


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3D rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


class Field:
    """Smooth, band-limited random field defined everywhere in space.

    A sum of ``n_modes`` plane waves ``sqrt(2 / M) cos(k_j . p + phi_j)``
    with random directions, wavenumbers uniform in ``band`` (cycles per
    normalised unit) and random phases: zero mean, unit variance, nearly
    Gaussian for many modes, with no power outside the band.

    Parameters
    ----------
    rng : numpy.random.Generator
    dim : int
        2 (a field over ``(y, x)``) or 3 (over ``(z, y, x)``).
    n_modes : int
    band : (float, float)
        Lowest and highest spatial frequency, in cycles per normalised unit.

    Notes
    -----
    Because the field is a continuous function, it renders identically
    (up to sampling) at any size and supersampling, which keeps phantoms
    consistent between a fine grid and the coarse grid it bins to. On a grid
    the plane waves factor over the axes, ``exp(i k.p) = prod_d exp(i k_d p_d)``,
    so evaluation is one complex matrix product per chunk of z-slices instead
    of ``n_modes`` cosines per voxel.
    """

    def __init__(
        self, rng: np.random.Generator, dim: int, n_modes: int, band: tuple[float, float]
    ) -> None:
        v = rng.standard_normal((n_modes, dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        f = rng.uniform(band[0], band[1], n_modes)
        self.k = 2 * np.pi * f[:, None] * v
        self.phase = rng.uniform(0, 2 * np.pi, n_modes)
        self.amp = math.sqrt(2.0 / n_modes)
        self.dim = dim

    def at(self, *coords) -> np.ndarray:
        """Evaluate at broadcastable coordinates (one array per dimension)."""
        shape = np.broadcast_shapes(*(np.shape(c) for c in coords))
        out = np.zeros(shape, dtype=np.float64)
        for kj, ph in zip(self.k, self.phase):
            arg = ph + sum(kj[d] * coords[d] for d in range(self.dim))
            out += np.cos(arg)
        return out * self.amp

    def on_grid(self, *axes: np.ndarray, chunk: int = 16) -> np.ndarray:
        """Evaluate on the tensor grid of 1D coordinate ``axes`` (float32)."""
        axes = [np.asarray(a, dtype=np.float64).reshape(-1) for a in axes]
        coef = (self.amp * np.exp(1j * self.phase)).astype(np.complex64)
        e = [
            np.exp(1j * self.k[:, d, None] * axes[d][None, :]).astype(np.complex64)
            for d in range(self.dim)
        ]
        if self.dim == 2:
            return np.real((coef[:, None] * e[0]).T @ e[1]).astype(np.float32)
        nz, ny, nx = (a.size for a in axes)
        out = np.empty((nz, ny, nx), dtype=np.float32)
        for z0 in range(0, nz, chunk):
            z1 = min(nz, z0 + chunk)
            a = (coef[:, None, None] * e[0][:, z0:z1, None]) * e[1][:, None, :]
            prod = a.reshape(a.shape[0], -1).T @ e[2]
            out[z0:z1] = np.real(prod).reshape(z1 - z0, ny, nx)
        return out


def _check_factor(shape: Sequence[int], factor: int) -> int:
    factor = int(factor)
    if factor < 1:
        raise DataError(f"binning factor must be >= 1, got {factor}")
    if any(n // factor < 1 for n in shape):
        raise DataError(f"binning by {factor} leaves no voxels of a {tuple(shape)} volume")
    return factor


def downsample_volume(volume: np.ndarray, factor: int) -> np.ndarray:
    """Block mean of ``factor x factor x factor`` voxels (remainder cropped).

    Parameters
    ----------
    volume : array (z, y, x)
    factor : int

    Returns
    -------
    numpy.ndarray
        float32 ``(z // factor, y // factor, x // factor)``.

    Notes
    -----
    This is the ground truth that matches a tilt series simulated from a
    phantom rendered at ``supersample=factor``: the projection of a block
    mean equals, to first order, the binned projection of the fine volume.
    """
    factor = _check_factor(volume.shape, factor)
    if factor == 1:
        return np.asarray(volume, dtype=np.float32)
    z, y, x = (n // factor for n in volume.shape)
    v = np.asarray(volume[: z * factor, : y * factor, : x * factor], dtype=np.float32)
    return v.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def downsample_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Boolean mask at the coarse size: true where at least half a block is true."""
    return downsample_volume(mask.astype(np.float32), factor) >= 0.5


def accumulate(
    out: np.ndarray, grid: Grid, sd_fn: Callable, lo, hi, value: float, *, paint: bool = False
) -> None:
    """Add (or paint over) ``value`` times the coverage of a shape into ``out``.

    ``sd_fn(coords)`` returns the signed distance on the block of voxels in
    the bounding box ``[lo, hi]`` (normalised, padded by one fine voxel).
    With ``paint=True`` the shape replaces what lies under it (occlusion);
    otherwise its value is added.
    """
    pad = grid.h
    sl, coords = grid.block(np.asarray(lo) - pad, np.asarray(hi) + pad)
    if sl is None:
        return
    cov = coverage(sd_fn(coords), grid.h)
    if paint:
        out[sl] = out[sl] * (1 - cov) + value * cov
    else:
        out[sl] += value * cov


def mark(mask: np.ndarray, grid: Grid, sd_fn: Callable, lo, hi, margin: float) -> None:
    """Set ``mask`` where a shape's signed distance is below ``margin`` (normalised)."""
    sl, coords = grid.block(np.asarray(lo) - margin - grid.h, np.asarray(hi) + margin + grid.h)
    if sl is not None:
        mask[sl] |= sd_fn(coords) < margin
