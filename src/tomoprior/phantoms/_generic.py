"""Generic test objects: Shepp-Logan, random "faces", Gaussian blobs, sparse spheres."""

from __future__ import annotations

import numpy as np

from ._base import Phantom, check_size, check_supersample
from ._render import (
    Grid,
    accumulate,
    ellipsoid_sd,
    mark,
    polyhedron_sd,
    random_rotation,
    sphere_sd,
)

__all__ = ["blobs", "phantom_faces", "shepp_logan_3d", "sparse_spheres"]

SPECIMEN_MARGIN = 1.5  # coarse voxels

# 3D Shepp-Logan head: ellipsoids as (A, a, b, c, x0, y0, z0, phi, theta, psi) in the
# phantom's own coordinates x, y, z in [-1, 1], Euler angles (z-x-z) in degrees.
# Geometry of Kak & Slaney's 3D extension, intensities of Toft's "modified" version.
_SHEPP_LOGAN_3D = np.array(
    [
        [1.0, 0.6900, 0.920, 0.810, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [-0.8, 0.6624, 0.874, 0.780, 0.0, -0.0184, 0.0, 0.0, 0.0, 0.0],
        [-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0, 0.0, -18.0, 0.0, 10.0],
        [-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0, 0.0, 18.0, 0.0, 10.0],
        [0.1, 0.2100, 0.250, 0.410, 0.0, 0.35, -0.15, 0.0, 0.0, 0.0],
        [0.1, 0.0460, 0.046, 0.050, 0.0, 0.1, 0.25, 0.0, 0.0, 0.0],
        [0.1, 0.0460, 0.046, 0.050, 0.0, -0.1, 0.25, 0.0, 0.0, 0.0],
        [0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.0, 0.0, 0.0, 0.0],
        [0.1, 0.0230, 0.023, 0.020, 0.0, -0.606, 0.0, 0.0, 0.0, 0.0],
        [0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.0, 0.0, 0.0, 0.0],
    ]
)
# the original Shepp-Logan intensities (tiny contrasts inside the skull)
_SHEPP_LOGAN_ORIGINAL_A = np.array([1.0, -0.98, -0.02, -0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01])


def _euler_zxz(phi: float, theta: float, psi: float) -> np.ndarray:
    """Rotation whose rows are an ellipsoid's body axes in ``(x, y, z)`` (degrees)."""
    p, t, s = np.deg2rad([phi, theta, psi])
    cp, sp, ct, st, cs, ss = np.cos(p), np.sin(p), np.cos(t), np.sin(t), np.cos(s), np.sin(s)
    return np.array(
        [
            [cs * cp - ct * sp * ss, cs * sp + ct * cp * ss, ss * st],
            [-ss * cp - ct * sp * cs, -ss * sp + ct * cp * cs, cs * st],
            [st * sp, -st * cp, ct],
        ]
    )


def _info(size: int, s: int, seed: int | None, **extra) -> dict:
    return {"size": size, "supersample": s, "seed": seed, **extra}


def shepp_logan_3d(size: int = 64, *, supersample: int = 1, modified: bool = True) -> Phantom:
    """The 3D Shepp-Logan head phantom: ten ellipsoids in a cube.

    Parameters
    ----------
    size : int
        Edge of the cubic volume in voxels (at ``supersample=1``).
    supersample : int
        Render ``supersample`` times finer in each direction.
    modified : bool
        Toft's higher-contrast intensities (default; values 0 to 1) or the
        original ones (skull 1.0, brain 0.02, features ±0.01).

    Returns
    -------
    Phantom
        ``"shepp_logan"``; ``specimen_mask`` is the skull, dilated.

    Notes
    -----
    The ellipsoid table is the 3D extension of Shepp & Logan (1974) by Kak
    & Slaney (1988), with Toft's (1996) intensities as distributed in
    Schabel's ``phantom3d``. The phantom's coordinates ``(x, y, z)`` in
    ``[-1, 1]`` span the volume, with ``y`` pointing to decreasing rows so
    that the central ``(y, x)`` slice shows the classic head upright on
    screen. Each ellipsoid is rotated about its own centre (Euler z-x-z;
    in this table only rotations about z occur). Intensities add up
    where ellipsoids overlap; the result is clipped at 0 against rounding
    and the edges are anti-aliased.

    References
    ----------
    L. A. Shepp and B. F. Logan, "The Fourier reconstruction of a head
    section", IEEE Trans. Nucl. Sci. 21 (1974) 21-43.
    A. C. Kak and M. Slaney, "Principles of Computerized Tomographic
    Imaging", IEEE Press (1988), ch. 3.
    P. Toft, "The Radon Transform: Theory and Implementation", PhD thesis,
    DTU (1996), pp. 199-200.
    """
    size = check_size(size)
    s = check_supersample(supersample)
    grid = Grid((size, size, size), size, s)
    vol = np.zeros(grid.shape, dtype=np.float32)
    table = _SHEPP_LOGAN_3D.copy()
    if not modified:
        table[:, 0] = _SHEPP_LOGAN_ORIGINAL_A
    specimen = np.zeros(grid.shape, dtype=bool)
    for i, (amp, a, b, c, x0, y0, z0, phi, theta, psi) in enumerate(table):
        rot = _euler_zxz(phi, theta, psi)
        semi = (a, b, c)
        ext = np.sqrt(((rot * np.array(semi)[:, None]) ** 2).sum(axis=0))  # along x, y, z

        def sd_fn(coords, rot=rot, semi=semi, centre=(x0, y0, z0)):
            cz, cy, cx = coords
            return 0.5 * ellipsoid_sd((2 * cx, -2 * cy, 2 * cz), centre, semi, rot)

        lo = ((z0 - ext[2]) / 2, (-y0 - ext[1]) / 2, (x0 - ext[0]) / 2)
        hi = ((z0 + ext[2]) / 2, (-y0 + ext[1]) / 2, (x0 + ext[0]) / 2)
        accumulate(vol, grid, sd_fn, lo, hi, float(amp))
        if i == 0:
            mark(specimen, grid, sd_fn, lo, hi, SPECIMEN_MARGIN * grid.unit)
    np.maximum(vol, 0, out=vol)
    return Phantom(
        name="shepp_logan",
        volume=vol,
        specimen_mask=specimen,
        info=_info(size, s, None, modified=bool(modified)),
    )


def _in_ball(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A point uniformly distributed in the ball of ``radius`` about the origin."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v) * radius * rng.random() ** (1 / 3)


def phantom_faces(
    size: int = 64,
    *,
    seed: int = 0,
    n_objects: int = 8,
    supersample: int = 1,
    background: float = 0.1,
) -> Phantom:
    """Random ellipsoids and convex polyhedra with random densities in a sphere.

    Parameters
    ----------
    size : int
        Edge of the cubic volume in voxels (at ``supersample=1``).
    seed : int
        Seed of every random choice.
    n_objects : int
        Number of objects.
    supersample : int
        Render ``supersample`` times finer in each direction.
    background : float
        Density of the enclosing sphere (radius 0.42 of the volume); 0 for
        objects in vacuum.

    Returns
    -------
    Phantom
        ``"faces"``; ``specimen_mask`` covers the enclosing sphere (or the
        objects when ``background`` is 0).

    Notes
    -----
    Like the random "phantom faces" used to train and test learned CT
    reconstruction: each object is, with equal chance, an ellipsoid with
    semi-axes 0.45-1 times a size of 0.06-0.16 of the volume, randomly
    oriented, or a convex polyhedron cut from a sphere of that size by
    5-10 random half-spaces (planes at 0.55-1 times the size from its
    centre). Densities are uniform in 0.2-1; objects are painted in order,
    a later one hiding what it overlaps, so the phantom is piecewise
    constant with sharp edges and flat faces (anti-aliased).
    """
    size = check_size(size)
    s = check_supersample(supersample)
    grid = Grid((size, size, size), size, s)
    rng = np.random.default_rng(seed)
    vol = np.zeros(grid.shape, dtype=np.float32)
    specimen = np.zeros(grid.shape, dtype=bool)
    margin = SPECIMEN_MARGIN * grid.unit
    outer = 0.42
    if background > 0:

        def sphere_fn(coords):
            return sphere_sd(coords, (0.0, 0.0, 0.0), outer)

        accumulate(vol, grid, sphere_fn, [-outer] * 3, [outer] * 3, float(background))
        mark(specimen, grid, sphere_fn, [-outer] * 3, [outer] * 3, margin)
    kinds = []
    for _ in range(int(n_objects)):
        is_ellipsoid = rng.random() < 0.5
        r = rng.uniform(0.06, 0.16)
        centre = _in_ball(rng, outer - r)
        density = rng.uniform(0.2, 1.0)
        if is_ellipsoid:
            semi = r * rng.uniform(0.45, 1.0, 3)
            rot = random_rotation(rng)

            def sd_fn(coords, c=centre, semi=semi, rot=rot):
                return ellipsoid_sd(coords, c, semi, rot)

        else:
            k = int(rng.integers(5, 11))
            normals = rng.standard_normal((k, 3))
            normals /= np.linalg.norm(normals, axis=1, keepdims=True)
            offsets = r * rng.uniform(0.55, 1.0, k)

            def sd_fn(coords, c=centre, nrm=normals, off=offsets, r=r):
                return np.maximum(polyhedron_sd(coords, c, nrm, off), sphere_sd(coords, c, r))

        kinds.append("ellipsoid" if is_ellipsoid else "polyhedron")
        accumulate(vol, grid, sd_fn, centre - r, centre + r, float(density), paint=True)
        if background <= 0:
            mark(specimen, grid, sd_fn, centre - r, centre + r, margin)
    return Phantom(
        name="faces",
        volume=vol,
        specimen_mask=specimen,
        info=_info(size, s, seed, objects=kinds, background=float(background)),
    )


def blobs(size: int = 32, *, seed: int = 0, n: int = 6, supersample: int = 1) -> Phantom:
    """A few smooth Gaussian blobs: the quick test object for smooth priors.

    Parameters
    ----------
    size : int
        Edge of the cubic volume in voxels (at ``supersample=1``).
    seed : int
        Seed of every random choice.
    n : int
        Number of blobs.
    supersample : int
        Render ``supersample`` times finer in each direction.

    Returns
    -------
    Phantom
        ``"blobs"``; ``specimen_mask`` is where any blob is within three
        standard deviations.

    Notes
    -----
    Blob centres lie within 0.25 of the volume from its centre; standard
    deviations are 0.055-0.1 of the volume (1.8-3.2 voxels at size 32),
    stretched by 0.75-1.25 along each axis, amplitudes 0.5-1. The volume is
    sampled at voxel centres (the blobs are smooth enough that supersampling
    changes it only slightly).
    """
    size = check_size(size)
    s = check_supersample(supersample)
    grid = Grid((size, size, size), size, s)
    rng = np.random.default_rng(seed)
    vol = np.zeros(grid.shape, dtype=np.float64)
    specimen = np.zeros(grid.shape, dtype=bool)
    z, y, x = grid.axes
    params = []
    for _ in range(int(n)):
        c = _in_ball(rng, 0.25)
        sig = rng.uniform(0.055, 0.1) * rng.uniform(0.75, 1.25, 3)
        amp = rng.uniform(0.5, 1.0)
        g = [np.exp(-0.5 * ((a - ci) / si) ** 2) for a, ci, si in zip((z, y, x), c, sig)]
        vol += amp * g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]

        def sd_fn(coords, c=c, sig=sig):
            q = sum(((coords[k] - c[k]) / sig[k]) ** 2 for k in range(3))
            return np.sqrt(q) - 3.0  # negative within 3 sigma

        mark(specimen, grid, sd_fn, c - 3 * sig, c + 3 * sig, 0.0)
        params.append({"centre": c.tolist(), "sigma": sig.tolist(), "amplitude": float(amp)})
    return Phantom(
        name="blobs",
        volume=vol.astype(np.float32),
        specimen_mask=specimen,
        info=_info(size, s, seed, blobs=params),
    )


def sparse_spheres(
    size: int = 32, *, seed: int = 0, n: int = 8, supersample: int = 1, density: float = 1.0
) -> Phantom:
    """A few small uniform spheres in an empty volume: a sparse, TV-friendly object.

    Parameters
    ----------
    size : int
        Edge of the cubic volume in voxels (at ``supersample=1``).
    seed : int
        Seed of every random choice.
    n : int
        Number of spheres (fewer if they do not fit).
    supersample : int
        Render ``supersample`` times finer in each direction.
    density : float
        Value inside every sphere.

    Returns
    -------
    Phantom
        ``"spheres"`` with ``particles`` and ``particle_mask``.

    Notes
    -----
    Radii are 0.045-0.08 of the volume (1.4-2.6 voxels at size 32); the
    spheres lie within 0.36 of the volume from its centre, so they stay in
    view at every tilt, at least two voxels apart. Edges are anti-aliased.
    """
    size = check_size(size)
    s = check_supersample(supersample)
    grid = Grid((size, size, size), size, s)
    rng = np.random.default_rng(seed)
    vol = np.zeros(grid.shape, dtype=np.float32)
    specimen = np.zeros(grid.shape, dtype=bool)
    margin = SPECIMEN_MARGIN * grid.unit
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(int(n)):
        r = rng.uniform(0.045, 0.08)
        for _try in range(500):
            c = _in_ball(rng, 0.36 - r)
            gap = 2 * grid.unit
            if all(np.linalg.norm(c - ck) >= r + rk + gap for ck, rk in zip(centres, radii)):
                break
        else:
            continue
        centres.append(c)
        radii.append(r)

        def sd_fn(coords, c=c, r=r):
            return sphere_sd(coords, c, r)

        accumulate(vol, grid, sd_fn, c - r, c + r, float(density))
        mark(specimen, grid, sd_fn, c - r, c + r, margin)
    c_arr = np.array(centres).reshape(-1, 3)
    parts = np.concatenate([grid.to_voxel(c_arr), np.array(radii)[:, None] * size * s], axis=1)
    return Phantom(
        name="spheres",
        volume=vol,
        specimen_mask=specimen,
        particle_mask=vol >= 0.5 * density if density > 0 else vol > 0,
        particles=parts,
        info=_info(size, s, seed, density=float(density)),
    )
