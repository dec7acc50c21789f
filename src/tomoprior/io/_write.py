"""Writers for tilt series and volumes, and reading back their provenance."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._atomic import fresh_partial_prefix, replacing
from ..errors import DataError, FormatError, ParameterError
from ..geometry import TiltGeometry
from ._angles import write_angles
from ._budget import memory_budget
from ._common import (
    PROVENANCE_KEY,
    json_sidecar,
    read_json_sidecar,
    to_nm,
    unit_factor_to_nm,
    write_json_sidecar,
)
from ._mrc import write_mrc
from ._npy import write_npy
from ._tiff import tiff_provenance, write_tiff
from ._zarr import check_store_target, is_zarr_store, write_zarr, zarr_provenance

__all__ = ["read_provenance", "write_tilt_series", "write_volume"]

_TIFF = (".tif", ".tiff")
_MRC = (".mrc", ".st", ".ali", ".rec", ".mrcs", ".preali")
TILT_SERIES_EXTENSIONS = (".tif", ".tiff", ".mrc", ".st", ".ali", ".npy")
VOLUME_EXTENSIONS = (".tif", ".tiff", ".mrc", ".rec", ".npy", ".zarr", ".ome.zarr")


def _target(path: str | pathlib.Path, allowed: tuple[str, ...], what: str) -> pathlib.Path:
    path = pathlib.Path(path).expanduser()
    if path.suffix.lower() not in allowed:
        raise FormatError(
            f"cannot write a {what} as {path.suffix or 'a file without extension'}: "
            f"use one of {' '.join(allowed)}"
        )
    if not path.parent.is_dir():
        raise FormatError(f"cannot write {path.name}: the folder {path.parent} does not exist")
    return path


def _atomically(path: pathlib.Path, writer, data: Any, **kwargs: Any) -> None:
    """``writer(tmp, data, ...)`` into a temporary file that then replaces ``path``."""
    try:
        with replacing(path) as tmp:
            try:
                writer(tmp, data, **kwargs)
            except FormatError as exc:  # name the user's file, not the temporary one
                raise FormatError(str(exc).replace(str(tmp), str(path))) from None
    except OSError as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_free(paths: list[pathlib.Path], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise FormatError(f"{p} exists already: choose another name or allow overwriting")


def _check_3d(data: Any, what: str) -> Any:
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    if data.ndim != 3 or 0 in data.shape:
        raise DataError(f"a {what} must be a non-empty 3D array, got shape {tuple(data.shape)}")
    return data


@contextlib.contextmanager
def _computed_once(data: Any, near: pathlib.Path) -> Iterator[Any]:
    """A dask array as an array whose every chunk was computed exactly once.

    The TIFF and MRC writers read a volume plane by plane; on a lazy
    reconstruction each plane would run every slab again. A volume within a
    quarter of the memory budget is computed into memory; a larger one is
    stored chunk by chunk into a temporary memory-mapped file beside the
    output (removed afterwards), so memory stays bounded by a chunk.
    Anything else passes through.
    """
    if not (hasattr(data, "dask") and hasattr(data, "compute")):
        yield data
        return
    import dask.array as da

    nbytes = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
    if nbytes <= memory_budget() // 4:
        yield data.compute()
        return
    fd, name = tempfile.mkstemp(prefix=fresh_partial_prefix(near.parent, near.name),
                                suffix=".npy", dir=near.parent)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(name, mode="w+", dtype=data.dtype, shape=data.shape)
        da.store(data, out, lock=True)
        out.flush()
        yield out
        del out
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _pixel_with_provenance(pixel: float | None, provenance: dict | None) -> float | None:
    """The voxel size to write (nm): the one given, else the provenance's; refuse a contradiction.

    A reconstruction's provenance records the voxel size after binning; the
    input file's pixel size written beside a binned volume would be wrong by
    the binning factor.
    """
    recorded = None
    if isinstance(provenance, dict) and provenance.get("pixel_size") is not None:
        recorded = to_nm(provenance["pixel_size"], provenance.get("pixel_unit", "nm"))
    if recorded is None:
        return pixel
    if pixel is None:
        return recorded
    if abs(pixel - recorded) > 1e-3 * recorded:
        b = provenance.get("binning")
        why = f" (the reconstruction was binned by {b})" if isinstance(b, int) and b > 1 else ""
        raise ParameterError(
            f"pixel size {pixel:g} nm contradicts the {recorded:g} nm of the reconstruction's "
            f"provenance{why}: leave pixel_size out, or give rec.pixel_size"
        )
    return pixel


def write_tilt_series(
    path: str | pathlib.Path,
    series: Any,
    geometry: TiltGeometry | None = None,
    *,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write a tilt series ``(n_tilts, rows, cols)`` and, with a geometry, its angles.

    Parameters
    ----------
    path : str or pathlib.Path
        Target file: ``.tif``/``.tiff`` (ImageJ hyperstack), ``.mrc``/``.st``/
        ``.ali`` or ``.npy``.
    series : array-like
        numpy, memory-mapped or dask array; written one image at a time.
    geometry : TiltGeometry, optional
        When given, the angles go to a ``<stem>.rawtlt`` file next to the
        data (and into the TIFF metadata); pixel size and tilt axis are stored
        in the file (TIFF, MRC) or in ``<stem>.json`` (``.npy``).
    overwrite : bool
        When ``False``, raise instead of replacing an existing file.

    Returns
    -------
    pathlib.Path
        The data file written.
    """
    path = _target(path, TILT_SERIES_EXTENSIONS, "tilt series")
    series = _check_3d(series, "tilt series")
    ext = path.suffix.lower()
    targets = [path]
    if geometry is not None:
        geometry.validate(int(series.shape[0]))
        targets.append(path.with_suffix(".rawtlt"))
        if ext == ".npy":
            targets.append(json_sidecar(path))
    _check_free(targets, overwrite)
    pixel = None
    if geometry is not None and geometry.pixel_size:
        pixel = to_nm(geometry.pixel_size, geometry.pixel_unit)
    axis = None if geometry is None else geometry.tilt_axis
    if ext in _TIFF:
        angles = None if geometry is None else geometry.angles
        _atomically(path, write_tiff, series, pixel_size=pixel, angles=angles, tilt_axis=axis)
    elif ext in _MRC:
        labels = () if axis is None else (f"tomoprior tilt_axis={axis:g}",)
        _atomically(path, write_mrc, series, pixel_size_nm=pixel, labels=labels)
    else:
        _atomically(path, write_npy, series)
        if geometry is not None:
            write_json_sidecar(path, {"pixel_size": pixel, "pixel_unit": "nm", "tilt_axis": axis})
    if geometry is not None:
        write_angles(path.with_suffix(".rawtlt"), geometry.angles)
    return path


