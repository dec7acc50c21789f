"""A list of the tilts of a series with thumbnails, to untick frames that must not be used.

Frames ruined by drift, a grid bar or a charging event are common at high
tilt; unticking one excludes it from every run (its index goes to
``run(..., exclude=...)`` and into the provenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtGui import QIcon, QImage, QPixmap
from qtpy.QtWidgets import QListWidget, QListWidgetItem

from .._napari.ortho import to_uint8

__all__ = ["TiltList"]

THUMB = 48


def thumbnail(image: Any, size: int = THUMB) -> np.ndarray:
    """An 8-bit thumbnail of one image, by striding (cheap for lazy data)."""
    img = np.asarray(image)
    step = max(1, max(img.shape) // size)
    return to_uint8(np.asarray(img[::step, ::step], np.float32))


class TiltList(QListWidget):
    """One checkable row per image: ``"12: −38°"`` with a thumbnail; unticked = excluded."""

    excluded_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setIconSize(QSize(THUMB, THUMB))
        self.setMinimumHeight(160)
        self.setToolTip("Untick frames that must not be used (drift, grid bar, charging)")
        self.itemChanged.connect(lambda *_: self.excluded_changed.emit())
        self._key: Any = None

    def fill(self, data: Any, angles: Sequence[float] | None, key: Any = None) -> None:
        """Rows for the images of ``data`` (n, rows, cols); kept ticks if ``key`` is unchanged."""
        if key is not None and key == self._key and self.count() == int(data.shape[0]):
            return
        self._key = key
        self.blockSignals(True)
        try:
            self.clear()
            n = int(data.shape[0])
            have = angles is not None and len(angles) == n
            for i in range(n):
                text = f"{i + 1}: {float(angles[i]):g}°" if have else f"{i + 1}"
                item = QListWidgetItem(text)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Checked)
                grey = thumbnail(data[i])
                h, w = grey.shape
                qimg = QImage(grey.data, w, h, w, QImage.Format_Grayscale8).copy()
                item.setIcon(QIcon(QPixmap.fromImage(qimg)))
                self.addItem(item)
        finally:
            self.blockSignals(False)
        self.excluded_changed.emit()

    def excluded(self) -> list[int]:
        """0-based indices of the unticked images."""
        return [i for i in range(self.count()) if self.item(i).checkState() != Qt.Checked]

    def set_excluded(self, indices: Sequence[int]) -> None:
        bad = {int(i) for i in indices}
        for i in range(self.count()):
            self.item(i).setCheckState(Qt.Unchecked if i in bad else Qt.Checked)
