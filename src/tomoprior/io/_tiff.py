"""Multi-page TIFF (ImageJ and OME flavours) with tifffile."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import tifffile

from ..errors import FormatError, TomopriorError
from ._angles import angles_from_labels, angles_from_text
from ._budget import MAX_METADATA_CHARS, check_claim, unreadable
from ._common import PROVENANCE_KEY, dumps, to_nm, unit_factor_to_nm
from ._model import RawRead

__all__ = ["read_tiff", "tiff_provenance", "write_tiff"]


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[list[str]]:
    """tifffile logs its complaints; they are gathered here, never printed."""
    heard: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        heard.append(record.getMessage())
        return False

    log = logging.getLogger("tifffile")
    log.addFilter(keep)
    try:
        yield heard
    finally:
        log.removeFilter(keep)


def read_tiff(path: pathlib.Path, lazy: bool) -> RawRead:
    """Read a TIFF stack, its pixel size and any tilt angles stored in it."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.pages[0] if len(series.pages) else tif.pages[0]
            if getattr(page, "samplesperpixel", 1) > 1 and page.photometric in (2, 6):
                raise FormatError(
                    f"{path.name} holds colour (RGB) images: save the tilt series as grayscale"
                )
            ij = tif.imagej_metadata or {}
            ome = tif.ome_metadata if tif.is_ome else None
            shape, dtype, n_pages = series.shape, series.dtype, len(series.pages)
            announced = ij.get("images") if isinstance(ij.get("images"), int) else 0
            if announced > max(1, int(np.prod(shape[:-2]))):
                raise FormatError(
                    f"{path.name} is truncated: its ImageJ header announces {announced} images "
                    f"but the file holds {int(np.prod(shape[:-2]))}"
                )
            check_claim(path.name, shape, dtype, file_bytes=path.stat().st_size,
                        compressed=getattr(page, "compression", 1) != 1, in_memory=not lazy)
            pixel = _imagej_pixel_size(page, ij) or _ome_pixel_size(ome) or _tiff_pixel_size(page)
            data = None if lazy else series.asarray()
    except TomopriorError:
        raise
    except Exception as exc:  # tifffile raises many kinds on a damaged file
        raise unreadable(path.name, "TIFF", exc) from None
    if lazy:
        data = _lazy(path, shape, dtype, n_pages)
    raw = RawRead(data=data, pixel_size=pixel, metadata={"format": "TIFF"})
    n = int(np.prod(shape[:-2])) if len(shape) > 2 else 0
    props = ij.get("Properties") if isinstance(ij.get("Properties"), dict) else {}
    candidates = [
        (props.get("tilt_angles"), "ImageJ metadata"),
        (ij.get("tilt_angles"), "ImageJ metadata"),
        (ij.get("Info"), "ImageJ Info"),
        (ij.get("Labels"), "ImageJ slice labels"),
        (_ome_annotation(ome), "OME metadata"),
    ]
    for value, source in candidates:
        if value is None:
            continue
        try:
            if source == "ImageJ slice labels":
                angles = angles_from_labels(value, n)
            else:
                angles = angles_from_text(value, n, keyed=source == "ImageJ Info")
        except ValueError:
            angles = None
        if angles is not None:
            raw.angles, raw.angle_source = angles, source
            break
    try:
        raw.tilt_axis = float(props["tilt_axis"])
        raw.tilt_axis_source = "ImageJ metadata"
    except (KeyError, TypeError, ValueError):
        pass
    provenance = _provenance_from(ij)
    if provenance is not None:  # only write_volume stores provenance
        raw.metadata.update(provenance=provenance, volume=True)
    if ij:
        raw.metadata["imagej"] = {k: v for k, v in ij.items() if k not in ("Labels", "Info")}
    return raw


def _lazy(path: pathlib.Path, shape: tuple, dtype: Any, n_pages: int) -> Any:
    """A memory map when possible, else a dask array reading one page per chunk."""
    try:
        return tifffile.memmap(path, mode="r")
    except (ValueError, OSError):
        pass
    import dask
    import dask.array as da

    if importlib.util.find_spec("zarr") is not None:
        try:
            store = tifffile.imread(path, aszarr=True)
            return da.from_zarr(store)
        except Exception:  # any zarr/tifffile version mismatch: fall back below
            pass
    n = int(np.prod(shape[:-2]))
    if n_pages == n and n > 1:
        read = dask.delayed(tifffile.imread, pure=True)
        pages = [
            da.from_delayed(read(path, series=0, key=i), shape=tuple(shape[-2:]), dtype=dtype)
            for i in range(n)
        ]
        return da.stack(pages).reshape(shape)
    whole = dask.delayed(tifffile.imread, pure=True)(path, series=0)
    return da.from_delayed(whole, shape=tuple(shape), dtype=dtype)


