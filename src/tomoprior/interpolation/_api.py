"""One entry point: :func:`interpolate` (series, geometry) -> a denser series, frames marked."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DataError, ParameterError
from ..geometry import TiltGeometry
from ._plan import AnglePlan, plan_angles

__all__ = ["METHODS", "Interpolated", "interpolate", "sidecar_path", "write_sidecar"]

METHODS = ("learned", "linear", "reproject")


@dataclass
class Interpolated:
    """A denser tilt series: measured frames unchanged, virtual frames between them.

    Attributes
    ----------
    series : ndarray float32 (n_out, rows, cols)
    geometry : TiltGeometry
        Angles of every frame (output order), the input's tilt axis and
        pixel size; measured frames keep their shift corrections, virtual
        ones get their neighbours' blend.
    measured : ndarray of bool (n_out,)
    plan : AnglePlan
    method : str
    seconds : float
    details : dict
        The model's name and card version (learned), the reconstruction's
        provenance (reproject).
    warnings : list of str
    """

    series: np.ndarray
    geometry: TiltGeometry
    measured: np.ndarray
    plan: AnglePlan
    method: str
    seconds: float
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def virtual(self) -> np.ndarray:
        """Indices of the virtual frames in :attr:`series`."""
        return np.flatnonzero(~self.measured)

    def record(self, source: str | None = None) -> dict[str, Any]:
        """What the sidecar file and a napari layer's metadata hold (JSON-ready)."""
        return {"software": "napari-tomoprior", "version": __version__,
                "kind": "interpolated tilt series", "method": self.method,
                "source": source, "seconds": round(self.seconds, 3),
                "angles": [float(a) for a in self.geometry.angles],
                "measured": [bool(m) for m in self.measured],
                "source_index": [int(i) for i in self.plan.source],
                "measured_angles": [float(a) for a in self.geometry.angles[self.measured]],
                "virtual_angles": [float(a) for a in self.geometry.angles[~self.measured]],
                "tilt_axis": float(self.geometry.tilt_axis), **self.details}


def sidecar_path(path: str | os.PathLike) -> Path:
    """``OUT.frames.json`` beside ``OUT.tif`` (the suffix replaced), where the reader looks."""
    from ..io._read import frames_sidecar

    return frames_sidecar(path)


def write_sidecar(path: str | os.PathLike, result: Interpolated, source: str | None = None) -> Path:
    """Write the list of measured and virtual frames beside a written series (atomically)."""
    from .._atomic import write_text

    side = sidecar_path(path)
    write_text(side, json.dumps(result.record(source), indent=1) + "\n")
    return side


def _check_series(series: Any, geometry: TiltGeometry) -> np.ndarray:
    if getattr(series, "ndim", None) != 3:
        raise DataError(f"a tilt series must be a 3D stack (n_tilts, rows, cols); got shape "
                        f"{getattr(series, 'shape', None)}")
    if series.shape[0] < 2:
        raise DataError(f"interpolation needs at least 2 measured frames, got {series.shape[0]}")
    if not isinstance(geometry, TiltGeometry):
        raise DataError("no tilt angles: give a TiltGeometry")
    geometry.validate(int(series.shape[0]))
    data = np.asarray(series)
    if not np.all(np.isfinite(data)):
        raise DataError("the tilt series contains NaN or infinite values")
    return data


def interpolate(
    series: Any,
    geometry: TiltGeometry,
    *,
    factor: int | None = None,
    step: float | None = None,
    plan: AnglePlan | None = None,
    method: str = "learned",
    model: Any = None,
    recon_method: str = "cstv",
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
    **recon_params: Any,
) -> Interpolated:
    """Fill in tilts: a denser series with virtual frames between the measured ones.

    Parameters
    ----------
    series : (n_tilts, rows, cols)
        The measured frames (any order of angles).
    geometry : TiltGeometry
        Their angles, tilt axis and shift corrections.
    factor, step
        ``factor - 1`` virtual frames in every gap, or gaps split to at most
        ``step`` degrees (see :func:`plan_angles`); default ``factor=2``.
    plan : AnglePlan, optional
        A plan made already (then ``factor`` and ``step`` are ignored).
    method : {"learned", "linear", "reproject"}
    model : InterpModel or path, optional
        ``learned``: the network (default: the shipped one).
    recon_method : str
        ``reproject``: the reconstruction method (default ``cstv``);
        ``**recon_params`` are its parameters (and ``run`` options such as
        ``iterations`` or ``bin``: with ``bin=N`` the volume is reconstructed
        from the binned series and its projections are interpolated back to
        the input's size).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    Interpolated
        Measured frames are the input's values in float32, bit for bit.
    """
    from ..device import resolve_device

    if method not in METHODS:
        raise ParameterError(f"unknown interpolation method {method!r}: choose from "
                             f"{', '.join(METHODS)}")
    if method != "reproject" and recon_params:
        raise ParameterError(f"reconstruction parameters ({', '.join(recon_params)}) are for "
                             "method 'reproject'")
    t0 = time.perf_counter()
    data = _check_series(series, geometry)
    if plan is None:
        plan = plan_angles(geometry.angles, factor=2 if factor is None and step is None else factor,
                           step=step)
    shifts = np.asarray(geometry.shifts, float)
    all_shifts = shifts[plan.left] * (1 - plan.t[:, None]) + shifts[plan.right] * plan.t[:, None]
    v_shifts = all_shifts[~plan.measured]
    has_shifts = bool(np.any(shifts != 0))
    details: dict[str, Any] = {}
    warnings: list[str] = []
    dev = resolve_device(device)
    if method == "linear":
        from .linear import linear_frames

        virtual = linear_frames(data, plan)
    elif method == "learned":
        from ._model import InterpModel, load_model
        from .learned import TRAINED_GAPS, learned_frames

        m = model if isinstance(model, InterpModel) else load_model(model, device=dev)
        gaps = plan.gaps[~plan.measured]
        wide = gaps[gaps > TRAINED_GAPS[1] + 1e-9]
        if wide.size:
            warnings.append(f"{np.unique(wide).size} gap(s) up to {wide.max():g}° are wider than "
                            f"the {TRAINED_GAPS[1]:g}° the network was trained on")
        virtual = learned_frames(data, plan, m, tilt_axis=geometry.tilt_axis,
                                 shifts=shifts if has_shifts else None,
                                 virtual_shifts=v_shifts if has_shifts else None, progress=progress)
        details = {"model": m.name, "model_version": m.card.get("package_version")}
    else:
        from .reproject import reproject_frames

        virtual, prov = reproject_frames(data, geometry, plan, method=recon_method,
                                         virtual_shifts=v_shifts if has_shifts else None,
                                         device=str(dev), progress=progress, **recon_params)
        details = {"reconstruction": {k: prov[k] for k in ("method", "parameters", "iterations",
                                                           "seconds")}}
    out = np.empty((plan.angles.size, *data.shape[1:]), np.float32)
    out[plan.measured] = data[plan.source[plan.measured]]  # float32 of the input: unchanged
    out[~plan.measured] = virtual
    geom = geometry.replace(angles=plan.angles, shifts=all_shifts,
                            angle_source=f"interpolated ({method})")
    return Interpolated(out, geom, plan.measured.copy(), plan, method,
                        time.perf_counter() - t0, details, warnings)
