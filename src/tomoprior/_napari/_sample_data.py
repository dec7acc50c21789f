"""Sample data for File › Open Sample: a real needle series and simulated Pt-on-carbon.

``needle_haadf``
    The real HAADF-STEM tilt series of a FIB needle (77 tilts, -76..76°,
    256 px, 3.36 nm), shipped in ``tomoprior/sample_data/needle_haadf`` with
    its angle file and provenance (NIST, via etspy).
``pt_haadf_series``, ``pt_adf_series``
    Simulated HAADF / ADF tilt series of Pt nanoparticles on a porous carbon
    grain, -60..60° every 2°, Poisson noise; made on demand (a few seconds),
    deterministic, cached for the session.
``pt_haadf_truth``, ``pt_adf_truth``
    Their ground-truth volumes at the series' pixel size, for the
    comparison widget's reference.
"""

from __future__ import annotations

import functools
import importlib.resources
import pathlib
from typing import Any

import numpy as np

from ._layers import (
    LayerData,
    tilt_series_layer_data,
    tilt_series_metadata,
    volume_layer_data,
    volume_metadata,
)

__all__ = [
    "SAMPLE_DOSE",
    "SAMPLE_SEED",
    "SAMPLE_SIZE",
    "needle_haadf",
    "pt_adf_series",
    "pt_adf_truth",
    "pt_haadf_series",
    "pt_haadf_truth",
    "sample_data_dir",
]

#: lateral size (px) of the simulated samples; tests may lower it
SAMPLE_SIZE = 64
#: electrons per pixel at the brightest pixel (Poisson noise)
SAMPLE_DOSE = 1e4
SAMPLE_SEED = 7
SAMPLE_ANGLES = (-60.0, 60.0, 2.0)


def sample_data_dir() -> pathlib.Path:
    """Folder of the shipped sample files (force-included in the wheel, a symlink in a checkout)."""
    # tomoprior is installed as plain files (wheel or editable), so this is a real folder
    return pathlib.Path(str(importlib.resources.files("tomoprior") / "sample_data"))


def needle_haadf() -> list[LayerData]:
    """The real HAADF-STEM needle tilt series with its angles and pixel size."""
    from ._reader import layer_data_from_file

    path = sample_data_dir() / "needle_haadf" / "needle_haadf.tif"
    data, kwargs, kind = layer_data_from_file(path)
    kwargs["metadata"]["sample"] = "needle_haadf"
    return [(data, kwargs, kind)]


@functools.lru_cache(maxsize=4)
def _simulated(contrast: str, size: int) -> tuple[np.ndarray, Any, np.ndarray, dict]:
    """(series, geometry, truth, info) of the Pt-on-carbon phantom; cached per process."""
    from ..geometry import angles_from_range
    from ..phantoms import make_phantom, simulate

    ph = make_phantom(f"pt_{contrast}", size, seed=SAMPLE_SEED, supersample=2)
    angles = angles_from_range(*SAMPLE_ANGLES)
    series, geom = simulate(
        ph, angles, noise="poisson", dose=SAMPLE_DOSE, seed=SAMPLE_SEED, device="cpu"
    )
    truth = ph.coarse().volume
    info = {k: v for k, v in ph.info.items() if isinstance(v, (int, float, str, bool))}
    return series, geom, truth, info


def _recipe(contrast: str, size: int, info: dict) -> dict[str, Any]:
    from .. import __version__

    lo, hi, step = SAMPLE_ANGLES
    return {
        "software": "napari-tomoprior",
        "version": __version__,
        "phantom": f"pt_{contrast}",
        "size": size,
        "seed": SAMPLE_SEED,
        "supersample": 2,
        "angles": f"{lo:g}..{hi:g} step {step:g}",
        "noise": "poisson",
        "dose": SAMPLE_DOSE,
        "phantom_info": info,
    }


def _series(contrast: str) -> list[LayerData]:
    size = int(SAMPLE_SIZE)
    series, geom, _, info = _simulated(contrast, size)
    name = f"pt_{contrast}_series"
    md = tilt_series_metadata(
        angles=geom.angles,
        tilt_axis=geom.tilt_axis,
        pixel_size=geom.pixel_size,
        pixel_unit=geom.pixel_unit,
        angle_source="simulation",
        source=f"simulated sample {name}",
        sample=name,
        ground_truth=f"pt_{contrast}_truth",
        simulation=_recipe(contrast, size, info),
    )
    return [tilt_series_layer_data(series.copy(), md, name)]  # the cache stays intact


def _truth(contrast: str) -> list[LayerData]:
    size = int(SAMPLE_SIZE)
    _, geom, truth, info = _simulated(contrast, size)
    name = f"pt_{contrast}_truth"
    md = volume_metadata(
        pixel_size=geom.pixel_size,
        pixel_unit=geom.pixel_unit,
        source=f"simulated sample {name}",
        provenance=_recipe(contrast, size, info),
        sample=name,
        ground_truth=True,
    )
    return [volume_layer_data(truth.copy(), md, name)]


def pt_haadf_series() -> list[LayerData]:
    """Simulated HAADF tilt series of Pt nanoparticles on carbon (-60..60°, 2° steps)."""
    return _series("haadf")


def pt_haadf_truth() -> list[LayerData]:
    """Ground-truth volume of the simulated HAADF sample."""
    return _truth("haadf")


def pt_adf_series() -> list[LayerData]:
    """Simulated ADF tilt series (with diffraction contrast) of Pt nanoparticles on carbon."""
    return _series("adf")


def pt_adf_truth() -> list[LayerData]:
    """Ground-truth volume of the simulated ADF sample."""
    return _truth("adf")
