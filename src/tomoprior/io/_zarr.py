"""OME-Zarr volumes: a slab-by-slab writer and a lazy reader.

A volume is stored as an OME-NGFF 0.4 image (Zarr format 2, ``/`` chunk
keys): one resolution level ``0`` with axes ``z, y, x``; when the pixel size
is known the axes have the unit ``"nanometer"`` and the level's ``scale``
transformation is the pixel size. The group attribute ``"tomoprior"`` holds
the package version and the provenance block. Stores written by other
programs (NGFF 0.4 or 0.5, or a bare Zarr array) are read too.

Writing is atomic: :class:`ZarrVolumeWriter` builds the store in a hidden
sibling folder and renames it to the final name only when every chunk has
been written; an existing store is replaced only when ``overwrite`` is
asked, and a folder that is not a Zarr store is never replaced.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .._atomic import fresh_partial_prefix
from ..errors import DataError, FormatError
from ._model import RawRead

__all__ = [
    "ZarrVolumeWriter",
    "is_zarr_store",
    "read_zarr",
    "slab_axis",
    "slab_chunks",
    "write_zarr",
    "zarr_provenance",
]

#: group attribute holding tomoprior's own metadata
ATTRS_KEY = "tomoprior"
#: largest extent of a chunk across the slab axis (napari reads planes chunk by chunk)
PLANE_CHUNK = 128
_MARKERS = (".zgroup", ".zarray", "zarr.json")


def is_zarr_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a Zarr group or array (format 2 or 3)."""
    p = pathlib.Path(path)
    return p.is_dir() and any((p / m).is_file() for m in _MARKERS)


def slab_axis(tilt_axis: float | None) -> int:
    """The axis of an input-frame volume ``(z, y, x)`` along the tilt axis (1 or 2).

    Reconstructions are computed in slabs of canonical ``y`` slices, which
    run along the tilt axis: the volume's ``y`` (axis 1) for a vertical
    axis, its ``x`` (axis 2) for a horizontal one (the quarter turns of
    :func:`tomoprior.transforms.canonical_turns`). ``None`` gives axis 1.
    """
    if tilt_axis is None:
        return 1
    k = int(round((90.0 - float(tilt_axis)) / 90.0)) % 4
    return 2 if k % 2 else 1


def slab_chunks(shape: Sequence[int], axis: int = 1, size: int | None = None) -> tuple[int, ...]:
    """Chunks of a volume written in slabs of ``size`` slices along ``axis``.

    Across the slab axis chunks are at most :data:`PLANE_CHUNK` wide, so a
    viewer reads a plane without reading the whole volume; ``size``
    defaults to 64 slices.
    """
    shape = tuple(int(s) for s in shape)
    size = 64 if size is None else int(size)
    if size < 1:
        raise ValueError(f"a slab holds at least one slice, got {size}")
    return tuple(max(1, min(n, size if i == axis else PLANE_CHUNK)) for i, n in enumerate(shape))


def _zarr():
    import zarr

    return zarr


def _v3() -> bool:
    return int(_zarr().__version__.split(".")[0]) >= 3


