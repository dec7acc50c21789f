"""A tilt series made ready for a method: validated, tilts selected, binned, oriented, cut.

:func:`layout` decides everything from the shapes alone (the widgets and the
slab plans use it before a pixel is read); :func:`prepare` then reads the
kept images (image by image from a memory map, lazily from dask) into the
canonical frame, checking that every value is finite.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, GeometryError
from ..geometry import Selection, TiltGeometry
from ..transforms import (
    bin_images,
    canonical_turns,
    orient_images,
    to_canonical,
    volume_from_canonical,
)
from .checks import check_bin, check_increment, check_tilt_range, radian_note

__all__ = ["Prepared", "layout", "prepare"]


@dataclass
class Prepared:
    """Tilt series ready for reconstruction, in the canonical frame."""

    series: np.ndarray  # (n_kept, y_c, u_c) float32
    geometry: TiltGeometry  # of the kept, binned tilts (input frame)
    selection: Selection
    binning: int
    slab: tuple[int, int]  # canonical y range reconstructed (binned pixels)
    full_y: int  # canonical y size before the slab was cut
    volume_shape: tuple[int, int, int]  # canonical (z, y, u)
    excluded: tuple[int, ...] = ()  # images the user excluded (0-based stack indices)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of the volume in the input frame."""
        k, _ = canonical_turns(self.geometry.tilt_axis)
        z, y, u = self.volume_shape
        return (z, y, u) if k % 2 == 0 else (z, u, y)

    def slab_translate(self) -> tuple[float, float, float]:
        """Offset (z, y, x) in binned pixels of a slab volume inside the full one."""
        k, _ = canonical_turns(self.geometry.tilt_axis)
        z, yc, uc = self.volume_shape
        idx = np.zeros((1, self.full_y, uc), np.float32)
        idx[0, self.slab[0]] = 1.0  # mark the slab's first canonical slice
        back = volume_from_canonical(idx, self.geometry)[0]
        first = np.argwhere(back > 0)
        off = [0.0, 0.0, 0.0]
        if k % 2 == 0:  # canonical y is output y (maybe reversed)
            rows = np.unique(first[:, 0])
            off[1] = float(min(rows.min(), self.full_y - self.slab[1]) if k == 2 else rows.min())
        else:
            cols = np.unique(first[:, 1])
            off[2] = float(cols.min() if k == 1 else self.full_y - self.slab[1])
        return tuple(off)


def _check_series(series: Any) -> None:
    ndim = getattr(series, "ndim", None)
    if ndim != 3:
        shape = getattr(series, "shape", None)
        raise DataError(
            f"a tilt series must be a 3D stack (n_tilts, rows, cols); got shape {shape}"
        )
    if min(series.shape) < 1:
        raise DataError(f"the tilt series is empty: shape {series.shape}")


def _parse_slices(slices: Any) -> tuple[int | None, int | None] | None:
    if slices is None or slices == "" or slices == ":":
        return None
    try:
        if isinstance(slices, str):
            a, sep, b = slices.partition(":")
            if not sep:
                raise ValueError(slices)
            return (int(a) if a.strip() else None, int(b) if b.strip() else None)
        a, b = slices
        return (None if a is None else int(a), None if b is None else int(b))
    except (TypeError, ValueError):
        raise GeometryError(f"slices must look like A:B (whole numbers), got {slices!r}") from None


def _is_dask(a: Any) -> bool:
    return type(a).__module__.startswith("dask.")


#: larger values overflow float32 once projected and summed (its limit is 3.4e38)
_LARGEST = 1e30


