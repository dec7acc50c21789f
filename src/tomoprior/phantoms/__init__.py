"""Synthetic specimens and tilt-series simulation.

Specimens (each returns a :class:`Phantom`; all deterministic for a seed,
rendered from continuous descriptions at any size and ``supersample``):

``pt_haadf``, ``pt_adf``
    Pt nanoparticles on and in a porous, graded amorphous carbon grain, with
    HAADF or ADF contrast (:func:`pt_on_carbon`).
``shepp_logan``
    The 3D Shepp-Logan head (:func:`shepp_logan_3d`).
``faces``
    Random ellipsoids and convex polyhedra (:func:`phantom_faces`).
``blobs``
    Smooth Gaussian blobs, for quick tests (:func:`blobs`).
``spheres``
    Small uniform spheres in vacuum, a sparse object (:func:`sparse_spheres`).
``clusters``
    Faceted Pt/Ag/Au/Cu nanoclusters (octahedral, icosahedral, decahedral),
    in vacuum or on a thin film (:func:`nanoclusters`).

:func:`simulate` projects a phantom into a tilt series, with misalignment
(drift, tilt-axis error), ADF diffraction contrast and noise, and returns
the true :class:`~tomoprior.geometry.TiltGeometry`. A typical benchmark::

    ph = make_phantom("pt_haadf", 64, seed=1, supersample=2)
    series, geom = simulate(ph, angles, noise="poisson", dose=1e4, shifts=2.0)
    truth = ph.coarse().volume     # 64^3 ground truth
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import MethodUnavailable
from ._base import Phantom
from ._clusters import nanoclusters
from ._generic import blobs, phantom_faces, shepp_logan_3d, sparse_spheres
from ._matter import random_matter
from ._pairs import PairRanges, restoration_pairs, simulate_specimen
from ._pt import CONTRAST_SUPPORT_LEVEL, pt_on_carbon
from ._render import downsample_volume
from ._simulate import diffraction_factors, random_drift, simulate
from ._triplets import TripletRanges, interpolation_triplets, simulate_cluster_series

__all__ = [
    "CONTRAST_SUPPORT_LEVEL",
    "PHANTOMS",
    "PairRanges",
    "Phantom",
    "TripletRanges",
    "blobs",
    "diffraction_factors",
    "downsample_volume",
    "interpolation_triplets",
    "make_phantom",
    "nanoclusters",
    "phantom_faces",
    "pt_on_carbon",
    "random_drift",
    "random_matter",
    "restoration_pairs",
    "shepp_logan_3d",
    "simulate",
    "simulate_cluster_series",
    "simulate_specimen",
    "sparse_spheres",
]


def _pt_haadf(size: int = 64, *, seed: int = 0, supersample: int = 1, **kw) -> Phantom:
    """Pt on carbon, HAADF contrast (see :func:`pt_on_carbon`)."""
    return pt_on_carbon(size, contrast="haadf", seed=seed, supersample=supersample, **kw)


def _pt_adf(size: int = 64, *, seed: int = 0, supersample: int = 1, **kw) -> Phantom:
    """Pt on carbon, ADF contrast (see :func:`pt_on_carbon`)."""
    return pt_on_carbon(size, contrast="adf", seed=seed, supersample=supersample, **kw)


def _shepp_logan(size: int = 64, *, seed: int = 0, supersample: int = 1, **kw) -> Phantom:
    """The 3D Shepp-Logan phantom; ``seed`` is accepted and ignored (it is not random)."""
    return shepp_logan_3d(size, supersample=supersample, **kw)


#: Registry: name -> function ``f(size, *, seed, supersample, **kw) -> Phantom``.
PHANTOMS: dict[str, Callable[..., Phantom]] = {
    "pt_haadf": _pt_haadf,
    "pt_adf": _pt_adf,
    "shepp_logan": _shepp_logan,
    "faces": phantom_faces,
    "blobs": blobs,
    "spheres": sparse_spheres,
    "clusters": nanoclusters,
    "matter": random_matter,
}


def make_phantom(
    name: str, size: int = 64, *, seed: int = 0, supersample: int = 1, **kw
) -> Phantom:
    """Build a phantom by registry name.

    Parameters
    ----------
    name : str
        One of ``PHANTOMS`` (case and ``-``/``_`` insensitive).
    size : int
        Nominal lateral size in voxels.
    seed : int
        Seed of the random specimen (ignored by ``shepp_logan``).
    supersample : int
        Render this many times finer in each direction; the nominal-size
        ground truth is then ``phantom.coarse()``.
    **kw
        Passed on to the phantom's function (e.g. ``n_particles``,
        ``thickness`` for the Pt specimens, ``n`` for blobs and spheres).

    Returns
    -------
    Phantom

    Notes
    -----
    Unknown names raise :class:`~tomoprior.errors.MethodUnavailable` with
    the list of known ones, so a typo in the command line or the viewer
    gives a readable message.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in PHANTOMS:
        raise MethodUnavailable(f"unknown phantom {name!r}: choose from {', '.join(PHANTOMS)}")
    return PHANTOMS[key](size, seed=seed, supersample=supersample, **kw)
