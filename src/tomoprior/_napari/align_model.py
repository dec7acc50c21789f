"""The model behind the Alignment widget: no Qt here, only arrays and geometries.

:func:`align` bins the series (for speed) and runs
:func:`~tomoprior.alignment.align_series`; the result is an
:class:`Alignment`, which also serves as the base of the hand check:
:meth:`Alignment.adjusted` re-applies its shifts with a hand-set axis angle
and offset (:func:`hand_geometry`), and :func:`preview_image` reconstructs a
few slices across the axis (weighted back-projection) so that a wrong axis
shows as doubled or arc-shaped features. :func:`aligned_metadata` is the
metadata of the aligned tilt-series layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..algorithms.wbp import wbp
from ..alignment import AlignmentError, align_series, aligned_geometry, apply_transforms
from ..frames import (
    canonical_series,
    fix_reference,
    from_canonical_shifts,
    nominal_axis,
    rotate_vectors,
    to_canonical_shifts,
)
from ..geometry import TiltGeometry
from ..operators import make_projector
from ..transforms import bin_images, canonical_turns
from ._layers import robust_limits, tilt_series_metadata

__all__ = [
    "METHOD_HELP",
    "Alignment",
    "align",
    "aligned_metadata",
    "hand_geometry",
    "preview_image",
    "summary",
]

METHOD_HELP = {
    "xcorr": "Cross-correlation of neighbouring tilts with cosine stretching (like IMOD's "
    "tiltxcorr), then the axis search. Fast; works for any specimen.",
    "com": "Centre of mass across the axis, common-line profile along it, then the axis "
    "search. For specimens wholly in view with HAADF-like contrast.",
    "pm": "Cross-correlation refined by projection matching, with a second, fine axis "
    "search. Slower, most precise.",
}
PREVIEW_FRACTIONS = (0.25, 0.5, 0.75)
PREVIEW_SIZE = 256  # the preview bins further until the larger image side is at most this


@dataclass(frozen=True)
class Alignment:
    """A found (or hand-set) geometry of a raw series, with what it produces.

    ``series`` is the raw series the geometry applies to (binned by
    ``binning`` from the layer), ``aligned`` the series resampled with it.
    """

    series: np.ndarray
    found: TiltGeometry
    report: dict
    binning: int = 1
    aligned: np.ndarray | None = None

    @classmethod
    def unaligned(cls, series: Any, geometry: TiltGeometry, binning: int = 1) -> Alignment:
        """The base of a hand check before any alignment: no shifts, the nominal axis."""
        data, geom = bin_series(series, geometry.replace(shifts=None), binning)
        report = {"method": "none", "tilt_axis": geom.tilt_axis,
                  "nominal_tilt_axis": geom.tilt_axis, "axis_offset": 0.0}
        return cls(data, geom, report, binning)

    def adjusted(self, tilt_axis: float, offset: float = 0.0) -> Alignment:
        """This alignment's shifts with another axis angle and an extra offset (px)."""
        g = hand_geometry(self.found, tilt_axis, offset)
        report = dict(self.report)
        report.update(
            tilt_axis=float(g.tilt_axis),
            aligned_tilt_axis=nominal_axis(g.tilt_axis),
            axis_angle_correction=float(g.tilt_axis - report.get("nominal_tilt_axis", 0.0)),
            hand_set={"tilt_axis": float(tilt_axis), "extra_offset": float(offset),
                      "found_tilt_axis": float(self.found.tilt_axis)},
        )
        return Alignment(self.series, g, report, self.binning, apply_transforms(self.series, g))


def bin_series(series: Any, geometry: TiltGeometry, binning: int) -> tuple[np.ndarray, TiltGeometry]:
    """The series as float32, binned ``binning`` times, with its geometry."""
    b = max(1, int(binning))
    data = np.asarray(series, dtype=np.float32)
    if data.ndim == 3 and b > 1:
        return bin_images(data, b), geometry.binned(b)
    return data, geometry


