"""Layer metadata shared by the reader, the sample data and the widgets.

A tomoprior layer carries a plain-dict ``metadata``:

``tomoprior_kind``
    ``"tilt_series"`` (axis 0 is the tilt index) or ``"volume"`` ``(z, y, x)``.
``angles``
    Tilt angles in degrees, one per image (tilt series; ``[]`` when the file
    had none: the user sets start and step in the Reconstruction widget).
``tilt_axis``
    Orientation of the tilt axis in degrees (0 horizontal, 90 vertical).
``pixel_size``, ``pixel_unit``
    Size of one pixel (``None`` when unknown) and its unit (``"nm"``).
``angle_source``
    Where the angles came from (``"needle.rawtlt"``, ``"simulation"`` ...).
``source``
    The file (or sample) the data came from.
``warnings``
    Messages the reader found for the user (missing angles ...).
``provenance``
    Volumes only: how the volume was made (:meth:`Reconstruction.provenance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GeometryError
from ..geometry import TiltGeometry

__all__ = [
    "KIND_KEY", "TILT_SERIES", "VOLUME", "geometry_from_metadata", "is_stack", "napari_unit",
    "robust_limits", "series_placement", "series_view", "stack_data", "tilt_series_layer_data",
    "tilt_series_metadata", "volume_layer_data", "volume_metadata",
]

KIND_KEY = "tomoprior_kind"
TILT_SERIES = "tilt_series"
VOLUME = "volume"

LayerData = tuple[Any, dict, str]


def _pixel(pixel_size: float | None) -> float:
    return float(pixel_size) if pixel_size else 1.0


def tilt_series_metadata(
    *,
    angles: Sequence[float] | np.ndarray | None,
    tilt_axis: float = 0.0,
    pixel_size: float | None = None,
    pixel_unit: str = "nm",
    angle_source: str = "",
    source: str = "",
    warnings: Sequence[str] = (),
    shifts: np.ndarray | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``metadata`` dict of a tilt-series layer."""
    meta: dict[str, Any] = {
        KIND_KEY: TILT_SERIES,
        "angles": [] if angles is None else [float(a) for a in np.ravel(angles)],
        "tilt_axis": float(tilt_axis or 0.0),
        "pixel_size": None if not pixel_size else float(pixel_size),
        "pixel_unit": pixel_unit,
        "angle_source": angle_source,
        "source": str(source),
        "warnings": list(warnings),
    }
    if shifts is not None and np.any(shifts):
        meta["shifts"] = np.asarray(shifts, dtype=float).tolist()
    meta.update(extra)
    return meta


