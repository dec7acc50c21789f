"""The engine's entry points: :func:`run` (streaming), :func:`run_to_end`, :func:`reconstruct_dask`.

``tomoprior.run`` is :func:`run`; this module has another name so that
importing it never replaces the function on the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..algorithms import get_method
from ..device import resolve_device
from ..errors import DataError, ParameterError, warn
from ..geometry import TiltGeometry
from .checks import check_heldout, iteration_plan, virtual_in_run
from .checks import whole as _whole
from .halves import TrustRun, check_trust
from .inputs import prepare
from .memory import check_memory
from .session import Reconstruction

__all__ = ["reconstruct_dask", "run", "run_to_end", "summary"]


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
    virtual: Any = None,
    halves: bool = False,
    ensemble: int | None = None,
    **params: Any,
) -> Reconstruction:
    """Reconstruct ``tilt_series`` with ``method``, streaming Steps.

    Parameters
    ----------
    method : str
        A method name, in any case: ``"wbp"``, ``"sirt"``, ``"cstv"``,
        ``"diptv"``, ``"inr"``, ``"restore"`` or ``"restore_tv"`` (see
        :data:`tomoprior.algorithms.METHODS` and ``tomoprior methods``).
    tilt_series : array (n_tilts, rows, cols)
    geometry : TiltGeometry
    iterations : int, optional
        At least 1; the default comes from the method's declaration. A
        method that does not iterate (WBP) warns when given one.
    every : int, optional
        Yield a Step every ``every`` iterations. By default the method's
        declared interval, scaled with ``iterations`` so that a run yields
        about as many Steps as one of the default length.
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
    virtual : sequence of int or mapping, optional
        Images of ``tilt_series`` that are virtual (filled in between the
        measured ones), as indices or as ``TiltSeriesFile.virtual_frames``;
        the kept ones are recorded in the provenance (``virtual_frames``).
    halves : bool
        Reconstruct the even and the odd kept tilts (in angle order) separately:
        the result is their average, the last Step adds the uncertainty map
        and the resolution from their Fourier shell correlation (spherical, x-y,
        z, over the tilt plane), and the provenance records both halves under
        ``"trust"`` (see :mod:`tomoprior.engine.halves`).
    ensemble : int, optional
        With ``halves``: that many pairs of half sets (the first even/odd, the
        others random splits). Without: ``K >= 2`` runs, each leaving out one
        fold of a K-fold split of the tilts, with seeds ``seed + k``; the result
        is their mean and the map their jackknife standard deviation. Not with
        ``x0`` or ``resume``.
    preview : bool
        Yield first a filtered backprojection with ``phase="preview"``
        (``iteration=0``, no loss) while an iterative method sets up: the
        widgets show a picture within a second whatever the method.
    **params
        Method parameters (strings are parsed, values range-checked).

    Returns
    -------
    Reconstruction
        An iterator of Steps. ``rec.warnings`` lists what ran but probably
        not as meant (radian-looking angles, a clipped slice range, an
        ignored parameter); each is also issued as a
        :class:`~tomoprior.errors.TomopriorWarning`.

    Raises
    ------
    ParameterError, GeometryError, DataError
        One-line errors for what cannot run: an unknown method or
        parameter, ``iterations < 1``, ``bin < 1``, a reversed tilt range,
        an all-zero or non-finite series, too little memory.

    Notes
    -----
    A stop requested through :func:`tomoprior.cancel.stop_when` ends the
    iteration at the next inner-loop check (``rec.stopped``, the last
    volume kept in ``rec.last``).
    """
    m = get_method(method)
    resolved = m.resolve(params)
    caps = m.capabilities
    notes: list[str] = []
    # the cheap checks first: nothing is read from a file before they pass
    its, ev = iteration_plan(m, iterations, every, notes, resolved)
    start = _whole("start", start, 0)
    seed = _whole("seed", seed, 0)
    heldout = check_heldout(heldout, caps.uses_mask, m.label, notes)
    trust = check_trust(halves, ensemble)
    if trust is not None and (x0 is not None or resume is not None):
        raise ParameterError("half sets and ensembles start every run afresh: leave out "
                             + ("x0" if x0 is not None else "resume"))
    if chunk is not None:
        chunk = _whole("chunk", chunk, 1)
    ov = (0 if caps.separable else 8) if overlap is None else _whole("overlap", overlap, 0)
    if resume is not None and not caps.resumable:
        raise ParameterError(f"{m.label} cannot resume a run")
    if resume is not None and chunk:
        raise ParameterError("resume continues a single-slab run: it cannot be combined with chunk")
    prepared = prepare(
        tilt_series, geometry, tilt_range=tilt_range, increment=increment, bin=bin,
        slices=slices, thickness=thickness, exclude=exclude, notes=notes,
    )
    check_memory(prepared, chunk, backend)
    rec = (Reconstruction if trust is None else TrustRun)(
        m, prepared, params=resolved, iterations=its, every=ev, device=resolve_device(device),
        backend=backend, x0=x0, start=start, heldout=heldout, seed=seed, chunk=chunk,
        overlap=ov, source=source, **({} if trust is None else {"trust": trust}),
    )
    rec.virtual = virtual_in_run(virtual, prepared.selection.indices, tilt_series.shape[0])
    rec.warnings = notes
    for text in notes:
        warn(text)
    rec.resume_state = resume
    rec.preview = bool(preview)
    return rec


def run_to_end(method: str, tilt_series: Any, geometry: TiltGeometry, **kwargs: Any):
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
    from ..slabs import plan_slabs

    plan = plan_slabs(
        method, tilt_series, geometry, chunk=chunk, overlap=overlap, iterations=iterations,
        device=None if device is None else str(device), backend=backend, tilt_range=tilt_range,
        increment=increment, exclude=exclude, bin=bin, slices=slices, thickness=thickness,
        seed=seed, source=source, **params,
    )
    plan = plan.decide_with_dask(tilt_series, scheduler)
    arr = plan.to_dask(tilt_series)
    return (arr, plan) if return_plan else arr


#: what the command line's ``--json`` summary holds of a run's provenance
SUMMARY_KEYS = ("method", "parameters", "kept_tilts", "kept_angles", "iterations", "seconds",
                "final_residual", "final_objective", "device", "volume_shape", "binning",
                "pixel_size", "pixel_unit", "warnings", "virtual_frames")


def summary(rec: Reconstruction) -> Mapping[str, Any]:
    """The JSON summary printed by the command line.

    ``parameters`` are those actually used: a value the method chose itself
    (CS-TV's ``lam="auto"``, learned levels) replaces ``"auto"``, and the
    choice is also under ``chosen``.
    """
    prov = rec.provenance()
    out = {k: prov.get(k) for k in SUMMARY_KEYS}
    chosen = chosen_values(prov)
    out["parameters"] = {**prov["parameters"], **chosen}
    out["chosen"] = chosen
    if "trust" in prov:  # half sets or an ensemble: resolution and map, members
        out["trust"] = prov["trust"]
    return out


def chosen_values(prov: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters a run left to the method (``"auto"``) with the values it chose."""
    result = prov.get("result") or {}
    decisions = prov.get("global_decisions") or {}
    out: dict[str, Any] = {}
    for name, value in (prov.get("parameters") or {}).items():
        if value != "auto":
            continue
        if name in decisions and isinstance(decisions[name], Mapping):
            out[name] = decisions[name].get("value")
        elif name in result:
            out[name] = result[name]
    return out
