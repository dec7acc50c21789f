"""Specimen families the training generator never produces, for the generalisation benchmark.

The learned methods of tomoprior are trained on the specimens of
``tomoprior.phantoms`` (Pt on porous carbon, isolated particles, random
ovals and polyhedra). To judge them off that simulator, this module draws
specimens from six other families, written here with numpy and scipy only:
it imports nothing from ``tomoprior``, and no module of the package imports
it (``tests/test_unseen_families.py`` checks both).

Families (:data:`FAMILIES`):

``shepp_logan``
    The 3D Shepp-Logan head (Kak & Slaney's ellipsoids, Toft's intensities),
    turned to a random orientation, its small features' densities jittered.
``foam``
    An open-cell foam: the edges of a random Voronoi tessellation (struts
    where three cells meet) inside an ellipsoidal grain, split into
    crystalline grains.
``core_shell``
    Core-shell, hollow and yolk-shell particles in vacuum: three densities,
    piecewise constant, slightly ellipsoidal.
``rods``
    Faceted rods and needles: hexagonal and square prisms, some with
    pyramidal tips, two densities, random orientations.
``film``
    A device cross-section: a stack of layers with rough interfaces, tilted
    against the beam, a dense capping layer, a via through the stack and
    precipitates in one layer.
``graded``
    Smooth, overlapping blobs with soft edges, a density gradient across each
    and a band-limited texture: nothing piecewise constant.

Every specimen is rendered at ``supersample`` times the nominal size from
its continuous description and box-averaged to the nominal size for the
ground truth (:meth:`Specimen.truth`), so a tilt series projected from the
fine volume does not share the reconstruction's discretisation (no inverse
crime). :attr:`Specimen.groups` labels the pieces that change brightness
from tilt to tilt in ADF-STEM (crystalline grains and particles; 0 for
amorphous matter) and :attr:`Specimen.objects` lists compact objects for the
missing-wedge elongation score.

Usage::

    from unseen_families import FAMILIES, make, render
    truth = make("foam", 64, seed=3)            # (64, 64, 64) float32 ground truth
    spec = render("foam", 64, seed=3)           # fine volume, groups, objects

References
----------
L. A. Shepp and B. F. Logan, "The Fourier reconstruction of a head section",
IEEE Trans. Nucl. Sci. 21 (1974) 21-43.
A. C. Kak and M. Slaney, "Principles of Computerized Tomographic Imaging",
IEEE Press (1988), ch. 3.
P. Toft, "The Radon Transform: Theory and Implementation", PhD thesis, DTU
(1996).
L. J. Gibson and M. F. Ashby, "Cellular Solids", Cambridge University Press
(1997): open-cell foams as the edge networks of Voronoi-like cells.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

__all__ = ["FAMILIES", "Specimen", "make", "make_groups", "render"]

MARGIN = 1.5  # coarse voxels by which the specimen region is dilated


@dataclass(frozen=True, eq=False)
class Specimen:
    """One rendered specimen.

    Attributes
    ----------
    name : str
        Family name.
    volume : ndarray, float32 (z, y, x)
        Non-negative density on the fine grid (``supersample * size`` per axis).
    groups : ndarray, int16 (z, y, x)
        Fine-grid labels: 0 amorphous, ``k >= 1`` a piece whose ADF brightness
        varies with the tilt as one (a crystalline grain or particle).
    region : ndarray of bool (z, y, x)
        Fine-grid specimen region (the specimen and its envelope, dilated by
        about 1.5 coarse voxels): where reconstructions are scored.
    objects : ndarray (n, 4)
        Compact objects ``(z, y, x, radius)`` in fine voxels (fractional
        indices of the centre); the radius sets the elongation score's box.
        May be empty.
    supersample : int
    seed : int
    """

    name: str
    volume: np.ndarray
    groups: np.ndarray
    region: np.ndarray
    objects: np.ndarray
    supersample: int
    seed: int

    @property
    def size(self) -> int:
        return self.volume.shape[-1] // self.supersample

    def truth(self) -> np.ndarray:
        """The ground truth at the nominal size: the fine volume averaged over s³ blocks."""
        return box_mean(self.volume, self.supersample)


def box_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average over ``factor``-cubed blocks (float32)."""
    f = int(factor)
    if f == 1:
        return np.asarray(volume, dtype=np.float32).copy()
    nz, ny, nx = (n // f for n in volume.shape)
    v = np.asarray(volume, dtype=np.float64)[: nz * f, : ny * f, : nx * f]
    return v.reshape(nz, f, ny, f, nx, f).mean(axis=(1, 3, 5)).astype(np.float32)


# -- grid helpers: coordinates in [-1, 1] over the fine grid, (z, y, x) order ----------------------
def _coords(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) * (2.0 / n) - 1.0


def _window(n: int, centre, half) -> tuple[tuple[slice, ...], list[np.ndarray]]:
    """Slices of the fine grid covering ``centre ± half`` and sparse coordinates relative to centre."""
    slices, rel = [], []
    for c, h in zip(centre, np.broadcast_to(half, (3,))):
        lo = max(0, int(np.floor((c - h + 1.0) * n / 2.0)))
        hi = min(n, int(np.ceil((c + h + 1.0) * n / 2.0)) + 1)
        slices.append(slice(lo, max(lo, hi)))
        rel.append((np.arange(lo, max(lo, hi)) + 0.5) * (2.0 / n) - 1.0 - c)
    z, y, x = np.meshgrid(*rel, indexing="ij", sparse=True)
    return tuple(slices), [z, y, x]


def _body(rel: list[np.ndarray], rot: np.ndarray) -> list[np.ndarray]:
    """Body coordinates ``rot @ (z, y, x)``: row k of ``rot`` is body axis k in (z, y, x)."""
    z, y, x = rel
    return [rot[k, 0] * z + rot[k, 1] * y + rot[k, 2] * x for k in range(3)]


def _rotation(rng: np.random.Generator) -> np.ndarray:
    return Rotation.random(random_state=rng).as_matrix()


def _to_voxels(centre, radius: float, n: int) -> list[float]:
    """A ``(z, y, x)`` centre and a radius in [-1, 1] units -> fine-voxel indices and voxels."""
    return [(c + 1.0) * n / 2.0 - 0.5 for c in centre] + [radius * n / 2.0]


def _in_ball(rng: np.random.Generator, radius: float) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v) * radius * rng.random() ** (1.0 / 3.0)


