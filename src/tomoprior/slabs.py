"""Slab plans: one reconstruction cut into independent, picklable slab tasks.

A :class:`SlabPlan` describes a whole reconstruction (method, resolved
parameters, geometry of the kept tilts, binning, volume shape, slab size and
halo) as plain data. Its :class:`SlabTask` objects each read only the part
of the tilt series their slab needs (its canonical y-slices plus the halo,
and for a fine axis rotation or shift corrections the few pixels the
resampling reaches), bring it into the canonical frame exactly as
:func:`tomoprior.run.prepare` does for the whole series, run the method to
completion and return the inner part of the slab. Nothing in a task is a
closure or a live generator: a task pickles to its slab's data (or, when the
plan reads from a file, to a few kilobytes) and runs unchanged in a thread,
in another process, or on a ``dask.distributed`` worker.

Decisions that must be the same for the whole volume are made once, before
any slab runs (:meth:`SlabPlan.decide`):

* CS-TV with ``lam="auto"``: λ is searched on a few sample slabs spread
  through the volume (three by default) and their choices are combined by
  the (low) median, which stays on the search grid; every slab then uses
  that λ.
* INR with ``learn_pose``: the poses are learned on the central slab,
  folded into the geometry (:func:`~tomoprior.transforms.compose_corrections`)
  and held fixed; every slab (the central one included) is then
  reconstructed from the series aligned with them, without pose learning.

Both are recorded in ``plan.decisions`` and in the provenance.

:func:`stream_slabs` runs a plan on a scheduler (in process, ``"threads"``,
``"processes"`` or a ``dask.distributed`` scheduler address or client) and
hands every finished slab exactly once to a sink, in the frame of the input
images; :func:`assemble` collects them into one array (or a memory map);
:meth:`SlabPlan.to_dask` builds the lazy dask array behind
:func:`tomoprior.run.reconstruct_dask`.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import numpy as np

from .errors import DataError, GeometryError, MethodUnavailable, ParameterError
from .geometry import TiltGeometry
from .transforms import bin_images, canonical_turns, compose_corrections

__all__ = [
    "FileSource",
    "MemmapSource",
    "SlabPlan",
    "SlabTask",
    "Window",
    "assemble",
    "plan_slabs",
    "stream_slabs",
]

#: sample slabs on which CS-TV's lam="auto" is searched
LAMBDA_SAMPLES = 3


# -- where the images come from ---------------------------------------------------------------
@dataclass(frozen=True)
class FileSource:
    """A tilt-series file that every worker opens itself (the same path on every machine).

    Read lazily with :func:`tomoprior.io.read` (memory map or dask), so that
    a task reads only its window of the file.
    """

    path: str

    def open(self) -> Any:
        from . import io

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


# -- the plan ---------------------------------------------------------------------------------------
def sample_slabs(n: int, chunk: int, overlap: int, count: int = LAMBDA_SAMPLES
                 ) -> list[tuple[int, int, int, int]]:
    """``count`` slabs of ``chunk`` slices (with halo) centred at ``(i + 1/2) / count`` of ``n``;
    fewer when the volume holds fewer distinct ones."""
    width = min(n, chunk)
    starts = sorted({min(max(0, round((i + 0.5) * n / count - width / 2)), n - width)
                     for i in range(count)})
    return [(s, s + width, max(0, s - overlap), min(n, s + width + overlap)) for s in starts]


def combine_lambdas(found: Sequence[float]) -> float:
    """One λ for the volume from those chosen on sample slabs: the low median (a grid value)."""
    return float(statistics.median_low([float(v) for v in found]))


def _chunks(n: int, chunk: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    from .run import _chunks as chunks

    return chunks(n, chunk, overlap)


@dataclass(frozen=True)
class SlabPlan:
    """A whole reconstruction as independent slabs (see module notes).

    Build it with :func:`plan_slabs`. All fields are plain data; the plan
    pickles to a few kilobytes.
    """

    method: str
    params: dict[str, Any]  # resolved, with the global decisions filled in
    iterations: int
    geometry: TiltGeometry  # kept tilts, binned, input frame (learned poses folded in)
    indices: tuple[int, ...]  # kept images of the stack
    binning: int
    image_shape: tuple[int, int]  # binned (rows, cols) of the input images
    stack_shape: tuple[int, int, int]  # the tilt series as given
    full_y: int  # canonical y size of the whole volume
    slab: tuple[int, int]  # canonical y range reconstructed (``slices=``)
    z: int  # thickness (binned pixels)
    chunk: int
    overlap: int
    device: str = "auto"
    backend: str = "sparse"
    seed: int = 0
    source: Source | None = None  # where tasks read the images themselves; None: windows are given
    excluded: tuple[int, ...] = ()
    decisions: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None  # where the series came from (provenance only)

    # -- shapes ---------------------------------------------------------------------------------------
    @property
    def turns(self) -> int:
        return canonical_turns(self.geometry.tilt_axis)[0]

    @property
    def warped(self) -> bool:
        """True when orienting the images resamples them (fine axis rotation or shifts)."""
        _, residual = canonical_turns(self.geometry.tilt_axis)
        return abs(residual) > 1e-9 or bool(np.any(self.geometry.shifts != 0))

    @property
    def nu(self) -> int:
        """Detector width across the tilt axis (canonical u)."""
        h, w = self.image_shape
        return h if self.turns % 2 else w

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """Canonical ``(z, y, u)`` of the reconstructed volume."""
        return (self.z, self.slab[1] - self.slab[0], self.nu)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of the volume in the frame of the input images."""
        z, y, u = self.volume_shape
        return (z, y, u) if self.turns % 2 == 0 else (z, u, y)

    def memory_need(self, *, solving: int = 1, whole_volume: bool = True) -> dict[str, int]:
        """Lower-bound bytes this process holds: ``solving`` slabs at once, the matrix once.

        ``whole_volume``: the output is collected in memory (a .tif/.mrc file);
        streamed to OME-Zarr it is not, and the need no longer grows with the
        volume's depth. Slabs solved on other machines count zero here.
        """
        from .run import memory_need

        per = memory_need(len(self.indices), self.volume_shape, self.chunk, self.backend,
                          streamed=True, overlap=self.overlap)
        k = max(0, int(solving))
        parts = {key: k * per[key] for key in ("volume", "tilt series", "solver buffers")}
        parts = {"slabs being solved": sum(parts.values())}
        parts["system matrix"] = per["system matrix"] if k else 0
        if whole_volume:
            parts["whole volume"] = 4 * int(np.prod(self.output_shape))
        parts["total"] = sum(parts.values())
        return parts

    @property
    def separable(self) -> bool:
        from .algorithms import get_method

        return get_method(self.method).capabilities.separable

    def slabs(self) -> list[tuple[int, int, int, int]]:
        """``(inner_start, inner_stop, outer_start, outer_stop)`` in canonical y of the volume.

        The slabs' output regions start on multiples of ``chunk`` (a chunk
        grid, as a Zarr writer needs): where the canonical turn reverses the
        slab axis, the short remainder slab comes first.
        """
        ny, c, ov = self.volume_shape[1], self.chunk, self.overlap
        rest = ny % c if self.turns >= 2 and c < ny else 0
        if not rest:
            return _chunks(ny, c, ov)
        bounds = [0, *range(rest, ny + 1, c)]  # 0, rest, rest + c, ..., ny
        return [(s, e, max(0, s - ov), min(ny, e + ov)) for s, e in pairwise(bounds)]

    def region(self, s: int, e: int) -> tuple[slice, slice, slice]:
        """Where canonical slices ``s:e`` of the volume lie in the output (input-frame) volume.

        Along the tilt axis: output rows for a horizontal axis, output
        columns for a vertical one, counted from the other end when the
        canonical turn reverses them.
        """
        ny = self.volume_shape[1]
        k = self.turns
        full = slice(None)
        if k == 0:
            return (full, slice(s, e), full)
        if k == 1:
            return (full, full, slice(s, e))
        if k == 2:
            return (full, slice(ny - e, ny - s), full)
        return (full, full, slice(ny - e, ny - s))

    def to_output(self, block: np.ndarray) -> np.ndarray:
        """A canonical block of slices turned into the output frame (a view)."""
        k = self.turns
        return np.rot90(block, k, axes=(1, 2)) if k else block

    # -- what a slab reads --------------------------------------------------------------------------
    def oriented_region(self, a: int, e: int) -> Window:
        """The rectangle of the oriented (resampled, not yet turned) images that holds
        canonical slices ``a:e`` (absolute canonical y)."""
        h, w = self.image_shape
        k = self.turns
        if k == 0:
            return Window((a, e), (0, w))
        if k == 1:
            return Window((0, h), (a, e))
        if k == 2:
            return Window((h - e, h - a), (0, w))
        return Window((0, h), (w - e, w - a))

    def window(self, region: Window) -> Window:
        """The rectangle of the input images that orienting ``region`` reads.

        Without resampling it is ``region`` itself. With a fine rotation or
        shifts, it is the bounding box of the points the bilinear resampling
        samples for every kept tilt, one pixel wider, clipped to the image
        (the resampling clamps at the image border, so a clipped window
        gives the same values).
        """
        if not self.warped:
            return region
        h, w = self.image_shape
        iy, ix = _sample_points(region, self.image_shape, self.geometry.shifts,
                                canonical_turns(self.geometry.tilt_axis)[1], corners=True)
        r0 = min(max(0, math.floor(float(iy.min()))), h - 1)
        r1 = max(min(h, math.floor(float(iy.max())) + 2), r0 + 1)
        c0 = min(max(0, math.floor(float(ix.min()))), w - 1)
        c1 = max(min(w, math.floor(float(ix.max())) + 2), c0 + 1)
        return Window((r0, r1), (c0, c1))

    def task(self, s: int, e: int, os_: int, oe: int, index: int = 0, job: str = "slab") -> SlabTask:
        a = self.slab[0]
        region = self.oriented_region(a + os_, a + oe)
        return SlabTask(self, index, (s, e), (os_, oe), region, self.window(region), job)

    def tasks(self) -> list[SlabTask]:
        """One task per slab, in order."""
        return [self.task(*c, index=i) for i, c in enumerate(self.slabs())]

    def task_input(self, task: SlabTask, series: Any) -> Any:
        """What ``task`` is called with: None when it reads the plan's source itself, else its
        window of ``series`` (a numpy array, or a lazy dask array)."""
        if self.source is not None:
            return None
        return read_window(series, self.indices, task.window, self.binning)

    # -- global decisions ---------------------------------------------------------------------------
    @property
    def needs_decisions(self) -> bool:
        """True while a decision for the whole volume (λ, poses) is still to be made."""
        return self._lambda_pending or self._poses_pending

    @property
    def _lambda_pending(self) -> bool:
        return self.method == "cstv" and self.params.get("lam") == "auto"

    @property
    def _poses_pending(self) -> bool:
        return self.method == "inr" and bool(self.params.get("learn_pose"))

    def _sample_tasks(self) -> list[SlabTask]:
        """Slabs spread through the volume (at 1/6, 1/2, 5/6) for the λ search."""
        return [self.task(*c, index=i, job="lambda")
                for i, c in enumerate(sample_slabs(self.volume_shape[1], self.chunk, self.overlap))]

    def _central_task(self) -> SlabTask:
        ny = self.volume_shape[1]
        width = min(ny, self.chunk)
        s = (ny - width) // 2
        return self.task(s, s + width, max(0, s - self.overlap), min(ny, s + width + self.overlap),
                         job="poses")

    def decide(self, compute: Callable[[list[SlabTask]], list[Any]]) -> SlabPlan:
        """The plan with its whole-volume decisions made; ``compute(tasks)`` runs tasks
        (on any scheduler) and returns their results in order.

        Returns ``self`` when there is nothing to decide.
        """
        plan = self
        if plan._lambda_pending:
            tasks = plan._sample_tasks()
            found = compute(tasks)
            lam = combine_lambdas([r["lam"] for r in found])
            decision = {"value": float(lam), "rule": "median of the λ chosen on sample slabs",
                        "samples": found}
            plan = replace(plan, params={**plan.params, "lam": float(lam)},
                           decisions={**plan.decisions, "lam": decision})
        if plan._poses_pending:
            (found,) = compute([plan._central_task()])
            poses = found["poses"]
            learned = compose_corrections(plan.geometry, np.asarray(poses["shifts"], np.float64),
                                          float(poses["axis_correction"]),
                                          np.asarray(poses["angle_offsets"], np.float64))
            if canonical_turns(learned.tilt_axis)[0] != plan.turns:
                raise GeometryError(
                    f"the learned axis correction ({float(poses['axis_correction']):.1f}°) turns the "
                    "tilt axis past 45°: set the tilt axis closer to the truth and run again")
            decision = {"slab": found["slab"], "poses": poses, "geometry": learned.to_dict(),
                        "rule": "learned on the central slab, then held fixed for every slab"}
            plan = replace(plan, geometry=learned, params={**plan.params, "learn_pose": False},
                           decisions={**plan.decisions, "poses": decision})
        return plan

    def decide_with_dask(self, series: Any, scheduler: Any = None) -> SlabPlan:
        """:meth:`decide` with the tasks run by ``dask.compute`` (the current scheduler by default)."""
        if not self.needs_decisions:
            return self
        import dask

        def compute(tasks: list[SlabTask]) -> list[Any]:
            todo = [dask.delayed(t, pure=True)(self.task_input(t, series)) for t in tasks]
            return list(dask.compute(*todo, scheduler=scheduler))

        return self.decide(compute)

    # -- lazy array ---------------------------------------------------------------------------------
    def to_dask(self, series: Any):
        """The volume as a lazy dask array in the input frame, one task per slab.

        Make the decisions first (:meth:`decide_with_dask`): a plan that still
        has them pending would make them per slab.
        """
        import dask
        import dask.array as da

        if self.needs_decisions:
            raise ParameterError("make the plan's global decisions (decide) before building slabs")
        z, _, nu = self.volume_shape
        blocks = []
        for t in self.tasks():
            s, e = t.inner
            arg = self.task_input(t, series)
            blocks.append(da.from_delayed(dask.delayed(t, pure=True)(arg), shape=(z, e - s, nu),
                                          dtype=np.float32))
        canon = da.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        k = self.turns
        return da.rot90(canon, k, axes=(1, 2)) if k else canon

    # -- provenance ---------------------------------------------------------------------------------
    def provenance(self, seconds: float | None = None, scheduler: str | None = None) -> dict[str, Any]:
        """The run's provenance (the keys of :meth:`Reconstruction.provenance`, plus the slabs
        and the global decisions)."""
        from . import __version__
        from .algorithms import get_method

        m = get_method(self.method)
        a, e = self.slab
        k = self.turns
        partial = (a, e) != (0, self.full_y)
        translate = [0.0, 0.0, 0.0]
        ax = 1 if k % 2 == 0 else 2
        translate[ax] = float(a if k in (0, 1) else self.full_y - e)
        result: dict[str, Any] = {}
        if "lam" in self.decisions:
            result["lam"] = self.decisions["lam"]["value"]
        if "poses" in self.decisions:
            result["poses"] = self.decisions["poses"]["poses"]
            result["geometry"] = self.decisions["poses"]["geometry"]
        return {
            "software": "napari-tomoprior",
            "version": __version__,
            "method": m.name,
            "method_label": m.label,
            "parameters": dict(self.params),
            "iterations": self.iterations if m.capabilities.iterative else None,
            "planned_iterations": self.iterations if m.capabilities.iterative else None,
            "stopped_early": False,
            "final_loss": None,
            "kept_tilts": [int(i) for i in self.indices],
            "excluded_tilts": [int(i) for i in self.excluded],
            "kept_angles": [float(v) for v in self.geometry.angles],
            "geometry": self.geometry.to_dict(),
            "binning": self.binning,
            "slab": [a, e] if partial else None,
            "slab_translate": translate if partial else None,
            "volume_shape": list(self.output_shape),
            "device": self.device,
            "backend": self.backend,
            "heldout_fraction": 0.0,
            "seed": self.seed,
            "seconds": None if seconds is None else round(seconds, 3),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": self.origin,
            "slabs": {"chunk": self.chunk, "overlap": self.overlap, "count": len(self.slabs()),
                      "scheduler": scheduler},
            "global_decisions": self.decisions,
            "result": result,
        }


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


