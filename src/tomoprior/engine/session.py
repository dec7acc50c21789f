"""The running reconstruction: an iterator of Steps in the input frame, with its provenance.

:class:`Reconstruction` builds a projector per slab, drives the method's
generator, turns each snapshot back into the frame of the input images, and
records what is needed to reproduce the run.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..algorithms import Method
from ..cancel import StopRequested
from ..errors import DataError, GeometryError
from ..geometry import TiltGeometry
from ..operators import make_projector
from ..step import Step
from ..transforms import compose_corrections, volume_from_canonical, volume_to_canonical
from .chunked import choose_global_lambda, chunks, learn_global_poses
from .inputs import Prepared, _check_finite, _is_dask

__all__ = ["Reconstruction"]


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
        #: one-line warnings about this run (see :func:`tomoprior.run`)
        self.warnings: list[str] = []
        #: the kept images that are virtual (filled in), for the provenance
        self.virtual: dict[str, Any] | None = None
        self._chunks = chunks(prepared.volume_shape[1], chunk, overlap)
        if len(self._chunks) > 1:
            from ..slabs._plan import check_slab_params

            check_slab_params(params)
        self._chunk, self._overlap = chunk, overlap
        #: choices made once for the whole volume of a chunked run (see :mod:`tomoprior.slabs`)
        self.decisions: dict[str, Any] = {}
        self._gen = self._steps()
        self._started = _dt.datetime.now(_dt.timezone.utc)

    @property
    def pixel_size(self) -> float | None:
        """Voxel size of the output volume in :attr:`pixel_unit` (after binning), if known."""
        return self.prepared.geometry.pixel_size

    @property
    def pixel_unit(self) -> str:
        """Unit of :attr:`pixel_size` (``"nm"`` or ``"Å"``)."""
        return self.prepared.geometry.pixel_unit

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
        note = step.extras.get("warning") if step.extras else None
        if isinstance(note, str) and note not in self.warnings:  # a method's own one-liner
            self.warnings.append(note)
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
        from ..metrics import heldout_mask

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
            fixed["lam"] = yield from choose_global_lambda(self, held, full)
        angles, poses = p.geometry.angles, None
        if (len(self._chunks) > 1 and m.name == "inr" and self.params.get("learn_pose")
                and x0c is None):
            poses = yield from learn_global_poses(self, held, full)
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

    def _preview(self, A: Any) -> Step:
        """A filtered backprojection of the whole volume, shown while the method sets up.

        It costs a fraction of a second where a λ search, a warm start or a
        network's first epoch take many; its step says ``phase="preview"``
        so no one mistakes it for the method's result.
        """
        from ..algorithms import get_method

        p = self.prepared
        step = None
        for step in get_method("wbp").function(A, self._slab_data(0, p.volume_shape[1])):
            pass
        assert step is not None
        return replace(step, iteration=0, loss=None, objective_name=None, total=None, phase="preview",
                       resume=None)

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
        from .. import metrics

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
            "final_residual": _finite_or_none(None if last is None else last.residual),
            "final_objective": (None if last is None or last.loss is None else
                                {"name": last.objective_name, "value": _finite_or_none(last.loss)}),
            "kept_tilts": [int(i) for i in p.selection.indices],
            "excluded_tilts": [int(i) for i in p.excluded],
            "kept_angles": [float(a) for a in p.geometry.angles],
            "geometry": p.geometry.to_dict(),
            "binning": p.binning,
            "pixel_size": self.pixel_size,
            "pixel_unit": self.pixel_unit,
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
            "warnings": list(self.warnings),
            "virtual_frames": self.virtual,
            **({"global_decisions": self.decisions} if self.decisions else {}),
        }


def _finite_or_none(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


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
