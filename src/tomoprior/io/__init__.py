"""Reading and writing tilt series and volumes.

Readers cover multi-page TIFF (ImageJ/OME), the MRC family used by IMOD and
SerialEM (``.mrc .st .ali .preali .rec .mrcs``), NumPy ``.npy``, and through
rosettasciio Gatan DM3/DM4 (single stacks or numbered series of images),
Velox EMD and TIA SER, and Zarr / OME-Zarr stores (read lazily). Tilt angles come from an angle file next to the data
(``.rawtlt``, ``.tlt``), from the file's own metadata, or from a SerialEM
``.mdoc``; pixel sizes are reported in nm.

Examples
--------
>>> from tomoprior import io
>>> f = io.read("needle.tif")                     # doctest: +SKIP
>>> f.geometry.summary(), f.warnings               # doctest: +SKIP
>>> series = f.load()                              # float32 (n_tilts, rows, cols)  # doctest: +SKIP
>>> io.write_volume("vol.mrc", volume, pixel_size=3.36, provenance={"method": "sirt"})  # doctest: +SKIP
>>> io.write_volume("vol.ome.zarr", volume, pixel_size=3.36)   # OME-NGFF 0.4  # doctest: +SKIP
"""

from __future__ import annotations

from ._angles import MdocInfo, read_angles, read_mdoc
from ._model import TiltSeriesFile
from ._read import LAZY_THRESHOLD_BYTES, SUPPORTED_EXTENSIONS, read
from ._rsciio import find_numbered_series
from ._write import (
    TILT_SERIES_EXTENSIONS,
    VOLUME_EXTENSIONS,
    read_provenance,
    write_tilt_series,
    write_volume,
)
from ._zarr import ZarrVolumeWriter, is_zarr_store, slab_axis, slab_chunks

__all__ = [
    "LAZY_THRESHOLD_BYTES",
    "SUPPORTED_EXTENSIONS",
    "TILT_SERIES_EXTENSIONS",
    "VOLUME_EXTENSIONS",
    "MdocInfo",
    "TiltSeriesFile",
    "ZarrVolumeWriter",
    "find_numbered_series",
    "is_zarr_store",
    "read",
    "read_angles",
    "read_mdoc",
    "read_provenance",
    "slab_axis",
    "slab_chunks",
    "write_tilt_series",
    "write_volume",
]
