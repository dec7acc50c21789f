"""Compute-device combo (``available_devices()``) with ``describe_device()`` beside it."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from ..device import available_devices, describe_device
from ..errors import TomopriorError

__all__ = ["DevicePicker"]


class DevicePicker(QWidget):
    """``device()`` is the chosen name: ``auto``, ``cpu``, ``cuda`` ..."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.addItems(available_devices())
        self.combo.setToolTip("Where to compute: auto takes the GPU when torch sees one")
        self.info = QLabel()
        self.info.setStyleSheet("color: gray;")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.combo)
        lay.addWidget(self.info, 1)
        self.combo.currentTextChanged.connect(self._describe)
        self._describe(self.combo.currentText())

    def device(self) -> str:
        return self.combo.currentText()

    def _describe(self, name: str) -> None:
        try:
            self.info.setText(describe_device(name))
        except TomopriorError as exc:
            self.info.setText(str(exc))
