"""NumPy ``.npy`` arrays; calibration and provenance live in a ``<stem>.json`` sidecar."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from ..errors import FormatError
from ._common import PROVENANCE_KEY, json_sidecar, read_json_sidecar, to_nm
from ._model import RawRead

__all__ = ["read_npy", "write_npy"]


def read_npy(path: pathlib.Path, lazy: bool) -> RawRead:
    """Load an ``.npy`` array (memory-mapped when ``lazy``)."""
    try:
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(f"cannot read {path.name} as a NumPy array: {exc}") from None
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