def _rough(rng: np.random.Generator, amplitude: float, terms: int = 4) -> Callable:
    """A smooth random height field ``h(u, v)`` (sum of plane waves) of about ``amplitude``."""
    k = rng.uniform(2.0, 7.0, terms)
    th = rng.uniform(0, 2 * np.pi, terms)
    ph = rng.uniform(0, 2 * np.pi, terms)
    a = amplitude * np.sqrt(2.0 / terms)

    def h(u, v):
        out = 0.0
        for kk, t, p in zip(k, th, ph):
            out = out + a * np.cos(kk * (np.cos(t) * u + np.sin(t) * v) + p)
        return out

    return h


# -- families --------------------------------------------------------------------------------------
# Shepp-Logan head, 3D (Kak & Slaney geometry, Toft's modified intensities): rows
# (density, semi-axes a, b, c along the head's x, y, z, centre x0, y0, z0, rotation about z in deg).
_HEAD = np.array([
    [1.0, 0.6900, 0.920, 0.810, 0.0, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.780, 0.0, -0.0184, 0.0, 0.0],
    [-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0, 0.0, -18.0],
    [-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0, 0.0, 18.0],
    [0.1, 0.2100, 0.250, 0.410, 0.0, 0.35, -0.15, 0.0],
    [0.1, 0.0460, 0.046, 0.050, 0.0, 0.1, 0.25, 0.0],
    [0.1, 0.0460, 0.046, 0.050, 0.0, -0.1, 0.25, 0.0],
    [0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.0, 0.0],
    [0.1, 0.0230, 0.023, 0.020, 0.0, -0.606, 0.0, 0.0],
    [0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.0, 0.0],
])


