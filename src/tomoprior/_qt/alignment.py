"""The Alignment dock widget: align a tilt series, see the shifts, check the axis by hand.

Layout (top to bottom, all in :meth:`AlignmentWidget._layout`): the
tilt-series panel (layer, angles, nominal axis, thickness, binning), method
and options, device, Align / Stop with a busy bar and the latest progress
message, the result (found axis and offset, shifts per tilt), and the hand
check: axis-angle and offset sliders that, 300 ms after the last move,
reconstruct three slices across the axis into one preview layer, updated in
place; "Use this axis" and "Save transforms…" (``.xf``, ``.tlt``, ``.json``).

The computations (:mod:`tomoprior._napari.align_model`, no Qt) run in background workers
(:class:`~.controller.TaskRunner`); Stop takes effect at the alignment's
next progress message and discards its result. The user's layers are never
modified: the aligned series is a new layer ``"<name> aligned"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from .._napari._layers import is_stack, series_placement, series_view
from .._napari.align_model import (
    METHOD_HELP,
    Alignment,
    align,
    aligned_metadata,
    hand_geometry,
    preview_image,
    summary,
)
from ..alignment import METHODS, AlignOptions, write_transforms
from ..errors import TomopriorError
from .closing import WorkGuard
from .common import ScrollHost
from .controller import RunState, TaskOutcome, TaskRunner
from .device_picker import DevicePicker
from .live_layer import LiveLayer
from .messages import notify_error, notify_info, user_message
from .progress import format_seconds
from .shift_plot import ShiftPlot
from .tilt_panel import TiltPanel, _row

if TYPE_CHECKING:
    import napari

__all__ = ["AlignmentWidget"]

AXIS_RANGE = 10.0  # degrees either side of the found (or nominal) axis
DEBOUNCE_MS = 300
PREVIEW_GAP = 0.15  # preview layer: gap below the series, as a fraction of its height


def _tip(widget: Any, tip: str, *, enabled: bool = True) -> Any:
    widget.setToolTip(tip)
    widget.setEnabled(enabled)
    return widget


def _check(text: str, checked: bool, tip: str = "") -> QCheckBox:
    box = QCheckBox(text)
    box.setChecked(checked)
    return _tip(box, tip)


def _label(text: str, style: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet(style)
    return label


def _slider(decimals: int, tip: str) -> QLabeledDoubleSlider:
    s = QLabeledDoubleSlider(Qt.Horizontal)
    s.setDecimals(decimals)
    s.setSingleStep(0.1)
    return _tip(s, tip)


class AlignmentWidget(ScrollHost):
    """Align the chosen tilt series; check and adjust the tilt axis by hand."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.tilt = TiltPanel(napari_viewer)
        for field in (self.tilt.range_min.parentWidget(), self.tilt.increment,
                      self.tilt.kept_label, self.tilt.slab_check.parentWidget()):
            self._hide_row(field)  # alignment keeps every tilt and every slice
        self.tilt.binning.setToolTip(
            "Align a b × b binned series (faster); the aligned layer and the saved transforms "
            "are binned too (apply_transforms(..., binning=b) applies them at full size)")
        defaults = AlignOptions()
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(m, m)
        self.method_help = _label("", "color: gray;")
        self.axis_search = _check("Find the tilt-axis angle and offset, within ±", defaults.axis)
        self.max_angle = _tip(QDoubleSpinBox(), "Half-width of the coarse scan of the axis angle")
        self.max_angle.setRange(0.0, 20.0)
        self.max_angle.setValue(defaults.max_angle)
        self.max_angle.setSuffix(" °")
        self.stretch = _check("Cosine stretching", defaults.stretch,
                              "Stretch each image across the axis by the cosine ratio first")
        self.com = _check("Centre of mass across the axis", defaults.com,
                          "Replace the correlation's shifts across the axis by centre-of-mass "
                          "alignment (specimen wholly in view)")
        self.rounds = _tip(QSpinBox(), "Largest number of projection-matching rounds per cycle")
        self.rounds.setRange(1, 50)
        self.rounds.setValue(defaults.rounds)
        self.device = DevicePicker()
        self.align_button = _tip(QPushButton("Align"), "Find the shifts and the tilt axis")
        self.stop_button = _tip(QPushButton("Stop"), "Stop at the next step; nothing is kept",
                                enabled=False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setTextVisible(False)
        self.status = _label("Ready.")
        self.summary = _label("No alignment yet.")
        self.plot = ShiftPlot()
        self.angle = _slider(2, "Tilt-axis angle (degrees); the preview shows the result")
        self.offset = _slider(1, "Extra offset across the axis (pixels of the aligned series), "
                                 "on top of the found shifts")
        self.preview_status = _label(
            "Move a slider to reconstruct three slices across the axis (25, 50, 75 % along "
            "it) into a preview layer: sharp, single features mean a good axis; doubled or "
            "arc-shaped ones a wrong angle or offset.")
        self.use_button = _tip(QPushButton("Use this axis"),
                               "Re-apply the shifts with the hand-set axis to the aligned layer")
        self.save_button = _tip(QPushButton("Save transforms…"), "Write IMOD .xf and .tlt "
                                "files and a .json with the geometry and report", enabled=False)
        self._layout()

        self.task = TaskRunner(self, "Alignment")
        self.preview_task = TaskRunner(self, "Preview")
        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.clock = QTimer(self)
        self.clock.setInterval(1000)
        self.base: Alignment | None = None  # the last alignment: base of the hand check
        self.current: Alignment | None = None  # what the aligned layer shows
        self.aligned: LiveLayer | None = None
        self.preview: LiveLayer | None = None
        self.previews = 0
        self._source: Any = None  # the layer self.base was found on
        self._pending: Callable | None = None  # a preview waiting for the running one
        self._job_layer: Any = None
        self._new_layer = True
        self._t0 = time.monotonic()
        self._message = ""
        self._connect()
        self._on_method()
        self._recentre()
        self.guard = WorkGuard(self, self.end_work)

    # -- layout and wiring ----------------------------------------------------------------
    def _hide_row(self, field: QWidget) -> None:
        label = self.tilt.layout().labelForField(field)
        for w in (label, field):
            if w is not None:
                w.hide()

    def _layout(self) -> None:
        box = QGroupBox("Alignment")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Method", self.method)
        form.addRow(self.method_help)
        form.addRow(_row(self.axis_search, self.max_angle))
        form.addRow(self.stretch)
        form.addRow(self.com)
        form.addRow("Rounds (pm)", self.rounds)
        form.addRow("Device", self.device)
        result = QGroupBox("Result")
        rl = QVBoxLayout(result)
        rl.addWidget(self.summary)
        rl.addWidget(self.plot)
        check = QGroupBox("Check the axis by hand")
        cf = QFormLayout(check)
        cf.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        cf.addRow("Axis angle (°)", self.angle)
        cf.addRow("Extra offset (px)", self.offset)
        cf.addRow(self.preview_status)
        cf.addRow(_row(self.use_button, self.save_button))

        content = QWidget()
        lay = QVBoxLayout(content)
        lay.addWidget(self.tilt)
        lay.addWidget(box)
        lay.addWidget(_row(self.align_button, self.stop_button))
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(result)
        lay.addWidget(check)
        lay.addStretch(1)
        self.set_content(content)

    def _connect(self) -> None:
        self.method.currentIndexChanged.connect(self._on_method)
        self.axis_search.toggled.connect(self.max_angle.setEnabled)
        self.align_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.use_button.clicked.connect(self.use_axis)
        self.save_button.clicked.connect(self.save_dialog)
        self.angle.valueChanged.connect(self.debounce.start)
        self.offset.valueChanged.connect(self.debounce.start)
        self.debounce.timeout.connect(self.request_preview)
        self.clock.timeout.connect(self._show_status)
        self.tilt.changed.connect(self._on_tilt_changed)
        self.task.message.connect(self._on_message)
        self.task.state_changed.connect(self._on_state)
        self.task.finished.connect(self._on_finished)
        self.preview_task.finished.connect(self._on_preview)

    # -- options ----------------------------------------------------------------------------
    def method_name(self) -> str:
        return self.method.currentData()

    def options(self) -> dict[str, Any]:
        """Keyword options of :func:`~tomoprior.alignment.align_series` set in the widget."""
        m = self.method_name()
        opts: dict[str, Any] = {"axis": self.axis_search.isChecked(),
                                "max_angle": self.max_angle.value(), "device": self.device.device()}
        if m != "com":
            opts.update(stretch=self.stretch.isChecked(), com=self.com.isChecked())
        if m == "pm":
            opts["rounds"] = self.rounds.value()
        thickness = self.tilt.thickness.value()
        if thickness:
            opts["thickness"] = max(1, thickness // self.tilt.bin_factor())
        return opts

    def _on_method(self, *_: Any) -> None:
        m = self.method_name()
        self.method_help.setText(METHOD_HELP[m])
        self.stretch.setEnabled(m != "com")
        self.com.setEnabled(m != "com")
        self.rounds.setEnabled(m == "pm")

    # -- align ------------------------------------------------------------------------------
    def run(self) -> None:
        """Align button: validate, then align in the background."""
        if self.task.busy:
            return
        try:
            req = self.tilt.request()
        except (TomopriorError, ValueError) as exc:
            notify_error(user_message(exc, what="Alignment"))
            return
        method, opts, b = self.method_name(), self.options(), self.tilt.bin_factor()
        series, geom = req.series, req.geometry

        def job(progress: Callable[[str], None]) -> Alignment:
            return align(series, geom, method=method, binning=b, progress=progress, **opts)

        self._job_layer = req.layer
        self._start(job, f"Aligning '{req.name}' ({method})…", new_layer=True)

    def use_axis(self) -> None:
        """Re-apply the found shifts with the hand-set axis; the aligned layer shows it."""
        if self.task.busy:
            return
        try:
            base = self._base()
        except (TomopriorError, ValueError) as exc:
            notify_error(user_message(exc, what="Alignment"))
            return
        angle, offset = self.angle.value(), self.offset.value()
        self._job_layer = self.tilt.layer()

        def job(progress: Callable[[str], None]) -> Alignment:
            return base().adjusted(angle, offset)

        reuse = self.aligned is not None and self.aligned.alive and self._source == self._job_layer
        self._start(job, f"Applying the axis {angle:+.2f}°…", new_layer=not reuse)

    def stop(self) -> None:
        self.task.stop()

    def _start(self, job: Callable, text: str, new_layer: bool) -> None:
        self._new_layer = new_layer
        self._t0 = time.monotonic()
        self._message = text
        self.bar.setRange(0, 0)  # busy
        self._show_status()
        self.clock.start()
        self.task.start(job, device=self.device.device())

    def _on_message(self, msg: str) -> None:
        self._message = msg
        self._show_status()

    def _show_status(self) -> None:
        text = f"{self._message} · {format_seconds(time.monotonic() - self._t0)}"
        self.status.setText(text)
        self.viewer.status = f"Alignment: {text}"

    def _on_state(self, state: RunState) -> None:
        busy = state.busy
        self.align_button.setEnabled(not busy)
        self.use_button.setEnabled(not busy)
        self.stop_button.setEnabled(state == RunState.RUNNING)
        if state == RunState.STOPPING:
            self._on_message("Stopping at the next step…")

    def _on_finished(self, out: TaskOutcome) -> None:
        self.clock.stop()
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if out.state == RunState.DONE else 0)
        elapsed = format_seconds(time.monotonic() - self._t0)
        if out.state == RunState.FAILED:
            self.status.setText(f"Failed after {elapsed}: {out.message}")
            notify_error(out.message)
        elif out.state == RunState.STOPPED:
            self.status.setText(f"Stopped after {elapsed}; nothing was changed.")
        else:
            self.status.setText(f"Done in {elapsed}.")
            self._show_result(out.result)
        self.viewer.status = f"Alignment: {self.status.text()}"

    def _show_result(self, al: Alignment) -> None:
        layer = self._job_layer
        hand = "hand_set" in al.report
        if not hand:
            self.base, self._source = al, layer
        self.current = al
        if self._new_layer or self.aligned is None:
            self.aligned = LiveLayer(self.viewer)
        md = layer.metadata
        place = series_placement(al.aligned.shape, md.get("pixel_size"), md.get("pixel_unit"),
                                 binning=al.binning)
        self.aligned.show(series_view(al.aligned), name=f"{layer.name} aligned",
                          scale=place["scale"], translate=place["translate"],
                          metadata=aligned_metadata(md, al, layer.name),
                          axis_labels=place["axis_labels"], units=place["units"], final=True)
        self.plot.set_shifts(al.found.angles, al.found.shifts)
        self.summary.setText(summary(al))
        self.save_button.setEnabled(True)
        if not hand:
            self._recentre()
            self.request_preview()

    # -- hand check ------------------------------------------------------------------------
    def _on_tilt_changed(self) -> None:
        if self.base is not None and self._source != self.tilt.layer():
            self.base = None  # another layer: the found alignment no longer applies
        if self.base is None:
            self._recentre()

    def _recentre(self) -> None:
        """Sliders around the found axis (else the panel's), offset 0; no preview."""
        centre = self.base.found.tilt_axis if self.base is not None else self.tilt.tilt_axis()
        layer = self.tilt.layer()
        width = 64 if layer is None or not is_stack(layer) else max(layer.data.shape[-2:])
        half = max(4.0, width / self.tilt.bin_factor() / 8)
        for s, lo, hi, v in ((self.angle, centre - AXIS_RANGE, centre + AXIS_RANGE, centre),
                             (self.offset, -half, half, 0.0)):
            s.blockSignals(True)
            s.setRange(lo, hi)
            s.setValue(v)
            s.blockSignals(False)

    def _base(self) -> Callable[[], Alignment]:
        """A function (run in a worker) giving the base of the hand check; validates now."""
        base = self.base
        if base is not None:
            return lambda: base
        req = self.tilt.request()
        geom = req.geometry.replace(thickness=self.tilt.thickness.value() or None)
        b = self.tilt.bin_factor()
        return lambda: Alignment.unaligned(req.series, geom, b)

    def request_preview(self) -> None:
        """Reconstruct the preview slices with the hand-set axis (in the background)."""
        self.debounce.stop()
        try:
            base = self._base()
        except (TomopriorError, ValueError) as exc:
            self.preview_status.setText(user_message(exc, what="Preview"))
            return
        angle, offset, device = self.angle.value(), self.offset.value(), self.device.device()
        layer = self.tilt.layer()

        def job(progress: Callable[[str], None]) -> tuple:
            al = base()
            image, pb = preview_image(al.series, hand_geometry(al.found, angle, offset), device=device)
            return image, al.binning * pb, al.series.shape[1] * al.binning, angle, offset, layer

        if self.preview_task.busy:
            self._pending = job  # the newest request wins
            return
        self.preview_task.start(job, device=device)

    def _on_preview(self, out: TaskOutcome) -> None:
        if self._pending is not None:  # a newer request is waiting: this result is stale
            job, self._pending = self._pending, None
            self.preview_task.start(job, device=self.device.device())
            return
        if out.state != RunState.DONE:
            if out.state == RunState.FAILED:
                self.preview_status.setText(f"Preview failed: {out.message}")
            return
        image, b, rows, angle, offset, layer = out.result
        ps = tuple(float(s) * b for s in layer.scale[-2:])
        below = layer.translate[-2] + rows * layer.scale[-2] * (1 + PREVIEW_GAP)
        first = self.preview is None or not self.preview.alive
        if first:
            self.preview = LiveLayer(self.viewer)
        self.preview.show(image, name=f"{layer.name} axis preview", scale=ps,
                          translate=(below, layer.translate[-1]),
                          metadata={"tomoprior_kind": "preview", "tilt_axis": angle,
                                    "extra_offset": offset},
                          units=tuple(str(u) for u in layer.units[-2:]), final=True)
        if first:
            self.viewer.reset_view()
        self.previews += 1
        self.preview_status.setText(
            f"Preview (below the series): slices across the axis at 25, 50, 75 % along it, "
            f"axis {angle:+.2f}°, extra offset {offset:+.1f} px. Sharp, single features mean a "
            "good axis.")

    # -- files ---------------------------------------------------------------------------------
    def save_transforms(self, base: str | Path) -> list[Path]:
        """Write ``base.xf``, ``base.tlt`` and ``base.json`` of the current alignment."""
        if self.current is None:
            raise TomopriorError("nothing to save: align the series first")
        return write_transforms(base, self.current.found, self.current.report)

    def save_dialog(self) -> None:
        name = self._source.name if self._source is not None else "aligned"
        path, _ = QFileDialog.getSaveFileName(self, "Save alignment transforms",
                                              f"{name}_aligned.xf", "IMOD transforms (*.xf)")
        if not path:
            return
        p = Path(path)
        base = p.with_suffix("") if p.suffix in (".xf", ".tlt", ".json") else p
        try:
            paths = self.save_transforms(base)
        except (TomopriorError, OSError) as exc:
            notify_error(user_message(exc, what="Saving"))
            return
        notify_info("Saved " + ", ".join(q.name for q in paths))

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop and wait for the workers, reporting their end as usual; for scripts and tests."""
        self._pending = None
        for t in (self.task, self.preview_task):
            t.stop()
            t.wait(timeout)

    def end_work(self) -> bool:
        """Stop the alignment and the preview quietly (the widget, its dock or the viewer closes).

        Nothing more is shown; returns whether their threads have finished.
        """
        self._pending = None
        self.debounce.stop()
        self.clock.stop()
        running = self.task.busy
        task_ended = self.task.close()
        preview_ended = self.preview_task.close()
        if running:
            self.bar.setRange(0, 1)
            self.status.setText("Stopped; nothing was changed.")
        return task_ended and preview_ended

    def closeEvent(self, event: Any) -> None:
        self.end_work()
        super().closeEvent(event)
