"""Training triplets for learned tilt-frame interpolation.

:func:`interpolation_triplets` is an endless, seeded generator of ``(left,
middle, right)`` frames of simulated HAADF-STEM tilt series of faceted
metal nanoclusters (:func:`~tomoprior.phantoms.nanoclusters`), the data of
the frame-interpolation study (Rakowski et al.). Each series is a random draw
of

* the specimen: one to six octahedral, icosahedral or decahedral particles of
  Pt, Ag, Au or Cu, random sizes and orientations, in vacuum or on a thin
  carbon film (40 %);
* an acquisition over ±90° at 1°, the tilt axis along the image rows (the
  canonical frame), Poisson noise of dose 1e3-1e5 electrons at the brightest
  pixel (log-uniform) and a detector offset of 0-2 % of it.

The specimen is rendered twice as fine as the images and projected on the
fine grid, then the images are binned by two (no inverse crime: no frame is
ever produced at the resolution it is used at). A triplet takes a gap ``g``
of 2-20° (a whole number of degrees) and a position ``k`` of the middle
frame inside it: ``left`` at angle ``a``, ``right`` at ``a + g``, ``middle``
at ``a + k`` (``t = k / g``; half the triplets are centred, ``t = 1/2`` or the
nearest whole degree). The middle frame comes both as measured (noisy) and
clean. Frames are normalised by one offset and scale per series,
:func:`normalisation` of its noisy frames, the same the interpolator applies
to a user's series.

The seeds of the interpolation benchmark (``benchmarks/interpolation.py``,
below 1000) are far from :data:`FIRST_SEED`, so no benchmark series is ever
drawn here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FIRST_SEED", "ClusterSeries", "TripletRanges", "interpolation_triplets", "normalisation",
    "series_triplets", "simulate_cluster_series",
]

FIRST_SEED = 200_000  # series seeds start here; the benchmark's are below 1000


@dataclass(frozen=True)
class TripletRanges:
    """The ranges series and triplets are drawn from."""

    sizes: tuple[int, ...] = (64, 96, 128)
    dose: tuple[float, float] = (1e3, 1e5)  # log-uniform, electrons at the brightest pixel
    offset: tuple[float, float] = (0.0, 0.02)  # detector offset, fraction of the brightest pixel
    gap: tuple[int, int] = (2, 20)  # degrees, whole
    max_tilt: int = 90
    centred: float = 0.5  # share of triplets whose middle is halfway
    support: float = 0.4  # chance of a thin carbon film

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class ClusterSeries:
    """One simulated series, normalised: noisy and clean frames at 1° steps."""

    noisy: np.ndarray  # (n_tilts, rows, cols) float32, tilt axis along the rows
    clean: np.ndarray
    angles: np.ndarray
    info: dict = field(default_factory=dict)


def normalisation(series: np.ndarray) -> tuple[float, float]:
    """``(offset, scale)`` mapping a series to about 0..1: its 0.5th and 99.5th percentiles."""
    flat = np.asarray(series, np.float32).ravel()
    flat = flat[:: max(1, flat.size // 2_000_000)]
    lo, hi = (float(v) for v in np.percentile(flat, [0.5, 99.5]))
    if not hi > lo:
        hi = lo + (float(np.abs(flat).max()) or 1.0)
    return lo, hi - lo


def simulate_cluster_series(seed: int, ranges: TripletRanges | None = None) -> ClusterSeries:
    """Draw and simulate the series of ``seed`` (deterministic)."""
    from ._clusters import nanoclusters
    from ._simulate import simulate

    r = ranges or TripletRanges()
    rng = np.random.default_rng([seed, 17])
    size = int(rng.choice(r.sizes))
    dose = float(np.exp(rng.uniform(*np.log(r.dose))))
    offset = float(rng.uniform(*r.offset))
    ph = nanoclusters(size, seed=seed, supersample=2, support=bool(rng.random() < r.support))
    angles = np.arange(-r.max_tilt, r.max_tilt + 1, 1.0)
    clean, _ = simulate(ph, angles, tilt_axis="vertical", backend="sparse", device="cpu")
    peak = float(clean.max()) or 1.0
    clean = clean + np.float32(offset * peak)
    noisy = rng.poisson(np.clip(clean, 0, None) * (dose / peak)).astype(np.float32)
    noisy *= np.float32(peak / dose)
    lo, scale = normalisation(noisy)
    info = {"seed": seed, "size": size, "dose": dose, "offset": offset,
            "particles": [p["shape"] + ":" + p["element"] for p in ph.info["particles"]],
            "support": ph.info["support"]}
    return ClusterSeries((noisy - lo) / scale, (clean - lo) / scale, angles, info)


def series_triplets(series: ClusterSeries, n: int, rng: np.random.Generator,
                    ranges: TripletRanges | None = None) -> list[tuple]:
    """``n`` random ``(left, middle, clean_middle, right, gap, t)`` triplets of a series."""
    r = ranges or TripletRanges()
    count = len(series.angles)
    out = []
    for _ in range(n):
        g = int(rng.integers(r.gap[0], min(r.gap[1], count - 1) + 1))
        k = g // 2 if rng.random() < r.centred else int(rng.integers(1, g))
        i = int(rng.integers(0, count - g))
        out.append((series.noisy[i], series.noisy[i + k], series.clean[i + k],
                    series.noisy[i + g], float(g), k / g))
    return out


def interpolation_triplets(
    seed: int = 0, *, ranges: TripletRanges | None = None, per_series: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]]:
    """Endless ``(left, middle, clean_middle, right, info)``; the same seed, the same stream.

    Series ``i`` of the stream has the seed ``FIRST_SEED + 1_000_000 * seed + i``;
    ``info`` holds the series' description plus ``gap`` (degrees) and ``t``
    (the middle's position between left and right, 0..1).
    """
    r = ranges or TripletRanges()
    i = 0
    while True:
        s_seed = FIRST_SEED + 1_000_000 * int(seed) + i
        series = simulate_cluster_series(s_seed, r)
        rng = np.random.default_rng([s_seed, 19])
        for left, mid, clean, right, gap, t in series_triplets(series, per_series, rng, r):
            yield left, mid, clean, right, {**series.info, "gap": gap, "t": t}
        i += 1
