"""napari reader: every format :func:`tomoprior.io.read` opens, by drag and drop.

A tilt series opens as an image layer with ``scale = (1, ps, ps)`` (axis 0
is the tilt index) and its angles, tilt axis, pixel size and source in
``layer.metadata``; a reconstructed volume (a file written by
:func:`tomoprior.io.write_volume`, an MRC volume, a ``.rec``) opens with
``scale = (ps, ps, ps)`` and its provenance. Lazy data (memory maps, dask
arrays of large files and of Zarr / OME-Zarr stores, which napari passes as
folders) are handed to napari as they are.

Files without tilt angles open with a warning notification that tells the
user to set the start and step in the Reconstruction widget; files that
cannot be read give an error notification and no layer (never a traceback).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import TomopriorError
from ._layers import (
    LayerData,
    tilt_series_layer_data,
    tilt_series_metadata,
    volume_layer_data,
    volume_metadata,
)

__all__ = ["get_reader", "layer_data_from_file", "read_files"]

PathLike = str | pathlib.Path

#: hint appended to the reader's "no tilt angles" warning
WIDGET_HINT = " (Plugins › Tomoprior › Reconstruction)"


def _paths(path: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(path, (str, pathlib.Path)):
        return [str(path)]
    return [str(p) for p in path]


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable | None:
    """The reader function when every path has an extension tomoprior reads, else ``None``."""
    from ..io import SUPPORTED_EXTENSIONS

    paths = _paths(path)
    if len(paths) == 1 and pathlib.Path(paths[0]).is_dir() and not _is_zarr(paths[0]):
        stack = serialem_stack(pathlib.Path(paths[0]))
        return None if stack is None else (lambda _folder: read_files(str(stack)))
    if not paths or any(pathlib.Path(p).suffix.lower() not in SUPPORTED_EXTENSIONS for p in paths):
        return None
    if not all(_may_be_stack(pathlib.Path(p)) for p in paths):
        return None  # a plain 2D or colour picture: let napari's own readers take it
    return read_files


def _is_zarr(path: PathLike) -> bool:
    return pathlib.Path(path).suffix.lower() == ".zarr"


def serialem_stack(folder: pathlib.Path) -> pathlib.Path | None:
    """The one tilt series of a SerialEM folder: the MRC stack that has an ``.mdoc``.

    ``None`` when the folder holds no such stack or several (the user must
    choose then).
    """
    try:
        files = [p for p in folder.iterdir() if p.is_file()]
    except OSError:
        return None
    names = {p.name.lower() for p in files}
    stacks = [
        p for p in files
        if p.suffix.lower() in (".st", ".mrc", ".mrcs")
        and (p.name.lower() + ".mdoc" in names or p.stem.lower() + ".mdoc" in names)
    ]
    return stacks[0] if len(stacks) == 1 else None


def _may_be_stack(path: pathlib.Path) -> bool:
    """False only for a TIFF or ``.npy`` known (from its header) to be one 2D or RGB image.

    Formats of microscopes (MRC, DM, EMD, SER) are always claimed; a file
    whose header cannot be read is claimed too, so that the user gets this
    plugin's message about it.
    """
    ext = path.suffix.lower()
    try:
        if ext in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                page = series.pages[0] if len(series.pages) else tif.pages[0]
                colour = getattr(page, "photometric", None) in (2, 6) and page.samplesperpixel > 1
                planes = int(np.prod(series.shape[:-2])) if len(series.shape) > 2 else 1
                return not colour and planes > 1
        if ext == ".npy":
            from ..io._npy import npy_header

            shape = npy_header(path)[0]
            return len(shape) >= 3 and int(np.prod(shape[:-2])) > 1
    except Exception:  # unreadable header: claim it and explain in read_files
        return True
    return True


def layer_data_from_file(path: PathLike) -> LayerData:
    """Read one file into a LayerData tuple (raises :class:`TomopriorError`)."""
    from .. import io

    f = io.read(path)
    name = f.path.stem
    if f.path.suffix.lower() == ".zarr":
        name = f.path.name[: -len(".zarr")].removesuffix(".ome").removesuffix(".OME")
    meta = f.metadata
    if meta.get("volume") or meta.get("provenance") is not None:
        md = volume_metadata(
            pixel_size=f.pixel_size,
            pixel_unit=f.pixel_unit,
            source=str(f.path),
            provenance=meta.get("provenance"),
            warnings=list(f.warnings),
        )
        return volume_layer_data(f.data, md, name)
    geom = f.geometry
    md = tilt_series_metadata(
        angles=None if geom is None else geom.angles,
        tilt_axis=meta.get("tilt_axis", 0.0) if geom is None else geom.tilt_axis,
        pixel_size=f.pixel_size,
        pixel_unit=f.pixel_unit,
        angle_source=f.angle_source,
        source=str(f.path),
        warnings=list(f.warnings),
        shifts=None if geom is None else geom.shifts,
        **({"virtual_frames": f.virtual_frames} if f.virtual_frames else {}),
    )
    return tilt_series_layer_data(f.data, md, name)


def _message(exc: Exception) -> str:
    if isinstance(exc, TomopriorError):
        return str(exc)
    from ..errors import user_message

    return user_message(exc, interface="gui", what="Reading")


def read_files(path: PathLike | Sequence[PathLike]) -> list:
    """napari reader function: one layer per file, notifications for problems."""
    from napari.utils import notifications

    out: list = []
    for p in _paths(path):
        try:
            data, kwargs, kind = layer_data_from_file(p)
        except Exception as exc:  # the reader never raises into napari: one notification
            notifications.show_error(f"Cannot open {pathlib.Path(p).name}: {_message(exc)}")
            continue
        for message in kwargs["metadata"].get("warnings", []):
            needs_angles = message.startswith("no tilt angles") or " do not fit " in message
            hint = WIDGET_HINT if needs_angles else ""
            notifications.show_warning(message + hint)
        out.append((data, kwargs, kind))
    # [(None,)] tells napari that the file was handled but gave no layer
    return out or [(None,)]
