"""One entry point for every method: ``run(method, tilt_series, geometry, **params)``.

:func:`run` prepares the data (tilt selection, binning, orientation into the
canonical frame, an optional slab of slices), builds the projector on the
chosen device, and streams :class:`~tomoprior.step.Step` objects whose
volumes are already in the frame of the input images, ``(z, y, x)``. The
returned :class:`Reconstruction` is an iterator; closing it stops the run.
It also knows the run's provenance (method, parameters, kept tilts, device,
seconds, version) for layer metadata and files.

Large volumes are reconstructed in slabs of y-slices (``chunk=``), one after
another in the same iterator; :func:`reconstruct_dask` returns the same
computation as a lazy dask array, one task per slab.
"""

from __future__ import annotations

import datetime as _dt
import mmap
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from . import __version__
from .algorithms import Method, get_method
from .cancel import StopRequested
from .device import resolve_device
from .errors import DataError, GeometryError, MemoryBudgetError, ParameterError
from .geometry import Selection, TiltGeometry
from .operators import make_projector
from .step import Step
from .transforms import (
    bin_images,
    canonical_turns,
    compose_corrections,
    orient_images,
    to_canonical,
    volume_from_canonical,
    volume_to_canonical,
)

__all__ = ["Prepared", "Reconstruction", "prepare", "reconstruct", "reconstruct_dask", "run"]


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


def _check_finite(data: np.ndarray) -> None:
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


def _slab(slices: Any, full_y: int, b: int) -> tuple[int, int]:
    """The canonical y range (binned pixels) that ``slices`` (input pixels) asks for."""
    rng = _parse_slices(slices)
    if rng is None:
        return (0, full_y)
    a = 0 if rng[0] is None else rng[0] // b
    e = full_y if rng[1] is None else -(-rng[1] // b)
    a, e = max(0, a), min(full_y, e)
    if e - a < 1:
        raise GeometryError(f"slice range {slices} is empty for {full_y * b} slices along the axis")
    return (a, e)


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
    _check_finite(out)
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
) -> tuple[Selection, TiltGeometry, int, int, tuple[int, int]]:
    """What :func:`prepare` decides before it reads a pixel, validated.

    Returns ``(selection, geometry, binning, full_y, slab)``: the kept tilts,
    their binned geometry, the binning, the canonical y size of the whole
    volume and the canonical y range asked for (binned pixels). Only the
    shape of ``tilt_series`` is looked at.
    """
    _check_series(tilt_series)
    if not isinstance(geometry, TiltGeometry):
        raise GeometryError("no tilt angles: give a TiltGeometry (or set the tilt start and step)")
    geometry.validate(tilt_series.shape[0])
    sel = geometry.select(tilt_range, increment, exclude)
    b = max(1, int(bin))
    geom = sel.geometry
    if thickness is not None:
        geom = geom.replace(thickness=int(thickness))
    geom = geom.binned(b)
    h, w = (int(s) // b for s in tilt_series.shape[1:])
    if h < 1 or w < 1:
        raise DataError(f"binning by {b} leaves no pixels of a {tilt_series.shape[1]}x"
                        f"{tilt_series.shape[2]} image")
    full_y = w if canonical_turns(geom.tilt_axis)[0] % 2 else h
    return sel, geom, b, full_y, _slab(slices, full_y, b)


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
) -> Prepared:
    """Select tilts, bin, orient and cut the slab; validate everything on the way.

    ``thickness`` and ``slices`` are in pixels of the input images (before
    binning); ``slices`` indexes positions along the tilt axis.
    """
    sel, geom, b, full_y, slab = layout(
        tilt_series, geometry, tilt_range=tilt_range, increment=increment, bin=bin,
        slices=slices, thickness=thickness, exclude=exclude,
    )
    if isinstance(tilt_series, np.memmap):  # a file opened lazily: read only what is used
        canon = _canonical_streamed(tilt_series, sel.indices, geom, b, slab)
    else:
        data = tilt_series[sel.indices] if sel.count < geometry.n_tilts else tilt_series
        if _is_dask(data):
            canon = _canonical_lazy(data, geom, b)
        else:
            data = np.asarray(data).astype(np.float32, copy=False)
            _check_finite(data)
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


