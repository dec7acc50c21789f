"""Where a slab task's images come from: a file, a memory map, or a window of an array."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


# -- where the images come from ---------------------------------------------------------------
@dataclass(frozen=True)
class FileSource:
    """A tilt-series file that every worker opens itself (the same path on every machine).

    Read lazily with :func:`tomoprior.io.read` (memory map or dask), so that
    a task reads only its window of the file.
    """

    path: str

    def open(self) -> Any:
        from .. import io

        return io.read(self.path, lazy=True).data


@dataclass(frozen=True)
class MemmapSource:
    """A memory-mapped array, reopened by each task from its file."""

    filename: str
    dtype: str
    shape: tuple[int, int, int]
    offset: int
    order: str = "C"

    @classmethod
    def of(cls, data: Any) -> MemmapSource | None:
        """The source of a memory map that covers its whole mapping, else None."""
        import mmap

        if not isinstance(data, np.memmap) or not getattr(data, "filename", None):
            return None
        if not (data.flags.c_contiguous and isinstance(data.base, mmap.mmap)):
            return None  # a view of a map: its offset attribute is the parent's
        return cls(str(data.filename), np.dtype(data.dtype).str, tuple(int(s) for s in data.shape),
                   int(data.offset))

    def open(self) -> np.memmap:
        return np.memmap(self.filename, dtype=np.dtype(self.dtype), mode="r", shape=self.shape,
                         offset=self.offset, order=self.order)


Source = FileSource | MemmapSource


@dataclass(frozen=True)
class Window:
    """A rectangle of the (binned) input images: rows and columns, stop exclusive."""

    rows: tuple[int, int]
    cols: tuple[int, int]

    def raw(self, b: int) -> tuple[slice, slice]:
        """The same rectangle in pixels of the unbinned images."""
        return (slice(self.rows[0] * b, self.rows[1] * b), slice(self.cols[0] * b, self.cols[1] * b))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])


def _is_dask(a: Any) -> bool:
    return type(a).__module__.startswith("dask.")


def read_window(data: Any, indices: Sequence[int], window: Window, binning: int) -> Any:
    """The kept images' ``window`` of ``data`` (unbinned pixels): lazy for dask, else read."""
    rs, cs = window.raw(binning)
    idx = np.asarray(indices, dtype=np.intp)
    if len(idx) == data.shape[0] and np.array_equal(idx, np.arange(len(idx))):
        part = data[:, rs, cs]
    else:
        part = data[idx, rs, cs] if not _is_dask(data) else data[idx][:, rs, cs]
    if _is_dask(part):
        return part
    return np.ascontiguousarray(part)


def _sample_points(region: Window, image_shape: tuple[int, int], shifts: np.ndarray,
                   residual: float, corners: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Input pixel coordinates ``(iy, ix)`` that orienting samples for the pixels of ``region``.

    The map of :func:`~tomoprior.transforms.warp_images` (forward): the
    output pixel ``p`` (centred) shows the input at ``R(-r) (p - s)``. With
    ``corners`` only the region's four corners (the map is affine), else
    every pixel; arrays ``(n_tilts, rows, cols)`` in float64.
    """
    h, w = image_shape
    (r0, r1), (c0, c1) = region.rows, region.cols
    if corners:
        ys = np.array([r0, r1 - 1], np.float64)
        xs = np.array([c0, c1 - 1], np.float64)
    else:
        ys = np.arange(r0, r1, dtype=np.float64)
        xs = np.arange(c0, c1, dtype=np.float64)
    py, px = np.meshgrid(ys - (h - 1) / 2, xs - (w - 1) / 2, indexing="ij")
    s = np.asarray(shifts, np.float64).reshape(-1, 2)
    py = py[None] - s[:, 0, None, None]
    px = px[None] - s[:, 1, None, None]
    if abs(residual) > 1e-9:
        c, sn = math.cos(math.radians(residual)), math.sin(math.radians(residual))
        px, py = c * px + sn * py, -sn * px + c * py
    return py + (h - 1) / 2, px + (w - 1) / 2