# -- the tasks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlabTask:
    """One slab of a plan: call it with its window of the series (or None to read the
    plan's source) to get the canonical inner block ``(z, inner, u)`` float32.

    ``job="lambda"`` returns CS-TV's λ choice on the slab, ``job="poses"``
    the INR's learned poses (the plan's global decisions).
    """

    plan: SlabPlan
    index: int
    inner: tuple[int, int]
    outer: tuple[int, int]
    region: Window  # oriented images (before the quarter turns)
    window: Window  # input images read (binned pixels)
    job: str = "slab"

    @property
    def nbytes(self) -> int:
        """Bytes of the series this task reads (float32 after binning, all kept tilts)."""
        r, c = self.window.shape
        return 4 * len(self.plan.indices) * r * c

    def read(self) -> np.ndarray:
        """The task's window, read from the plan's source."""
        src = self.plan.source
        if src is None:
            raise DataError("this slab plan has no file to read from: pass the slab's window")
        part = read_window(src.open(), self.plan.indices, self.window, self.plan.binning)
        return part.compute() if _is_dask(part) else part

    def canonical(self, window: Any) -> np.ndarray:
        """The slab's tilt series ``(n, outer, u)`` in the canonical frame, as :func:`prepare`
        would cut it from the whole series."""
        from .run import _check_finite

        p = self.plan
        data = np.asarray(window.compute() if _is_dask(window) else window)
        x = bin_images(data.astype(np.float32, copy=False), p.binning)
        expected = (len(p.indices), *self.window.shape)
        if x.shape != expected:
            raise DataError(f"slab {self.index}: got a window of shape {x.shape}, expected {expected}")
        _check_finite(x)
        if p.warped:
            x = _warp_window(x, self.region, self.window, p.image_shape, p.geometry.shifts,
                             canonical_turns(p.geometry.tilt_axis)[1])
        k = p.turns
        return np.ascontiguousarray(np.rot90(x, -k, axes=(1, 2)) if k else x)

    def steps(self, y: np.ndarray, params: dict[str, Any], every: int) -> Iterator[Any]:
        """The method's steps on this slab's canonical series ``y``."""
        import torch

        from .algorithms import get_method
        from .device import resolve_device
        from .operators import make_projector

        p = self.plan
        m = get_method(p.method)
        z, _, nu = p.volume_shape
        A = make_projector(p.geometry.angles, (z, y.shape[1], nu), nu, backend=p.backend,
                           device=resolve_device(p.device))
        kwargs = dict(params)
        run_kw = {"iterations": p.iterations, "every": every, "start": 0, "seed": p.seed}
        kwargs.update({k: v for k, v in run_kw.items() if m.accepts(k)})
        return m.function(A, torch.from_numpy(y), **kwargs)

    def __call__(self, window: Any = None) -> Any:
        if window is None:
            window = self.read()
        y = self.canonical(window)
        del window
        s, e = self.inner
        os_ = self.outer[0]
        if self.job == "lambda":
            return self._lambda(y)
        if self.job == "poses":
            last = _last(self.steps(y, {**self.plan.params, "learn_pose": True}, 10**9))
            if last.poses is None:
                raise DataError("the INR returned no poses")
            return {"slab": [s, e], "poses": dict(last.poses)}
        last = _last(self.steps(y, self.plan.params, 10**9))
        return np.ascontiguousarray(last.volume[:, s - os_ : e - os_])

    def _lambda(self, y: np.ndarray) -> dict[str, Any]:
        """CS-TV's λ search on this slab, stopped as soon as λ is chosen."""
        gen = self.steps(y, {**self.plan.params, "lam": "auto"}, 1)
        try:
            for st in gen:
                if st.phase != "lambda search":
                    return {"slab": list(self.inner), "lam": float(st.extras["lam"]),
                            "search": [dict(r) for r in st.search]}
        finally:
            gen.close()
        raise DataError("the CS-TV λ search produced no choice")


