"""Tilt-series simulation: projection on a fine grid, misalignment, contrast, noise."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from ..errors import DataError, GeometryError
from ..geometry import TiltGeometry, parse_tilt_axis
from ..operators import make_projector
from ..transforms import bin_images, series_from_canonical, volume_to_canonical
from ._base import Phantom

__all__ = ["diffraction_factors", "random_drift", "simulate"]

DEFAULT_DOSE = 1e4
DEFAULT_SIGMA = 0.05


def random_drift(
    angles: Sequence[float] | np.ndarray,
    amplitude: float,
    rng: np.random.Generator,
    *,
    smoothness: float = 1.5,
) -> np.ndarray:
    """Smooth random specimen drift ``(n_tilts, 2)`` ``(dy, dx)`` in pixels.

    Parameters
    ----------
    angles : array of float
        Tilt angles in degrees (any order).
    amplitude : float
        Largest displacement of any image along y or x.
    rng : numpy.random.Generator
    smoothness : float
        Standard deviation, in tilts, of the Gaussian that correlates
        successive steps.

    Notes
    -----
    A random walk over the tilts sorted by angle, starting from the tilt
    nearest 0° (zero drift) and running outwards to both ends, as in a
    bidirectional acquisition; its steps are smoothed so the path bends
    gently, then the whole path is scaled so its largest component equals
    ``amplitude``.
    """
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    n = a.size
    order = np.argsort(a, kind="stable")
    steps = rng.standard_normal((n, 2))
    if smoothness > 0 and n > 1:
        steps = gaussian_filter1d(steps, smoothness, axis=0, mode="nearest")
    p0 = int(np.argmin(np.abs(a[order])))
    walk = np.zeros((n, 2))
    walk[p0 + 1 :] = np.cumsum(steps[p0 + 1 :], axis=0)
    walk[:p0] = np.cumsum(steps[:p0][::-1], axis=0)[::-1]
    peak = np.abs(walk).max()
    if peak > 0:
        walk *= float(amplitude) / peak
    drift = np.empty_like(walk)
    drift[order] = walk
    return drift


def diffraction_factors(
    angles: Sequence[float] | np.ndarray,
    n_groups: int,
    rng: np.random.Generator,
    *,
    variation: float = 0.4,
    periods: tuple[float, float] = (8.0, 40.0),
    n_terms: int = 4,
) -> np.ndarray:
    """Smooth random per-tilt intensity factors ``(n_tilts, n_groups)`` in ``1 ± variation``.

    Notes
    -----
    Mimics diffraction contrast in ADF-STEM: a crystalline particle is
    brighter or darker as its lattice planes move in and out of Bragg
    conditions while it tilts. Each group's factor is
    ``1 + variation * tanh(1.5 g(θ))`` with ``g`` a unit-variance sum of
    ``n_terms`` cosines of the tilt angle with random periods in
    ``periods`` (degrees) and phases. It depends on the angle, not on the
    image order, so it is smooth in the angle whatever the acquisition
    scheme.
    """
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    p = rng.uniform(periods[0], periods[1], (n_groups, n_terms))
    ph = rng.uniform(0, 2 * np.pi, (n_groups, n_terms))
    g = np.cos(2 * np.pi * a[:, None, None] / p[None] + ph[None]).sum(axis=2)
    g *= math.sqrt(2.0 / n_terms)
    return 1.0 + variation * np.tanh(1.5 * g)


def _project_canonical(volume, geom: TiltGeometry, backend: str, device) -> np.ndarray:
    """Canonical projections of a volume; only its non-empty y-slices are projected."""
    vc = volume_to_canonical(volume, geom)
    nz, ny, nx = vc.shape
    out = np.zeros((geom.n_tilts, ny, nx), dtype=np.float32)
    rows = np.flatnonzero(np.any(vc != 0, axis=(0, 2)))
    if rows.size == 0:
        return out
    sub = np.ascontiguousarray(vc[:, rows, :], dtype=np.float32)
    op = make_projector(geom.angles, sub.shape, nx, backend=backend, device=device)
    with torch.no_grad():
        out[:, rows, :] = op(torch.from_numpy(sub)).cpu().numpy()
    return out


def _drift_from(shifts, angles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = angles.size
    if shifts is None:
        return np.zeros((n, 2))
    if np.ndim(shifts) == 0:
        amp = float(shifts)
        if not (math.isfinite(amp) and amp >= 0):
            raise GeometryError(f"drift amplitude must be a non-negative number, got {shifts!r}")
        return random_drift(angles, amp, rng) if amp > 0 else np.zeros((n, 2))
    d = np.asarray(shifts, dtype=np.float64)
    if d.shape != (n, 2) or not np.all(np.isfinite(d)):
        raise GeometryError(
            f"shifts must be finite (dy, dx) per tilt, shape ({n}, 2), got {d.shape}"
        )
    return d.copy()


def _noise_model(noise, dose, sigma) -> tuple[str | None, float | None, float | None]:
    """Validated ``(kind, dose, sigma)``; see :func:`simulate`."""
    if noise is None:
        if dose is not None and sigma is not None:
            raise DataError("give a dose (Poisson noise) or a sigma (Gaussian noise), not both")
        kind = "poisson" if dose is not None else "gaussian" if sigma is not None else None
    else:
        kind = str(noise).lower()
        if kind not in ("poisson", "gaussian"):
            raise DataError(f"noise must be None, 'poisson' or 'gaussian', got {noise!r}")
    if kind == "poisson":
        d = DEFAULT_DOSE if dose is None else float(dose)
        if not (math.isfinite(d) and d > 0):
            raise DataError(f"dose must be a positive number of electrons per pixel, got {dose!r}")
        return kind, d, None
    if kind == "gaussian":
        sg = DEFAULT_SIGMA if sigma is None else float(sigma)
        if not (math.isfinite(sg) and sg >= 0):
            raise DataError(f"sigma must be a non-negative number, got {sigma!r}")
        return kind, None, sg
    return None, None, None


def simulate(
    phantom_or_volume: Phantom | np.ndarray,
    angles: Sequence[float] | np.ndarray,
    *,
    tilt_axis: float | str = 0.0,
    noise: str | None = None,
    dose: float | None = None,
    sigma: float | None = None,
    shifts: float | np.ndarray | None = None,
    axis_error: float = 0.0,
    supersample: int | None = None,
    seed: int = 0,
    pixel_size: float | None = None,
    backend: str = "rotate",
    background: float = 0.0,
    contrast_variation: float = 0.4,
    device: str | torch.device | None = "auto",
) -> tuple[np.ndarray, TiltGeometry]:
    """Simulate a (misaligned, noisy) tilt series of a phantom.

    Parameters
    ----------
    phantom_or_volume : Phantom or array (z, y, x)
        The specimen; a :class:`Phantom` brings its components (ADF
        contrast), supersampling and pixel size.
    angles : array of float
        Tilt angles in degrees.
    tilt_axis : float or str
        Nominal tilt-axis orientation (0 or ``"horizontal"``: along x, the
        package default for STEM; 90 or ``"vertical"``: along y; any angle).
    noise : {None, "poisson", "gaussian"}
        Noise model. ``None`` with a ``dose`` means Poisson, with a
        ``sigma`` Gaussian, with neither no noise.
    dose : float, optional
        Poisson: electrons per pixel at the brightest pixel of the series
        (default 1e4).
    sigma : float, optional
        Gaussian: standard deviation relative to the brightest pixel
        (default 0.05).
    shifts : float or array (n_tilts, 2), optional
        Specimen drift: ``(dy, dx)`` per image in (output) pixels, how far
        each image's content is displaced; or a number, the largest
        displacement of a smooth random drift (:func:`random_drift`, zero
        at the tilt nearest 0°).
    axis_error : float
        Degrees by which the true tilt axis differs from ``tilt_axis``.
    supersample : int, optional
        The volume is ``supersample`` times finer than the images to
        produce; ``None`` takes the phantom's own factor (1 for an array).
    seed : int
        Seed of the drift, the diffraction factors and the noise (three
        independent streams).
    pixel_size : float, optional
        Output pixel size, recorded in the geometry; defaults to the
        phantom's ``info["pixel_size"]``.
    backend : str
        Projector for the fine grid: ``"rotate"`` (ray sampling, default),
        ``"sparse"`` or ``"astra"``.
    background : float
        Constant added to every pixel before the noise.
    contrast_variation : float
        ADF only: particle groups are scaled per tilt by factors in
        ``1 ± contrast_variation`` (:func:`diffraction_factors`).
    device : str
        Where to project (``"auto"``: CUDA when available).

    Returns
    -------
    series : ndarray, float32 (n_tilts, rows, cols)
        ``rows, cols`` are the volume's ``y, x`` divided by ``supersample``.
    geometry : TiltGeometry
        The *true* geometry: the angles, ``tilt_axis + axis_error``, shift
        corrections ``-drift``, the thickness and pixel size.
        ``geometry.extra`` holds ``drift``, ``diffraction_factors`` (or
        ``None``) and the simulation parameters.

    Notes
    -----
    *Avoiding the inverse crime.* Reconstructing from data made by the
    reconstruction's own discretisation flatters every method. Render the
    phantom finer than the reconstruction grid (``supersample=s``, volume
    ``s * (z, y, x)``) and pass it here: it is projected on the fine grid by
    ray sampling (``backend="rotate"``, a different discretisation from
    the default ``"sparse"`` reconstruction projector), the line integrals
    are divided by ``s`` so they are in units of output pixels, and the
    images are binned by ``s``. Compare reconstructions with
    ``phantom.coarse()`` (the volume binned by ``s``).

    *Geometry.* The volume is turned into the canonical frame of the true
    axis (:func:`~tomoprior.transforms.volume_to_canonical`, quarter turns),
    projected, and the images are turned back with
    :func:`~tomoprior.transforms.series_from_canonical`, which displaces
    each by ``drift`` and rotates it by the fine part of the axis angle.
    This is done on the fine images (shifts times ``s``) before binning,
    so the misalignment is interpolated at the fine resolution. The
    phantom is thereby defined in the frame of axis-corrected images, the
    frame in which tomoprior returns reconstructions: a reconstruction from
    ``(series, geometry)`` compares directly with the phantom, whatever the
    tilt axis. Content moved out of an image is lost and the uncovered
    border is zero.

    *Contrast.* For a phantom whose ``info["contrast"]`` is ``"adf"``, the
    ``"particles_<k>"`` components are projected separately and scaled per
    tilt by :func:`diffraction_factors`; otherwise the volume is projected
    once. Only the y-slices (in the canonical frame) that hold something
    are projected.

    *Noise.* Poisson: ``counts ~ Poisson(dose * I / max(I))`` over the whole
    series, returned as ``counts * max(I) / dose`` (same scale as the clean
    images). Gaussian: ``I + N(0, (sigma * max(I))^2)``.
    """
    if isinstance(phantom_or_volume, Phantom):
        ph = phantom_or_volume
        volume, components, info = ph.volume, ph.components, ph.info
        s = ph.supersample if supersample is None else int(supersample)
        if pixel_size is None and info.get("pixel_size") is not None:
            # info holds the nominal pixel; images binned by s have pixels s / supersample of it
            pixel_size = info["pixel_size"] * s / ph.supersample
    else:
        volume = np.asarray(phantom_or_volume, dtype=np.float32)
        if volume.ndim != 3:
            raise DataError(f"a volume must be (z, y, x), got shape {volume.shape}")
        components, info = [("all", volume)], {}
        s = 1 if supersample is None else int(supersample)
    if s < 1 or any(n % s or n // s < 2 for n in volume.shape):
        raise DataError(
            f"supersample={s} must divide the volume shape {volume.shape} "
            "(and leave at least 2 voxels per axis)"
        )
    if not np.all(np.isfinite(volume)):
        raise DataError("the volume contains NaN or infinite values")
    kind, dose, sigma = _noise_model(noise, dose, sigma)
    angles = np.asarray(angles, dtype=np.float64).reshape(-1)
    streams = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(3)]
    drift = _drift_from(shifts, angles, streams[0])

    nominal = parse_tilt_axis(tilt_axis)
    adf = str(info.get("contrast", "")).lower() == "adf"
    groups = [c for k, c in components if k.startswith("particles")]
    factors = None
    if adf and groups:
        factors = diffraction_factors(
            angles, len(groups), streams[1], variation=float(contrast_variation)
        )
    geom = TiltGeometry(
        angles,
        tilt_axis=nominal + float(axis_error),
        shifts=-drift,
        thickness=volume.shape[0] // s,
        pixel_size=pixel_size,
        pixel_unit=info.get("pixel_unit", "nm"),
        angle_source="simulated",
        extra={
            "drift": drift,
            "diffraction_factors": factors,
            "simulation": {
                "phantom": getattr(phantom_or_volume, "name", None),
                "nominal_tilt_axis": nominal,
                "axis_error": float(axis_error),
                "supersample": s,
                "backend": backend,
                "noise": kind,
                "dose": dose,
                "sigma": sigma,
                "background": float(background),
                "seed": seed,
            },
        },
    )

    # fine canonical projections, in units of output pixels
    if factors is None:
        fine = _project_canonical(volume, geom, backend, device)
    else:
        fine = None
        g = 0
        for k, comp in components:
            p = _project_canonical(comp, geom, backend, device)
            if k.startswith("particles"):
                p *= factors[:, g, None, None].astype(np.float32)
                g += 1
            fine = p if fine is None else fine + p
    fine /= s
    fine_geom = geom.replace(shifts=geom.shifts * s) if s > 1 else geom
    series = bin_images(series_from_canonical(fine, fine_geom), s)
    series = series + np.float32(background)

    if kind is not None:
        rng = streams[2]
        peak = float(series.max())
        if kind == "poisson" and peak > 0:
            lam = np.clip(series.astype(np.float64) * (dose / peak), 0, None)
            series = rng.poisson(lam) * (peak / dose)
        elif kind == "gaussian":
            series = series + rng.normal(0.0, sigma * peak, series.shape)
    return np.ascontiguousarray(series, dtype=np.float32), geom