def _shepp_logan(n: int, rng: np.random.Generator):
    """The head scaled by 0.9, turned about the beam by any angle and tilted by up to 15°."""
    # scipy's axis "x" is the first component here: z, the beam
    turn = Rotation.from_euler("xyz", [rng.uniform(0, 360), rng.uniform(-15, 15),
                                       rng.uniform(-15, 15)], degrees=True).as_matrix()
    # head coordinates (x, y, z) -> volume (z, y, x): permutation, then the random turn
    perm = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)  # (x, y, z) -> (z, y, x)
    scale = 0.9
    vol = np.zeros((n, n, n), np.float32)
    groups = np.zeros((n, n, n), np.int16)
    envelope = np.zeros((n, n, n), bool)
    for i, (dens, a, b, c, x0, y0, z0, phi) in enumerate(_HEAD):
        if i >= 4:
            dens = dens * rng.uniform(0.7, 1.3)
        rz = Rotation.from_euler("z", phi, degrees=True).as_matrix()  # in head (x, y, z)
        # body axes in volume (z, y, x) coordinates: turn @ perm @ rz columns
        axes = turn @ perm @ rz  # column k: body axis k in volume coords
        centre = turn @ perm @ (scale * np.array([x0, y0, z0]))
        semi = scale * np.array([a, b, c])
        sl, rel = _window(n, centre, semi.max())
        q = _body(rel, axes.T)
        inside = sum((qk / s) ** 2 for qk, s in zip(q, semi)) <= 1.0
        vol[sl] += np.float32(dens) * inside
        if i == 0:
            envelope[sl] |= inside
        if i >= 4:
            groups[sl][inside] = (i - 4) % 3 + 1
    np.maximum(vol, 0, out=vol)
    # no compact objects: the small features sit in the brain, one or two voxels across
    return vol, groups, envelope, np.zeros((0, 4))


def _foam(n: int, rng: np.random.Generator):
    """Struts of a random Voronoi tessellation (three nearest seeds within the strut width)."""
    semi = rng.uniform(0.72, 0.88, 3)
    rot = _rotation(rng)
    n_cells = int(rng.integers(70, 130))
    seeds = rng.uniform(-1.1, 1.1, (n_cells, 3))
    width = rng.uniform(0.045, 0.07)
    grains = rng.uniform(-0.7, 0.7, (int(rng.integers(3, 6)), 3))
    sl, rel = _window(n, (0.0, 0.0, 0.0), semi.max())
    q = _body(rel, rot)
    envelope_local = sum((qk / s) ** 2 for qk, s in zip(q, semi)) <= 1.0
    idx = np.argwhere(envelope_local)
    c = _coords(n)
    offs = [s.start for s in sl]
    pts = np.stack([c[idx[:, k] + offs[k]] for k in range(3)], axis=1)
    d, _ = cKDTree(seeds).query(pts, k=3)
    strut = (d[:, 2] - d[:, 0]) < width
    # density: slightly graded across the grain (a sintered metal foam)
    g = rng.standard_normal(3)
    g /= np.linalg.norm(g)
    dens = 0.85 + 0.15 * (pts @ g)
    _, grain = cKDTree(grains).query(pts)
    vol = np.zeros((n, n, n), np.float32)
    groups = np.zeros((n, n, n), np.int16)
    envelope = np.zeros((n, n, n), bool)
    full = tuple(idx[:, k] + offs[k] for k in range(3))
    envelope[full] = True
    sel = tuple(a[strut] for a in full)
    vol[sel] = dens[strut].astype(np.float32)
    groups[sel] = (grain[strut] + 1).astype(np.int16)
    return vol, groups, envelope, np.zeros((0, 4))


