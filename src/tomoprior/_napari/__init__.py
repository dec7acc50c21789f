"""napari adapters without Qt: reader, writer and sample data.

Everything here returns napari *LayerData* tuples ``(data, kwargs, layer_type)``
and imports napari only inside functions (for notifications), so that
``import tomoprior`` stays free of napari. The layers' ``metadata`` is a
plain dict with the keys described in :mod:`tomoprior._napari._layers`.
"""

from ._layers import (
    KIND_KEY,
    TILT_SERIES,
    VOLUME,
    geometry_from_metadata,
    tilt_series_layer_data,
    volume_layer_data,
)

__all__ = [
    "KIND_KEY",
    "TILT_SERIES",
    "VOLUME",
    "geometry_from_metadata",
    "tilt_series_layer_data",
    "volume_layer_data",
]
