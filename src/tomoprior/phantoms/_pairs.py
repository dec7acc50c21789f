"""Training pairs for learned missing-wedge restoration.

:func:`restoration_pairs` is an endless, seeded generator of ``(input,
target)`` pairs of 2D slices across the tilt axis: the input is a base
reconstruction (SIRT by default, WBP selectable) from a simulated limited
tilt series, the target the true slice. Each specimen is a random draw of

* family: Pt/Au-like particles on and in a graded porous carbon grain
  (HAADF contrast, or ADF with per-tilt diffraction contrast on or off),
  isolated small particles in vacuum, or "phantom faces" (random ovals and
  polyhedra, the IRDM study's family);
* size, particle count and support thickness;
* tilt range (``±45°``-``±75°``, slightly asymmetric), step (1-20°),
  Poisson dose (1e3-1e5 at the brightest pixel), detector offset and a
  small misalignment (drift and axis error the reconstruction ignores).

The specimen is rendered twice as fine as the reconstruction grid and
projected by ray sampling (:func:`~tomoprior.phantoms.simulate`), so the
base reconstruction does not share the simulator's discretisation (no
inverse crime). Pairs are divided by one scale per specimen (the 99.5th
percentile of the base volume), the same normalisation the ``restore``
method applies to a user's data.

The seeds of the quality benchmarks (``benchmarks/quality.py``: 1) are
below :data:`FIRST_SEED`, so no benchmark specimen is ever drawn here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..geometry import angles_from_range
from ._simulate import simulate

__all__ = ["FAMILIES", "FIRST_SEED", "PairRanges", "Specimen", "restoration_pairs", "specimen_pairs"]

FIRST_SEED = 100_000  # specimen seeds start here: far from every benchmark's seeds
FAMILIES = ("pt_haadf", "pt_adf", "particles", "faces", "matter")


@dataclass(frozen=True)
class PairRanges:
    """The ranges specimens and acquisitions are drawn from."""

    sizes: tuple[int, ...] = (64, 80, 96)
    families: tuple[str, ...] = FAMILIES
    family_weights: tuple[float, ...] = (0.2, 0.25, 0.1, 0.15, 0.3)
    max_tilt: tuple[float, float] = (45.0, 75.0)
    step: tuple[float, float] = (1.0, 20.0)
    dose: tuple[float, float] = (1e3, 1e5)  # log-uniform
    offset: tuple[float, float] = (0.0, 0.02)  # detector offset, fraction of the brightest pixel
    drift: tuple[float, float] = (0.0, 1.0)  # largest drift, pixels
    axis_error: float = 0.3  # degrees, uniform in +-
    diffraction: tuple[float, float] = (0.0, 0.45)  # ADF contrast variation; 0 for a third
    base_iterations: int = 100
    slices: int = 16  # pairs kept per specimen (slices with something in them)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class Specimen:
    """One simulated specimen: its base reconstruction, truth and acquisition (canonical frame)."""

    base: np.ndarray  # (z, y, x), the tilt axis along y
    truth: np.ndarray
    scale: float
    info: dict = field(default_factory=dict)
    series: np.ndarray | None = None  # the simulated tilt series (with ``keep_series``)
    angles: np.ndarray | None = None


def _draw(rng: np.random.Generator, r: PairRanges, seed: int) -> tuple:
    from . import make_phantom

    w = np.asarray(r.family_weights, float)
    family = str(rng.choice(r.families, p=w / w.sum()))
    size = int(rng.choice(r.sizes))
    kw: dict = {}
    contrast_variation = 0.0
    if family in ("pt_haadf", "pt_adf"):
        kw = {"n_particles": int(rng.integers(4, 32)), "n_groups": int(rng.integers(1, 6))}
        if rng.random() < 0.3:  # a thin support film
            kw["thickness"] = int(size * rng.uniform(0.35, 0.7))
        if family == "pt_adf" and rng.random() > 1 / 3:
            contrast_variation = float(rng.uniform(*r.diffraction))
        name = family
    elif family == "particles":
        name, kw = "spheres", {"n": int(rng.integers(3, 14))}
    elif family == "matter":  # domain-randomised shapes, densities, textures, supports
        name, kw = "matter", {"n_objects": int(rng.integers(2, 24)),
                              "n_groups": int(rng.integers(1, 5))}
        if rng.random() > 1 / 3:
            contrast_variation = float(rng.uniform(*r.diffraction))
    else:
        name, kw = "faces", {"n_objects": int(rng.integers(4, 14))}
    ph = make_phantom(name, size, seed=seed, supersample=2, **kw)
    hi = float(rng.uniform(*r.max_tilt))
    lo = -float(rng.uniform(max(r.max_tilt[0], hi - 8.0), hi))
    step = float(rng.uniform(*r.step))
    angles = angles_from_range(lo, hi, step)
    if len(angles) < 4:
        angles = np.linspace(lo, hi, 4)
    acq = {
        "family": family, "phantom": name, "seed": seed, "size": size,
        "tilt_range": [round(lo, 2), round(hi, 2)], "step": round(step, 2),
        "n_tilts": len(angles),
        "dose": float(np.exp(rng.uniform(*np.log(r.dose)))),
        "offset": float(rng.uniform(*r.offset)),
        "drift": float(rng.uniform(*r.drift)),
        "axis_error": float(rng.uniform(-r.axis_error, r.axis_error)),
        "contrast_variation": contrast_variation,
    }
    return ph, np.asarray(angles), acq


def simulate_specimen(seed: int, ranges: PairRanges | None = None, base: str = "sirt",
                      keep_series: bool = False) -> Specimen:
    """Draw, simulate and reconstruct the specimen of ``seed`` (deterministic)."""
    from ..algorithms._common import robust_scale
    from ..algorithms.sirt import sirt
    from ..algorithms.wbp import wbp
    from ..operators import make_projector
    from ..step import last_step

    r = ranges or PairRanges()
    rng = np.random.default_rng([seed, 7])
    ph, angles, acq = _draw(rng, r, seed)
    truth = ph.coarse().volume.astype(np.float32)
    peak_guess = float(truth.sum(axis=0).max()) or 1.0
    series, _ = simulate(
        ph, angles, tilt_axis="vertical", noise="poisson", dose=acq["dose"],
        shifts=acq["drift"] or None, axis_error=acq["axis_error"], seed=seed,
        background=acq["offset"] * peak_guess, contrast_variation=acq["contrast_variation"],
        device="cpu",
    )
    y = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
    A = make_projector(angles, truth.shape, series.shape[2], device="cpu")
    if base == "wbp":
        vol = last_step(wbp(A, y)).volume
    else:
        vol = last_step(sirt(A, y, iterations=r.base_iterations, every=r.base_iterations)).volume
    scale = robust_scale(vol)
    acq["base"] = base
    if keep_series:
        return Specimen(vol, truth, scale, acq, series, angles)
    return Specimen(vol, truth, scale, acq)


def specimen_pairs(spec: Specimen, n: int, rng: np.random.Generator):
    """Up to ``n`` normalised ``(input, target)`` slice pairs ``(z, x)`` of a specimen."""
    filled = np.flatnonzero(spec.truth.max(axis=(0, 2)) > 0.05 * spec.truth.max())
    if filled.size == 0:
        return []
    pick = rng.choice(filled, size=min(n, filled.size), replace=False)
    s = spec.scale
    return [(spec.base[:, j, :] / s, spec.truth[:, j, :] / s) for j in np.sort(pick)]


def restoration_pairs(
    seed: int = 0, *, ranges: PairRanges | None = None, base: str = "sirt"
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Endless ``(input, target, info)`` slice pairs; the same ``seed`` gives the same stream.

    Specimen ``i`` of the stream has the seed ``FIRST_SEED + 1_000_000 * seed + i``.
    """
    r = ranges or PairRanges()
    i = 0
    while True:
        spec_seed = FIRST_SEED + 1_000_000 * int(seed) + i
        spec = simulate_specimen(spec_seed, r, base)
        rng = np.random.default_rng([spec_seed, 11])
        for inp, tgt in specimen_pairs(spec, r.slices, rng):
            yield inp.astype(np.float32), tgt.astype(np.float32), spec.info
        i += 1