def _core_shell(n: int, rng: np.random.Generator):
    """Core-shell, hollow and yolk-shell particles, not touching, in vacuum."""
    vol = np.zeros((n, n, n), np.float32)
    groups = np.zeros((n, n, n), np.int16)
    placed: list[tuple[np.ndarray, float]] = []
    objects = []
    target = int(rng.integers(6, 11))
    shell_density = rng.uniform(0.35, 0.55)
    hollow_density = rng.uniform(0.65, 0.85)
    label = 0
    for _ in range(400):
        if len(placed) == target:
            break
        r = rng.uniform(0.12, 0.26)
        c = _in_ball(rng, 0.85 - r)
        if any(np.linalg.norm(c - c2) < r + r2 + 0.05 for c2, r2 in placed):
            continue
        placed.append((c, r))
        semi = r * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0)])
        rot = _rotation(rng)
        sl, rel = _window(n, c, r)
        q = _body(rel, rot)
        rho = np.sqrt(sum((qk / s) ** 2 for qk, s in zip(q, semi)))  # 1 at the outer surface
        kind = rng.choice(["core_shell", "hollow", "yolk"], p=[0.45, 0.3, 0.25])
        local_v = np.zeros(rho.shape, np.float32)
        local_g = np.zeros(rho.shape, np.int16)
        if kind == "core_shell":
            core = rng.uniform(0.4, 0.7)
            label += 1
            local_v[rho <= 1.0] = shell_density
            local_v[rho <= core] = 1.0
            local_g[rho <= core] = label
        else:
            inner = 1.0 - rng.uniform(0.2, 0.35)
            shell = (rho <= 1.0) & (rho > inner)
            label += 1
            local_v[shell] = hollow_density
            local_g[shell] = label
            if kind == "yolk":  # a core resting off-centre inside the cavity
                cr = rng.uniform(0.3, 0.45) * inner
                u = rng.standard_normal(3)
                u /= np.linalg.norm(u)
                off = (inner - cr - 0.05) * u
                yolk = sum(((qk / s) - o) ** 2 for qk, s, o in zip(q, semi, off)) <= cr**2
                label += 1
                local_v[yolk] = 1.0
                local_g[yolk] = label
        vol[sl] = np.maximum(vol[sl], local_v)
        groups[sl] = np.where(local_v > 0, local_g, groups[sl])
        objects.append(_to_voxels(c, r, n))
    return vol, groups, vol > 0, np.array(objects)


def _rods(n: int, rng: np.random.Generator):
    """Hexagonal and square prisms, some tapering to pyramidal tips, two densities."""
    vol = np.zeros((n, n, n), np.float32)
    groups = np.zeros((n, n, n), np.int16)
    objects = []
    target = int(rng.integers(8, 14))
    count = 0
    for _ in range(400):
        if count == target:
            break
        rot = _rotation(rng)  # row 0: the rod axis
        length = rng.uniform(0.35, 0.95)
        w = rng.uniform(0.05, 0.11)  # apothem of the cross-section
        c = _in_ball(rng, 0.6)
        ends = [c + s * 0.5 * length * rot[0] for s in (-1, 1)]
        if any(np.abs(e).max() > 0.88 for e in ends):
            continue
        count += 1
        faces = 6 if rng.random() < 0.6 else 4
        tip = rng.uniform(0.1, 0.3) * length if rng.random() < 0.5 else 0.0
        twist = rng.uniform(0, 2 * np.pi)
        half = 0.5 * length + w
        sl, rel = _window(n, c, half)
        t, u, v = _body(rel, rot)
        across = None
        for k in range(faces):
            a = twist + 2 * np.pi * k / faces
            p = np.cos(a) * u + np.sin(a) * v
            across = p if across is None else np.maximum(across, p)
        taper = np.ones_like(t) if tip == 0 else np.clip((0.5 * length - np.abs(t)) / tip, 0, 1)
        inside = (np.abs(t) <= 0.5 * length) & (across <= w * taper)
        dens = 1.0 if rng.random() < 0.5 else 0.6
        vol[sl] = np.where(inside, np.float32(dens), vol[sl])
        groups[sl] = np.where(inside, np.int16(count), groups[sl])
        objects.append(_to_voxels(c, 0.25 * length + w, n))
    return vol, groups, vol > 0, np.array(objects)


