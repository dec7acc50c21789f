"""A tiny live plot of a run's data residual, drawn with QPainter (log-scale y, no matplotlib).

It draws the relative data residual ``||Ax - y|| / ||y||`` of each step
(``Step.residual``): the same measure for every method, so curves of two
methods compare. A step without one falls back to the method's own
objective (``Step.loss``), labelled by its ``objective_name``, never as a
plain "loss". The objective of a step that has both is kept for the hover
text only.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["RESIDUAL", "LossPlot"]

RESIDUAL = "residual"
TRAIN_COLOR = QColor(80, 170, 255)
VAL_COLOR = QColor(255, 160, 60)


class LossPlot(QWidget):
    """The data residual (else the method's objective) and the held-out error per iteration.

    ``add(iteration, value, val_loss, note)`` appends a point of the blue
    curve named ``label`` (``"residual"``, or the objective's name), an
    orange held-out point, and ``note`` (the method's objective, as text)
    for the hover text; ``clear()`` starts over. Non-positive or non-finite
    values are skipped (log scale). The mouse wheel zooms the iteration axis
    about the cursor (the value axis fits the points in view); a double
    click shows everything again.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train: list[tuple[float, float]] = []
        self.val: list[tuple[float, float]] = []
        self.notes: dict[float, str] = {}  # iteration -> the method's objective, as text
        self.label = RESIDUAL
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(110)
        self.view: tuple[float, float] | None = None  # zoomed iteration range, None = all
        self.set_label(RESIDUAL)
        self.setMouseTracking(True)  # hovering shows the values under the cursor

    def set_label(self, label: str) -> None:
        """Name the blue curve: ``"residual"``, or the method's objective when it has none."""
        self.label = label
        what = (
            "Relative data residual ‖Ax − y‖ / ‖y‖ (the same measure for every method)"
            if label == RESIDUAL
            else f"The method's own objective, {label} (not comparable between methods)"
        )
        self.setToolTip(f"{what} per iteration, log scale: blue; the error on held-out "
                        "pixels: orange. Wheel: zoom; double click: show all")
        self.update()

    def clear(self) -> None:
        self.train.clear()
        self.val.clear()
        self.notes.clear()
        self.view = None
        self.update()

    def zoom(self, fraction: float, factor: float) -> None:
        """Scale the iteration range by ``factor`` (< 1 zooms in) about ``fraction`` of the axis."""
        pts = self.train + self.val
        if not pts:
            return
        lo, hi = min(p[0] for p in pts), max(p[0] for p in pts)
        x0, x1 = self.view or (lo, hi)
        centre = x0 + fraction * (x1 - x0)
        width = max(2.0, (x1 - x0) * factor)
        if width >= hi - lo:
            self.view = None
        else:
            a = min(max(lo, centre - fraction * width), hi - width)
            self.view = (a, a + width)
        self.update()

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom(min(1.0, max(0.0, event.position().x() / max(1, self.width()))),
                      0.8**steps)
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        self.view = None
        self.update()

    def add(
        self, iteration: int, value: float | None, val_loss: float | None = None, note: str = ""
    ) -> None:
        for series, v in ((self.train, value), (self.val, val_loss)):
            if v is None:
                continue
            v = float(v)
            if math.isfinite(v) and v > 0:
                series.append((float(iteration), math.log10(v)))
        if note:
            self.notes[float(iteration)] = note
        self.update()

    def values_at(self, fraction: float) -> str:
        """The values nearest to ``fraction`` (0 left, 1 right) of the x axis, as text."""
        bounds = self._bounds()
        if bounds is None:
            return ""
        x = bounds[0] + fraction * (bounds[1] - bounds[0])
        parts = []
        for series, label in ((self.train, self.label), (self.val, "held-out")):
            if series:
                it, y = min(series, key=lambda p: abs(p[0] - x))
                parts.append(f"{label} {10**y:.4g} (it {it:g})")
        if self.notes:
            it = min(self.notes, key=lambda i: abs(i - x))
            parts.append(f"{self.notes[it]} (it {it:g})")
        return " · ".join(parts)

    def mouseMoveEvent(self, event) -> None:
        from qtpy.QtWidgets import QToolTip

        pos = event.pos()
        text = self.values_at(min(1.0, max(0.0, pos.x() / max(1, self.width()))))
        if text:
            QToolTip.showText(self.mapToGlobal(pos), text, self)
        super().mouseMoveEvent(event)

    # -- drawing ------------------------------------------------------------------
    def _bounds(self) -> tuple[float, float, float, float] | None:
        pts = self.train + self.val
        if self.view is not None:
            pts = [p for p in pts if self.view[0] <= p[0] <= self.view[1]] or pts
        if not pts:
            return None
        xs = [p[0] for p in pts]
        ys = sorted(p[1] for p in pts)
        x0, x1 = self.view if self.view is not None else (min(xs), max(xs))
        # the first iterations' losses would flatten everything after them: the top of the
        # scale leaves out the highest few percent (those points are drawn at the border)
        y0, y1 = ys[0], ys[min(len(ys) - 1, int(0.95 * len(ys)))]
        if x1 <= x0:
            x1 = x0 + 1
        if y1 - y0 < 1e-3:
            y0, y1 = y0 - 0.5, y1 + 0.5
        return x0, x1, y0, y1

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        font = QFont(self.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        fm = p.fontMetrics()
        left = fm.horizontalAdvance("1e-10") + 6
        plot = QRectF(left, 6, max(10, self.width() - left - 8), max(10, self.height() - 22))
        dim = QColor(fg)
        dim.setAlpha(90)
        p.setPen(QPen(dim, 1))
        p.drawRect(plot)
        bounds = self._bounds()
        if bounds is None:
            p.setPen(dim)
            p.drawText(plot, Qt.AlignCenter, "the residual (log scale) appears here during a run")
            p.end()
            return
        x0, x1, y0, y1 = bounds

        def to_px(x: float, y: float) -> QPointF:
            y = min(y, y1)  # points above the scale sit on its top border
            return QPointF(
                plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                plot.bottom() - (y - y0) / (y1 - y0) * plot.height(),
            )

        # decades as grid lines
        p.setPen(QPen(dim, 1, Qt.DotLine))
        for d in range(math.floor(y0), math.ceil(y1) + 1):
            if y0 <= d <= y1:
                yy = to_px(x0, d).y()
                p.drawLine(QPointF(plot.left(), yy), QPointF(plot.right(), yy))
        p.setPen(fg)
        p.drawText(QRectF(0, plot.top() - 6, left - 3, 14), Qt.AlignRight, f"{10**y1:.2g}")
        p.drawText(QRectF(0, plot.bottom() - 8, left - 3, 14), Qt.AlignRight, f"{10**y0:.2g}")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, 60, 14), Qt.AlignLeft, f"{x0:g}")
        p.drawText(
            QRectF(plot.right() - 80, plot.bottom() + 2, 80, 14), Qt.AlignRight, f"it {x1:g}"
        )
        for series, color, label, row in (
            (self.train, TRAIN_COLOR, self.label, 0),
            (self.val, VAL_COLOR, "held-out", 1),
        ):
            if not series:
                continue
            p.setPen(QPen(color, 1.6))
            if len(series) == 1:
                p.drawEllipse(to_px(*series[0]), 2.5, 2.5)
            else:
                p.save()
                p.setClipRect(plot)  # zoomed in, the curve runs past the frame
                path = QPainterPath(to_px(*series[0]))
                for x, y in series[1:]:
                    path.lineTo(to_px(x, y))
                p.drawPath(path)
                p.restore()
            width = max(40.0, 0.6 * plot.width())
            p.drawText(
                QRectF(plot.right() - width - 4, plot.top() + 2 + 13 * row, width, 14),
                Qt.AlignRight, fm.elidedText(label, Qt.ElideRight, int(width)),
            )
        p.end()