def _imagej_pixel_size(page: Any, ij: dict) -> float | None:
    """Pixel size in nm from the resolution tag and the ImageJ unit."""
    unit = ij.get("unit")
    res = page.tags.get("XResolution")
    if not unit or res is None:
        return None
    num, den = res.value
    return to_nm(den / num, unit) if num else None


def _tiff_pixel_size(page: Any) -> float | None:
    """Pixel size from a plain TIFF resolution in centimetres or inches.

    Only sizes below 1 µm are believed: larger values are the print
    resolution (e.g. 72 dpi) that many programs write by default.
    """
    res, unit = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
    if res is None or unit is None or not res.value[0]:
        return None
    per_unit = {2: 2.54e7, 3: 1e7}.get(int(unit.value))  # inch, centimetre in nm
    if per_unit is None:
        return None
    size = per_unit * res.value[1] / res.value[0]
    return size if size < 1000.0 else None


def _ome_pixel_size(ome: str | None) -> float | None:
    if not ome:
        return None
    m = re.search(r'PhysicalSizeX="([^"]+)"', ome)
    if not m:
        return None
    unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', ome)
    return to_nm(m.group(1), unit.group(1) if unit else "µm")  # OME default unit is µm


def _ome_annotation(ome: str | None) -> str | None:
    """The value of a ``<M K="tilt_angles">`` map-annotation entry."""
    if not ome:
        return None
    m = re.search(r'<M\s+K="tilt[_ ]?angles"\s*>([^<]*)</M>', ome, re.I)
    return m.group(1) if m else None


def _provenance_from(ij: dict) -> dict | None:
    info = ij.get("Info")
    if not isinstance(info, str) or PROVENANCE_KEY not in info or len(info) > MAX_METADATA_CHARS:
        return None
    try:
        value = json.loads(info).get(PROVENANCE_KEY)
    except (ValueError, AttributeError, RecursionError):  # deeply nested JSON: not ours
        return None
    return value if isinstance(value, dict) else None


def tiff_provenance(path: pathlib.Path) -> dict | None:
    """The provenance block written by :func:`write_tiff`, if any."""
    try:
        with tifffile.TiffFile(path) as tif:
            return _provenance_from(tif.imagej_metadata or {})
    except Exception as exc:
        raise FormatError(f"cannot read {path.name} as TIFF: {exc}") from None


def _imagej_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype ImageJ can hold that keeps the data: 8/16-bit integers or float32."""
    if dtype in (np.uint8, np.uint16, np.int16, np.float32):
        return np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    return np.dtype(np.float32)


def write_tiff(
    path: pathlib.Path,
    data: Any,
    *,
    pixel_size: float | None = None,
    pixel_unit: str = "nm",
    angles: Any = None,
    tilt_axis: float | None = None,
    provenance: dict | None = None,
) -> None:
    """Write an ImageJ hyperstack ``(z, y, x)`` with calibration and metadata.

    The pixel size goes into the resolution tags with its unit (converted to
    nm), the angles into the slice labels and the ImageJ properties, and the
    provenance as JSON into the ImageJ ``Info`` text.
    """
    dtype = _imagej_dtype(np.dtype(data.dtype))
    metadata: dict[str, Any] = {"axes": "ZYX"}
    kwargs: dict[str, Any] = {}
    size_nm = to_nm(pixel_size, pixel_unit) if pixel_size else None
    if pixel_size and unit_factor_to_nm(pixel_unit) is None:
        raise FormatError(f"unknown pixel unit {pixel_unit!r}: use 'nm' or 'Å'")
    if size_nm:
        metadata.update(unit="nm", spacing=size_nm)
        kwargs["resolution"] = (1.0 / size_nm, 1.0 / size_nm)
    props: dict[str, str] = {}
    if angles is not None:
        props["tilt_angles"] = ", ".join(f"{float(a):.5f}" for a in angles)
        metadata["Labels"] = [f"tilt {float(a):g}°" for a in angles]
    if tilt_axis is not None:
        props["tilt_axis"] = f"{float(tilt_axis):g}"
    if props:
        metadata["Properties"] = props
    if provenance is not None:
        metadata["Info"] = dumps({PROVENANCE_KEY: provenance})
    n = int(data.shape[0])
    pages = (np.asarray(data[i], dtype=dtype) for i in range(n))
    try:
        tifffile.imwrite(
            path,
            pages,
            shape=tuple(data.shape),
            dtype=dtype,
            imagej=True,
            photometric="minisblack",
            metadata=metadata,
            **kwargs,
        )
    except OSError as exc:
        raise FormatError(f"cannot write {path}: {exc.strerror or exc}") from None
