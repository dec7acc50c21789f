"""Domain-randomised matter: many kinds of shapes, densities, textures and supports.

The restoration network learned the missing wedge of Pt-on-carbon specimens,
spheres and random polyhedra. So that it starts from a prior that has seen
more kinds of matter (and so that test-time adaptation has less to undo),
its training generator also draws this family: a random number of objects of
random kinds (ellipsoids, convex polyhedra, cylinders and rods, thin plates),
sizes from a voxel to a third of the volume, densities spread over two
decades, each with an optional smooth texture or gradient, in vacuum, on a
thin film or inside a textured matrix. Nothing here is shaped after the
benchmark's held-out families (benchmarks/unseen_families.py, which the
training code never imports).
"""

from __future__ import annotations

import numpy as np

from ._base import Phantom, check_size, check_supersample
from ._render import Field, Grid, coverage, ellipsoid_sd, mark, polyhedron_sd, random_rotation

__all__ = ["random_matter"]

MARGIN = 1.5  # coarse voxels around the specimen for the metrics' mask
KINDS = ("ellipsoid", "polyhedron", "cylinder", "plate")


def _cylinder_sd(coords, centre, axis, radius, half_length):
    """Signed distance (approximate outside the rims) to a finite solid cylinder."""
    d = [coords[k] - centre[k] for k in range(3)]
    along = sum(d[k] * axis[k] for k in range(3))
    radial = np.sqrt(np.maximum(sum(d[k] ** 2 for k in range(3)) - along ** 2, 0.0))
    return np.maximum(radial - radius, np.abs(along) - half_length)


def _shape(rng: np.random.Generator, kind: str, centre: np.ndarray, r: float):
    """The signed-distance function of one object of ``kind`` and size ``r``."""
    if kind == "ellipsoid":
        semi = r * rng.uniform(0.25, 1.0, 3)
        rot = random_rotation(rng)
        return lambda c: ellipsoid_sd(c, centre, semi, rot)
    if kind == "polyhedron":
        k = int(rng.integers(4, 13))
        normals = rng.standard_normal((k, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        offsets = r * rng.uniform(0.4, 1.0, k)
        return lambda c: polyhedron_sd(c, centre, normals, offsets)
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    if kind == "cylinder":  # rods and needles
        radius = r * rng.uniform(0.08, 0.4)
        return lambda c: _cylinder_sd(c, centre, axis, radius, r)
    half = r * rng.uniform(0.04, 0.15)  # thin plates and flakes
    return lambda c: _cylinder_sd(c, centre, axis, r, half)


def random_matter(size: int = 64, *, seed: int = 0, n_objects: int = 8, supersample: int = 1,
                  n_groups: int = 3) -> Phantom:
    """A domain-randomised specimen for training (see the module notes).

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
    n_groups : int
        Objects are dealt into this many groups (``"particles_<k>"``
        components), which :func:`~tomoprior.phantoms.simulate` may give
        their own per-tilt (ADF diffraction) contrast.

    Returns
    -------
    Phantom
        ``"matter"``: non-negative, objects add their densities where they
        overlap; ``specimen_mask`` covers the objects and the support.
    """
    size = check_size(size)
    s = check_supersample(supersample)
    grid = Grid((size, size, size), size, s)
    rng = np.random.default_rng(seed)
    margin = MARGIN * grid.unit
    z, y, x = grid.axes
    specimen = np.zeros(grid.shape, dtype=bool)
    support = np.zeros(grid.shape, dtype=np.float32)
    setting = str(rng.choice(("vacuum", "film", "matrix"), p=(0.4, 0.35, 0.25)))
    level = float(np.exp(rng.uniform(np.log(0.03), np.log(0.4))))
    if setting != "vacuum":
        tex = Field(rng, 3, 48, (1.0, 8.0)).on_grid(z, y, x)
        amount = rng.uniform(0.0, 0.6)
        if setting == "film":  # a tilted film across the volume
            normal = np.array([1.0, *rng.uniform(-0.25, 0.25, 2)])
            normal /= np.linalg.norm(normal)
            half = rng.uniform(0.05, 0.25)
            inside = np.abs(z[:, None, None] * normal[0] + y[None, :, None] * normal[1]
                            + x[None, None, :] * normal[2]) < half
        else:  # a textured matrix filling a ball
            rad = rng.uniform(0.3, 0.45)
            inside = (z[:, None, None] ** 2 + y[None, :, None] ** 2
                      + x[None, None, :] ** 2) < rad ** 2
        support = np.where(inside, level * np.clip(1 + amount * tex, 0.0, None), 0.0)
        support = support.astype(np.float32)
        specimen |= inside
    groups = [np.zeros(grid.shape, dtype=np.float32) for _ in range(max(1, int(n_groups)))]
    texture = Field(rng, 3, 32, (0.5, 12.0)).on_grid(z, y, x)  # shared, shifted per object
    kinds = []
    scale = rng.uniform(0.04, 0.3)
    for i in range(int(n_objects)):
        kind = str(rng.choice(KINDS, p=(0.35, 0.3, 0.2, 0.15)))
        r = scale * float(np.exp(rng.uniform(np.log(0.3), 0.0)))
        centre = rng.uniform(-0.4 + r / 2, 0.4 - r / 2, 3) if r < 0.8 else np.zeros(3)
        sd = _shape(rng, kind, centre, r)
        density = float(np.exp(rng.uniform(np.log(0.05), 0.0)))
        sl, coords = grid.block(centre - r - grid.h, centre + r + grid.h)
        if sl is None:
            continue
        cov = coverage(sd(coords), grid.h)
        if rng.random() < 0.4:  # a texture or a gradient inside the object
            tex = np.roll(texture, tuple(int(v) for v in rng.integers(0, 64, 3)), (0, 1, 2))[sl]
            grad = sum(g * (c - c0) for g, c, c0 in zip(rng.uniform(-1.0, 1.0, 3), coords, centre,
                                                        strict=True))
            cov = cov * np.clip(1 + rng.uniform(0.1, 0.5) * tex + 0.5 * grad / max(r, 1e-3),
                                0.05, None)
        groups[i % len(groups)][sl] += density * cov
        mark(specimen, grid, sd, centre - r, centre + r, margin)
        kinds.append(kind)
    vol = support + sum(groups)
    components = [("support", support)] + [(f"particles_{k}", g) for k, g in enumerate(groups)]
    return Phantom(
        name="matter", volume=vol.astype(np.float32), specimen_mask=specimen,
        components=components,
        info={"size": size, "supersample": s, "seed": seed, "setting": setting,
              "objects": kinds},
    )
