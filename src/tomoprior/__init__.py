"""napari-tomoprior: electron tomography with classical and neural priors.

The library works without Qt or napari::

    import tomoprior
    f = tomoprior.io.read("tilts.mrc")          # angles from .rawtlt/.mdoc/header
    for step in tomoprior.run("sirt", f.data, f.geometry, iterations=100):
        print(step.iteration, step.loss)
    volume = step.volume                          # (z, y, x) float32
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

from .errors import DataError, FormatError, GeometryError, MethodUnavailable, TomopriorError
from .geometry import TiltGeometry
from .step import Step

__all__ = [
    "DataError",
    "FormatError",
    "GeometryError",
    "MethodUnavailable",
    "Step",
    "TiltGeometry",
    "TomopriorError",
    "__version__",
    "run",
]


def __getattr__(name: str):
    # heavy submodules are imported on first use, so `import tomoprior` stays quick
    import importlib

    if name == "run":
        return importlib.import_module(".run", __name__).run
    if name in ("io", "operators", "algorithms", "phantoms", "metrics", "transforms", "alignment"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