def _ngff(shape: Sequence[int], pixel_size: float | None, name: str) -> dict[str, Any]:
    axes = [{"name": a, "type": "space"} for a in "zyx"[-len(shape):]]
    if pixel_size:
        for a in axes:
            a["unit"] = "nanometer"
    scale = [float(f"{pixel_size:.12g}") if pixel_size else 1.0] * len(shape)  # 0.32, not 0.32000000000000006
    return {"multiscales": [{
        "version": "0.4", "name": name, "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }]}


class ZarrVolumeWriter:
    """An OME-Zarr volume written region by region, published atomically.

    Parameters
    ----------
    path : str or pathlib.Path
        The store to create, ``*.zarr`` or ``*.ome.zarr``.
    shape : tuple of int
        Volume shape ``(z, y, x)`` in the input frame.
    dtype : numpy dtype
        Element type (real numbers).
    chunks : tuple of int, optional
        Chunk shape; default :func:`slab_chunks` with slabs of 64 along axis 1.
        Give ``slab_chunks(shape, slab_axis(tilt_axis), slab)`` so that each
        slab of a reconstruction covers whole chunks.
    pixel_size : float, optional
        Voxel size in nm (the multiscales ``scale`` and unit).
    provenance : dict, optional
        Stored in the group attribute ``"tomoprior"``; :meth:`close` may
        replace it (timings are known only at the end).
    overwrite : bool
        Replace an existing Zarr store at ``path`` on :meth:`close`.

    Notes
    -----
    Checks run at construction, before any computation: the folder exists
    and is writable, ``path`` is not a folder other than a Zarr store, and
    an existing store needs ``overwrite``. The data go to a hidden sibling
    folder ``.<name>.partial-*``.

    :meth:`write` (or ``writer[region] = block``) stores one block.
    Regions must start and end on chunk boundaries (or at the array's end)
    so that writers never share a chunk: then concurrent writes from
    threads, processes or machines sharing the file system are safe, and
    each slab is written exactly once. The writer pickles (the array is
    reopened by path in a worker) and has ``shape``, ``dtype``, ``ndim``
    and ``chunks``, so ``dask.array.store(x.rechunk(w.chunks), w,
    lock=False)`` or ``x.to_zarr(w.array)`` store a dask array without
    recomputing it.

    :meth:`close` checks that every chunk was written, writes the metadata,
    flushes everything to disk and renames the store to ``path``; an
    incomplete store raises :class:`~tomoprior.errors.FormatError` and is
    removed. :meth:`abort` (or leaving a ``with`` block on an exception,
    Ctrl-C included) removes the partial store; ``path`` is untouched.

    Examples
    --------
    >>> with ZarrVolumeWriter("vol.ome.zarr", (64, 64, 64), "float32",
    ...                       slab_chunks((64, 64, 64), 1, 16), pixel_size=0.8) as w:
    ...     for region in w.regions():                      # doctest: +SKIP
    ...         w.write(region, compute(region))
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: Sequence[int],
        dtype: Any = np.float32,
        chunks: Sequence[int] | None = None,
        *,
        pixel_size: float | None = None,
        provenance: dict | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = pathlib.Path(path).expanduser()
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "biuf" or len(self.shape) != 3 or 0 in self.shape:
            raise DataError(f"a volume must be a non-empty 3D array of numbers, got {self.shape} "
                            f"{self.dtype}")
        self.chunks = tuple(int(c) for c in (chunks or slab_chunks(self.shape)))
        if len(self.chunks) != 3 or min(self.chunks) < 1:
            raise ValueError(f"chunks must be three positive sizes, got {self.chunks}")
        self.pixel_size = float(pixel_size) if pixel_size else None
        self.provenance = provenance
        self.overwrite = bool(overwrite)
        check_store_target(self.path, self.overwrite)
        try:
            self.temporary = pathlib.Path(tempfile.mkdtemp(
                prefix=fresh_partial_prefix(self.path.parent, self.path.name),
                dir=self.path.parent))
            group = _zarr().open_group(str(self.temporary), mode="w", **_format2())
            if _v3():
                group.create_array("0", shape=self.shape, chunks=self.chunks, dtype=self.dtype,
                                   fill_value=0, chunk_key_encoding={"name": "v2", "separator": "/"})
            else:  # zarr 2 (Python 3.10)
                group.create_dataset("0", shape=self.shape, chunks=self.chunks, dtype=self.dtype,
                                     fill_value=0, dimension_separator="/")
        except OSError as exc:
            self.abort()
            raise FormatError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.closed = False
        self._lock = threading.Lock()
        self._array = None

    ndim = property(lambda self: len(self.shape))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock")
        state["_array"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def array(self):
        """The Zarr array being written (in the temporary store), writing every chunk."""
        with self._lock:
            if self._array is None:
                zarr = _zarr()
                where = str(self.temporary / "0")
                if _v3():
                    with zarr.config.set({"array.write_empty_chunks": True}):
                        self._array = zarr.open_array(where, mode="r+")
                else:
                    self._array = zarr.open_array(where, mode="r+", write_empty_chunks=True)
            return self._array

    def regions(self, axis: int | None = None) -> Iterator[tuple[slice, slice, slice]]:
        """Chunk-aligned slabs along ``axis`` (default: the axis of the thinnest chunks)."""
        if axis is None:
            axis = int(np.argmin([c / n for c, n in zip(self.chunks, self.shape)]))
        step = self.chunks[axis]
        for start in range(0, self.shape[axis], step):
            region = [slice(None)] * 3
            region[axis] = slice(start, min(start + step, self.shape[axis]))
            yield tuple(region)  # type: ignore[misc]

    def write(self, region: Sequence[slice] | slice, block: Any) -> None:
        """Store ``block`` at ``region`` (a tuple of slices on chunk boundaries)."""
        if self.closed or not (self.temporary / "0").is_dir():  # closed here, or by the owner
            raise RuntimeError(f"{self.path} is closed: nothing more can be written")
        region = tuple(region) if isinstance(region, (tuple, list)) else (region,)
        region = region + (slice(None),) * (3 - len(region))
        for r, n, c in zip(region, self.shape, self.chunks):
            start, stop, step = r.indices(n) if isinstance(r, slice) else (-1, -1, 0)
            if step != 1 or start % c or (stop % c and stop != n):
                raise ValueError(f"region {region} does not lie on the chunk grid {self.chunks} "
                                 "of the volume: rechunk the data to the writer's chunks")
        self.array[region] = np.asarray(block, dtype=self.dtype)

    __setitem__ = write

    def _missing_chunks(self) -> int:
        expected = math.prod(-(-n // c) for n, c in zip(self.shape, self.chunks))
        found = sum(1 for _, _, files in os.walk(self.temporary / "0")
                    for f in files if not f.startswith("."))
        return expected - found

    def close(self, provenance: dict | None = None) -> pathlib.Path:
        """Check completeness, write the metadata and publish the store under ``path``."""
        if self.closed:
            return self.path
        try:
            missing = self._missing_chunks()
            if missing:
                raise FormatError(f"{self.path.name} was not completely written ({missing} chunks "
                                  "missing): nothing was saved")
            from .. import __version__
            from ._common import dumps

            if provenance is not None:
                self.provenance = provenance
            ours: dict[str, Any] = {"kind": "volume", "version": __version__}
            if self.provenance is not None:
                import json

                ours["provenance"] = json.loads(dumps(self.provenance, indent=None))
            group = _zarr().open_group(str(self.temporary), mode="r+")
            name = self.path.name.removesuffix(".zarr").removesuffix(".ome")
            group.attrs.update({**_ngff(self.shape, self.pixel_size, name), ATTRS_KEY: ours})
            _publish(self.temporary, self.path, self.overwrite)
        except BaseException:
            self.abort()
            raise
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Remove the partial store; ``path`` is left as it was."""
        self.closed = True
        tmp = getattr(self, "temporary", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> ZarrVolumeWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _format2() -> dict:
    return {"zarr_format": 2} if _v3() else {}


def check_store_target(path: pathlib.Path, overwrite: bool) -> None:
    """Refuse a target the writer must not replace (checked before any work)."""
    if not path.parent.is_dir():
        raise FormatError(f"cannot write {path.name}: the folder {path.parent} does not exist")
    if path.exists() or path.is_symlink():
        if path.is_symlink():
            raise FormatError(f"{path} is a symbolic link: it is never replaced, choose another name")
        if not is_zarr_store(path):
            what = "a folder" if path.is_dir() else "a file"
            raise FormatError(f"{path} is {what} that is not a Zarr store: it is never replaced, "
                              "choose another name")
        if not overwrite:
            raise FormatError(f"{path} exists: choose another name or allow overwriting")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise FormatError(f"cannot write in {path.parent}: permission denied")


def _publish(tmp: pathlib.Path, target: pathlib.Path, overwrite: bool) -> None:
    """Flush the store to disk and rename it to ``target`` (replacing an old store)."""
    for root, _, files in os.walk(tmp):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh, contextlib.suppress(OSError):
                os.fsync(fh.fileno())  # (not allowed on read-only handles on Windows)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700 folders
    check_store_target(target, overwrite)  # it may have appeared meanwhile
    old = None
    if target.exists():
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "store")
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old / "store", target)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_zarr(path: pathlib.Path, data: Any, *, pixel_size: float | None = None,
               provenance: dict | None = None, overwrite: bool = True,
               chunks: Sequence[int] | None = None) -> pathlib.Path:
    """Write a whole volume (numpy or dask) slab by slab; see :class:`ZarrVolumeWriter`.

    Default chunks are slabs along the tilt axis of ``provenance["geometry"]``.
    """
    if chunks is None:
        geometry = (provenance or {}).get("geometry") or {}
        axis = slab_axis(geometry.get("tilt_axis") if isinstance(geometry, dict) else None)
        chunks = slab_chunks(data.shape, axis)
    dtype = np.dtype(data.dtype)
    dtype = np.dtype(np.uint8) if dtype.kind == "b" else dtype
    with ZarrVolumeWriter(path, data.shape, dtype, chunks, pixel_size=pixel_size,
                          provenance=provenance, overwrite=overwrite) as w:
        if hasattr(data, "rechunk") and hasattr(data, "dask"):
            import dask.array as da

            da.store(data.rechunk(w.chunks), w, lock=False)
        else:
            for region in w.regions():
                w.write(region, data[region])
    return w.path


# -- reading ----------------------------------------------------------------------------------
def _multiscales(attrs: dict) -> list | None:
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs  # NGFF 0.5 | 0.4
    value = ome.get("multiscales")
    return value if isinstance(value, list) and value and isinstance(value[0], dict) else None


def _open(path: pathlib.Path):
    """``(array, group attributes, multiscales entry or None)``."""
    zarr = _zarr()
    if not is_zarr_store(path):
        raise FormatError(f"{path.name} is not a Zarr store (no .zgroup, .zarray or zarr.json)")
    node = zarr.open(str(path), mode="r")
    if not hasattr(node, "attrs") or hasattr(node, "shape"):
        return node, {}, None
    attrs = dict(node.attrs)
    ms = _multiscales(attrs)
    if ms is None:
        arrays = list(node.array_keys())
        if len(arrays) != 1:
            raise FormatError(f"{path.name} is a Zarr group without OME-NGFF multiscales and "
                              f"{len(arrays)} arrays: open the array folder inside it")
        return node[arrays[0]], attrs, None
    datasets = ms[0].get("datasets") or [{}]
    return node[str(datasets[0].get("path", "0"))], attrs, ms[0]


def _pixel_size(ms: dict | None) -> float | None:
    from ._common import to_nm

    if ms is None:
        return None
    try:
        scale = next(t["scale"] for t in ms["datasets"][0].get("coordinateTransformations", [])
                     if t.get("type") == "scale")
        unit = ms.get("axes", [])[-1].get("unit")  # no unit: a scale in pixels, no size
        return None if unit is None else to_nm(scale[-1], unit)
    except (StopIteration, KeyError, IndexError, TypeError, AttributeError):
        return None


def read_zarr(path: pathlib.Path, lazy: bool) -> RawRead:
    """Open a Zarr / OME-Zarr store: a dask array (``lazy``) or a numpy array."""
    from ._budget import check_claim

    array, attrs, ms = _open(path)
    shape, chunks = tuple(int(s) for s in array.shape), tuple(int(c) for c in array.chunks)
    n_chunks = [-(-s // max(c, 1)) for s, c in zip(shape, chunks)]
    if max(n_chunks, default=0) > 10**6 or math.prod(n_chunks) > 10**8:
        raise FormatError(f"{path.name} has an implausible header: {shape} in chunks {chunks}")
    check_claim(path.name, shape, array.dtype, file_bytes=None, in_memory=not lazy)
    import dask.array as da

    data = da.from_zarr(array) if lazy else np.asarray(array[...])
    ours = attrs.get(ATTRS_KEY) if isinstance(attrs.get(ATTRS_KEY), dict) else {}
    axes = (ms or {}).get("axes") or []
    kinds = [a.get("type") if isinstance(a, dict) else None for a in axes]
    spatial = (len(kinds) == len(shape) and kinds.count("space") == 3
               and all(k == "space" or n == 1 for k, n in zip(kinds, shape)))  # (1, 1, z, y, x) too
    version = (ms or {}).get("version") or (attrs.get("ome") or {}).get("version", "")
    raw = RawRead(data=data, pixel_size=_pixel_size(ms),
                  metadata={"format": f"OME-Zarr {version}".strip() if ms else "Zarr"})
    if ours.get("kind") == "volume" or spatial:
        raw.metadata["volume"] = True
    if isinstance(ours.get("provenance"), dict):
        raw.metadata.update(provenance=ours["provenance"], volume=True)
    return raw


def zarr_provenance(path: pathlib.Path) -> dict | None:
    """The provenance block written by :class:`ZarrVolumeWriter`, if any."""
    _, attrs, _ = _open(path)
    value = (attrs.get(ATTRS_KEY) or {}).get("provenance") if isinstance(attrs, dict) else None
    return value if isinstance(value, dict) else None