def volume_metadata(
    *,
    pixel_size: float | None = None,
    pixel_unit: str = "nm",
    source: str = "",
    provenance: dict | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``metadata`` dict of a volume layer."""
    meta: dict[str, Any] = {
        KIND_KEY: VOLUME,
        "pixel_size": None if not pixel_size else float(pixel_size),
        "pixel_unit": pixel_unit,
        "source": str(source),
    }
    if provenance is not None:
        meta["provenance"] = provenance
    meta.update(extra)
    return meta


def napari_unit(pixel_size: float | None, unit: str | None = "nm") -> str:
    """The unit napari shows on a length axis: the pixel size's unit, or pixels."""
    return (unit or "nm") if pixel_size else "pixel"


# A tilt series is shown as (tilt, 1, y, x). napari lines layers up by their last axes: a
# (tilt, y, x) series and a (z, y, x) volume would share one slider for tilts and slices,
# and a unit in nm on the volume's z would clash with the series' tilt index ("Inconsistent
# units across layers"). With the singleton axis, tilts and z have their own sliders, and
# the singleton, as deep as the widest possible volume, keeps the image in view at every z.
def series_view(data: Any) -> Any:
    """``(n, y, x)`` as ``(n, 1, y, x)`` without reading it (a view, or a lazy graph)."""
    if isinstance(data, np.ndarray) or hasattr(data, "dask"):  # numpy, memmap, dask
        return data[:, None]
    import dask.array as da

    return da.from_array(data, chunks=(1, *tuple(data.shape[1:])))[:, None]


def stack_data(layer: Any) -> Any:
    """The ``(n, y, x)`` images of a stack layer (either form; a multiscale's full level)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if len(data.shape) == 4 and data.shape[1] == 1:
        return data[:, 0]
    return data


def is_stack(layer: Any) -> bool:
    """Whether a layer holds a stack of 2D images: ``(n, y, x)`` or ``(n, 1, y, x)``."""
    try:
        return len(stack_data(layer).shape) == 3
    except (AttributeError, IndexError, TypeError):
        return False


def series_placement(shape: Sequence[int], pixel_size: float | None,
                     unit: str | None = "nm", binning: int = 1) -> dict[str, Any]:
    """``scale``, ``translate``, ``units`` and ``axis_labels`` of a ``(n, 1, y, x)`` series.

    The singleton's extent is the deepest volume the series can give (its
    widest side), centred where such a volume's slices are. ``binning``: the
    images are binned by that factor (their pixels are that much larger).
    """
    ps = _pixel(pixel_size) * binning
    depth = float(max(int(shape[-1]), int(shape[-2]), 1))
    return {
        "scale": (1.0, depth * ps, ps, ps),
        "translate": (0.0, (depth - 1) * ps / 2, 0.0, 0.0),
        "units": ("pixel",) + (napari_unit(pixel_size, unit),) * 3,
        "axis_labels": ("tilt", "z", "y", "x"),
    }


def tilt_series_layer_data(data: Any, metadata: dict[str, Any], name: str) -> LayerData:
    """LayerData of a tilt series, shown as ``(n, 1, y, x)`` (see :func:`series_placement`)."""
    kwargs = {
        "name": name,
        **series_placement(data.shape, metadata.get("pixel_size"), metadata.get("pixel_unit")),
        "metadata": metadata,
        "colormap": "gray",
        "rgb": False,
    }
    return (series_view(data), kwargs, "image")


def volume_layer_data(data: Any, metadata: dict[str, Any], name: str) -> LayerData:
    """LayerData of a volume: ``scale`` is ``(ps, ps, ps)``, ``units`` nm (or pixels)."""
    pixel_size = metadata.get("pixel_size")
    ps = _pixel(pixel_size)
    kwargs = {
        "name": name,
        "scale": (ps, ps, ps),
        "units": (napari_unit(pixel_size, metadata.get("pixel_unit")),) * 3,
        "metadata": metadata,
        "colormap": "gray",
        "rgb": False,  # a volume 3 or 4 slices thick is not a colour image
        "axis_labels": ("z", "y", "x"),
    }
    return (data, kwargs, "image")


def geometry_from_metadata(
    metadata: dict[str, Any],
    n_images: int,
    *,
    angles: Sequence[float] | np.ndarray | None = None,
    angle_source: str | None = None,
    tilt_axis: float | str | None = None,
) -> TiltGeometry:
    """The :class:`TiltGeometry` of a tilt-series layer.

    ``angles`` and ``tilt_axis`` override what the metadata holds (the
    widget's start/step and tilt-axis controls). Per-tilt shifts stored in
    the metadata are kept when their count fits.

    Raises
    ------
    GeometryError
        No angles, invalid angles, or an angle count different from
        ``n_images``.
    """
    source = angle_source
    if angles is None:
        angles = metadata.get("angles") or None
        source = metadata.get("angle_source", "") if source is None else source
    if angles is None or len(angles) == 0:
        raise GeometryError(
            "the tilt series has no tilt angles: set the tilt start and step in the widget"
        )
    axis = metadata.get("tilt_axis", 0.0) if tilt_axis is None else tilt_axis
    shifts = metadata.get("shifts")
    if shifts is not None and np.shape(shifts) != (len(angles), 2):
        shifts = None
    geom = TiltGeometry(
        angles=np.asarray(angles, dtype=float),
        tilt_axis=axis,
        shifts=shifts,
        pixel_size=metadata.get("pixel_size") or None,
        pixel_unit=metadata.get("pixel_unit") or "nm",
        angle_source=source or "",
    )
    return geom.validate(int(n_images))


def robust_limits(
    volume: np.ndarray, lo: float = 0.5, hi: float = 99.9, n: int = 400_000
) -> tuple[float, float]:
    """Percentile contrast limits of a volume, from a regular subsample."""
    v = np.asarray(volume).ravel()
    v = v[:: max(1, v.size // n)]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    a, b = (float(x) for x in np.percentile(v, (lo, hi)))
    if not b > a:
        a, b = float(v.min()), float(v.max())
    if not b > a:
        b = a + 1.0
    return a, b
