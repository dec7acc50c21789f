"""A tiny QPainter plot of the per-tilt shifts (dy, dx) against the tilt angle."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["ShiftPlot"]

DY_COLOR = QColor(80, 170, 255)
DX_COLOR = QColor(255, 160, 60)


class ShiftPlot(QWidget):
    """``dy`` and ``dx`` (pixels) of each tilt against its angle (degrees).

    ``set_shifts(angles, shifts)`` replaces the curves (points sorted by
    angle); ``clear()`` empties the plot. A dotted line marks zero shift.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.angles = np.zeros(0)
        self.shifts = np.zeros((0, 2))
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(130)
        self.setToolTip(
            "Shift correction of each tilt (pixels) against its tilt angle: "
            "blue = dy (rows), orange = dx (columns)"
        )

    def clear(self) -> None:
        self.set_shifts([], np.zeros((0, 2)))

    def set_shifts(self, angles: Sequence[float], shifts: np.ndarray) -> None:
        a = np.asarray(angles, dtype=float).reshape(-1)
        s = np.asarray(shifts, dtype=float).reshape(-1, 2)
        order = np.argsort(a, kind="stable")
        self.angles, self.shifts = a[order], s[order]
        self.update()

    @property
    def has_data(self) -> bool:
        return self.angles.size > 0

    # -- drawing ------------------------------------------------------------------
    def _bounds(self) -> tuple[float, float, float, float]:
        x0, x1 = float(self.angles.min()), float(self.angles.max())
        if x1 <= x0:
            x0, x1 = x0 - 1, x1 + 1
        lim = max(1.0, float(np.abs(self.shifts).max()) * 1.1)
        return x0, x1, -lim, lim

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        font = QFont(self.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        left = p.fontMetrics().horizontalAdvance("-10.0 px") + 6
        plot = QRectF(left, 6, max(10, self.width() - left - 8), max(10, self.height() - 24))
        dim = QColor(fg)
        dim.setAlpha(90)
        p.setPen(QPen(dim, 1))
        p.drawRect(plot)
        if not self.has_data:
            p.drawText(plot, Qt.AlignCenter, "shifts per tilt appear here after an alignment")
            p.end()
            return
        x0, x1, y0, y1 = self._bounds()

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(
                plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                plot.bottom() - (y - y0) / (y1 - y0) * plot.height(),
            )

        p.setPen(QPen(dim, 1, Qt.DotLine))
        zero = to_px(x0, 0.0).y()
        p.drawLine(QPointF(plot.left(), zero), QPointF(plot.right(), zero))
        p.setPen(fg)
        p.drawText(QRectF(0, plot.top() - 6, left - 3, 14), Qt.AlignRight, f"{y1:.1f} px")
        p.drawText(QRectF(0, zero - 7, left - 3, 14), Qt.AlignRight, "0")
        p.drawText(QRectF(0, plot.bottom() - 8, left - 3, 14), Qt.AlignRight, f"{y0:.1f} px")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, 60, 14), Qt.AlignLeft, f"{x0:g}°")
        p.drawText(
            QRectF(plot.center().x() - 60, plot.bottom() + 2, 120, 14), Qt.AlignHCenter, "tilt angle"
        )
        p.drawText(QRectF(plot.right() - 60, plot.bottom() + 2, 60, 14), Qt.AlignRight, f"{x1:g}°")
        for col, color, label in ((0, DY_COLOR, "dy"), (1, DX_COLOR, "dx")):
            pts = [to_px(x, y) for x, y in zip(self.angles, self.shifts[:, col])]
            p.setPen(QPen(color, 1.6))
            path = QPainterPath(pts[0])
            for q in pts[1:]:
                path.lineTo(q)
            p.drawPath(path)
            for q in pts:
                p.drawEllipse(q, 1.8, 1.8)
            p.drawText(QRectF(plot.right() - 40, plot.top() + 2 + 13 * col, 36, 14), Qt.AlignRight, label)
        p.end()
