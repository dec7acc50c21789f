"""NumPy ``.npy`` arrays; calibration and provenance live in a ``<stem>.json`` sidecar."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from ..errors import FormatError, TomopriorError
from ._budget import check_claim, unreadable
from ._common import PROVENANCE_KEY, json_sidecar, read_json_sidecar, to_nm
from ._model import RawRead

__all__ = ["npy_header", "read_npy", "write_npy"]


def npy_header(path: pathlib.Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of an ``.npy`` file, from its header alone."""
    fmt = np.lib.format
    with open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
        return tuple(shape), dtype, fh.tell()


def _check_header(path: pathlib.Path, lazy: bool) -> None:
    """Read the ``.npy`` header alone and compare its claim with the file before loading."""
    shape, dtype, offset = npy_header(path)
    if dtype.hasobject:
        raise FormatError(f"{path.name} holds Python objects, not numbers: it is not read")
    check_claim(path.name, shape, dtype, file_bytes=path.stat().st_size, offset=offset,
                in_memory=not lazy)


def read_npy(path: pathlib.Path, lazy: bool) -> RawRead:
    """Load an ``.npy`` array (memory-mapped when ``lazy``)."""
    try:
        _check_header(path, lazy)
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except TomopriorError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise unreadable(path.name, "NumPy .npy", exc) from None
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "biuf":
        kind = getattr(data, "dtype", type(data))
        raise FormatError(f"{path.name} does not hold a numeric image stack (found {kind})")
    raw = RawRead(data=data, metadata={"format": "NumPy"})
    side = read_json_sidecar(path) or {}
    raw.pixel_size = to_nm(side.get("pixel_size"), side.get("pixel_unit", "nm"))
    if side.get("tilt_axis") is not None:
        raw.tilt_axis, raw.tilt_axis_source = float(side["tilt_axis"]), json_sidecar(path).name
    if isinstance(side.get(PROVENANCE_KEY), dict):
        raw.metadata.update(provenance=side[PROVENANCE_KEY], volume=True)
    return raw


def write_npy(path: pathlib.Path, data: Any) -> None:
    """Write ``data`` to ``path`` one slice at a time (works for dask arrays)."""
    dtype = np.dtype(data.dtype)
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(data.shape))
        for i in range(int(data.shape[0])):
            out[i] = np.asarray(data[i])
        out.flush()
        del out
    except (ValueError, OSError) as exc:
        raise FormatError(f"cannot write {path}: {exc}") from None
