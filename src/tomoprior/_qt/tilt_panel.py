"""The tilt-series part shared by both widgets: layer, angles, tilt selection, geometry.

Choose the tilt-series layer; see its angles (from the file) or set them by
start and step; keep a sub-range and a coarser increment of the measured
tilts (:meth:`TiltGeometry.select`, the kept count shown live); set the
tilt-axis orientation, thickness, binning and an optional slice range for a
quick preview. :meth:`TiltPanel.request` turns all of it into the arguments
of :func:`tomoprior.run`, raising a :class:`TomopriorError` with a
message for the user when something does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from .._napari._layers import (
    KIND_KEY,
    TILT_SERIES,
    VOLUME,
    geometry_from_metadata,
    is_stack,
    series_placement,
    stack_data,
)
from ..errors import DataError, GeometryError, TomopriorError
from ..geometry import TiltGeometry, angles_from_start_step
from .fill_tilts import virtual_frames
from .tilt_list import TiltList

__all__ = ["TiltPanel", "TiltRequest"]

AXIS_MODES = ("horizontal (along x)", "vertical (along y)", "angle")
BINNINGS = (1, 2, 3, 4, 6, 8)
WARN = "color: #e8a33d;"
ERROR = "color: #ff6b6b;"


@dataclass
class TiltRequest:
    """What a run needs from the tilt-series panel."""

    layer: Any
    series: Any
    geometry: TiltGeometry
    kwargs: dict  # tilt_range, increment, bin, slices, thickness for run()
    source: str
    name: str
    kept: int
    virtual: dict | None = None  # the layer's virtual frames: run()'s ``virtual=``


def _spin(
    lo: float, hi: float, value: float, suffix: str, decimals: int = 1, step: float = 1.0
) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setDecimals(decimals)
    w.setSingleStep(step)
    w.setValue(value)
    w.setSuffix(suffix)
    w.setKeyboardTracking(False)
    # room for the longest value and the theme's +/- buttons
    text = f"{-abs(max(abs(lo), abs(hi))):.{decimals}f}{suffix}"
    w.setMinimumWidth(w.fontMetrics().horizontalAdvance(text) + 56)
    return w


def _row(*widgets: QWidget | str) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(QLabel(w) if isinstance(w, str) else w)
    return box


class TiltPanel(QGroupBox):
    """Tilt series, angles and tilt selection; emits ``changed`` on every edit."""

    changed = Signal()

    def __init__(
        self, viewer: Any, parent: QWidget | None = None, title: str = "Tilt series"
    ) -> None:
        super().__init__(title, parent)
        self.viewer = viewer
        self._layers: list[Any] = []
        self._quiet = False

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip(
            "The tilt series to reconstruct: a 3D image layer (tilt, y, x). "
            "Open one by dragging a file in or with File › Open Sample › Tomoprior."
        )
        self.angles_label = QLabel()
        self.angles_label.setWordWrap(True)
        self.virtual_label = QLabel()
        self.virtual_label.setWordWrap(True)
        self.virtual_label.setStyleSheet(WARN)
        self.virtual_label.setToolTip(
            "Frames filled in between the measured tilts (Fill in tilts, or tomoprior "
            "interpolate): a run uses them as data, and the result's provenance lists the "
            "virtual frames it kept"
        )
        self.virtual_label.setVisible(False)
        self.use_start_step = QCheckBox("Set the angles by start and step")
        self.use_start_step.setToolTip(
            "Use start + step × image index instead of the angles found with the file"
        )
        self.start = _spin(-90, 90, -60, " °", 2, 1.0)
        self.start.setToolTip("Tilt angle of the first image, in degrees")
        self.step = _spin(-45, 45, 2, " °", 3, 0.5)
        self.step.setToolTip("Angle between successive images, in degrees (negative: descending)")
        self.range_min = _spin(-90, 90, -90, " °", 1, 5)
        self.range_max = _spin(-90, 90, 90, " °", 1, 5)
        for w in (self.range_min, self.range_max):
            w.setToolTip("Keep only the measured tilts within this range (limited-angle study)")
        self.increment = _spin(0, 90, 0, " °", 1, 1)
        self.increment.setSpecialValueText("all measured")
        self.increment.setToolTip(
            "Keep the measured tilts nearest to multiples of this increment "
            "(emulates a coarser acquisition); 'all measured' keeps every tilt in the range"
        )
        self.kept_label = QLabel()
        self.kept_label.setWordWrap(True)
        self.axis_mode = QComboBox()
        self.axis_mode.addItems(AXIS_MODES)
        self.axis_mode.setToolTip("Orientation of the tilt axis in the images")
        self.axis_angle = _spin(-180, 180, 0, " °", 2, 0.5)
        self.axis_angle.setToolTip(
            "Tilt-axis angle from the x direction towards y, in degrees "
            "(0 horizontal, 90 vertical; clockwise on screen)"
        )
        self.thickness = QSpinBox()
        self.thickness.setRange(0, 100000)
        self.thickness.setSuffix(" px")
        self.thickness.setSpecialValueText("auto")
        self.thickness.setToolTip(
            "Volume thickness along the beam (z), in pixels of the input images; "
            "auto: the image width across the tilt axis"
        )
        self.binning = QComboBox()
        self.binning.addItems([f"{b}×" for b in BINNINGS])
        self.binning.setToolTip("Average b × b pixels before reconstructing (faster, less memory)")
        self.bin_label = QLabel()
        self.slab_check = QCheckBox("only")
        self.slab_check.setToolTip(
            "Reconstruct only these positions along the tilt axis: a quick preview slab"
        )
        self.slab_from = QSpinBox()
        self.slab_to = QSpinBox()
        for w in (self.slab_from, self.slab_to):
            w.setRange(0, 100000)
            w.setToolTip("Positions along the tilt axis, in pixels of the input images")
        self.pixel_size = _spin(0, 10000, 0, " nm", 4, 0.01)
        self.pixel_size.setSpecialValueText("unknown")
        self.pixel_size.setToolTip(
            "Size of one image pixel in nm (from the file when it says; type it when it does "
            "not). It sets the layer's scale and goes into the result's provenance."
        )
        self.tilts_check = QCheckBox("Choose the tilts to use…")
        self.tilts_check.setToolTip("Show every image with a thumbnail; untick bad frames")
        self.tilt_list = TiltList()
        self.tilt_list.setVisible(False)
        self.memory_label = QLabel()
        self.memory_label.setWordWrap(True)
        self.memory_label.setToolTip(
            "A lower bound of the memory the run needs (volume, tilt series, solver buffers, "
            "system matrix); networks need more. Bin, reconstruct fewer slices or a thinner "
            "volume when it exceeds what is free."
        )

        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Layer", self.layer_combo)
        form.addRow(self.angles_label)
        form.addRow(self.virtual_label)
        form.addRow(self.use_start_step)
        self._start_row = _row(self.start, "step", self.step)
        form.addRow("Start", self._start_row)
        form.addRow("Tilt range", _row(self.range_min, "to", self.range_max))
        form.addRow("Increment", self.increment)
        form.addRow(self.kept_label)
        form.addRow(self.tilts_check)
        form.addRow(self.tilt_list)
        form.addRow("Tilt axis", _row(self.axis_mode, self.axis_angle))
        form.addRow("Thickness", self.thickness)
        form.addRow("Binning", _row(self.binning, self.bin_label))
        form.addRow("Slices", _row(self.slab_check, self.slab_from, "to", self.slab_to, "px"))
        form.addRow("Pixel size", self.pixel_size)
        form.addRow(self.memory_label)
        self._form = form

        self.layer_combo.currentIndexChanged.connect(self._on_layer)
        self.use_start_step.toggled.connect(self._on_angles_edited)
        for w in (self.start, self.step):
            w.valueChanged.connect(self._on_angles_edited)
        for w in (self.range_min, self.range_max, self.increment, self.axis_angle):
            w.valueChanged.connect(self._on_edit)
        self.axis_mode.currentIndexChanged.connect(self._on_axis_mode)
        for w in (self.thickness, self.slab_from, self.slab_to):
            w.valueChanged.connect(self._on_edit)
        self.binning.currentIndexChanged.connect(self._on_edit)
        self.slab_check.toggled.connect(self._on_edit)
        self.pixel_size.valueChanged.connect(self._on_pixel_size)
        self.tilts_check.toggled.connect(self._on_show_tilts)
        self.tilt_list.excluded_changed.connect(self._on_edit)

        layers = viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self._refresh_layers)
        layers.events.moved.connect(self._refresh_layers)
        for layer in layers:
            self._watch(layer)
        self._refresh_layers()
        self._on_layer()

    # -- layer list -------------------------------------------------------------------
    @staticmethod
    def is_candidate(layer: Any) -> bool:
        """Image layers that are not volumes made by tomoprior (2D ones too, to explain)."""
        from napari.layers import Image

        return (
            isinstance(layer, Image)
            and not getattr(layer, "rgb", False)
            and layer.metadata.get(KIND_KEY) != VOLUME
        )

    def _rank(self, layer: Any) -> int:
        """How good a default choice a layer is: tomoprior tilt series > 3D image > other."""
        if layer is None or not self.is_candidate(layer):
            return 0
        if not is_stack(layer):
            return 1
        return 3 if layer.metadata.get(KIND_KEY) == TILT_SERIES else 2

    def _watch(self, layer: Any) -> None:
        layer.events.name.connect(self._refresh_layers)

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        self._watch(layer)
        current = self.layer()
        self._refresh_layers()
        new, old = self._rank(layer), self._rank(current)
        # not a result of the Alignment widget, nor a filled-in series (never picked by itself)
        opened = "aligned_from" not in layer.metadata and "interpolation" not in layer.metadata
        if new > old or (new == old and new >= 2 and opened):  # a newly opened stack is the one
            self.set_layer(layer)

    def _refresh_layers(self, event: Any = None) -> None:
        current = self.layer()
        layers = [lay for lay in reversed(list(self.viewer.layers)) if self.is_candidate(lay)]
        self._quiet = True
        try:
            self._layers = layers
            self.layer_combo.clear()
            for lay in layers:
                text = lay.name if is_stack(lay) else f"{lay.name} ({lay.ndim}D)"
                self.layer_combo.addItem(text)
            if current in layers:
                self.layer_combo.setCurrentIndex(layers.index(current))
            elif layers:
                ranks = [self._rank(lay) for lay in layers]
                self.layer_combo.setCurrentIndex(ranks.index(max(ranks)))  # top-most best
        finally:
            self._quiet = False
        if self.layer() is not current:
            self._on_layer()

    def layer(self) -> Any:
        i = self.layer_combo.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer: Any) -> None:
        if layer in self._layers:
            self.layer_combo.setCurrentIndex(self._layers.index(layer))

    # -- reactions ----------------------------------------------------------------------
    def _on_layer(self, *_: Any) -> None:
        if self._quiet:
            return
        layer = self.layer()
        if self.tilts_check.isChecked():
            self._fill_tilts()
        else:  # ticks belong to one layer: a new layer starts with every tilt
            self.tilt_list.clear()
        self._quiet = True
        try:
            meta = {} if layer is None else layer.metadata
            file_angles = list(meta.get("angles") or [])
            n = self._n_images()
            self.use_start_step.setEnabled(bool(file_angles))
            self.use_start_step.setChecked(not file_angles)
            if file_angles:  # a starting point for an override
                steps = np.diff(file_angles)
                self.start.setValue(float(file_angles[0]))
                self.step.setValue(float(np.median(steps)) if steps.size else 2.0)
            elif n:  # symmetric around 0° in 2° steps until the user says otherwise
                self.step.setValue(2.0)
                self.start.setValue(max(-90.0, -(n - 1) * 1.0))
            self.pixel_size.setValue(float(meta.get("pixel_size") or 0.0))
            axis = float(meta.get("tilt_axis", 0.0) or 0.0)
            if axis == 0.0:
                self.axis_mode.setCurrentIndex(0)
            elif axis == 90.0:
                self.axis_mode.setCurrentIndex(1)
            else:
                self.axis_mode.setCurrentIndex(2)
            self.axis_angle.setValue(axis)
            self._reset_slab()
        finally:
            self._quiet = False
        self._on_angles_edited()

    def _on_axis_mode(self, *_: Any) -> None:
        mode = self.axis_mode.currentIndex()
        self.axis_angle.setEnabled(mode == 2)
        if mode in (0, 1):
            quiet, self._quiet = self._quiet, True
            self.axis_angle.setValue(0.0 if mode == 0 else 90.0)
            self._quiet = quiet
        self._reset_slab()
        self._on_edit()

    def _on_angles_edited(self, *_: Any) -> None:
        if self._quiet:
            return
        angles = self._angles()
        self._quiet = True
        try:
            if angles is not None and len(angles):
                self.range_min.setValue(math.floor(float(np.min(angles)) * 10) / 10)
                self.range_max.setValue(math.ceil(float(np.max(angles)) * 10) / 10)
        finally:
            self._quiet = False
        self._on_edit()

    def _on_edit(self, *_: Any) -> None:
        if self._quiet:
            return
        self._update_labels()
        self.changed.emit()

    def _on_show_tilts(self, shown: bool) -> None:
        self.tilt_list.setVisible(shown)
        if shown:
            self._fill_tilts()

    def _fill_tilts(self) -> None:
        layer = self.layer()
        if layer is None or not is_stack(layer):
            self.tilt_list.clear()
            return
        try:
            angles = self.geometry().angles
        except TomopriorError:
            angles = None
        self.tilt_list.fill(self._data(layer), angles, key=id(layer))

    def excluded(self) -> list[int]:
        """Images the user unticked (0-based), for the layer in the panel."""
        return self.tilt_list.excluded()

    def _on_pixel_size(self, value: float) -> None:
        """A typed pixel size goes into the layer: its metadata, its scale, later the provenance."""
        layer = self.layer()
        if self._quiet or layer is None or not is_stack(layer):
            return
        ps = float(value) if value > 0 else None
        layer.metadata = {**layer.metadata, "pixel_size": ps, "pixel_unit": "nm"}
        if layer.ndim == 4:  # the (n, 1, y, x) form: the singleton's depth follows the pixel
            place = series_placement(layer.data.shape, ps)
            layer.scale, layer.translate = place["scale"], place["translate"]
            layer.units = place["units"]
        else:
            layer.scale = (1.0, ps or 1.0, ps or 1.0)
        self._on_edit()

    # -- values -------------------------------------------------------------------------
    def _n_images(self) -> int:
        layer = self.layer()
        if layer is None or not is_stack(layer):
            return 0
        return int(self._data(layer).shape[0])

    @staticmethod
    def _data(layer: Any) -> Any:
        return stack_data(layer)

    def _angles(self) -> np.ndarray | None:
        layer = self.layer()
        if layer is None:
            return None
        if self.use_start_step.isChecked():
            n = self._n_images()
            if not n or self.step.value() == 0:
                return None
            return angles_from_start_step(self.start.value(), self.step.value(), n)
        a = layer.metadata.get("angles") or []
        return np.asarray(a, dtype=float) if len(a) else None

    def tilt_axis(self) -> float:
        return (0.0, 90.0, self.axis_angle.value())[self.axis_mode.currentIndex()]

    def bin_factor(self) -> int:
        return BINNINGS[max(0, self.binning.currentIndex())]

    def _axis_length(self) -> int:
        layer = self.layer()
        if layer is None or not is_stack(layer):
            return 0
        _, rows, cols = self._data(layer).shape
        horizontal = abs(math.remainder(self.tilt_axis(), 180.0)) <= 45.0
        return int(cols if horizontal else rows)

    def _reset_slab(self) -> None:
        n = self._axis_length()
        for w in (self.slab_from, self.slab_to):
            w.setRange(0, max(1, n))
        mid, half = n // 2, min(16, max(1, n // 4))
        self.slab_from.setValue(max(0, mid - half))
        self.slab_to.setValue(min(n, mid + half))

    def geometry(self) -> TiltGeometry:
        """The full geometry of the chosen layer (all measured tilts)."""
        layer = self.layer()
        if layer is None:
            raise DataError(
                "no tilt series: open one (drag a file in, or File › Open Sample › Tomoprior) "
                "and choose it in the Layer box"
            )
        shape = tuple(self._data(layer).shape)
        if not is_stack(layer):
            raise DataError(
                f"layer '{layer.name}' is a {layer.ndim}D image {shape}: a tilt series is a 3D "
                "stack (tilt, rows, cols), one image per tilt angle"
            )
        use_start = self.use_start_step.isChecked()
        angles = self._angles() if use_start else None
        if use_start and angles is None:
            raise GeometryError("the tilt step must not be 0°")
        return geometry_from_metadata(
            layer.metadata,
            shape[0],
            angles=angles,
            angle_source=(
                f"start {self.start.value():g}°, step {self.step.value():g}°" if use_start else None
            ),
            tilt_axis=self.tilt_axis(),
        )

    def selection_args(self) -> tuple[tuple[float, float], float | None]:
        """Tilt range and increment (see also :meth:`excluded`)."""
        inc = self.increment.value()
        return (self.range_min.value(), self.range_max.value()), (inc if inc > 0 else None)

    def request(self) -> TiltRequest:
        """Everything :func:`tomoprior.run` needs; raises TomopriorError with a message."""
        layer = self.layer()
        geom = self.geometry()
        rng, inc = self.selection_args()
        sel = geom.select(rng, inc, self.excluded())
        slices = None
        if self.slab_check.isChecked():
            a, b = self.slab_from.value(), self.slab_to.value()
            if b <= a:
                raise GeometryError(f"the slice range {a} to {b} px is empty")
            slices = f"{a}:{b}"
        kwargs = {
            "tilt_range": rng,
            "increment": inc,
            "bin": self.bin_factor(),
            "slices": slices,
            "thickness": self.thickness.value() or None,
            "exclude": self.excluded(),
        }
        return TiltRequest(
            layer=layer,
            series=self._data(layer),
            geometry=geom,
            kwargs=kwargs,
            source=str(layer.metadata.get("source") or layer.name),
            name=layer.name,
            kept=sel.count,
            virtual=virtual_frames(layer.metadata),
        )

    # -- labels -------------------------------------------------------------------------
    def _update_labels(self) -> None:
        layer = self.layer()
        n = self._n_images()
        use_start = self.use_start_step.isChecked()
        self._start_row.setEnabled(use_start)
        self.angles_label.setStyleSheet("")
        self.angles_label.setToolTip("")
        if layer is None:
            self.angles_label.setText("Open a tilt series: drag a file in or File › Open Sample.")
        elif not is_stack(layer):
            self.angles_label.setText(f"'{layer.name}' is {layer.ndim}D: not a tilt series.")
            self.angles_label.setStyleSheet(ERROR)
        else:
            meta = layer.metadata
            a = meta.get("angles") or []
            if not a:
                self.angles_label.setText(
                    f"No tilt angles were found with '{layer.name}': set the start and step "
                    f"of its {n} images below."
                )
                self.angles_label.setStyleSheet(WARN)
            elif len(a) != n:
                self.angles_label.setText(
                    f"{len(a)} angles in the metadata for {n} images: the counts must match "
                    "(set start and step instead)."
                )
                self.angles_label.setStyleSheet(ERROR if not use_start else WARN)
            else:
                self.angles_label.setToolTip(
                    "Tilt angles (°): " + ", ".join(f"{float(x):g}" for x in a)
                )
                src = meta.get("angle_source") or "the file"
                self.angles_label.setText(
                    f"{n} angles from {src}: {min(a):g}° to {max(a):g}°"
                    + ("" if not use_start else " (replaced by start/step)")
                )
        self._update_virtual_label()
        self._update_kept()
        self._update_bin_label()
        self._update_memory_label()

    def _update_virtual_label(self) -> None:
        """``"12 of 25 frames are virtual (learned)"`` for a series with virtual frames."""
        layer = self.layer()
        n = self._n_images()
        virtual = None if layer is None or not n else virtual_frames(layer.metadata)
        count = 0 if virtual is None else sum(1 for i in virtual["indices"] if i < n)
        self.virtual_label.setVisible(bool(count))
        self.virtual_label.setText(
            f"{count} of {n} frames are virtual ({virtual['method']})" if count else "")

    def _update_memory_label(self) -> None:
        from ..engine import memory_need
        from ..io._budget import human_bytes, memory_budget

        layer = self.layer()
        try:
            rng, inc = self.selection_args()
            kept = self.geometry().select(rng, inc, self.excluded()).count
        except (TomopriorError, ValueError):
            kept = 0
        if layer is None or not is_stack(layer) or not kept:
            self.memory_label.setText("")
            return
        _, rows, cols = self._data(layer).shape
        b = self.bin_factor()
        along, across = (cols, rows) if abs(math.remainder(self.tilt_axis(), 180.0)) <= 45 else (rows, cols)
        if self.slab_check.isChecked():
            along = max(0, self.slab_to.value() - self.slab_from.value())
        ny, nu = max(1, -(-along // b)), max(1, across // b)
        z = max(1, (self.thickness.value() or across) // b)
        need, free = memory_need(kept, (z, ny, nu))["total"], memory_budget()
        text = f"Memory: at least {human_bytes(need)} of about {human_bytes(free)} free"
        self.memory_label.setText(text + (": too much, bin or cut the volume" if need > free else ""))
        self.memory_label.setStyleSheet(ERROR if need > free else "")

    def _update_kept(self) -> None:
        try:
            geom = self.geometry()
            rng, inc = self.selection_args()
            sel = geom.select(rng, inc, self.excluded())
        except TomopriorError as exc:
            self.kept_label.setText(str(exc) if self.layer() is not None else "")
            self.kept_label.setStyleSheet(ERROR)
            return
        a = sel.angles
        steps = np.diff(np.sort(a))
        step = f", step ≈ {np.median(steps):.3g}°" if steps.size else ""
        bad = len(self.excluded())
        self.kept_label.setText(
            f"Keeps {sel.count} of {geom.n_tilts} tilts: {a.min():g}° to {a.max():g}°{step}"
            + (f" ({bad} excluded)" if bad else "")
        )
        self.kept_label.setStyleSheet("")

    def _update_bin_label(self) -> None:
        layer = self.layer()
        if layer is None or not is_stack(layer):
            self.bin_label.setText("")
            return
        _, rows, cols = self._data(layer).shape
        b = self.bin_factor()
        ps = layer.metadata.get("pixel_size")
        unit = layer.metadata.get("pixel_unit") or "nm"
        size = f"{rows // b} × {cols // b} px"
        self.bin_label.setText(size + (f", {ps * b:.3g} {unit}/px" if ps else ""))
        self.bin_label.setAlignment(Qt.AlignLeft | Qt.AlignVCenter)