def write_volume(
    path: str | pathlib.Path,
    volume: Any,
    *,
    pixel_size: float | None = None,
    pixel_unit: str = "nm",
    provenance: dict | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write a reconstructed volume ``(z, y, x)`` with its calibration and provenance.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.tif``/``.tiff`` (ImageJ hyperstack), ``.mrc``/``.rec``, ``.npy``,
        or an OME-Zarr store ``.ome.zarr``/``.zarr`` (a folder, written slab by
        slab in chunks along the tilt axis of ``provenance["geometry"]``; see
        :class:`~tomoprior.io.ZarrVolumeWriter` for writing as slabs finish).
    volume : array-like
        The volume (numpy, memory-mapped or dask); float64 and other types
        ImageJ/MRC cannot hold are written as float32 (Zarr keeps the type).
    pixel_size : float, optional
        Voxel size in ``pixel_unit``. By default the one the provenance
        records (a reconstruction's, after binning); a pixel size that
        contradicts it is refused.
    pixel_unit : str
        ``"nm"`` or ``"Å"`` (also ``"µm"``); MRC stores Å, TIFF stores nm.
    provenance : dict, optional
        How the volume was made (method, parameters, geometry, version ...),
        stored as JSON: in the TIFF ImageJ ``Info`` text, in a
        ``<stem>.json`` file next to an MRC or ``.npy`` file, or in the
        ``"tomoprior"`` attribute of a Zarr group. Read it back
        with :func:`read_provenance`.
    overwrite : bool
        When ``False`` (the default), raise instead of replacing an existing
        file.

    Returns
    -------
    pathlib.Path
        The data file written.
    """
    path = _target(path, VOLUME_EXTENSIONS, "volume")
    volume = _check_3d(volume, "volume")
    if pixel_size is not None and unit_factor_to_nm(pixel_unit) is None:
        raise FormatError(f"unknown pixel unit {pixel_unit!r}: use 'nm' or 'Å'")
    pixel = to_nm(pixel_size, pixel_unit) if pixel_size is not None else None
    if pixel_size is not None and pixel is None:
        raise FormatError(f"pixel size must be a positive number, got {pixel_size!r}")
    pixel = _pixel_with_provenance(pixel, provenance)
    ext = path.suffix.lower()
    if ext == ".zarr":
        check_store_target(path, overwrite)
        return write_zarr(path, volume, pixel_size=pixel, provenance=provenance, overwrite=overwrite)
    sidecar = ext not in _TIFF and (provenance is not None or (ext == ".npy" and pixel))
    _check_free([path, json_sidecar(path)] if sidecar else [path], overwrite)
    with _computed_once(volume, path) as volume:
        if ext in _TIFF:
            _atomically(path, write_tiff, volume, pixel_size=pixel, provenance=provenance)
        elif ext in _MRC:
            labels = ("tomoprior volume",)
            if provenance is not None:
                labels += (f"tomoprior provenance in {json_sidecar(path).name}",)
            _atomically(path, write_mrc, volume, pixel_size_nm=pixel, volume=True, labels=labels)
        else:
            _atomically(path, write_npy, volume)
    if sidecar:
        content: dict[str, Any] = {}
        if ext == ".npy" and pixel:
            content.update(pixel_size=pixel, pixel_unit="nm")
        if provenance is not None:
            content[PROVENANCE_KEY] = provenance
        write_json_sidecar(path, content)
    return path


def read_provenance(path: str | pathlib.Path) -> dict | None:
    """The provenance block that :func:`write_volume` stored with a file.

    Returns
    -------
    dict or None
        ``None`` when the file carries no provenance (e.g. written by another
        program).

    Raises
    ------
    FormatError
        When the file does not exist or its type cannot carry provenance.
    """
    path = pathlib.Path(path).expanduser()
    ext = path.suffix.lower()
    if ext == ".zarr" and is_zarr_store(path):
        return zarr_provenance(path)
    if not path.is_file():
        raise FormatError(f"file not found: {path}")
    if ext in _TIFF:
        return tiff_provenance(path)
    if ext in _MRC or ext == ".npy":
        value = (read_json_sidecar(path) or {}).get(PROVENANCE_KEY)
        return value if isinstance(value, dict) else None
    raise FormatError(f"no provenance can be stored in {ext} files: use .tif, .mrc, .npy or .zarr")
