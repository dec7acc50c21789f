"""napari writer: a reconstruction layer to ``.tif``/``.mrc``/``.ome.zarr`` with pixel size and provenance.

The provenance block in ``layer.metadata["provenance"]`` (method,
parameters, kept tilts, device, seconds, version) goes into the file: the
ImageJ ``Info`` text of a TIFF, a ``<stem>.json`` next to an MRC file, or
the attributes of an OME-Zarr store (see :func:`tomoprior.io.write_volume`;
a lazy layer is written to Zarr chunk by chunk). A tilt-series layer with angles is
written as a tilt series with its ``.rawtlt``.
"""

from __future__ import annotations

from typing import Any

from ..errors import TomopriorError
from ._layers import KIND_KEY, TILT_SERIES, geometry_from_metadata

__all__ = ["write_image_layer"]


def write_image_layer(path: str, data: Any, meta: dict) -> list[str]:
    """napari single-layer writer; returns the paths written (``[]`` after an error)."""
    from .. import io

    md = meta.get("metadata") or {}
    if md.get(KIND_KEY) == TILT_SERIES and len(data.shape) == 4 and data.shape[1] == 1:
        data = data[:, 0]  # the (n, 1, y, x) form the series is shown in
    try:
        if md.get(KIND_KEY) == TILT_SERIES and md.get("angles"):
            geom = geometry_from_metadata(md, int(data.shape[0]))
            written = io.write_tilt_series(path, data, geom, overwrite=True)  # napari asked
        else:
            written = io.write_volume(
                path,
                data,
                pixel_size=md.get("pixel_size") or None,
                pixel_unit=md.get("pixel_unit") or "nm",
                provenance=md.get("provenance"),
                overwrite=True,  # napari's save dialog has asked before replacing a file
            )
    except TomopriorError as exc:
        from napari.utils import notifications

        notifications.show_error(f"Cannot save {meta.get('name', 'the layer')}: {exc}")
        return []
    return [str(written)]
