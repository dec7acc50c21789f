"""The resolution of a half-set run: FSC curves and the tilt-plane polar plot (QPainter).

:class:`ResolutionPlot` draws what :meth:`tomoprior.resolution.DirectionalFSC.summary`
holds: on the left the Fourier shell correlation of the two halves against
spatial frequency, spherical, in the x-y plane and along the beam (z), with
the 0.143 line and the ½-bit curve; on the right the resolution per
direction of the tilt plane as a polar curve (z up), where the missing wedge
shows as a dip around z. :class:`ResolutionDock` shows it for the active
layer: any volume whose provenance has a ``trust.resolution`` block (a
result of a run with half sets, in this session or read from a file).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

__all__ = [
    "CURVE_COLOURS",
    "ResolutionDock",
    "ResolutionPlot",
    "resolution_figures",
    "resolution_of",
    "resolution_text",
]

#: colour of each curve (and of its polar counterpart)
CURVE_COLOURS = {"spherical": QColor(220, 220, 220), "xy": QColor(80, 170, 255),
                 "z": QColor(255, 160, 60)}
_LABELS = {"spherical": "spherical", "xy": "x-y", "z": "z (beam)"}


def resolution_of(layer: Any) -> Mapping[str, Any] | None:
    """The resolution summary (with curves) a layer's provenance holds, or None."""
    meta = getattr(layer, "metadata", None) or {}
    prov = meta.get("provenance") or {}
    res = (prov.get("trust") or {}).get("resolution")
    return res if isinstance(res, Mapping) and "curves" in res else None


def resolution_text(summary: Mapping[str, Any], threshold: str = "0.143") -> str:
    """``"x-y 1.2 nm · z 3.4 nm · spherical 1.5 nm (FSC 0.143)"``."""
    res, unit = summary.get("resolution") or {}, summary.get("unit", "px")
    bound = summary.get("at_nyquist") or {}
    parts = []
    for which in ("xy", "z", "spherical"):
        v = (res.get(which) or {}).get(threshold)
        mark = "≤" if bound.get(which) and threshold == "0.143" else ""
        parts.append(f"{_LABELS[which]} {mark}{v:.3g} {unit}" if v is not None
                     else f"{_LABELS[which]} —")
    return " · ".join(parts) + f" (FSC {'½-bit' if threshold == 'half-bit' else threshold})"


def resolution_figures(rec: Any) -> dict[str, Any]:
    """The comparison table's figures of a finished half-set run (none for another run):
    ``resolution_xy``, ``resolution_z`` (FSC 0.143, in ``resolution_unit``) and the cell text
    ``resolution``, e.g. ``"1.2 / ≤3.4 nm"``."""
    fsc = getattr(rec, "fsc", None)
    if fsc is None:
        return {}
    out: dict[str, Any] = {"resolution_unit": fsc.unit}
    cells = []
    for which in ("xy", "z"):
        v = fsc.resolution(which)
        out[f"resolution_{which}"] = float(v)
        cells.append("—" if not np.isfinite(v) else
                     f"{'≤' if fsc.at_nyquist(which) else ''}{v:.3g}")
    out["resolution"] = f"{cells[0]} / {cells[1]} {fsc.unit}"
    return out


