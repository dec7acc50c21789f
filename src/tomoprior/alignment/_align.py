"""``align_series``: the alignment pipeline, from a raw series to aligned images and geometry."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..device import resolve_device
from ..errors import DataError, GeometryError
from ..frames import (
    canonical_series,
    fix_reference,
    from_canonical_shifts,
    nominal_axis,
    reference_tilt,
)
from ..geometry import TiltGeometry
from ..transforms import canonical_turns, to_canonical
from ._options import AlignmentError, AlignOptions, parse_options
from .axis import find_axis
from .com import com_across, com_shifts
from .pm import project_match
from .xcorr import xcorr_shifts

__all__ = ["align_series", "check_input"]


def check_input(series: Any, geometry: Any) -> np.ndarray:
    """The series as float32 ``(n, rows, cols)``, validated against ``geometry``."""
    ndim = getattr(series, "ndim", np.ndim(series))
    if ndim != 3:
        raise DataError(
            f"alignment needs a 3D tilt series (n_tilts, rows, cols); got shape {np.shape(series)}"
        )
    if not isinstance(geometry, TiltGeometry):
        raise GeometryError("alignment needs a TiltGeometry with the tilt angles")
    geometry.validate(series.shape[0])
    data = np.asarray(series, dtype=np.float32)
    if min(data.shape[1:]) < 16:
        raise DataError(f"images of {data.shape[1]}x{data.shape[2]} pixels are too small to align")
    bad = ~np.isfinite(data)
    if bad.any():
        tilts = np.unique(np.nonzero(bad)[0])[:5].tolist()
        raise DataError(f"the tilt series contains NaN or infinite values (images {tilts})")
    return data


def _auto_bin(value: int | None, size: int, target: int) -> int:
    return max(1, math.ceil(size / target)) if value is None else int(value)


def align_series(
    series: np.ndarray,
    geometry: TiltGeometry,
    *,
    method: str = "xcorr",
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> tuple[np.ndarray, TiltGeometry, dict]:
    """Align a tilt series: per-tilt shifts, tilt-axis angle and offset.

    Parameters
    ----------
    series : array (n_tilts, rows, cols)
        The raw (unaligned) tilt series.
    geometry : TiltGeometry
        Angles and the nominal tilt axis; shifts in it are ignored (the
        alignment starts from scratch).
    method : {"xcorr", "com", "pm"}
        ``"xcorr"``: cross-correlation of neighbouring tilts with cosine
        stretching, chained outwards from the tilt nearest 0°.
        ``"com"``: centre of mass across the axis, common-line profile
        along it. ``"pm"``: ``"xcorr"`` refined by projection matching.
        All three then estimate the axis angle and offset unless
        ``axis=False``; ``"pm"`` alternates projection matching with a
        second, fine axis search.
    progress : callable, optional
        Called with a short message at every step.
    **options
        See :class:`~tomoprior.alignment.AlignOptions`.

    Returns
    -------
    aligned : ndarray float32 (n_tilts, rows, cols)
        The input resampled once with the found corrections, so that the
        tilt axis lies exactly at the nominal quarter-turn orientation
        (e.g. exactly horizontal for an axis at -3°); its geometry is
        ``aligned_geometry(geometry)``.
    geometry : TiltGeometry
        The found geometry of the *raw* series: ``tilt_axis`` including
        the fine angle, ``shifts`` the corrections (the tilt nearest 0°
        has none), so that ``to_canonical(series, geometry)`` equals
        ``to_canonical(aligned, aligned_geometry(geometry))``.
    report : dict
        JSON-ready: method, axis angle and offset, shift range, per-round
        residuals, seconds, options, and ``steps`` (the progress messages).

    Notes
    -----
    Rigid translations of the specimen cannot be observed: along the axis
    a constant, across it ``x0 cos(theta) + z0 sin(theta)``. The returned
    shifts keep the reference tilt at zero (which fixes the constant and
    ``x0``), ``z0`` stays as the method found it (centre of mass: the
    specimen centred in depth). The axis offset (a constant across-axis
    shift of all tilts) therefore appears in the shifts as
    ``offset (1 - cos(theta) / cos(theta_ref))``.
    """
    t0 = time.perf_counter()
    m, opt = parse_options(method, options)
    data = check_input(series, geometry)
    steps: list[str] = []

    def log(msg: str) -> None:
        steps.append(msg)
        if progress is not None:
            progress(msg)

    angles = geometry.angles
    axis0 = float(geometry.tilt_axis)
    size = max(data.shape[1:])
    bx = _auto_bin(opt.binning, size, 512)
    ba = _auto_bin(opt.axis_binning, size, 64)
    bp = _auto_bin(opt.pm_binning, size, 128)
    device = resolve_device(opt.device)
    thickness = opt.thickness or geometry.thickness
    ref = reference_tilt(angles)
    log(f"{m}: {data.shape[0]} tilts of {data.shape[1]}x{data.shape[2]}, reference tilt "
        f"{ref} ({angles[ref]:g}°), nominal axis {axis0:g}°")
    canon = canonical_series(data, axis0, None, bx)
    reg = opt.register_options()
    if m == "com":
        s = com_shifts(canon, angles, **reg) * bx
    else:
        ms = None if opt.max_shift is None else opt.max_shift / bx
        s = xcorr_shifts(canon, angles, stretch=opt.stretch, max_shift=ms, **reg) * bx
        if opt.com:
            s[:, 1] = -com_across(canon) * bx
    s = fix_reference(s, angles, ref)
    log(f"{'centre of mass' if m == 'com' else 'cross-correlation'}: shifts up to "
        f"{np.abs(s).max():.1f} px")
    axis, offset = axis0, 0.0
    common = {"thickness": thickness, "device": device, "log": log}

    def search(coarse: bool) -> None:
        nonlocal axis, offset, s
        r = find_axis(data, angles, axis, s, binning=ba, max_angle=opt.max_angle,
                      max_offset=opt.max_offset, slices=opt.slices, rounds=opt.axis_rounds,
                      iterations=opt.axis_iterations, coarse=coarse, **common)
        axis, s = r["tilt_axis"], r["shifts_c"]
        offset += r["offset"]

    if opt.axis:
        search(coarse=True)
    residuals: list[float] = []
    changes: list[float] = []
    if m == "pm":
        cycles = 2 if opt.axis else 1
        volume = None
        for cycle in range(cycles):
            r = project_match(data, angles, axis, s, binning=bp, rounds=opt.rounds,
                              iterations=opt.iterations, tol=opt.tol, x0=volume, **common, **reg)
            volume = r["volume"]
            s = fix_reference(r["shifts_c"], angles, ref)
            residuals += r["residuals"]
            changes += r["changes"]
            if cycle + 1 < cycles:
                search(coarse=False)
    if canonical_turns(axis)[0] != canonical_turns(axis0)[0]:
        raise AlignmentError(
            f"the tilt axis found ({axis:.1f}°) is closer to another quarter turn than the "
            f"nominal one ({axis0:g}°); give a nominal axis nearer to the true one"
        )
    found = geometry.replace(tilt_axis=axis, shifts=from_canonical_shifts(s, axis))
    k, _ = canonical_turns(axis)
    aligned = np.ascontiguousarray(np.rot90(to_canonical(data, found), k, axes=(1, 2)))
    seconds = time.perf_counter() - t0
    log(f"done: axis {axis:+.2f}° (offset {offset:+.2f} px) in {seconds:.1f} s")
    report = {
        "method": m,
        "tilt_axis": float(axis),
        "nominal_tilt_axis": float(axis0),
        "aligned_tilt_axis": nominal_axis(axis),
        "axis_angle_correction": float(axis - axis0),
        "axis_offset": float(offset),  # on top of the coarse shifts, see find_axis
        "reference_tilt": ref,
        "reference_angle": float(angles[ref]),
        "shift_range": {"dy": [float(found.shifts[:, 0].min()), float(found.shifts[:, 0].max())],
                        "dx": [float(found.shifts[:, 1].min()), float(found.shifts[:, 1].max())]},
        "rounds": len(residuals),
        "residuals": [float(v) for v in residuals],
        "shift_changes": [float(v) for v in changes],
        "binning": {"shifts": bx, "axis": ba, "pm": bp},
        "device": str(device),
        "options": opt.as_dict(),
        "seconds": round(seconds, 3),
        "steps": steps,
    }
    return aligned, found, report


def options_help() -> dict[str, Any]:
    """Default option values (for the command line and widgets)."""
    return AlignOptions().as_dict()
