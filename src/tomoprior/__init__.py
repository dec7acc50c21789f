"""napari-tomoprior: electron tomography with classical and neural priors.

The library works without Qt or napari::

    import tomoprior
    f = tomoprior.io.read("tilts.mrc")          # angles from .rawtlt/.mdoc/header
    for step in tomoprior.run("sirt", f.data, f.geometry, iterations=100):
        print(step.iteration, step.residual)
    volume = step.volume                          # (z, y, x) float32

or in one call, with the angles in degrees::

    volume = tomoprior.reconstruct(series, angles, method="cstv", lam="auto")

``tomoprior.run`` is always the function (the engine behind it lives in
:mod:`tomoprior.engine`); the submodules below load on first use, so
``import tomoprior`` stays quick and imports neither torch nor napari.
"""

from __future__ import annotations

try:
    from ._version import version as __version__
except ImportError:  # running from a source tree without build metadata
    try:
        from importlib.metadata import version as _v

        __version__ = _v("napari-tomoprior")
    except Exception:
        __version__ = "0.0.0+unknown"

from . import errors
from .errors import (
    DataError,
    FormatError,
    GeometryError,
    MethodUnavailable,
    ParameterError,
    TomopriorError,
    TomopriorWarning,
)
from .geometry import TiltGeometry
from .step import Step

#: submodules loaded on first attribute access
_SUBMODULES = (
    "algorithms", "alignment", "engine", "interpolation", "io", "metrics", "operators", "phantoms",
    "projections", "slabs", "transforms",
)
#: functions loaded on first use: name -> module that holds it
_FUNCTIONS = {"run": "engine", "reconstruct": "engine", "reconstruct_dask": "engine"}

__all__ = [
    "DataError",
    "FormatError",
    "GeometryError",
    "MethodUnavailable",
    "ParameterError",
    "Step",
    "TiltGeometry",
    "TomopriorError",
    "TomopriorWarning",
    "__version__",
    "errors",
    *_FUNCTIONS,
    *_SUBMODULES,
]


def __getattr__(name: str):
    import importlib

    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f".{_FUNCTIONS[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