def _chunks(n: int, chunk: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    """(inner_start, inner_stop, outer_start, outer_stop) slabs covering ``range(n)``."""
    if not chunk or chunk >= n:
        return [(0, n, 0, n)]
    out = []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        out.append((s, e, max(0, s - overlap), min(n, e + overlap)))
    return out


class Reconstruction(Iterator[Step]):
    """A running reconstruction: iterate for Steps, ``close()`` to stop.

    Attributes
    ----------
    method : Method
    params : dict
        Resolved method parameters (defaults filled in).
    prepared : Prepared
    device : torch.device
    last : Step or None
        The most recent step.
    seconds : float
        Compute time so far.
    """

    def __init__(
        self,
        method: Method,
        prepared: Prepared,
        *,
        params: dict[str, Any],
        iterations: int,
        every: int,
        device: torch.device,
        backend: str,
        x0: np.ndarray | None,
        start: int,
        heldout: float,
        seed: int,
        chunk: int | None,
        overlap: int,
        source: str | None,
    ) -> None:
        self.method = method
        self.prepared = prepared
        self.params = params
        self.iterations = iterations
        self.every = every
        self.device = device
        self.backend = backend
        self.heldout = float(heldout)
        self.seed = int(seed)
        self.source = source
        self.start = start
        self.last: Step | None = None
        self.resume_state: Any = None
        self.seconds = 0.0
        self.finished = False
        self.stopped = False
        self._x0 = x0
        self.preview = False
        self._chunks = _chunks(prepared.volume_shape[1], chunk, overlap)
        if len(self._chunks) > 1:
            from .slabs._plan import check_slab_params

            check_slab_params(params)
        self._chunk, self._overlap = chunk, overlap
        #: choices made once for the whole volume of a chunked run (see :mod:`tomoprior.slabs`)
        self.decisions: dict[str, Any] = {}
        self._gen = self._steps()
        self._started = _dt.datetime.now(_dt.timezone.utc)

    # -- iterator protocol -----------------------------------------------------
    def __iter__(self) -> Reconstruction:
        return self

    def __next__(self) -> Step:
        t0 = time.perf_counter()
        try:
            step = next(self._gen)
        except StopIteration:
            self.finished = True
            raise
        except StopRequested:  # cancel.checkpoint() in an inner loop: a stop, not an error
            self.stopped = True
            self._gen.close()
            raise StopIteration from None
        finally:
            self.seconds += time.perf_counter() - t0
        self.last = step
        return step

    def close(self) -> None:
        """Stop the run; the last yielded volume stays available in ``last``."""
        if not self.finished:
            self.stopped = True
        self._gen.close()

    def __enter__(self) -> Reconstruction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the work ------------------------------------------------------------------
    def heldout_mask(self) -> np.ndarray | None:
        """Held-out detector pixels (canonical frame), or None when disabled."""
        if self.heldout <= 0:
            return None
        from .metrics import heldout_mask

        return heldout_mask(self.prepared.series.shape, fraction=self.heldout, seed=self.seed)

    def _slab_data(self, os_: int, oe: int) -> torch.Tensor:
        aligned = getattr(self, "_aligned", None)
        part = (self.prepared.series if aligned is None else aligned)[:, os_:oe]
        if _is_dask(part):
            part = part.compute()
            _check_finite(part)
        return torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))

    def canonical_steps(self) -> Iterator[Step]:
        """Steps with volumes in the canonical frame (one slab after another)."""
        p = self.prepared
        m = self.method
        held = self.heldout_mask() if m.capabilities.uses_mask else None
        z, ny, nu = p.volume_shape
        full = np.zeros((z, ny, nu), np.float32) if len(self._chunks) > 1 else None
        x0c = None if self._x0 is None else self._canonical_x0(self._x0)
        whole = None
        if self.preview and m.name != "wbp" and len(self._chunks) == 1 and x0c is None:
            whole = make_projector(p.geometry.angles, (z, ny, nu), nu, backend=self.backend,
                                   device=self.device)
            yield self._preview(whole)
        fixed: dict[str, Any] = {}
        if (len(self._chunks) > 1 and m.name == "cstv" and self.params.get("lam") == "auto"
                and self.resume_state is None):
            fixed["lam"] = yield from self._global_lambda(held, full)
        angles, poses = p.geometry.angles, None
        if (len(self._chunks) > 1 and m.name == "inr" and self.params.get("learn_pose")
                and x0c is None):
            poses = yield from self._global_poses(held, full)
            fixed["learn_pose"] = False
            angles = self.learned_geometry(poses).angles
        for ci, (s, e, os_, oe) in enumerate(self._chunks):
            A = whole if whole is not None else make_projector(
                angles, (z, oe - os_, nu), nu, backend=self.backend, device=self.device
            )
            kwargs: dict[str, Any] = {**self.params, **fixed}
            run_kw = {"iterations": self.iterations, "every": self.every, "start": self.start,
                      "seed": self.seed, "resume": self.resume_state}
            if x0c is not None:
                run_kw["x0"] = torch.from_numpy(np.ascontiguousarray(x0c[:, os_:oe]))
            if held is not None:
                run_kw["mask"] = torch.from_numpy(~held[:, os_:oe])
            kwargs.update({k: v for k, v in run_kw.items() if v is not None and m.accepts(k)})
            gen = m.function(A, self._slab_data(os_, oe), **kwargs)
            try:
                for step in gen:
                    vol = step.volume[:, s - os_ : e - os_]
                    chunk = None
                    if full is not None:
                        full[:, s:e] = vol
                        vol, chunk = full.copy(), (ci, len(self._chunks))
                    if poses is not None:  # the poses held fixed for every slab
                        step = replace(step, poses=poses)
                    yield replace(step, volume=vol, chunk=chunk)
            finally:
                gen.close()
        self._aligned = None

    def _global_poses(self, held: np.ndarray | None, full: np.ndarray) -> Iterator[Step]:
        """The INR's ``learn_pose`` for a chunked run: poses learned once on the central slab,
        then held fixed: the canonical series is aligned with them (one more bilinear
        resampling) and every slab is fitted to it without pose learning (as
        :meth:`tomoprior.slabs.SlabPlan.decide`, which aligns the raw images instead).
        Streams the central slab's steps (``phase="pose learning"``); returns the poses."""
        from .transforms import warp_images

        p, m = self.prepared, self.method
        z, ny, nu = p.volume_shape
        width = min(ny, int(self._chunk))
        s = (ny - width) // 2
        e, os_, oe = s + width, max(0, s - self._overlap), min(ny, s + width + self._overlap)
        A = make_projector(p.geometry.angles, (z, oe - os_, nu), nu, backend=self.backend,
                           device=self.device)
        kw: dict[str, Any] = {**self.params, "iterations": self.iterations, "every": self.every,
                              "seed": self.seed}
        if held is not None:
            kw["mask"] = torch.from_numpy(~held[:, os_:oe])
        last = None
        gen = m.function(A, self._slab_data(os_, oe), **kw)
        try:
            for last in gen:
                full[:, s:e] = last.volume[:, s - os_ : e - os_]
                yield replace(last, volume=full.copy(), phase="pose learning", chunk=None)
        finally:
            gen.close()
        if last is None or last.poses is None:
            raise DataError("the INR learned no poses on the central slab")
        poses = dict(last.poses)
        series = p.series.compute() if _is_dask(p.series) else np.asarray(p.series, np.float32)
        with torch.no_grad():
            self._aligned = warp_images(
                torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32)),
                torch.as_tensor(np.asarray(poses["shifts"]), dtype=torch.float32),
                float(poses["axis_correction"]), padding_mode="border").numpy()
        self.decisions["poses"] = {"slab": [s, e], "poses": poses,
                                   "geometry": self.learned_geometry(poses).to_dict(),
                                   "rule": "learned on the central slab, then held fixed for "
                                   "every slab"}
        full[:] = 0
        return poses

    def _global_lambda(self, held: np.ndarray | None, full: np.ndarray) -> Iterator[Step]:
        """CS-TV's ``lam="auto"`` for a chunked run: searched once on sample slabs spread
        through the volume and combined (as :meth:`tomoprior.slabs.SlabPlan.decide`), so
        every slab uses the same λ. Streams the searches' steps; returns λ."""
        from .slabs import combine_lambdas, sample_slabs

        p, m = self.prepared, self.method
        z, ny, nu = p.volume_shape
        samples = sample_slabs(ny, int(self._chunk), self._overlap)
        found: list[dict[str, Any]] = []
        for i, (s, e, os_, oe) in enumerate(samples):
            A = make_projector(p.geometry.angles, (z, oe - os_, nu), nu, backend=self.backend,
                               device=self.device)
            kw: dict[str, Any] = {**self.params, "lam": "auto", "iterations": self.iterations,
                                  "every": 1, "seed": self.seed}
            if held is not None:
                kw["mask"] = torch.from_numpy(~held[:, os_:oe])
            gen = m.function(A, self._slab_data(os_, oe), **kw)
            try:
                for st in gen:
                    if st.phase != "lambda search":
                        found.append({"slab": [s, e], "lam": float(st.extras["lam"]),
                                      "search": [dict(r) for r in st.search]})
                        break
                    full[:, s:e] = st.volume[:, s - os_ : e - os_]
                    frac = (i + float(st.extras.get("phase_fraction", 0.0))) / len(samples)
                    yield replace(st, volume=full.copy(), chunk=None, resume=None,
                                  extras={**st.extras, "sample_slab": i + 1,
                                          "sample_slabs": len(samples), "phase_fraction": frac})
            finally:
                gen.close()
        lam = combine_lambdas([f["lam"] for f in found])
        self.decisions["lam"] = {"value": lam, "rule": "median of the λ chosen on sample slabs",
                                 "samples": found}
        full[:] = 0
        return lam

    def _preview(self, A: Any) -> Step:
        """A filtered backprojection of the whole volume, shown while the method sets up.

        It costs a fraction of a second where a λ search, a warm start or a
        network's first epoch take many; its step says ``phase="preview"``
        so no one mistakes it for the method's result.
        """
        from .algorithms import get_method

        p = self.prepared
        step = None
        for step in get_method("wbp").function(A, self._slab_data(0, p.volume_shape[1])):
            pass
        assert step is not None
        return replace(step, iteration=0, loss=None, total=None, phase="preview", resume=None)

    def _steps(self) -> Iterator[Step]:
        gen = self.canonical_steps()
        try:
            for st in gen:
                # a view: the snapshot is already a copy, a second one would double the peak
                vol = volume_from_canonical(st.volume, self.prepared.geometry, copy=False)
                geometry = None
                if st.poses is not None:
                    geometry = self.learned_geometry(st.poses).to_dict()
                yield replace(st, volume=vol, geometry=geometry)
        finally:
            gen.close()

    def learned_geometry(self, poses: Mapping[str, Any]) -> TiltGeometry:
        """The prepared (selected, binned) geometry with a method's learned poses folded in."""
        g = self.prepared.geometry
        return compose_corrections(g, np.asarray(poses["shifts"]), float(poses["axis_correction"]),
                                   np.asarray(poses["angle_offsets"]))

    def _canonical_x0(self, x0: np.ndarray) -> np.ndarray:
        x0 = np.asarray(x0, np.float32)
        if x0.shape != self.prepared.output_shape:
            raise GeometryError(
                f"warm-start volume has shape {x0.shape}, this run produces {self.prepared.output_shape}"
            )
        return volume_to_canonical(x0, self.prepared.geometry)

    # -- results ------------------------------------------------------------------------
    def canonical(self, volume: np.ndarray) -> np.ndarray:
        """A volume of this run's output frame turned into the canonical frame."""
        return volume_to_canonical(np.asarray(volume, np.float32), self.prepared.geometry)

    def evaluate(
        self,
        volume: np.ndarray | None = None,
        reference: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Quality figures of ``volume`` (default: the last step's).

        Always the relative reprojection residual over all measured pixels
        and, when the run held pixels out, their mean squared error (in data
        units); with a ``reference`` volume of the same shape (ground truth
        or a full-range reconstruction) also SSIM and PSNR after a
        least-squares intensity fit, optionally inside ``mask``.
        """
        from . import metrics

        if volume is None:
            if self.last is None:
                raise DataError("nothing to evaluate: the run has produced no volume yet")
            volume = self.last.volume
        p = self.prepared
        vc = self.canonical(volume)
        A = make_projector(p.geometry.angles, vc.shape, p.volume_shape[2], backend=self.backend,
                           device=self.device)
        series = np.asarray(p.series, np.float32)
        out = {"reprojection_residual": metrics.reprojection_residual(A, vc, series)}
        held = self.heldout_mask()
        if held is not None and self.method.capabilities.uses_mask:
            out["heldout_error"] = metrics.heldout_error(A, vc, series, held)
        if reference is not None:
            ref = np.asarray(reference, np.float32)
            if ref.shape != np.shape(volume):
                raise GeometryError(
                    f"reference volume has shape {ref.shape}, the reconstruction {np.shape(volume)}"
                )
            out.update(metrics.compare(np.asarray(volume, np.float32), ref, mask=mask, fit=True))
        out["seconds"] = round(self.seconds, 3)
        return out

    def provenance(self) -> dict[str, Any]:
        """Everything needed to reproduce the run, JSON-ready."""
        p = self.prepared
        last = self.last
        return {
            "software": "napari-tomoprior",
            "version": __version__,
            "method": self.method.name,
            "method_label": self.method.label,
            "parameters": {k: v for k, v in self.params.items()},
            "iterations": None if last is None else int(last.iteration),
            "planned_iterations": (self.start + self.iterations
                                   if self.method.capabilities.iterative else None),
            "stopped_early": bool(self.stopped),
            "final_loss": None if last is None or last.loss is None else float(last.loss),
            "kept_tilts": [int(i) for i in p.selection.indices],
            "excluded_tilts": [int(i) for i in p.excluded],
            "kept_angles": [float(a) for a in p.geometry.angles],
            "geometry": p.geometry.to_dict(),
            "binning": p.binning,
            "slab": list(p.slab) if p.slab != (0, p.full_y) else None,
            "slab_translate": list(p.slab_translate()) if p.slab != (0, p.full_y) else None,
            "volume_shape": list(p.output_shape),
            "device": str(self.device),
            "backend": self.backend,
            "heldout_fraction": self.heldout,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "started": self._started.isoformat(timespec="seconds"),
            "source": self.source,
            "result": _scalar_extras(last),
            **({"global_decisions": self.decisions} if self.decisions else {}),
        }


def _scalar_extras(step: Step | None) -> dict[str, Any]:
    """The JSON-ready results of a step: its extras (chosen lambda, best iteration, ...),
    held-out error, search table, learned poses and geometry."""
    if step is None:
        return {}
    out: dict[str, Any] = {k: v for k, v in step.extras.items()
                           if not (isinstance(v, float) and not np.isfinite(v))}
    if step.heldout is not None and np.isfinite(step.heldout):
        out["heldout"] = step.heldout
    if step.search:
        out["search"] = [dict(row) for row in step.search]
    if step.poses is not None:
        out["poses"] = dict(step.poses)
    if step.geometry is not None:
        out["geometry"] = dict(step.geometry)
    return out


def run(
    method: str,
    tilt_series: Any,
    geometry: TiltGeometry,
    *,
    iterations: int | None = None,
    every: int | None = None,
    device: str | torch.device | None = "auto",
    backend: str = "sparse",
    tilt_range: tuple[float, float] | None = None,
    increment: float | None = None,
    exclude: Sequence[int] = (),
    bin: int = 1,
    slices: Any = None,
    thickness: int | None = None,
    x0: np.ndarray | None = None,
    start: int = 0,
    resume: Any = None,
    heldout: float = 0.0,
    seed: int = 0,
    chunk: int | None = None,
    overlap: int | None = None,
    source: str | None = None,
    preview: bool = False,
    **params: Any,
) -> Reconstruction:
    """Reconstruct ``tilt_series`` with ``method``, streaming Steps.

    Parameters
    ----------
    method : str
        ``"wbp"``, ``"sirt"``, ``"cstv"``, ``"diptv"`` or ``"inr"`` (see
        :data:`tomoprior.algorithms.METHODS`).
    tilt_series : array (n_tilts, rows, cols)
    geometry : TiltGeometry
    iterations, every : int, optional
        Defaults come from the method's registry entry.
    device : "auto", "cpu", "cuda"
    tilt_range, increment : optional
        Keep only the measured tilts nearest to this range and increment.
    exclude : sequence of int
        Images never to use (0-based stack indices), e.g. frames ruined by
        drift; recorded in the provenance.
    bin : int
        Average ``bin x bin`` pixels first.
    slices : "A:B" or (A, B), optional
        Reconstruct only positions A..B along the tilt axis (input pixels).
    thickness : int, optional
        Volume thickness along z in input pixels (default: width across the axis).
    x0 : volume, optional
        Warm start, shaped like this run's output.
    start : int
        Iterations already done by ``x0`` (numbering continues).
    resume : ResumeState, optional
        ``step.resume`` of the last Step of an earlier run of the same
        method on the same data: continues that run exactly (methods whose
        capabilities say ``resumable``).
    heldout : float
        Fraction of detector pixels held out of the fit for validation.
    chunk, overlap : int, optional
        Reconstruct in slabs of ``chunk`` y-slices with ``overlap`` halo.
        CS-TV's ``lam="auto"`` is then chosen once for the whole volume, on
        sample slabs (``rec.decisions``); an INR with ``learn_pose`` learns
        its poses once, on the central slab, and holds them for every slab.
    source : str, optional
        Where the series came from (recorded in the provenance).
    preview : bool
        Yield first a filtered backprojection with ``phase="preview"``
        (``iteration=0``, no loss) while an iterative method sets up: the
        widgets show a picture within a second whatever the method.
    **params
        Method parameters (strings are parsed, values range-checked).

    Notes
    -----
    A stop requested through :func:`tomoprior.cancel.stop_when` ends the
    iteration at the next inner-loop check (``rec.stopped``, the last
    volume kept in ``rec.last``).
    """
    m = get_method(method)
    resolved = m.resolve(params)
    caps = m.capabilities
    prepared = prepare(
        tilt_series, geometry, tilt_range=tilt_range, increment=increment, bin=bin,
        slices=slices, thickness=thickness, exclude=exclude,
    )
    its = m.default_iterations if iterations is None else _whole("iterations", iterations, 0)
    ev = m.default_every if every is None else _whole("every", every, 1)
    start = _whole("start", start, 0)
    if chunk is not None:
        chunk = _whole("chunk", chunk, 1)
    ov = (0 if caps.separable else 8) if overlap is None else _whole("overlap", overlap, 0)
    if resume is not None and not caps.resumable:
        raise ParameterError(f"{m.label} cannot resume a run")
    if resume is not None and chunk:
        raise ParameterError("resume continues a single-slab run: it cannot be combined with chunk")
    check_memory(prepared, chunk, backend)
    rec = Reconstruction(
        m, prepared, params=resolved, iterations=its, every=ev, device=resolve_device(device),
        backend=backend, x0=x0, start=start, heldout=heldout, seed=seed, chunk=chunk,
        overlap=ov, source=source,
    )
    rec.resume_state = resume
    rec.preview = bool(preview)
    return rec


def memory_estimate(prepared: Prepared, chunk: int | None = None, backend: str = "sparse") -> dict:
    """A lower bound of the memory a run needs, in bytes, by what needs it.

    The output volume, the tilt series, and for each slab being solved a few
    volume-sized buffers (iterate, residual, update) and the system matrix of
    one slice (about 1.65 entries per voxel per tilt, index and value).
    """
    z, ny, nu = prepared.volume_shape
    return memory_need(int(prepared.series.shape[0]), (z, ny, nu), chunk, backend)


def memory_need(n_tilts: int, volume_shape: tuple[int, int, int], chunk: int | None = None,
                backend: str = "sparse", *, streamed: bool = False, overlap: int = 0) -> dict:
    """:func:`memory_estimate` from the shapes alone (the widgets show it before Run).

    ``streamed``: the slabs are read from a file and written out as they
    finish (``--chunk N -o vol.ome.zarr``), so only one slab (plus
    ``overlap`` halo slices each side) of the series and of the volume is
    held, whatever the volume's depth; the system matrix does not depend on
    the depth either.
    """
    n = int(n_tilts)
    z, ny, nu = (int(s) for s in volume_shape)
    slab = min(ny, chunk or ny)
    held = min(ny, slab + 2 * int(overlap)) if streamed else ny
    parts = {
        "volume": 4 * z * held * nu,
        "tilt series": 4 * n * held * nu,
        "solver buffers": 3 * 4 * z * slab * nu,
        # about 1.65 entries per voxel and tilt (float32 value, int32 index): 13 bytes each
        "system matrix": 13 * n * nu * z if backend == "sparse" else 0,
    }
    parts["total"] = sum(parts.values())
    return parts


def check_memory(prepared: Prepared, chunk: int | None = None, backend: str = "sparse") -> None:
    """Refuse a run whose lower-bound memory need exceeds what is free, before it starts."""
    check_need(memory_estimate(prepared, chunk, backend))


def check_need(need: Mapping[str, int], hint: str = "") -> None:
    """Raise :class:`MemoryBudgetError` when ``need["total"]`` exceeds the memory budget."""
    from .io._budget import human_bytes, memory_budget

    budget = memory_budget()
    if need["total"] <= budget:
        return
    big = ", ".join(f"{k} {human_bytes(v)}" for k, v in need.items() if k != "total" and v)
    raise MemoryBudgetError(
        f"this reconstruction needs at least {human_bytes(need['total'])} of memory ({big}) "
        f"but about {human_bytes(budget)} is free{hint}"
    )


def _whole(name: str, value: Any, low: int) -> int:
    """``value`` as a whole number ``>= low``, or a ParameterError naming it."""
    try:
        out = int(value)
        if out != float(value) or isinstance(value, bool):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a whole number, got {value!r}") from None
    if out < low:
        raise ParameterError(f"{name} must be >= {low}, got {out}")
    return out


def reconstruct(method: str, tilt_series: Any, geometry: TiltGeometry, **kwargs: Any):
    """Run to the end; return ``(volume, provenance)``."""
    rec = run(method, tilt_series, geometry, **kwargs)
    last = None
    with rec:
        for last in rec:
            pass
    if last is None:
        raise DataError("the reconstruction produced no result")
    return last.volume, rec.provenance()


def reconstruct_dask(
    method: str,
    tilt_series: Any,
    geometry: TiltGeometry,
    *,
    chunk: int = 64,
    overlap: int | None = None,
    iterations: int | None = None,
    device: str | torch.device | None = "auto",
    backend: str = "sparse",
    tilt_range: tuple[float, float] | None = None,
    increment: float | None = None,
    exclude: Sequence[int] = (),
    bin: int = 1,
    slices: Any = None,
    thickness: int | None = None,
    seed: int = 0,
    scheduler: Any = None,
    source: Any = None,
    return_plan: bool = False,
    **params: Any,
):
    """The reconstruction as a lazy dask array, one task per slab of slices.

    Built on a :class:`~tomoprior.slabs.SlabPlan`: each task is a picklable
    :class:`~tomoprior.slabs.SlabTask` that reads only its slab of the
    series (plus ``overlap`` halo slices for methods that couple slices),
    runs the method to completion and keeps the inner part, so the array
    computes on any dask scheduler, ``dask.distributed`` included. A dask
    tilt series is read slab by slab, a memory-mapped one by each task from
    its file, an in-memory one is cut into slab windows. The volume is in
    the input frame.

    Decisions that must hold for the whole volume are made here, once,
    before the array is returned (on ``scheduler``; default: dask's current
    one): CS-TV's ``lam="auto"`` is searched on sample slabs and fixed, the
    INR's poses with ``learn_pose`` are learned on the central slab and held
    fixed (see :mod:`tomoprior.slabs`). Otherwise nothing is computed until
    ``.compute()`` (or a writer) asks for it.

    With ``return_plan=True`` the result is ``(array, plan)``; the plan's
    ``decisions`` and ``provenance()`` record the global decisions.
    ``source`` (a path every worker can read) makes the tasks open the file
    themselves.

    Every plane ``z`` of the array depends on every slab: a consumer that
    reads it plane by plane (the TIFF and MRC writers) would recompute all
    slabs per plane. Compute it once (``.compute()``), store it chunk-wise
    (``dask.array.store`` into a :class:`~tomoprior.io.ZarrVolumeWriter`), or
    run the plan with :func:`tomoprior.slabs.stream_slabs` /
    :func:`~tomoprior.slabs.assemble`, which hand each slab on once.
    """
    from .slabs import plan_slabs

    plan = plan_slabs(
        method, tilt_series, geometry, chunk=chunk, overlap=overlap, iterations=iterations,
        device=None if device is None else str(device), backend=backend, tilt_range=tilt_range,
        increment=increment, exclude=exclude, bin=bin, slices=slices, thickness=thickness,
        seed=seed, source=source, **params,
    )
    plan = plan.decide_with_dask(tilt_series, scheduler)
    arr = plan.to_dask(tilt_series)
    return (arr, plan) if return_plan else arr


def summary(rec: Reconstruction) -> Mapping[str, Any]:
    """The JSON summary printed by the command line."""
    prov = rec.provenance()
    keys = ("method", "parameters", "kept_tilts", "kept_angles", "iterations", "seconds",
            "final_loss", "device", "volume_shape")
    return {k: prov[k] for k in keys}
