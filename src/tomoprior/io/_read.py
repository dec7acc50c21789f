"""``read``: open any supported tilt-series file."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DataError, FormatError, GeometryError, TomopriorError
from ..geometry import TiltGeometry, parse_tilt_axis
from ._angles import SIDECAR_EXTENSIONS, find_mdoc, find_sidecar, read_angles, read_mdoc
from ._budget import memory_budget, unreadable
from ._model import RawRead, TiltSeriesFile, is_lazy, no_angles_message
from ._mrc import read_mrc
from ._npy import read_npy
from ._rsciio import read_rsciio
from ._tiff import read_tiff
from ._zarr import read_zarr

__all__ = ["LAZY_THRESHOLD_BYTES", "SUPPORTED_EXTENSIONS", "read"]

#: files larger than this are opened lazily when ``lazy=None``
LAZY_THRESHOLD_BYTES = 512 * 1024**2

_READERS: dict[str, Callable[[pathlib.Path, bool], RawRead]] = {
    ".tif": read_tiff,
    ".tiff": read_tiff,
    ".mrc": read_mrc,
    ".mrcs": read_mrc,
    ".st": read_mrc,
    ".ali": read_mrc,
    ".preali": read_mrc,
    ".rec": read_mrc,
    ".npy": read_npy,
    ".dm3": read_rsciio,
    ".dm4": read_rsciio,
    ".emd": read_rsciio,
    ".ser": read_rsciio,
    ".zarr": read_zarr,
}

#: every extension :func:`read` accepts (lower case, with the dot)
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_READERS)


def _sidecar_extensions(ext: str) -> tuple[str, ...]:
    if ext == ".ali":  # IMOD: the aligned stack goes with the refined .tlt
        return (".tlt", ".rawtlt")
    if ext in (".mrc", ".mrcs", ".st", ".preali", ".rec"):
        return (".rawtlt", ".tlt")
    return SIDECAR_EXTENSIONS


def _as_stack(data: Any, name: str) -> Any:
    """Drop singleton axes beyond three and check for a 3D stack of images."""
    shape = tuple(int(s) for s in data.shape)
    if 0 in shape:
        raise DataError(f"{name} contains no images (array shape {shape})")
    while data.ndim > 3 and 1 in shape[:-2]:
        data = data.reshape(tuple(s for i, s in enumerate(shape) if i >= len(shape) - 2 or s != 1))
        shape = tuple(int(s) for s in data.shape)
    if data.ndim == 3 and shape[0] == 1:
        data = data[0]
    if data.ndim == 2:
        raise FormatError(
            f"{name} holds a single 2D image {shape[-2]} × {shape[-1]}, not a tilt series: "
            "a tilt series is a stack of images, one per tilt angle"
        )
    if data.ndim != 3:
        raise FormatError(
            f"{name} holds a {data.ndim}D array of shape {shape}: a tilt series must be a 3D "
            "stack (n_tilts, rows, cols)"
        )
    if np.dtype(data.dtype).kind not in "biuf":
        raise FormatError(f"{name} holds {np.dtype(data.dtype)} data: expected real numbers")
    return data


def _user_angles(angles: Any) -> tuple[np.ndarray, str]:
    if isinstance(angles, (str, pathlib.PurePath)):
        return read_angles(angles), pathlib.Path(angles).name
    return np.asarray(angles, dtype=np.float64).ravel(), "user"


def read(
    path: str | pathlib.Path,
    *,
    angles: Any = None,
    lazy: bool | None = None,
    angles_unit: str = "deg",
) -> TiltSeriesFile:
    """Open a tilt series and find its tilt angles, tilt axis and pixel size.

    Parameters
    ----------
    path : str or pathlib.Path
        A file with one of :data:`SUPPORTED_EXTENSIONS`, or a Zarr / OME-Zarr
        store (a ``.zarr`` folder, opened as a dask array). Opening one image
        of a numbered DM/EMD series (``scan_001.dm4``, ``scan_002.dm4`` ...)
        reads the whole series in numeric order.
    angles : array-like, str or pathlib.Path, optional
        Tilt angles in degrees, or the path of an angle file; they replace
        any angles found with the data.
    lazy : bool, optional
        ``True`` memory-maps the file or wraps it in a dask array, ``False``
        reads it into memory, ``None`` (default) is lazy for Zarr stores and
        for files larger than :data:`LAZY_THRESHOLD_BYTES` or than the memory
        that is free.
    angles_unit : {"deg", "rad"}
        Unit of the angles found with the file or given by ``angles``.
        Angles that look like radians (all within ±1.6 and spanning more
        than 0.5) when read as degrees get a warning.

    Returns
    -------
    TiltSeriesFile
        The images in their own dtype and what was found about them. When no
        angles are found, ``geometry`` is ``None`` and ``warnings`` says so.

    Raises
    ------
    FormatError
        Missing file, unknown extension, unreadable file, a header that
        claims more data than the file holds, or data that is not a 3D stack
        of images. Whatever goes wrong inside a file library is reported as
        this one error with the file's name (never a library traceback).
    DataError
        An empty stack, or one that cannot fit in memory when ``lazy=False``.
    GeometryError
        Angles given by ``angles`` that are invalid or whose count differs
        from the number of images.

    Notes
    -----
    Angles are looked for in this order: an angle file next to the data with
    the same stem (``.rawtlt``, ``.tlt``, ``.txt``; ``.tlt`` first for
    ``.ali``), then the file's own metadata (ImageJ/OME tags, FEI or SerialEM
    MRC extended header, DM/Velox/TIA stage tilt), then a SerialEM ``.mdoc``.
    Angles found with the file that do not fit it are reported in
    ``warnings`` and the file opens without geometry.
    """
    if angles_unit not in ("deg", "rad"):
        raise FormatError(f"angles_unit must be 'deg' or 'rad', got {angles_unit!r}")
    path = pathlib.Path(path).expanduser()
    try:
        return _read(path, angles, lazy, angles_unit)
    except TomopriorError:
        raise
    except MemoryError:
        raise DataError(f"{path.name} does not fit in memory: crop or bin it first") from None
    except RecursionError:
        raise FormatError(f"cannot read {path.name}: its metadata are nested too deeply") from None
    except Exception as exc:  # any library's failure on a damaged file: one line, with the name
        raise unreadable(path.name, "", exc) from None


def _read(path: pathlib.Path, angles: Any, lazy: bool | None, unit: str) -> TiltSeriesFile:
    name = path.name
    if path.is_symlink() and not path.exists():
        raise FormatError(f"{name} is a symbolic link to nothing (broken, or a loop of links)")
    if not path.exists():
        raise FormatError(f"file not found: {path}")
    ext = path.suffix.lower()
    if path.is_dir() and ext != ".zarr":
        raise FormatError(f"{path} is a folder: choose a tilt-series file inside it")
    if ext not in _READERS:
        raise FormatError(
            f"cannot read {name}: unknown extension {ext or '(none)'!r}; supported: "
            + " ".join(SUPPORTED_EXTENSIONS)
        )
    if lazy is None and ext == ".zarr":
        lazy = True  # a store is chunked: always read on demand
    if lazy is None:
        size = path.stat().st_size
        lazy = size > LAZY_THRESHOLD_BYTES or size > memory_budget()
    raw = _READERS[ext](path, bool(lazy))
    data = _as_stack(raw.data, name)
    n = int(data.shape[0])
    _add_files_beside(raw, path)
    warnings = list(raw.warnings)
    metadata = dict(raw.metadata)
    if metadata.get("mrc_volume_flag") and raw.angles is not None and ext != ".rec":
        metadata["volume"] = False  # the MRC volume flag, but angles beside it: a tilt series
    try:
        axis = parse_tilt_axis(raw.tilt_axis) if raw.tilt_axis is not None else None
    except GeometryError:
        axis = None
    metadata["tilt_axis"] = 0.0 if axis is None else axis
    metadata["tilt_axis_source"] = "default" if axis is None else raw.tilt_axis_source

    geometry, source = None, ""
    if angles is not None:
        found, source = _user_angles(angles)
        found = _in_degrees(found, unit, source, warnings)
        geometry = _geometry(found, metadata["tilt_axis"], raw.pixel_size, source).validate(n)
    elif raw.angles is not None:
        source = raw.angle_source
        found = _in_degrees(np.asarray(raw.angles, np.float64), unit, source, warnings)
        try:
            geometry = _geometry(found, metadata["tilt_axis"], raw.pixel_size, source)
            geometry.validate(n)
        except GeometryError as exc:  # one message: what is wrong, and what to do
            warnings.append(f"the tilt angles from {source} do not fit {name}: {exc}; set the "
                            "tilt start and step, or load an angle file (.rawtlt, .tlt)")
            metadata["rejected_angle_source"], geometry = source, None
            metadata["rejected_angles_reason"] = str(exc)
    frames = _virtual_frames(path, n, warnings)
    if frames is not None:
        metadata["virtual_frames"] = frames
    if geometry is None and not metadata.get("volume") and "rejected_angle_source" not in metadata:
        warnings.append(no_angles_message(name))
    if not is_lazy(data) and np.dtype(data.dtype).kind == "f":
        bad = int(np.count_nonzero(np.isnan(data)))
        if bad:
            warnings.append(
                f"{name} contains {bad} NaN value(s): replace or crop them before reconstructing"
            )
    return TiltSeriesFile(
        data=data,
        geometry=geometry,
        pixel_size=raw.pixel_size,
        pixel_unit="nm",
        path=path,
        angle_source=source if geometry is not None else "",
        metadata=metadata,
        warnings=warnings,
    )


def frames_sidecar(path: str | pathlib.Path) -> pathlib.Path:
    """``OUT.frames.json`` beside ``OUT.tif`` (the suffix replaced): the list of measured and
    virtual frames of an interpolated series."""
    p = pathlib.Path(path)
    return p.with_name(p.stem + ".frames.json")


def _virtual_frames(path: pathlib.Path, n: int, warnings: list[str]) -> dict | None:
    """The ``OUT.frames.json`` sidecar of an interpolated series: which frames are virtual."""
    import json

    side = frames_sidecar(path)
    if not side.is_file():
        return None
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
        measured = [bool(m) for m in record["measured"]]
    except (OSError, ValueError, KeyError, TypeError):
        warnings.append(f"{side.name} cannot be read: which frames are virtual is unknown")
        return None
    if len(measured) != n:
        warnings.append(f"{side.name} lists {len(measured)} frames but {path.name} has {n}: "
                        "it belongs to another series and is ignored")
        return None
    virtual = [i for i, m in enumerate(measured) if not m]
    return {"indices": virtual, "method": str(record.get("method", "unknown")),
            "measured": n - len(virtual), "sidecar": side.name}


def looks_like_radians(angles: np.ndarray) -> bool:
    """All angles within ±1.6 and spanning more than 0.5: radians read as degrees, surely."""
    a = np.asarray(angles, np.float64)
    return bool(a.size > 1 and np.all(np.abs(a) <= 1.6) and np.ptp(a) > 0.5)


def _in_degrees(angles: np.ndarray, unit: str, source: str, warnings: list[str]) -> np.ndarray:
    if unit == "rad":
        return np.degrees(angles)
    if looks_like_radians(angles):
        warnings.append(
            f"the tilt angles from {source} span only {angles.min():.3g} to {angles.max():.3g}°: "
            "if they are in radians, convert them to degrees (the command line takes --angles-unit rad)"
        )
    return angles


def _add_files_beside(raw: RawRead, path: pathlib.Path) -> None:
    """Complete ``raw`` from an angle file and a SerialEM ``.mdoc`` next to ``path``.

    An angle file takes precedence over angles stored in the data file; the
    ``.mdoc`` only fills in what is still missing.
    """
    sidecar = find_sidecar(path, _sidecar_extensions(path.suffix.lower()), raw.sidecar_stems)
    if sidecar is not None:
        try:
            raw.angles, raw.angle_source = read_angles(sidecar), sidecar.name
        except FormatError as exc:
            raw.warnings.append(f"ignored {sidecar.name}: {exc}")
    mdoc_path = find_mdoc(path)
    if mdoc_path is None:
        return
    try:
        mdoc = read_mdoc(mdoc_path)
    except FormatError as exc:
        raw.warnings.append(f"ignored {mdoc_path.name}: {exc}")
        return
    if raw.angles is None and mdoc.angles is not None:
        raw.angles, raw.angle_source = mdoc.angles, mdoc_path.name
    if raw.tilt_axis is None and mdoc.tilt_axis_imod is not None:
        raw.tilt_axis = 90.0 + mdoc.tilt_axis_imod  # IMOD β from the Y axis -> from the X axis
        raw.tilt_axis_source = f"{mdoc_path.name} ({mdoc.tilt_axis_note})"
        raw.metadata["imod_tilt_axis_angle"] = mdoc.tilt_axis_imod
    raw.pixel_size = raw.pixel_size or mdoc.pixel_size
    raw.metadata["mdoc"] = mdoc.values


def _geometry(angles: np.ndarray, axis: float, pixel: float | None, source: str) -> TiltGeometry:
    return TiltGeometry(
        angles=angles, tilt_axis=axis, pixel_size=pixel, pixel_unit="nm", angle_source=source
    )
