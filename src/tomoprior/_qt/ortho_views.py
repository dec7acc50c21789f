"""Orthogonal views: the x-z and y-z planes of the active volume at the cursor.

A dock beside the canvas. It follows the active image layer (a 3D one) and
the viewer's point (the slider position and a click with the cursor), draws
the x-z and y-z planes with the layer's contrast and voxel aspect, marks the
current slice, and switches either plane to its log power spectrum, where the
missing wedge shows as two dark sectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QCheckBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from .._napari.ortho import log_power, orthogonal_slices, to_uint8

__all__ = ["OrthoViews"]


class _Plane(QLabel):
    """One plane, scaled to the dock's width with the voxel aspect kept."""

    def __init__(self) -> None:
        super().__init__()
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumSize(120, 60)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.image: np.ndarray | None = None

    def show_plane(self, grey: np.ndarray, aspect: float, mark_row: int | None) -> None:
        img = np.repeat(grey[:, :, None], 3, axis=2).copy()
        if mark_row is not None and 0 <= mark_row < img.shape[0]:
            img[mark_row, :] = (img[mark_row, :] // 2) + np.array([0, 90, 127], np.uint8)
        self.image = img
        h, w = img.shape[:2]
        qimg = QImage(img.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        width = max(120, self.width() - 4)
        height = max(20, int(round(width * h * aspect / w)))
        self.setPixmap(QPixmap.fromImage(qimg).scaled(width, height, Qt.IgnoreAspectRatio,
                                                      Qt.SmoothTransformation))


class OrthoViews(QWidget):
    """x-z and y-z planes of the active 3D image layer at the viewer's point."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.title = QLabel("Select a volume layer")
        self.title.setWordWrap(True)
        self.xz, self.yz = _Plane(), _Plane()
        self.xz_fourier = QCheckBox("x-z as log power spectrum (missing wedge)")
        self.yz_fourier = QCheckBox("y-z as log power spectrum (missing wedge)")
        for box in (self.xz_fourier, self.yz_fourier):
            box.setToolTip("The 2D Fourier transform of the plane (log |F|²): a missing wedge "
                           "of tilts shows as two empty sectors around the beam direction")
            box.toggled.connect(self.refresh)
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addWidget(QLabel("x-z (z up; across a vertical tilt axis)"))
        lay.addWidget(self.xz)
        lay.addWidget(self.xz_fourier)
        lay.addWidget(QLabel("y-z (z up; across a horizontal tilt axis)"))
        lay.addWidget(self.yz)
        lay.addWidget(self.yz_fourier)
        lay.addStretch(1)
        v = napari_viewer
        v.dims.events.current_step.connect(self.refresh)
        v.layers.selection.events.active.connect(self.refresh)
        v.layers.events.removed.connect(self.refresh)
        v.mouse_drag_callbacks.append(self._on_click)
        v.mouse_move_callbacks.append(self._on_move)
        lay.insertWidget(1, QLabel("Click, or hold Shift and move the mouse, to cut elsewhere"))
        # the dock's first layout resizes it several times: draw once, in a later turn
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(0)
        self._later.timeout.connect(self.refresh)
        self._later.start()

    def layer(self) -> Any:
        """The layer shown: the active one if it is a 3D grey image."""
        from napari.layers import Image

        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Image) or layer.rgb or layer.ndim != 3:
            return None
        return layer

    def _on_click(self, viewer: Any, event: Any) -> None:
        layer = self.layer()
        if layer is not None and event.position is not None:
            self.refresh(point=layer.world_to_data(event.position))

    def _on_move(self, viewer: Any, event: Any) -> None:
        """Shift + hover: the planes follow the cursor."""
        if "Shift" in {str(getattr(m, "name", m)) for m in event.modifiers}:
            self._on_click(viewer, event)

    def refresh(self, *_: Any, point: Any = None) -> None:
        layer = self.layer()
        if layer is None:
            self.title.setText("Select a volume layer (a 3D image) to see its x-z and y-z planes")
            return
        data = layer.data  # lazy data stay lazy: only the two planes are read
        if point is None:
            point = layer.world_to_data(self.viewer.dims.point)
        cut = orthogonal_slices(data, point)
        z, y, x = cut["at"]
        sz, sy, sx = (float(s) for s in layer.scale)
        limits = tuple(layer.contrast_limits)
        self.title.setText(f"{layer.name}: z {z}, y {y}, x {x}")
        for view, key, box, side in ((self.xz, "xz", self.xz_fourier, sx),
                                     (self.yz, "yz", self.yz_fourier, sy)):
            plane = cut[key][::-1]  # z up, as in the microscope
            if box.isChecked():
                view.show_plane(to_uint8(log_power(plane)), 1.0, None)
            else:
                view.show_plane(to_uint8(plane, limits), sz / side, data.shape[0] - 1 - z)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._later.start()  # one redraw for a burst of resizes (a dock being dragged)
