"""Pt nanoparticles on an amorphous carbon support, as imaged by HAADF or ADF STEM.

The specimen of the electron-tomography studies this package reproduces: a
thick, irregular grain of amorphous carbon carrying platinum nanoparticles
on its surfaces and inside it. Everything is drawn from one seed and
described by continuous functions (spheres, a displaced slab, band-limited
random fields), so it renders at any size and supersampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ._base import Phantom, check_size, check_supersample
from ._render import Field, Grid, coverage, sphere_sd

__all__ = ["CONTRAST_SUPPORT_LEVEL", "pt_on_carbon"]

#: Support intensity per voxel relative to Pt (see the Notes of pt_on_carbon).
CONTRAST_SUPPORT_LEVEL = {"haadf": 0.05, "adf": 0.35}
Z_PT, Z_C = 78, 6
#: pixel size in nm at size 64; the specimen keeps its physical size at other sizes
PIXEL_SIZE_AT_64 = 0.75

# particle radii in voxels at size 64 (log-normal, clipped), scaled by size / 64
RADIUS_MEDIAN, RADIUS_LOG_SD, RADIUS_RANGE = 3.0, 0.4, (1.5, 6.0)
PLACEMENT_P = {"top": 0.5, "bottom": 0.2, "inside": 0.3}
TOUCH_P = 0.3  # chance that a particle is placed in contact with an earlier one
EMBED = (0.1, 0.35)  # fraction of the radius by which a surface particle sinks in
MAX_TRIES = 200

# support slab: thickness as a fraction of the volume height, outline radius
SLAB_FRACTION = (0.25, 0.40)
OUTLINE_RADIUS = (0.32, 0.36)
# amplitudes of the slab's tilt, bowl, undulation, thickness and outline variations
SLOPE, CURVATURE, UNDULATION, THICKNESS_VAR, OUTLINE_VAR = 0.10, 0.25, 0.015, 0.2, 0.06
# density: linear gradient (per normalised unit), low-frequency variation, pores
GRADIENT = (0.6, 1.0)
DENSITY_VAR = 0.22
PORE_BAND = (9.0, 16.0)  # cycles per normalised unit: pores ~2-3 voxels across at size 64
PORE_THRESHOLD, PORE_SOFTNESS, PORE_DEPTH = 1.25, 0.35, 0.85
SPECIMEN_MARGIN = 1.5  # coarse voxels by which specimen_mask extends beyond the specimen


@dataclass
class _Support:
    """Continuous description of the carbon grain (normalised coordinates)."""

    zscale: float
    fraction: float
    z0: float
    slope: np.ndarray
    curvature: float
    radius: float
    gradient: np.ndarray
    undulation: Field
    thickness: Field
    outline: Field
    density_field: Field
    pore_field: Field

    @classmethod
    def draw(cls, rng: np.random.Generator, zscale: float) -> _Support:
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        return cls(
            zscale=zscale,
            fraction=rng.uniform(*SLAB_FRACTION),
            z0=rng.uniform(-0.03, 0.03),
            slope=rng.uniform(-SLOPE, SLOPE, 2),
            curvature=rng.uniform(-CURVATURE, CURVATURE),
            radius=rng.uniform(*OUTLINE_RADIUS),
            gradient=direction * rng.uniform(*GRADIENT),
            undulation=Field(rng, 2, 24, (0.8, 2.0)),
            thickness=Field(rng, 2, 24, (1.0, 2.5)),
            outline=Field(rng, 2, 24, (1.0, 3.0)),
            density_field=Field(rng, 3, 48, (0.8, 2.5)),
            pore_field=Field(rng, 3, 160, PORE_BAND),
        )

    def mid(self, y, x):
        """Height of the slab's mid-surface: tilted, bowed and undulating."""
        bow = self.curvature * (y * y + x * x - self.radius**2 / 2)
        tilt = self.slope[0] * y + self.slope[1] * x
        return self.zscale * (self.z0 + tilt + bow + UNDULATION * self.undulation.at(y, x))

    def half(self, y, x):
        """Local half-thickness of the slab."""
        t = np.clip(1 + THICKNESS_VAR * self.thickness.at(y, x), 0.6, 1.4)
        return 0.5 * self.fraction * self.zscale * t

    def outline_sd(self, y, x):
        """Approximate signed distance to the grain's irregular lateral outline."""
        wobble = np.clip(self.outline.at(y, x), -2, 2)
        return np.hypot(y, x) * (1 + OUTLINE_VAR * wobble) - self.radius

    def relative_density(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Density (mean about 1) and pore indicator (0..1) on the grid, float32."""
        z, y, x = grid.axes
        g = [float(v) for v in self.gradient]
        lin = (
            (1 + g[0] * z).astype(np.float32)[:, None, None]
            + (g[1] * y).astype(np.float32)[None, :, None]
            + (g[2] * x).astype(np.float32)[None, None, :]
        )
        rel = self.density_field.on_grid(z, y, x)
        rel *= DENSITY_VAR
        rel += 1
        rel *= lin
        np.clip(rel, 0.3, 2.0, out=rel)
        pore = self.pore_field.on_grid(z, y, x)
        pore -= PORE_THRESHOLD
        pore /= PORE_SOFTNESS
        pore += 0.5
        np.clip(pore, 0, 1, out=pore)
        pore *= pore * (3 - 2 * pore)  # smoothstep: pores with soft walls
        rel *= 1 - PORE_DEPTH * pore
        return rel, pore


def _depth(rng, sup: _Support, kind: str, y: float, x: float, r: float, unit: float):
    """Height of a particle centre of radius ``r`` at ``(y, x)`` for a placement kind."""
    m, t = float(sup.mid(y, x)), float(sup.half(y, x))
    if kind == "inside":
        room = t - r - unit
        if room > 0:
            return m + rng.uniform(-room, room), kind
        kind = "top"  # too big to be buried here: it sits on the surface instead
    sink = r * (1 - rng.uniform(*EMBED))
    return (m + t + sink, kind) if kind == "top" else (m - t - sink, kind)


def _fits(c, r, centres, radii, sup: _Support, grid: Grid) -> bool:
    unit = grid.unit
    zh, yh, xh = (grid.half_extent(d) - unit for d in range(3))
    z, y, x = c
    if abs(z) + r > zh or abs(y) + r > yh or abs(x) + r > xh:
        return False
    # stay inside the field of view at every tilt, about either image axis
    if math.hypot(z, y) + r > yh or math.hypot(z, x) + r > xh:
        return False
    if sup.outline_sd(y, x) > -unit:
        return False
    return all(np.linalg.norm(c - ck) >= r + rk - 1e-9 for ck, rk in zip(centres, radii))


def _place_particles(rng, sup: _Support, grid: Grid, n: int, radius_scale: float):
    """Non-overlapping particles on and in the support; some in contact."""
    radii = np.clip(np.exp(rng.normal(math.log(RADIUS_MEDIAN), RADIUS_LOG_SD, n)), *RADIUS_RANGE)
    radii = np.sort(radii)[::-1] * radius_scale  # biggest first: they are hardest to fit
    kinds = rng.choice(list(PLACEMENT_P), size=n, p=list(PLACEMENT_P.values()))
    touch = rng.random(n) < TOUCH_P
    centres: list[np.ndarray] = []
    kept_r: list[float] = []
    kept_kind: list[str] = []
    for r, kind, wants_contact in zip(radii, kinds, touch):
        for _ in range(MAX_TRIES):
            if wants_contact and centres:
                j = int(rng.integers(len(centres)))
                phi = rng.uniform(0, 2 * np.pi)
                y = centres[j][1] + (kept_r[j] + r) * math.cos(phi)
                x = centres[j][2] + (kept_r[j] + r) * math.sin(phi)
                z, k = _depth(rng, sup, kept_kind[j], y, x, r, grid.unit)
                d = np.array([z, y, x]) - centres[j]
                c = centres[j] + (kept_r[j] + r) * d / np.linalg.norm(d)  # exactly in contact
            else:
                rho = 0.9 * sup.radius * math.sqrt(rng.random())
                phi = rng.uniform(0, 2 * np.pi)
                y, x = rho * math.cos(phi), rho * math.sin(phi)
                z, k = _depth(rng, sup, str(kind), y, x, r, grid.unit)
                c = np.array([z, y, x])
            if _fits(c, r, centres, kept_r, sup, grid):
                centres.append(c)
                kept_r.append(float(r))
                kept_kind.append(k)
                break
    c_arr = np.array(centres, dtype=np.float64).reshape(-1, 3)
    r_arr = np.array(kept_r, dtype=np.float64)
    pairs = [
        (i, j)
        for i in range(len(r_arr))
        for j in range(i + 1, len(r_arr))
        if np.linalg.norm(c_arr[i] - c_arr[j]) - (r_arr[i] + r_arr[j]) < 1e-9
    ]
    return c_arr, r_arr, kept_kind, pairs


def pt_on_carbon(
    size: int = 64,
    *,
    contrast: str = "haadf",
    seed: int = 0,
    supersample: int = 1,
    thickness: int | None = None,
    n_particles: int = 16,
    n_groups: int = 4,
    support_level: float | None = None,
    particle_level: float = 1.0,
) -> Phantom:
    """Pt nanoparticles on and in a thick amorphous carbon grain.

    Parameters
    ----------
    size : int
        Lateral size ``y = x`` in voxels (at ``supersample=1``).
    contrast : {"haadf", "adf"}
        Sets the support intensity relative to Pt, and whether
        :func:`simulate` varies the particles' intensity from tilt to tilt.
    seed : int
        Everything random derives from it; the same seed gives the same
        specimen at every size and supersampling.
    supersample : int
        Render ``supersample`` times finer in each direction (the volume
        is ``supersample * (thickness, size, size)``).
    thickness : int, optional
        Number of voxels along z (the beam); defaults to ``size``.
    n_particles : int
        Particles to place; a few fewer when they do not fit.
    n_groups : int
        Particles are split at random into up to this many groups, each a
        component with its own per-tilt ADF intensity in :func:`simulate`.
    support_level : float, optional
        Mean support intensity per voxel relative to Pt; defaults to
        ``CONTRAST_SUPPORT_LEVEL[contrast]`` (0.05 HAADF, 0.35 ADF).
    particle_level : float
        Intensity of a voxel filled with Pt.

    Returns
    -------
    Phantom
        Named ``"pt_haadf"`` or ``"pt_adf"``, with particle, support and
        specimen masks, ``particles`` ``(z, y, x, radius)`` in voxels, and
        components ``"support"``, ``"particles_0"``, ... that sum to the volume.

    Notes
    -----
    *Geometry.* The pixel is ``0.75 * 64 / size`` nm (``info["pixel_size"]``),
    so the field of view is 48 nm at every size. Particles are dense
    spheres with radii log-normal around 3 voxels, clipped to 1.5-6 voxels
    at size 64 (diameters 2.3-9 nm), placed on the top (50 %) or bottom
    (20 %) surface, sunk by 10-35 % of their radius, or buried inside the
    support (30 %); about 30 % are placed in contact with an earlier one
    (``info["touching_pairs"]``). All stay inside the volume and inside the
    cylinder about either image axis, so no tilt moves them out of view.
    The support is a slab 25-40 % of the volume height thick, tilted
    (slope up to 0.1), bowed, undulating (band-limited random field) and of
    varying thickness, with an irregular outline of radius about 0.34 of
    the field of view.

    *Density.* The support is graded, not piecewise constant: a linear
    gradient of 0.6-1.0 per field of view times a low-frequency random
    field (±22 %), with fine porosity where a band-limited field (2-3
    voxels across at size 64) exceeds 1.25 standard deviations: about 11 %
    of the support, at 15 % of the surrounding density, with soft walls.
    Particles displace the carbon they overlap. Edges are anti-aliased
    (partial-volume coverage of the voxels).

    *Contrast.* HAADF intensity grows with atomic number as ``Z^n``: with
    ``n = 1.7`` and an a-C atom density 1.5 times that of Pt the support
    would be 0.019 of Pt per voxel, with ``n = 1.4`` (lower inner angles)
    0.042. We use 0.05, a little above that estimate (denser or thicker
    supports and the thickness-dependent background of real data raise the
    support's share), so that the support stays measurable in noisy
    projections: at 0° its projection is about 3-6 % of the particles'
    peaks. Low-angle ADF collects much of the coherent, weakly Z-dependent
    scattering of the amorphous support: per voxel it is 0.35 of Pt, and
    its projection about 25-45 % of the particles' peaks. Crystalline
    particles also change brightness with orientation (diffraction
    contrast), which :func:`simulate` models with a smooth random factor
    per particle group and tilt.
    """
    size = check_size(size, minimum=8)
    s = check_supersample(supersample)
    contrast = str(contrast).lower()
    if contrast not in CONTRAST_SUPPORT_LEVEL:
        raise DataError(f"contrast must be 'haadf' or 'adf', got {contrast!r}")
    nz = size if thickness is None else check_size(thickness, "thickness")
    level = CONTRAST_SUPPORT_LEVEL[contrast] if support_level is None else float(support_level)
    if level < 0 or particle_level < 0:
        raise DataError("support_level and particle_level must be non-negative")
    grid = Grid((nz, size, size), size, s)
    rng = np.random.default_rng(seed)
    sup = _Support.draw(rng, nz / size)
    centres, radii, kinds, pairs = _place_particles(
        rng, sup, grid, int(n_particles), radius_scale=1.0 / 64
    )
    n = len(radii)
    n_g = max(1, min(int(n_groups), n))
    groups = rng.permutation(np.arange(n) % n_g)

    # support: slab with an irregular outline, graded and porous
    z, y, x = grid.axes
    yy, xx = y[:, None], x[None, :]
    mid, half, outline = (
        f(yy, xx).astype(np.float32)[None] for f in (sup.mid, sup.half, sup.outline_sd)
    )
    sd = np.abs(z.astype(np.float32)[:, None, None] - mid)
    sd -= half
    np.maximum(sd, outline, out=sd)
    margin = SPECIMEN_MARGIN * grid.unit
    specimen = sd < margin
    support_cov = coverage(sd, grid.h)
    del sd
    rel, pore = sup.relative_density(grid)

    # particles: coverage per group, never more than one voxel in total
    gcov = [np.zeros(grid.shape, dtype=np.float32) for _ in range(n_g)]
    for c, r, g in zip(centres, radii, groups):
        pad = r + 2 * grid.unit
        sl, coords = grid.block(c - pad, c + pad)
        if sl is None:
            continue
        d = sphere_sd(coords, c, r)
        gcov[g][sl] += coverage(d, grid.h)
        specimen[sl] |= d < margin
    total = gcov[0].copy()
    for g in gcov[1:]:
        total += g
    over = total > 1
    if np.any(over):
        scale = np.where(over, 1.0 / np.maximum(total, 1e-12), 1.0).astype(np.float32)
        gcov = [g * scale for g in gcov]
        total = np.minimum(total, 1.0)

    support = rel
    support *= np.float32(level)
    support *= support_cov
    support *= 1 - total
    particle_parts = [g * np.float32(particle_level) for g in gcov] if n else []
    volume = support.copy()
    for p in particle_parts:
        volume += p
    particle_mask = total >= 0.5
    support_mask = (support_cov >= 0.5) & ~particle_mask
    components = [("support", support)]
    components += [(f"particles_{k}", p) for k, p in enumerate(particle_parts)]
    in_support = support_cov >= 0.5
    info = {
        "contrast": contrast,
        "size": size,
        "thickness": nz,
        "supersample": s,
        "seed": seed,
        "pixel_size": PIXEL_SIZE_AT_64 * 64 / size,
        "pixel_unit": "nm",
        "support_level": level,
        "particle_level": float(particle_level),
        "atomic_numbers": {"particles": Z_PT, "support": Z_C},
        "n_particles": n,
        "particle_groups": groups.tolist(),
        "placement": kinds,
        "touching_pairs": pairs,
        "slab_fraction": float(sup.fraction),
        "pore_fraction": float(np.mean(pore[in_support] > 0.5)) if in_support.any() else 0.0,
    }
    particles = np.concatenate([grid.to_voxel(centres), (radii * size * s)[:, None]], axis=1)
    return Phantom(
        name=f"pt_{contrast}",
        volume=volume,
        specimen_mask=specimen,
        particle_mask=particle_mask,
        support_mask=support_mask,
        particles=particles,
        components=components,
        info=info,
    )