def align(
    series: Any,
    geometry: TiltGeometry,
    *,
    method: str = "xcorr",
    binning: int = 1,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> Alignment:
    """Bin, then :func:`~tomoprior.alignment.align_series`; the report records the binning."""
    data, geom = bin_series(series, geometry, binning)
    aligned, found, report = align_series(data, geom, method=method, progress=progress, **options)
    report = {**report, "input_binning": int(binning)}
    return Alignment(data, found, report, int(binning), aligned)


def hand_geometry(base: TiltGeometry, tilt_axis: float, offset: float = 0.0) -> TiltGeometry:
    """``base`` with the axis at ``tilt_axis`` and an extra offset across it.

    The shift corrections turn with the axis (as in the axis search of
    :func:`~tomoprior.alignment.find_axis`), ``offset`` pixels are added
    across the axis to every tilt, and the reference tilt (nearest 0°) keeps
    no correction.
    """
    axis = float(tilt_axis)
    if canonical_turns(axis)[0] != canonical_turns(base.tilt_axis)[0]:
        raise AlignmentError(
            f"a tilt axis of {axis:.1f}° is nearer to another quarter turn than "
            f"{base.tilt_axis:.1f}°: set the nominal axis in the tilt-series panel instead"
        )
    if axis == base.tilt_axis and offset == 0:
        return base
    delta = axis - base.tilt_axis
    sc = to_canonical_shifts(rotate_vectors(base.shifts, delta), axis)
    sc[:, 1] += float(offset)
    sc = fix_reference(sc, base.angles)
    return base.replace(tilt_axis=axis, shifts=from_canonical_shifts(sc, axis))


def preview_image(
    series: np.ndarray,
    geometry: TiltGeometry,
    *,
    device: str = "cpu",
    fractions: Sequence[float] = PREVIEW_FRACTIONS,
    size: int = PREVIEW_SIZE,
    gap: int = 4,
) -> tuple[np.ndarray, int]:
    """Slices across the tilt axis, reconstructed by WBP, side by side.

    Returns the image ``(thickness, k * width + gaps)`` (beam direction down,
    across the axis to the right; slices at ``fractions`` of the length of
    the axis, each scaled to 0..1 by its own robust limits) and the extra
    binning applied to bring the larger image side to ``size`` pixels or less.
    """
    b = max(1, math.ceil(max(series.shape[1:]) / size))
    sc = to_canonical_shifts(geometry.shifts, geometry.tilt_axis)
    canon = canonical_series(series, geometry.tilt_axis, sc, b)  # rows along the axis
    _, h, w = canon.shape
    rows = [int(round(f * (h - 1))) for f in fractions]
    z = max(2, geometry.thickness // b if geometry.thickness else w)
    A = make_projector(geometry.angles, (z, len(rows), w), w, backend="rotate", device=device)
    y = torch.from_numpy(np.ascontiguousarray(canon[:, rows]))
    vol = next(wbp(A, y)).volume  # (z, k, w)
    parts: list[np.ndarray] = []
    for j in range(len(rows)):
        if j:
            parts.append(np.zeros((z, gap), np.float32))
        lo, hi = robust_limits(vol[:, j, :])  # each slice on its own scale
        parts.append(np.clip((vol[:, j, :] - lo) / (hi - lo), 0.0, 1.0))
    return np.concatenate(parts, axis=1).astype(np.float32), b


def aligned_metadata(source: dict, alignment: Alignment, name: str) -> dict:
    """Metadata of the aligned layer: its own geometry, the raw one under ``"alignment"``."""
    g = alignment.found
    ag = aligned_geometry(g)
    meta = {k: v for k, v in source.items() if k not in ("shifts", "warnings", "alignment")}
    meta.update(
        tilt_series_metadata(
            angles=ag.angles,
            tilt_axis=ag.tilt_axis,
            pixel_size=ag.pixel_size,
            pixel_unit=ag.pixel_unit,
            angle_source=ag.angle_source or "alignment",
            source=source.get("source") or name,
            aligned_from=name,
            alignment={
                "tilt_axis": float(g.tilt_axis),
                "shifts": np.asarray(g.shifts, dtype=float).tolist(),
                "binning": int(alignment.binning),
                "report": alignment.report,
            },
        )
    )
    return meta


def summary(al: Alignment) -> str:
    """One paragraph on an alignment: the axis, its offset, how it was found."""
    r = al.report
    axis, nominal = al.found.tilt_axis, r.get("nominal_tilt_axis", 0.0)
    text = f"Tilt axis {axis:+.2f}° (nominal {nominal:g}°, correction {axis - nominal:+.2f}°)"
    hand = r.get("hand_set")
    if hand and r.get("method") == "none":
        text += f" set by hand on the unaligned series, offset {hand['extra_offset']:+.1f} px"
    elif hand:
        text += (f" set by hand, extra offset {hand['extra_offset']:+.1f} px (found "
                 f"{hand['found_tilt_axis']:+.2f}°, offset {r['axis_offset']:+.2f} px)")
    else:
        text += f", offset {r['axis_offset']:+.2f} px; {r['method']} in {r['seconds']:.1f} s"
    unit = "px of the binned series" if al.binning > 1 else "px"
    return f"{text}. Shifts per tilt ({unit}): blue dy, orange dx."
