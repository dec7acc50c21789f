"""Line profiles of the compared methods in one plot (QPainter; colour per method)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["COLOURS", "ProfilePlot"]

#: one colour per method, in the order of the table
COLOURS = ("#4daaff", "#ffa23c", "#6cd96c", "#ff6b9d", "#c38cff", "#e8e85a", "#7ee0e0")


class ProfilePlot(QWidget):
    """Curves ``(distance, values)`` with names; each scaled to its own least-squares fit.

    Methods put their volumes on different intensity scales; every curve is
    fitted (a·v + b) to the first so the shapes can be compared, as the
    metrics do.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.curves: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.unit = "px"
        self.setFixedHeight(150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip("Values along the profile line, each method fitted (a·v + b) to the first")

    def set_curves(self, curves: list[tuple[str, np.ndarray, np.ndarray]], unit: str = "px") -> None:
        self.curves, self.unit = _fitted(curves), unit
        self.update()

    def paintEvent(self, event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        plot = QRectF(8, 6, self.width() - 16, self.height() - 34)
        p.setPen(QPen(QColor(128, 128, 128, 120)))
        p.drawRect(plot)
        pts = [(d, v) for _, d, v in self.curves]
        finite = [v[np.isfinite(v)] for _, v in pts]
        if not pts or not any(f.size for f in finite):
            p.setPen(fg)
            p.drawText(plot, Qt.AlignCenter, "draw a line (Profile line) across a particle")
            p.end()
            return
        x1 = max(float(d[-1]) for d, _ in pts) or 1.0
        y0 = min(float(f.min()) for f in finite if f.size)
        y1 = max(float(f.max()) for f in finite if f.size)
        y1 = y1 if y1 > y0 else y0 + 1.0
        for i, (name, d, v) in enumerate(self.curves):
            path, pen_down = QPainterPath(), False
            for x, y in zip(d, v):
                if not np.isfinite(y):
                    pen_down = False
                    continue
                pt = QPointF(plot.left() + plot.width() * x / x1,
                             plot.bottom() - plot.height() * (y - y0) / (y1 - y0))
                path.lineTo(pt) if pen_down else path.moveTo(pt)
                pen_down = True
            p.setPen(QPen(QColor(COLOURS[i % len(COLOURS)]), 1.6))
            p.drawPath(path)
            p.drawText(QPointF(plot.left() + 4 + 90 * i, self.height() - 8), name[:14])
        p.setPen(fg)
        p.drawText(QRectF(plot.right() - 120, plot.bottom() + 2, 120, 14), Qt.AlignRight,
                   f"{x1:.3g} {self.unit}")
        p.end()


def _fitted(curves: list[tuple[str, np.ndarray, np.ndarray]]
            ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    if not curves:
        return []
    ref = curves[0][2]
    out = [curves[0]]
    for name, d, v in curves[1:]:
        ok = np.isfinite(v) & np.isfinite(ref)
        if ok.sum() >= 2 and np.ptp(v[ok]) > 0:
            a, b = np.polyfit(v[ok], ref[ok], 1)
            v = a * v + b
        out.append((name, d, v))
    return out