class ResolutionPlot(QWidget):
    """FSC curves (left) and the resolution over the tilt plane (right) of one summary."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary: Mapping[str, Any] | None = None
        self.setMinimumSize(260, 150)
        self.setFixedHeight(190)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip(
            "Left: Fourier shell correlation of the two half sets against spatial frequency "
            "(spherical, x-y plane, z along the beam), with the 0.143 line (dashed) and the "
            "½-bit curve (dotted). Right: resolution at 0.143 per direction of the tilt plane, "
            "z up (farther out is coarser): the missing wedge shows as a bulge around z. Both "
            "halves lack the same wedge, so there the curves say how reproducible its "
            "filling is, not that it is right.")

    def set_summary(self, summary: Mapping[str, Any] | None) -> None:
        self.summary = summary
        self.update()

    # -- drawing -------------------------------------------------------------------------
    def paintEvent(self, event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        dim = QColor(fg)
        dim.setAlpha(90)
        s = self.summary
        if not s:
            p.setPen(dim)
            p.drawText(self.rect(), Qt.AlignCenter | Qt.TextWordWrap,
                       "Run with half sets (even / odd tilts) to see the resolution here")
            p.end()
            return
        w, h = self.width(), self.height()
        side = min(h - 10.0, 0.42 * w)
        curves = QRectF(34, 6, max(40.0, w - side - 52), h - 30)
        polar = QRectF(w - side - 6, 6, side, side)
        self._draw_curves(p, curves, s, fg, dim)
        self._draw_polar(p, polar, s, fg, dim)
        p.end()

    def _draw_curves(self, p: QPainter, r: QRectF, s: Mapping[str, Any], fg: QColor,
                     dim: QColor) -> None:
        freq = np.asarray(s.get("frequency") or [], float)
        if freq.size < 2:
            return
        scale = float(s.get("frequency_scale") or 1.0)
        fmax = float(freq[-1])
        lo = -0.2  # FSC axis from -0.2 to 1

        def pt(f: float, c: float) -> QPointF:
            c = min(1.0, max(lo, c))
            return QPointF(r.left() + f / fmax * r.width(),
                           r.bottom() - (c - lo) / (1.0 - lo) * r.height())

        p.setPen(QPen(dim, 1))
        p.drawRect(r)
        p.setPen(QPen(dim, 1, Qt.DashLine))
        p.drawLine(pt(0, 0.143), pt(fmax, 0.143))
        p.setPen(QPen(dim, 1))
        p.drawLine(pt(0, 0.0), pt(fmax, 0.0))
        counts = (s.get("counts") or {}).get("spherical")
        if counts:
            from ..resolution import half_bit

            hb = half_bit(np.asarray(counts, float))
            path = QPainterPath(pt(freq[0], hb[0]))
            for f, c in zip(freq[1:], hb[1:]):
                path.lineTo(pt(f, c))
            p.setPen(QPen(dim, 1, Qt.DotLine))
            p.drawPath(path)
        for row, (which, colour) in enumerate(CURVE_COLOURS.items()):
            c = np.asarray((s.get("curves") or {}).get(which) or [], float)
            if c.size != freq.size:
                continue
            path = QPainterPath(pt(0.0, 1.0))
            for f, v in zip(freq, c):
                path.lineTo(pt(f, v))
            p.setPen(QPen(colour, 1.6))
            p.drawPath(path)
            p.drawText(QRectF(r.right() - 90, r.top() + 2 + 13 * row, 86, 14), Qt.AlignRight,
                       _LABELS[which])
        p.setPen(fg)
        p.drawText(QRectF(0, r.top() - 6, r.left() - 3, 14), Qt.AlignRight, "1")
        p.drawText(QRectF(0, pt(0, 0).y() - 7, r.left() - 3, 14), Qt.AlignRight, "0")
        unit = s.get("unit", "px")
        p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 14), Qt.AlignRight,
                   f"{fmax * scale:.3g} 1/{unit}")
        p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 14), Qt.AlignLeft, "FSC  0")

    def _draw_polar(self, p: QPainter, r: QRectF, s: Mapping[str, Any], fg: QColor,
                    dim: QColor) -> None:
        polar = s.get("polar") or {}
        angles = np.asarray(polar.get("angles") or [], float)
        values = np.array([np.nan if v is None else v for v in polar.get("0.143") or []], float)
        if angles.size < 3 or values.size != angles.size or not np.isfinite(values).any():
            return
        finite = values[np.isfinite(values)]
        rmax = float(finite.max()) * 1.1
        c = r.center()
        radius = 0.5 * min(r.width(), r.height()) - 2

        def pt(theta_deg: float, value: float) -> QPointF:
            t = math.radians(theta_deg)  # from z (up) towards the image plane (right)
            rr = radius * min(value, rmax) / rmax
            return QPointF(c.x() + rr * math.sin(t), c.y() - rr * math.cos(t))

        p.setPen(QPen(dim, 1))
        for frac in (0.5, 1.0):
            p.drawEllipse(c, radius * frac, radius * frac)
        p.drawLine(QPointF(c.x(), c.y() - radius), QPointF(c.x(), c.y() + radius))
        p.drawLine(QPointF(c.x() - radius, c.y()), QPointF(c.x() + radius, c.y()))
        # a direction and its opposite are the same: draw 0-180 and its mirror 180-360
        full = np.concatenate([angles, angles + 180.0, angles[:1] + 360.0])
        vals = np.concatenate([values, values, values[:1]])
        path = None
        for t, v in zip(full, vals):
            if not np.isfinite(v):
                continue
            if path is None:
                path = QPainterPath(pt(t, v))
            else:
                path.lineTo(pt(t, v))
        if path is not None:
            p.setPen(QPen(CURVE_COLOURS["z"], 1.6))
            p.drawPath(path)
        p.setPen(fg)
        unit = s.get("unit", "px")
        p.drawText(QRectF(c.x() + 2, r.top() - 2, radius, 14), Qt.AlignLeft, "z")
        p.drawText(QRectF(r.left(), r.bottom() - 12, r.width(), 14), Qt.AlignRight,
                   f"{rmax / 1.1:.3g} {unit}")


class ResolutionDock(QWidget):
    """The resolution of the active layer's half sets, with the numbers as text."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.numbers = QLabel()
        self.numbers.setWordWrap(True)
        self.numbers.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.plot = ResolutionPlot()
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addWidget(self.plot)
        lay.addWidget(self.numbers)
        lay.addStretch(1)
        napari_viewer.layers.selection.events.active.connect(self.refresh)
        self._pinned: Any = None
        self.refresh()

    def show_layer(self, layer: Any) -> None:
        """Show ``layer``'s resolution (kept while the active layer has none)."""
        self._pinned = layer
        self.refresh()

    def refresh(self, *_: Any) -> None:
        active = self.viewer.layers.selection.active
        layer = active if resolution_of(active) is not None else self._pinned
        if layer is not None and layer not in self.viewer.layers:
            layer = None
        s = resolution_of(layer)
        self.plot.set_summary(s)
        if s is None:
            self.title.setText("Select the result of a run with half sets")
            self.numbers.setText("")
            return
        self.title.setText(f"{layer.name}: Fourier shell correlation of the even and odd tilts")
        self.numbers.setText(resolution_text(s) + "\n" + resolution_text(s, "half-bit"))