def _film(n: int, rng: np.random.Generator):
    """A layer stack with rough interfaces, tilted against the beam; capping layer, via, precipitates."""
    alpha = np.deg2rad(rng.uniform(15, 75))  # stack normal: from y towards z (the beam)
    beta = np.deg2rad(rng.uniform(-20, 20))  # and turned about the beam
    normal = np.array([np.sin(alpha), np.cos(alpha) * np.cos(beta), np.cos(alpha) * np.sin(beta)])
    e1 = np.cross(normal, [0.0, 0.0, 1.0])
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.array([0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    half = 0.85
    sl, rel = _window(n, (0.0, 0.0, 0.0), half)
    z, y, x = rel
    box = (np.abs(z) <= half) & (np.abs(y) <= half) & (np.abs(x) <= half)
    s = normal[0] * z + normal[1] * y + normal[2] * x
    u = e1[0] * z + e1[1] * y + e1[2] * x
    v = e2[0] * z + e2[1] * y + e2[2] * x
    # layers from the substrate (s < start) upwards; densities from a palette, no two alike in a row
    palette = [("substrate", 0.35), ("oxide", 0.2), ("metal", 1.0), ("nitride", 0.5),
               ("polymer", 0.1), ("metal", 0.8)]
    bounds = [rng.uniform(-0.75, -0.5)]
    while bounds[-1] < 0.45:
        bounds.append(bounds[-1] + rng.uniform(0.12, 0.3))
    kinds = [0]
    for _ in range(len(bounds)):
        choices = [k for k in range(1, len(palette)) if k != kinds[-1]]
        kinds.append(int(rng.choice(choices)))
    cap = bounds[-1] + rng.uniform(0.08, 0.15)  # dense capping layer (as on a FIB lamella)
    vol = np.zeros(s.shape, np.float32)
    grp = np.zeros(s.shape, np.int16)
    layer = np.full(s.shape, -1, np.int16)
    surfaces = [b + _rough(rng, rng.uniform(0.005, 0.025))(u, v) for b in bounds]
    layer[s < surfaces[0]] = 0
    for i in range(len(bounds) - 1):
        layer[(s >= surfaces[i]) & (s < surfaces[i + 1])] = i + 1
    top = len(bounds)
    cap_surface = cap + _rough(rng, 0.01)(u, v)
    layer[(s >= surfaces[-1]) & (s < cap_surface)] = top
    for i in range(top):
        name, dens = palette[kinds[i]]
        vol[layer == i] = dens
        if name == "metal":
            grp[layer == i] = 1
    vol[layer == top] = 0.9
    # a via: a metal cylinder along the normal through the two layers below the top one
    lo_via = bounds[max(0, top - 3)]
    r_via = rng.uniform(0.06, 0.11)
    cu, cv = rng.uniform(-0.4, 0.4, 2)
    via = ((u - cu) ** 2 + (v - cv) ** 2 <= r_via**2) & (s >= lo_via) & (s < bounds[-1])
    vol[via] = 1.0
    grp[via] = 2
    # precipitates in the thickest inner layer
    thick = int(np.argmax(np.diff(bounds))) + 1
    mid = 0.5 * (bounds[thick - 1] + bounds[thick])
    objects = []
    g = 3
    for _ in range(int(rng.integers(4, 9))):
        r = rng.uniform(0.03, 0.05)
        pu, pv = rng.uniform(-0.6, 0.6, 2)
        centre = mid * normal + pu * e1 + pv * e2
        if np.abs(centre).max() > half - r:
            continue
        dot = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= r**2
        vol[dot] = 0.75
        grp[dot] = g
        g += 1
        objects.append(_to_voxels(centre, r, n))
    vol[~box] = 0
    grp[~box] = 0
    out_v = np.zeros((n, n, n), np.float32)
    out_g = np.zeros((n, n, n), np.int16)
    out_v[sl], out_g[sl] = vol, grp
    env = np.zeros((n, n, n), bool)
    env[sl] = box & (layer >= 0)
    return out_v, out_g, env, np.array(objects).reshape(-1, 4)


def _graded(n: int, rng: np.random.Generator):
    """Overlapping soft ellipsoids with a density gradient and a band-limited texture."""
    texture = ndimage.gaussian_filter(rng.standard_normal((n, n, n)).astype(np.float32),
                                      sigma=n / 40.0, mode="wrap")
    texture /= texture.std() + 1e-12
    tau = rng.uniform(0.15, 0.35)
    vol = np.zeros((n, n, n), np.float32)
    best = np.zeros((n, n, n), np.float32)
    groups = np.zeros((n, n, n), np.int16)
    for i in range(int(rng.integers(5, 10))):
        semi = rng.uniform(0.15, 0.35, 3)
        c = _in_ball(rng, 0.8 - semi.max())
        rot = _rotation(rng)
        edge = rng.uniform(0.05, 0.15)
        slope = rng.uniform(-0.6, 0.6)
        rho0 = rng.uniform(0.4, 1.0)
        sl, rel = _window(n, c, semi.max() * (1 + 3 * edge))
        q = _body(rel, rot)
        r = np.sqrt(sum((qk / s) ** 2 for qk, s in zip(q, semi)))
        prof = 0.5 * (1.0 - np.tanh((r - 1.0) / edge))
        ramp = 1.0 + slope * q[0] / semi[0]
        blob = (rho0 * prof * np.clip(ramp, 0.2, None)).astype(np.float32)
        vol[sl] += blob
        win = blob > best[sl]
        groups[sl] = np.where(win & (blob > 0.05 * rho0), np.int16(i % 3 + 1), groups[sl])
        best[sl] = np.maximum(best[sl], blob)
    vol *= 1.0 + tau * texture
    np.maximum(vol, 0, out=vol)
    vol[vol < 0.02 * vol.max()] = 0
    groups[vol == 0] = 0
    # no compact objects: the blobs overlap and have no edge to measure an extent by
    return vol, groups, vol > 0, np.zeros((0, 4))


_FAMILIES: dict[str, Callable] = {
    "shepp_logan": _shepp_logan,
    "foam": _foam,
    "core_shell": _core_shell,
    "rods": _rods,
    "film": _film,
    "graded": _graded,
}
FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def render(name: str, size: int = 64, seed: int = 0, supersample: int = 2) -> Specimen:
    """Render one specimen of a family on the fine grid.

    Parameters
    ----------
    name : str
        One of :data:`FAMILIES`.
    size : int
        Nominal edge of the cubic volume in voxels.
    seed : int
        The specimen's seed; the same ``(name, size, seed, supersample)``
        always gives the same specimen, and each family draws from its own
        stream, so one seed gives unrelated specimens in different families.
    supersample : int
        Fine voxels per nominal voxel along each axis.

    Returns
    -------
    Specimen
        Fine volume, ADF groups, scoring region and compact objects.
    """
    if name not in _FAMILIES:
        raise ValueError(f"unknown family {name!r}: choose from {', '.join(FAMILIES)}")
    size, supersample = int(size), int(supersample)
    if size < 8 or supersample < 1:
        raise ValueError(f"size must be >= 8 and supersample >= 1, got {size}, {supersample}")
    n = size * supersample
    rng = np.random.default_rng(np.random.SeedSequence([zlib.crc32(name.encode()), int(seed)]))
    vol, groups, envelope, objects = _FAMILIES[name](n, rng)
    grow = max(1, round(MARGIN * supersample))
    region = ndimage.binary_dilation(envelope | (vol > 0), iterations=grow)
    return Specimen(name=name, volume=np.ascontiguousarray(vol, np.float32),
                    groups=np.ascontiguousarray(groups, np.int16), region=region,
                    objects=np.asarray(objects, np.float64).reshape(-1, 4),
                    supersample=supersample, seed=int(seed))


def make(name: str, size: int = 64, seed: int = 0, supersample: int = 2) -> np.ndarray:
    """The ground truth ``(size, size, size)`` float32: rendered ``supersample`` times finer, box-averaged."""
    return render(name, size, seed, supersample).truth()


def make_groups(name: str, size: int = 64, seed: int = 0, supersample: int = 2) -> np.ndarray:
    """ADF group labels on the fine grid (``supersample * size`` per axis); 0 = amorphous."""
    return render(name, size, seed, supersample).groups
