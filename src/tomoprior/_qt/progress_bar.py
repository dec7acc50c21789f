"""A progress bar that never repaints synchronously.

``QProgressBar.setValue`` repaints at once whenever its text or a pixel
changes; beside napari's OpenGL canvas that repaint recomposes the window
(about 60 ms a call under Xvfb, measured with benchmarks/gui_latency.py), so a
run's progress froze the viewer in small steps. This bar only schedules an
update, which Qt merges with the canvas's own.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QRectF, QSize, Qt
from qtpy.QtGui import QPainter, QPalette
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["ProgressBar"]


class ProgressBar(QWidget):
    """The part of QProgressBar's interface the widgets use: range, value, format (``%p``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._min, self._max, self._value = 0, 100, 0
        self._format, self._text_visible = "%p%", True
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(160, self.fontMetrics().height() + 8)

    def minimumSizeHint(self) -> QSize:
        return QSize(60, self.fontMetrics().height() + 6)

    def setRange(self, low: int, high: int) -> None:
        self._min, self._max = int(low), int(high)
        self._value = min(max(self._value, self._min), max(self._min, self._max))
        self.update()

    def setValue(self, value: int) -> None:
        if int(value) != self._value:
            self._value = int(value)
            self.update()

    def value(self) -> int:
        return self._value

    def setFormat(self, text: str) -> None:
        if text != self._format:
            self._format = str(text)
            self.update()

    def format(self) -> str:
        return self._format

    def setTextVisible(self, visible: bool) -> None:
        self._text_visible = bool(visible)
        self.update()

    def busy(self) -> bool:
        """A 0..0 range: QProgressBar's 'busy' convention (drawn as a full, dim bar)."""
        return self._max <= self._min

    def fraction(self) -> float:
        if self.busy():
            return 1.0
        return (self._value - self._min) / (self._max - self._min)

    def text(self) -> str:
        return self._format.replace("%p", str(int(round(100 * self.fraction()))))

    def paintEvent(self, event: Any) -> None:
        p = QPainter(self)
        pal = self.palette()
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        p.setPen(pal.color(QPalette.Mid))
        p.setBrush(pal.color(QPalette.Base))
        p.drawRoundedRect(r, 3, 3)
        fill = QRectF(r.left(), r.top(), r.width() * self.fraction(), r.height())
        colour = pal.color(QPalette.Highlight)
        if self.busy():
            colour.setAlpha(90)
        p.setPen(Qt.NoPen)
        p.setBrush(colour)
        if fill.width() > 0:
            p.drawRoundedRect(fill, 3, 3)
        if self._text_visible:
            p.setPen(pal.color(QPalette.Text))
            p.drawText(r, Qt.AlignCenter, self.text())
        p.end()
