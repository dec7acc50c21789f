"""Faceted metal nanoclusters (octahedral, icosahedral, decahedral), as imaged by HAADF-STEM.

The specimens of the frame-interpolation study this package follows
(Rakowski et al., "Learning Frame Interpolation for Tilt Series
Tomography"): crystalline nanoparticles of Pt, Ag, Au or Cu with the
shapes their lattices favour, alone or in small clusters, in vacuum or on a
thin amorphous support film. Every shape is a convex polyhedron described
by face normals and offsets (:func:`~tomoprior.phantoms._render.polyhedron_sd`),
so the specimen renders at any size and supersampling.
"""

from __future__ import annotations

import math

import numpy as np

from ._base import Phantom, check_size, check_supersample
from ._render import Field, Grid, accumulate, mark, polyhedron_sd, random_rotation

__all__ = ["ELEMENTS", "SHAPES", "nanoclusters", "shape_normals"]

#: atomic numbers of the cluster metals
ELEMENTS = {"Pt": 78, "Ag": 47, "Au": 79, "Cu": 29}
SHAPES = ("octahedral", "icosahedral", "decahedral")
HAADF_EXPONENT = 1.7  # HAADF intensity per atom column grows as Z^1.7
SUPPORT_LEVEL = (0.02, 0.06)  # amorphous carbon film, per voxel, relative to Pt
SPECIMEN_MARGIN = 1.5  # coarse voxels
_PHI = (1 + math.sqrt(5)) / 2


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def shape_normals(shape: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals and offsets (per unit size) of one crystal habit.

    ``octahedral``: the eight {111} faces, truncated at random by the six
    {100} faces (from a sharp octahedron to a cuboctahedron-like truncated
    octahedron). ``icosahedral``: the twenty faces of a Mackay icosahedron.
    ``decahedral``: an Ino/Marks decahedron: ten {111} faces of a pentagonal
    bipyramid (five tetrahedra about a five-fold axis), with the five
    equatorial edges cut by {100} facets of random depth.
    """
    if shape == "octahedral":
        n111 = _unit([(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)])
        n100 = np.vstack([np.eye(3), -np.eye(3)])
        cut = rng.uniform(1.0, 1.7)  # 1.73: no truncation; 1.0: the {100} faces reach the {111}
        return np.vstack([n111, n100]), np.concatenate([np.ones(8), np.full(6, cut)])
    if shape == "icosahedral":
        v = [(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
        for a in (-1, 1):
            for b in (-1, 1):
                v += [(0, a / _PHI, b * _PHI), (a / _PHI, b * _PHI, 0), (a * _PHI, 0, b / _PHI)]
        return _unit(v), np.ones(20)
    if shape == "decahedral":
        elev = math.atan2(2 * math.cos(math.radians(36)) / (2 * math.sin(math.radians(36))), 1.0)
        normals, offsets = [], []
        for k in range(5):
            az = math.radians(36 + 72 * k)
            for s in (-1, 1):
                normals.append((s * math.sin(elev), math.cos(elev) * math.cos(az),
                                math.cos(elev) * math.sin(az)))
                offsets.append(1.0)
        # equatorial vertices lie at radius 1 / (cos(elev) cos 36°) of the {111} offset
        rim = 1.0 / (math.cos(elev) * math.cos(math.radians(36)))
        cut = rng.uniform(0.8, 1.0) * rim
        for k in range(5):
            az = math.radians(72 * k)
            normals.append((0.0, math.cos(az), math.sin(az)))
            offsets.append(cut)
        return _unit(normals), np.asarray(offsets)
    raise ValueError(f"unknown shape {shape!r}: choose from {', '.join(SHAPES)}")


def _intensity(element: str, rng: np.random.Generator) -> float:
    base = (ELEMENTS[element] / ELEMENTS["Pt"]) ** HAADF_EXPONENT
    return float(base * rng.uniform(0.9, 1.1))


def _place(rng, n: int, radii: np.ndarray, limit: float) -> list[np.ndarray]:
    """Centres of a compact cluster: each new particle near (often touching) an earlier one."""
    centres: list[np.ndarray] = []
    for r in radii:
        for _ in range(200):
            if not centres:
                c = rng.normal(0.0, 0.04, 3)
            else:
                j = int(rng.integers(len(centres)))
                d = _unit(rng.standard_normal(3))
                gap = 0.0 if rng.random() < 0.6 else rng.uniform(0.0, 0.06)
                c = centres[j] + d * (radii[j] + r + gap)
            # in view at every tilt about y: inside the cylinder about y and the y range
            if math.hypot(c[0], c[2]) + r > limit or abs(c[1]) + r > limit:
                continue
            if all(np.linalg.norm(c - ck) >= 0.9 * (rk + r) for ck, rk in zip(centres, radii)):
                centres.append(c)
                break
        else:
            break
    return centres


def nanoclusters(
    size: int = 64,
    *,
    seed: int = 0,
    supersample: int = 1,
    n_particles: int | None = None,
    support: bool | None = None,
) -> Phantom:
    """A cluster of faceted metal nanoparticles, in vacuum or on a thin carbon film.

    Parameters
    ----------
    size : int
        Edge of the cubic volume in voxels (at ``supersample=1``).
    seed : int
        Seed of every random choice.
    supersample : int
        Render ``supersample`` times finer in each direction.
    n_particles : int, optional
        Particles in the cluster (default: 1-6 at random).
    support : bool, optional
        Put the cluster on a thin amorphous film (default: with chance 0.4).

    Returns
    -------
    Phantom
        ``"clusters"``; ``info["particles"]`` lists each particle's shape,
        element, centre and size (normalised units).

    Notes
    -----
    Each particle draws a habit from :data:`SHAPES`, a size (circumradius
    scale) of 0.12-0.32 of the volume for one or two particles, 0.09-0.22 for
    three or four, 0.07-0.17 for more, a uniformly random orientation and an element from :data:`ELEMENTS`; its
    density is ``(Z / 78)^1.7`` of Pt (HAADF Z-contrast, ±10 %). Particles
    are placed in contact or close to one another and all stay inside the
    cylinder about the y axis, so none leaves the field of view at any tilt
    about y up to ±90°. The film is a disc (radius 0.3-0.45, thickness
    0.03-0.08 of the volume, randomly inclined) of density 0.02-0.06 of Pt,
    modulated ±20 % by a smooth random field; the particles rest on it.
    Later particles hide what they overlap (painted), so densities never add.
    """
    size = check_size(size, minimum=8)
    s = check_supersample(supersample)
    grid = Grid((size, size, size), size, s)
    rng = np.random.default_rng([seed, 5])
    n = int(rng.integers(1, 7)) if n_particles is None else max(1, int(n_particles))
    on_film = bool(rng.random() < 0.4) if support is None else bool(support)
    lo, hi = (0.12, 0.32) if n <= 2 else (0.09, 0.22) if n <= 4 else (0.07, 0.17)
    radii = rng.uniform(lo, hi, n)
    limit = 0.45
    film_normal = _unit(np.array([1.0, 0.0, 0.0]) + rng.normal(0.0, 0.25, 3))
    film_half = float(rng.uniform(0.015, 0.04))
    vol = np.zeros(grid.shape, dtype=np.float32)
    specimen = np.zeros(grid.shape, dtype=bool)
    margin = SPECIMEN_MARGIN * grid.unit
    if on_film:
        film_r = float(rng.uniform(0.3, 0.45))
        level = float(rng.uniform(*SUPPORT_LEVEL))
        texture = Field(rng, 3, 24, (1.0, 4.0))

        def film_sd(coords):
            z, y, x = coords
            h = film_normal[0] * z + film_normal[1] * y + film_normal[2] * x
            rad = np.sqrt(np.maximum(z * z + y * y + x * x - h * h, 0.0))
            return np.maximum(np.abs(h) - film_half, rad - film_r)

        ext = film_r + film_half
        accumulate(vol, grid, film_sd, [-ext] * 3, [ext] * 3, level)
        z, y, x = grid.axes
        vol *= 1 + 0.2 * np.clip(texture.on_grid(z, y, x), -2.5, 2.5) / 2.5
        mark(specimen, grid, film_sd, [-ext] * 3, [ext] * 3, margin)
        limit = min(limit, film_r + 0.1)
    centres = _place(rng, n, radii, limit)
    if on_film and centres:  # rest the cluster on the film's upper face
        lowest = min(float(np.dot(c, film_normal)) - r for c, r in zip(centres, radii))
        lift = film_half - lowest - 0.2 * float(radii[0])
        moved = [c + lift * film_normal for c in centres]
        if all(math.hypot(c[0], c[2]) + r <= 0.47 for c, r in zip(moved, radii)):
            centres = moved
    parts = []
    for c, r in zip(centres, radii):
        shape = str(rng.choice(SHAPES))
        element = str(rng.choice(list(ELEMENTS)))
        normals, offsets = shape_normals(shape, rng)
        normals = normals @ random_rotation(rng).T
        # the offsets are scaled so that the particle fits in its bounding sphere of radius r
        verts_r = _circumradius(normals, offsets)
        off = offsets * (r / verts_r)

        def sd_fn(coords, c=c, nrm=normals, off=off):
            return polyhedron_sd(coords, c, nrm, off)

        accumulate(vol, grid, sd_fn, c - r, c + r, _intensity(element, rng), paint=True)
        mark(specimen, grid, sd_fn, c - r, c + r, margin)
        parts.append({"shape": shape, "element": element, "centre": [float(v) for v in c],
                      "radius": float(r)})
    info = {"size": size, "supersample": s, "seed": seed, "contrast": "haadf",
            "particles": parts, "support": on_film}
    return Phantom(name="clusters", volume=vol, specimen_mask=specimen, info=info)


def _circumradius(normals: np.ndarray, offsets: np.ndarray) -> float:
    """Largest distance from the centre to a point of the polyhedron (sampled directions)."""
    d = _unit(np.random.default_rng(0).standard_normal((2000, 3)))
    proj = d @ normals.T  # (dirs, faces)
    with np.errstate(divide="ignore"):
        t = np.where(proj > 1e-9, offsets[None] / proj, np.inf).min(axis=1)
    return float(np.max(t))
