"""The λ search: held-out error against λ (log-log), the chosen λ marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["SearchPlot"]


class SearchPlot(QWidget):
    """``set_search(records)`` with records ``{"lam": …, "val_loss": …}``; hidden when empty."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[tuple[float, float]] = []
        self.setFixedHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip("λ search: error on held-out detector pixels for each λ tried; "
                        "the ring marks the λ chosen")
        self.setVisible(False)

    def set_search(self, records: Sequence[dict]) -> None:
        pts = []
        for r in records:
            lam, val = r.get("lam"), r.get("val_loss")
            if isinstance(lam, (int, float)) and isinstance(val, (int, float)) and lam > 0 and val > 0:
                pts.append((math.log10(lam), math.log10(val)))
        self.points = sorted(pts)
        self.setVisible(bool(self.points))
        self.update()

    def best(self) -> tuple[float, float] | None:
        return min(self.points, key=lambda p: p[1]) if self.points else None

    def paintEvent(self, event: Any) -> None:
        if not self.points:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        plot = QRectF(40, 4, max(10, self.width() - 48), max(10, self.height() - 22))
        dim = QColor(fg)
        dim.setAlpha(90)
        p.setPen(QPen(dim, 1))
        p.drawRect(plot)
        xs, ys = [q[0] for q in self.points], [q[1] for q in self.points]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

        def px(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (y - y0) / (y1 - y0) * plot.height())

        p.setPen(QPen(QColor(255, 160, 60), 1.6))
        path = QPainterPath(px(*self.points[0]))
        for q in self.points[1:]:
            path.lineTo(px(*q))
        p.drawPath(path)
        for q in self.points:
            p.drawEllipse(px(*q), 2.0, 2.0)
        best = self.best()
        if best is not None:
            p.setPen(QPen(fg, 1.4))
            p.drawEllipse(px(*best), 5.0, 5.0)
        p.setPen(fg)
        p.drawText(QRectF(0, plot.top(), 38, 14), Qt.AlignRight, "held-out")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, 80, 14), Qt.AlignLeft, f"λ {10**x0:.2g}")
        p.drawText(QRectF(plot.right() - 80, plot.bottom() + 2, 80, 14), Qt.AlignRight,
                   f"{10**x1:.2g}")
        p.end()
