"""The slab plan: a whole reconstruction as plain data, and how to build one."""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import numpy as np

from ..errors import GeometryError, ParameterError
from ..geometry import TiltGeometry
from ..transforms import canonical_turns, compose_corrections
from ._source import FileSource, MemmapSource, Source, Window, _sample_points, read_window
from ._task import SlabTask

LAMBDA_SAMPLES = 3



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
    from ..engine.chunked import chunks

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
    warnings: tuple[str, ...] = ()  # one-line warnings about the run (provenance, command line)

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
        from ..engine import memory_need

        per = memory_need(len(self.indices), self.volume_shape, self.chunk, self.backend,
                          streamed=True, overlap=self.overlap)
        k = max(0, int(solving))
        parts = {"slabs being solved": k * sum(per[key] for key in
                                               ("volume", "tilt series", "solver buffers"))}
        parts["system matrix"] = per["system matrix"] if k else 0
        if whole_volume:
            parts["whole volume"] = 4 * int(np.prod(self.output_shape))
        parts["total"] = sum(parts.values())
        return parts

    @property
    def separable(self) -> bool:
        from ..algorithms import get_method

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
        from .. import __version__
        from ..algorithms import get_method

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
            "final_residual": None,
            "final_objective": None,
            "kept_tilts": [int(i) for i in self.indices],
            "excluded_tilts": [int(i) for i in self.excluded],
            "kept_angles": [float(v) for v in self.geometry.angles],
            "geometry": self.geometry.to_dict(),
            "binning": self.binning,
            "pixel_size": self.geometry.pixel_size,
            "pixel_unit": self.geometry.pixel_unit,
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
            "warnings": list(self.warnings),
        }


# -- building a plan -------------------------------------------------------------------------------
def check_slab_params(params: dict[str, Any]) -> None:
    """Refuse parameters whose result could not be shared by every slab.

    The poses learned on the central slab are folded into one geometry, which
    has a single tilt axis: per-tilt rotations would be dropped without a word.
    """
    if params.get("learn_pose") and params.get("per_tilt_axis"):
        raise ParameterError("per_tilt_axis cannot be carried across slabs (the tilt geometry "
                             "has one axis): run without --chunk, or without per_tilt_axis")


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
    """The slab plan of a reconstruction (arguments as :func:`tomoprior.run`).

    Only the shape of ``tilt_series`` is used here. ``source`` names a file
    (a path or :class:`FileSource`) that the tasks open themselves, so that
    no image travels with a task; by default a memory map's own file is used,
    and otherwise each task is given its window of ``tilt_series``.
    """
    from ..algorithms import get_method
    from ..engine.checks import iteration_plan
    from ..engine.checks import whole as _whole
    from ..engine.inputs import layout
    from ..errors import warn

    m = get_method(method)
    resolved = m.resolve(params)
    check_slab_params(resolved)
    chunk = _whole("chunk", chunk, 1)
    notes: list[str] = []
    its, _ = iteration_plan(m, iterations, None, notes, resolved)
    seed = _whole("seed", seed, 0)
    ov = (0 if m.capabilities.separable else 8) if overlap is None else _whole("overlap", overlap, 0)
    sel, geom, b, full_y, slab = layout(
        tilt_series, geometry, tilt_range=tilt_range, increment=increment, bin=bin,
        slices=slices, thickness=thickness, exclude=exclude, notes=notes,
    )
    for text in notes:
        warn(text)
    h, w = (int(s) // b for s in tilt_series.shape[1:])
    nu = h if canonical_turns(geom.tilt_axis)[0] % 2 else w
    if isinstance(source, str):
        source = FileSource(source)
    if source is None:
        source = MemmapSource.of(tilt_series)
    dev = "auto" if device is None else str(device)
    from ..device import resolve_device

    resolve_device(dev)  # a device this machine cannot use: one clear line, before any work
    return SlabPlan(
        method=m.name, params=resolved, iterations=its, geometry=geom,
        indices=tuple(int(i) for i in sel.indices), binning=b, image_shape=(h, w),
        stack_shape=tuple(int(s) for s in tilt_series.shape), full_y=full_y, slab=slab,
        z=int(geom.thickness or nu), chunk=chunk, overlap=ov, device=dev, backend=backend,
        seed=int(seed), source=source, excluded=tuple(sorted({int(i) for i in exclude})),
        origin=origin, warnings=tuple(notes),
    )