def _check_finite(data: np.ndarray, *, blank: bool = True) -> None:
    """Refuse NaN, infinite and too large values; with ``blank=False`` also a series without a
    single non-zero value (a whole kept series: a slab of one may be empty)."""
    bad = ~np.isfinite(data)
    if bad.any():
        tilts = np.unique(np.nonzero(bad)[0])[:5].tolist()
        raise DataError(
            f"the tilt series contains {int(bad.sum())} NaN or infinite values "
            f"(in images {tilts}); fix or crop them before reconstructing"
        )
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > _LARGEST:
        raise DataError(
            f"the tilt series holds values up to {peak:.3g}, too large for 32-bit arithmetic: "
            "rescale it (divide by a constant) before reconstructing"
        )
    if peak == 0.0 and not blank:  # the peak is known: no second pass over the data
        raise DataError("the tilt series is all zeros: nothing to reconstruct (check the file, "
                        "or the contrast and offset it was saved with)")


def _canonical_lazy(data: Any, geom: TiltGeometry, b: int) -> Any:
    """Binning and orientation of a dask tilt series, image by image, without loading it."""
    import dask.array as da

    data = data.astype(np.float32)
    n, h, w = data.shape
    k, residual = canonical_turns(geom.tilt_axis)
    if b > 1:
        data = da.coarsen(np.mean, data[:, : h // b * b, : w // b * b], {1: b, 2: b})
    if abs(residual) < 1e-9 and not np.any(geom.shifts):
        return da.rot90(data, -k, axes=(1, 2)) if k else data  # = _rot90_content(data, k)

    def orient(block: np.ndarray, block_info=None) -> np.ndarray:
        i0 = block_info[0]["array-location"][0][0]
        return orient_images(block, geom.tilt_axis, geom.shifts[i0 : i0 + block.shape[0]])

    out_shape = (data.shape[2], data.shape[1]) if k % 2 else data.shape[1:]
    imgs = data.rechunk((1, -1, -1))
    return imgs.map_blocks(orient, dtype=np.float32, chunks=((1,) * n, (out_shape[0],), (out_shape[1],)))


def _slab(slices: Any, full_y: int, b: int, notes: list[str] | None = None) -> tuple[int, int]:
    """The canonical y range (binned pixels) that ``slices`` (input pixels) asks for.

    A range reaching past the series is clipped to it, with a note saying so.
    """
    rng = _parse_slices(slices)
    if rng is None:
        return (0, full_y)
    a0 = 0 if rng[0] is None else rng[0] // b
    e0 = full_y if rng[1] is None else -(-rng[1] // b)
    a, e = max(0, a0), min(full_y, e0)
    if e - a < 1:
        raise GeometryError(f"slice range {slices} is empty for {full_y * b} slices along the axis")
    if (a, e) != (a0, e0) and notes is not None:
        notes.append(f"slice range {_show_slices(slices)} reaches past the {full_y * b} positions "
                     f"along the tilt axis: reconstructing {a * b}:{min(e * b, full_y * b)}")
    return (a, e)


def _show_slices(slices: Any) -> str:
    if isinstance(slices, str):
        return slices
    a, b = slices
    return f"{'' if a is None else a}:{'' if b is None else b}"


def _read_image(data: np.memmap, i: int) -> np.ndarray:
    """Image ``i`` of a memory map, read with a plain file read where the map allows it.

    Touching the map would make every page read resident in this process
    (a 1 GiB file would show 1 GiB of memory in use); a read keeps one image.
    """
    name, base = getattr(data, "filename", None), data.base
    if name and data.flags.c_contiguous and isinstance(base, mmap.mmap):
        count = int(data.shape[1]) * int(data.shape[2])
        offset = int(data.offset) + i * count * data.itemsize
        with open(name, "rb") as fh:
            return np.fromfile(fh, dtype=data.dtype, count=count, offset=offset).reshape(data.shape[1:])
    return np.asarray(data[i])


def _canonical_streamed(
    data: np.ndarray, indices: np.ndarray, geom: TiltGeometry, b: int, slab: tuple[int, int]
) -> np.ndarray:
    """The canonical slab of a memory-mapped series, one image at a time.

    Peak memory is the slab plus one image, whatever the file's size.
    """
    out: np.ndarray | None = None
    for j, i in enumerate(np.asarray(indices)):
        img = _read_image(data, int(i)).astype(np.float32, copy=False)[None]
        one = orient_images(bin_images(img, b), geom.tilt_axis, geom.shifts[j : j + 1])
        if out is None:
            out = np.empty((len(indices), slab[1] - slab[0], one.shape[2]), np.float32)
        out[j] = one[0, slab[0] : slab[1]]
    assert out is not None  # the geometry has at least two tilts
    _check_finite(out, blank=False)
    return out


def layout(
    tilt_series: Any,
    geometry: TiltGeometry,
    *,
    tilt_range: tuple[float, float] | None = None,
    increment: float | None = None,
    bin: int = 1,
    slices: Any = None,
    thickness: int | None = None,
    exclude: Sequence[int] = (),
    notes: list[str] | None = None,
) -> tuple[Selection, TiltGeometry, int, int, tuple[int, int]]:
    """What :func:`prepare` decides before it reads a pixel, validated.

    Returns ``(selection, geometry, binning, full_y, slab)``: the kept tilts,
    their binned geometry, the binning, the canonical y size of the whole
    volume and the canonical y range asked for (binned pixels). Only the
    shape of ``tilt_series`` is looked at. What runs but is probably not
    meant (radian-looking angles, a clipped slice range) is appended to
    ``notes``.
    """
    _check_series(tilt_series)
    if not isinstance(geometry, TiltGeometry):
        raise GeometryError("no tilt angles: give a TiltGeometry (or set the tilt start and step)")
    geometry.validate(tilt_series.shape[0])
    if notes is not None:
        radian_note(geometry.angles, notes)
    sel = geometry.select(check_tilt_range(tilt_range), check_increment(increment), exclude)
    b = check_bin(bin)
    geom = sel.geometry
    if thickness is not None:
        geom = geom.replace(thickness=int(thickness))
    geom = geom.binned(b)
    h, w = (int(s) // b for s in tilt_series.shape[1:])
    if h < 1 or w < 1:
        raise DataError(f"binning by {b} leaves no pixels of a {tilt_series.shape[1]}x"
                        f"{tilt_series.shape[2]} image")
    full_y = w if canonical_turns(geom.tilt_axis)[0] % 2 else h
    return sel, geom, b, full_y, _slab(slices, full_y, b, notes)


def prepare(
    tilt_series: Any,
    geometry: TiltGeometry,
    *,
    tilt_range: tuple[float, float] | None = None,
    increment: float | None = None,
    bin: int = 1,
    slices: Any = None,
    thickness: int | None = None,
    exclude: Sequence[int] = (),
    notes: list[str] | None = None,
) -> Prepared:
    """Select tilts, bin, orient and cut the slab; validate everything on the way.

    ``thickness`` and ``slices`` are in pixels of the input images (before
    binning); ``slices`` indexes positions along the tilt axis. ``notes``
    collects one-line warnings (see :func:`layout`).
    """
    sel, geom, b, full_y, slab = layout(
        tilt_series, geometry, tilt_range=tilt_range, increment=increment, bin=bin,
        slices=slices, thickness=thickness, exclude=exclude, notes=notes,
    )
    if isinstance(tilt_series, np.memmap):  # a file opened lazily: read only what is used
        canon = _canonical_streamed(tilt_series, sel.indices, geom, b, slab)
    else:
        data = tilt_series[sel.indices] if sel.count < geometry.n_tilts else tilt_series
        if _is_dask(data):
            canon = _canonical_lazy(data, geom, b)
        else:
            data = np.asarray(data).astype(np.float32, copy=False)
            _check_finite(data, blank=False)
            canon = to_canonical(bin_images(data, b), geom)
        if slab != (0, full_y):
            canon = canon[:, slab[0] : slab[1]]
    z = geom.thickness or canon.shape[2]
    return Prepared(
        series=canon,
        geometry=geom,
        selection=sel,
        binning=b,
        slab=slab,
        full_y=full_y,
        volume_shape=(int(z), canon.shape[1], canon.shape[2]),
        excluded=tuple(sorted({int(i) for i in exclude})),
    )