def _last(steps: Iterator[Any]) -> Any:
    last = None
    try:
        for last in steps:
            pass
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()
    if last is None:
        raise DataError("the reconstruction of a slab produced no result")
    return last


def _warp_window(x: np.ndarray, region: Window, window: Window, image_shape: tuple[int, int],
                 shifts: np.ndarray, residual: float) -> np.ndarray:
    """The oriented images over ``region`` from the input images over ``window``.

    The same bilinear resampling with border clamping as
    :func:`~tomoprior.transforms.warp_images` on the whole image, evaluated
    only where the slab needs it.
    """
    import torch
    import torch.nn.functional as F

    iy, ix = _sample_points(region, image_shape, shifts, residual)
    wh, ww = window.shape
    gx = (2 * (ix - window.cols[0]) + 1) / ww - 1
    gy = (2 * (iy - window.rows[0]) + 1) / wh - 1
    grid = torch.from_numpy(np.stack((gx, gy), -1).astype(np.float32))
    with torch.no_grad():
        out = F.grid_sample(torch.from_numpy(np.ascontiguousarray(x))[:, None], grid,
                            mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0].numpy()


# -- building a plan -------------------------------------------------------------------------------
def plan_slabs(
    method: str,
    tilt_series: Any,
    geometry: TiltGeometry,
    *,
    chunk: int = 64,
    overlap: int | None = None,
    iterations: int | None = None,
    device: str | None = "auto",
    backend: str = "sparse",
    tilt_range: tuple[float, float] | None = None,
    increment: float | None = None,
    exclude: Sequence[int] = (),
    bin: int = 1,
    slices: Any = None,
    thickness: int | None = None,
    seed: int = 0,
    source: Source | str | None = None,
    origin: str | None = None,
    **params: Any,
) -> SlabPlan:
    """The slab plan of a reconstruction (arguments as :func:`tomoprior.run.run`).

    Only the shape of ``tilt_series`` is used here. ``source`` names a file
    (a path or :class:`FileSource`) that the tasks open themselves, so that
    no image travels with a task; by default a memory map's own file is used,
    and otherwise each task is given its window of ``tilt_series``.
    """
    from .algorithms import get_method
    from .run import _whole, layout

    m = get_method(method)
    resolved = m.resolve(params)
    chunk = _whole("chunk", chunk, 1)
    its = m.default_iterations if iterations is None else _whole("iterations", iterations, 0)
    ov = (0 if m.capabilities.separable else 8) if overlap is None else _whole("overlap", overlap, 0)
    sel, geom, b, full_y, slab = layout(
        tilt_series, geometry, tilt_range=tilt_range, increment=increment, bin=bin,
        slices=slices, thickness=thickness, exclude=exclude,
    )
    h, w = (int(s) // b for s in tilt_series.shape[1:])
    nu = h if canonical_turns(geom.tilt_axis)[0] % 2 else w
    if isinstance(source, str):
        source = FileSource(source)
    if source is None:
        source = MemmapSource.of(tilt_series)
    dev = "auto" if device is None else str(device)
    from .device import resolve_device

    resolve_device(dev)  # a device this machine cannot use: one clear line, before any work
    return SlabPlan(
        method=m.name, params=resolved, iterations=its, geometry=geom,
        indices=tuple(int(i) for i in sel.indices), binning=b, image_shape=(h, w),
        stack_shape=tuple(int(s) for s in tilt_series.shape), full_y=full_y, slab=slab,
        z=int(geom.thickness or nu), chunk=chunk, overlap=ov, device=dev, backend=backend,
        seed=int(seed), source=source, excluded=tuple(sorted({int(i) for i in exclude})),
        origin=origin,
    )


# -- running a plan ---------------------------------------------------------------------------------
SCHEDULERS = ("threads", "processes")


def check_scheduler(scheduler: Any) -> Any:
    """``None``, ``"threads"``, ``"processes"``, a scheduler address or a distributed Client."""
    if scheduler is None or scheduler in SCHEDULERS or not isinstance(scheduler, str):
        return scheduler
    if ":" not in scheduler and "/" not in scheduler:
        raise ParameterError(f"scheduler must be threads, processes or a dask scheduler address "
                             f"such as tcp://host:8786, got {scheduler!r}")
    return scheduler


def _distributed():
    try:
        import distributed
    except ImportError:
        raise MethodUnavailable(
            "a scheduler address needs dask.distributed: pip install 'napari-tomoprior[distributed]'"
        ) from None
    return distributed


class _Runner:
    """Runs tasks on one kind of scheduler; futures come back as they finish."""

    def __init__(self, scheduler: Any = None, workers: int | None = None) -> None:
        scheduler = check_scheduler(scheduler)
        self.name = "in process" if scheduler is None else (
            scheduler if isinstance(scheduler, str) else "distributed client")
        self.client = None
        self.pool: cf.Executor | None = None
        self._own = False
        n = workers or os.cpu_count() or 1
        self.inline = scheduler is None
        if scheduler is None:
            self.workers = 1
        elif scheduler == "threads":
            self.pool, self.workers = cf.ThreadPoolExecutor(n), n
        elif scheduler == "processes":
            import multiprocessing

            # spawn: a forked child of a process that has started torch's threads can hang
            self.pool = cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
            self.workers = n
        else:
            if isinstance(scheduler, str):
                distributed = _distributed()
                try:
                    self.client = distributed.Client(scheduler, timeout=20, set_as_default=False)
                except (OSError, TimeoutError) as exc:
                    raise ParameterError(f"cannot reach the dask scheduler at {scheduler}: "
                                         f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
                self._own = True
            else:
                self.client = scheduler
            info = self.client.scheduler_info()
            self.workers = max(1, sum(int(wk.get("nthreads", 1))
                                      for wk in info.get("workers", {}).values()))
            self.name = f"distributed {self.client.scheduler.address}"

    def submit(self, task: SlabTask, arg: Any) -> Any:
        if self.client is not None:
            if _is_dask(arg):
                arg = self.client.compute(arg)  # read on the cluster, never here
            elif arg is not None:
                (arg,) = self.client.scatter([arg])
            return self.client.submit(task, arg, pure=False)
        if self.pool is not None:
            if _is_dask(arg):
                arg = arg.compute(scheduler="threads")
            return self.pool.submit(task, arg)
        f: cf.Future = cf.Future()
        try:
            f.set_result(task(arg))
        except Exception as exc:  # handed to the caller through the future
            f.set_exception(exc)
        return f

    def as_completed(self, futures: Sequence[Any]) -> Iterator[Any]:
        if self.client is not None:
            return iter(_distributed().as_completed(list(futures), loop=self.client.loop))
        return cf.as_completed(list(futures))

    def run_all(self, tasks: list[SlabTask], plan: SlabPlan, series: Any) -> list[Any]:
        futures = [self.submit(t, plan.task_input(t, series)) for t in tasks]
        return [f.result() for f in futures]

    def cancel(self, futures: Sequence[Any]) -> None:
        for f in futures:
            f.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None and self._own:
            self.client.close()


Sink = Callable[[tuple[slice, slice, slice], np.ndarray], Any]


def stream_slabs(
    plan: SlabPlan,
    series: Any,
    sink: Sink,
    *,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Callable[[int, int, SlabTask], Any] | None = None,
    inflight: int | None = None,
) -> tuple[SlabPlan, dict[str, Any]]:
    """Run ``plan`` and hand each finished slab once to ``sink(region, block)``.

    Parameters
    ----------
    plan : SlabPlan
    series : array or None
        The tilt series the plan was made for (numpy, memory map or dask);
        ``None`` when the plan reads its source file itself.
    sink : callable
        Called once per slab, in the order the slabs finish, with
        ``region`` (a tuple of three slices of the output volume, whose
        shape is ``plan.output_shape``) and ``block`` (float32, that
        region's values, in the frame of the input images). A slab along
        a vertical tilt axis is a range of output columns, not rows.
    scheduler : None, "threads", "processes", address or Client
        ``None`` runs the slabs one after another in this process; an
        address (``tcp://host:8786``) or a ``distributed.Client`` runs them
        on a dask cluster.
    workers : int, optional
        Threads or processes for ``"threads"`` / ``"processes"``
        (default: the CPU count).
    progress : callable, optional
        ``progress(done, total, task)`` after each slab.
    inflight : int, optional
        Slabs submitted ahead of those finished (default: twice the
        workers; one in process): bounds the memory held by windows and
        results.

    Returns
    -------
    (plan, provenance)
        The plan with its global decisions made, and the run's provenance.
    """
    t0 = time.perf_counter()
    runner = _Runner(scheduler, workers)
    try:
        if plan.needs_decisions:
            plan = plan.decide(lambda tasks: runner.run_all(tasks, plan, series))
        tasks = plan.tasks()
        # in process a slab is computed when submitted: hand it on before computing the next
        limit = max(1, inflight or (1 if runner.inline else 2 * runner.workers))
        pending: dict[Any, SlabTask] = {}
        queue = list(tasks)
        done = 0
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    t = queue.pop(0)
                    pending[runner.submit(t, plan.task_input(t, series))] = t
                for fut in runner.as_completed(list(pending)):
                    t = pending.pop(fut)
                    block = fut.result()
                    sink(plan.region(*t.inner), plan.to_output(block))
                    del block
                    done += 1
                    if progress is not None:
                        progress(done, len(tasks), t)
                    break  # refill the queue before waiting again
        except BaseException:
            runner.cancel(list(pending))
            raise
    finally:
        runner.close()
    return plan, plan.provenance(time.perf_counter() - t0, runner.name)


def assemble(
    plan: SlabPlan,
    series: Any,
    *,
    out: np.ndarray | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Callable[[int, int, SlabTask], Any] | None = None,
) -> tuple[np.ndarray, SlabPlan, dict[str, Any]]:
    """Run ``plan`` into one array (preallocated here, or ``out``, e.g. a memory map);
    each slab is computed once. Returns ``(volume, plan, provenance)``."""
    shape = plan.output_shape
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != tuple(shape):
        raise GeometryError(f"the output array has shape {tuple(out.shape)}, the volume {shape}")

    def put(region: tuple[slice, slice, slice], block: np.ndarray) -> None:
        out[region] = block

    plan, prov = stream_slabs(plan, series, put, scheduler=scheduler, workers=workers,
                              progress=progress)
    return out, plan, prov
