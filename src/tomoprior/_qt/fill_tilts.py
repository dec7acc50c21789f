"""The "Fill in tilts" part of the Reconstruction widget: a denser series as a new layer.

It takes the tilt series and the kept tilts of the widget's tilt panel (so a
sparse acquisition emulated there can be filled in again), puts ``N - 1``
virtual frames in every gap (or splits the gaps to a step), by the learned
network, a linear blend or a reprojection (:func:`tomoprior.interpolation.interpolate`,
in a background worker), and adds the result as a new tilt-series layer:
``metadata["angles"]`` holds every frame's angle, ``metadata["virtual_frames"]``
the indices of the virtual ones and ``metadata["interpolation"]`` the record
the command line writes to ``OUT.frames.json``. The canvas overlay names the
angle of the frame in view and marks a virtual frame (:mod:`.tilt_overlay`).
Nothing here changes what the Run button reconstructs; a run from a
filled-in layer records in its provenance which of its frames were virtual
(:func:`virtual_frames` reads them from a layer's metadata).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
)

from .._napari._layers import tilt_series_layer_data, tilt_series_metadata
from ..errors import TomopriorError
from .controller import RunState, TaskOutcome, TaskRunner
from .messages import notify_error, user_message
from .progress import format_seconds

__all__ = ["FillTiltsPanel", "virtual_frames"]

METHODS = {
    "learned": "Learned (network trained on simulated nanoclusters)",
    "linear": "Linear blend of the two neighbours",
    "reproject": "Reprojection of a CS-TV reconstruction",
}


def virtual_frames(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The virtual frames of a series layer, ``{"indices": [...], "method": kind}``, or None.

    A filled-in layer lists their indices in ``metadata["virtual_frames"]``
    and its method in ``metadata["interpolation"]``; a series read with its
    ``.frames.json`` sidecar holds ``{"indices": ..., "method": ...}`` there.
    The result is what :func:`tomoprior.run` takes as ``virtual=``.
    """
    given = metadata.get("virtual_frames")
    if not given:
        return None
    method = None
    if isinstance(given, Mapping):
        method, given = given.get("method"), given.get("indices") or ()
    interpolation = metadata.get("interpolation")
    if not method and isinstance(interpolation, Mapping):
        method = interpolation.get("method")
    indices = sorted({int(i) for i in given})
    if not indices:
        return None
    return {"indices": indices, "method": str(method or "interpolated")}


class FillTiltsPanel(QGroupBox):
    """Factor or step, method, and a "Fill in tilts" button."""

    def __init__(self, viewer: Any, tilt_panel: Any, device: Callable[[], str]) -> None:
        super().__init__("Fill in tilts (virtual frames)")
        self.viewer, self.tilt, self._device = viewer, tilt_panel, device
        self.mode = QComboBox()
        self.mode.addItems(["frames per gap (×N)", "largest step"])
        self.factor = QSpinBox()
        self.factor.setRange(2, 16)
        self.factor.setValue(2)
        self.factor.setPrefix("× ")
        self.step = QDoubleSpinBox()
        self.step.setRange(0.1, 45.0)
        self.step.setValue(1.0)
        self.step.setSuffix(" °")
        self.step.setVisible(False)
        self.method = QComboBox()
        for key, text in METHODS.items():
            self.method.addItem(text, key)
        self.button = QPushButton("Fill in tilts")
        self.button.setToolTip("Add a denser series with virtual frames between the kept tilts "
                               "as a new layer; virtual frames are marked on the canvas")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Density", self.mode)
        form.addRow("", self.factor)
        form.addRow("", self.step)
        form.addRow("Method", self.method)
        form.addRow(self.button)
        form.addRow(self.status)
        self.task = TaskRunner(self, what="Fill in tilts")
        self.layer: Any = None  # the last filled-in layer
        self._t0 = 0.0
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.button.clicked.connect(self.fill)
        self.task.message.connect(lambda m: self.status.setText(f"{m} · "
                                  f"{format_seconds(time.monotonic() - self._t0)}"))
        self.task.state_changed.connect(lambda s: self.button.setEnabled(not s.busy))
        self.task.finished.connect(self._on_finished)

    def _on_mode(self, index: int) -> None:
        self.factor.setVisible(index == 0)
        self.step.setVisible(index == 1)

    def options(self) -> dict[str, Any]:
        """``factor`` or ``step``, and ``method``."""
        how = {"factor": self.factor.value()} if self.mode.currentIndex() == 0 else \
            {"step": self.step.value()}
        return {**how, "method": self.method.currentData()}

    def fill(self) -> None:
        """Button: validate now (errors as a notification), then interpolate in the background."""
        from ..interpolation import interpolate, plan_angles

        if self.task.busy:
            return
        try:
            layer = self.tilt.layer()
            geom = self.tilt.geometry()
            rng, inc = self.tilt.selection_args()
            sel = geom.select(rng, inc, self.tilt.excluded())
            opts = self.options()
            plan = plan_angles(sel.geometry.angles, factor=opts.get("factor"), step=opts.get("step"))
        except (TomopriorError, ValueError) as exc:
            notify_error(user_message(exc, what="Fill in tilts"))
            return
        data = self.tilt._data(layer)
        indices, g, device = sel.indices, sel.geometry, self._device()

        def job(progress: Callable[[str], None]) -> Any:
            series = np.asarray(data[indices] if len(indices) < data.shape[0] else data)
            progress("interpolating")
            return interpolate(series, g, plan=plan, method=opts["method"], device=device,
                               progress=progress)

        self._job = (layer, opts)
        self._t0 = time.monotonic()
        self.status.setText(f"Filling in {plan.n_virtual} frames ({opts['method']})…")
        self.task.start(job, device=device)

    def end_work(self) -> bool:
        """Stop a fill-in quietly (its widget closes); whether its thread has ended."""
        if not self.task.busy:
            return True
        ended = self.task.close()
        self.status.setText("Stopped; nothing was added.")
        return ended

    def _on_finished(self, out: TaskOutcome) -> None:
        elapsed = format_seconds(time.monotonic() - self._t0)
        if out.state == RunState.FAILED:
            self.status.setText(f"Failed after {elapsed}: {out.message}")
            notify_error(out.message)
            return
        if out.state != RunState.DONE:
            self.status.setText("Stopped; nothing was added.")
            return
        res, (layer, opts) = out.result, self._job
        self.layer = self.viewer.add_layer(_layer(res, layer, opts))
        self.status.setText(f"Added '{self.layer.name}': {int(res.measured.sum())} measured and "
                            f"{res.virtual.size} virtual frames in {elapsed}.")

    def shown_layer(self) -> Any:
        """The active layer when it is a filled-in series (the canvas overlay follows it)."""
        active = self.viewer.layers.selection.active
        if active is not None and "virtual_frames" in getattr(active, "metadata", {}):
            return active
        return None


def _layer(res: Any, source_layer: Any, opts: dict) -> Any:
    from napari.layers import Layer

    src = source_layer.metadata
    g = res.geometry
    how = f"×{opts['factor']}" if "factor" in opts else f"≤{opts['step']:g}°"
    name = f"{source_layer.name} filled {how} ({res.method})"
    meta = tilt_series_metadata(
        angles=g.angles, tilt_axis=g.tilt_axis, pixel_size=src.get("pixel_size"),
        pixel_unit=src.get("pixel_unit") or "nm", angle_source=f"interpolated ({res.method})",
        source=str(src.get("source") or source_layer.name), shifts=g.shifts,
        virtual_frames=[int(i) for i in res.virtual],
        interpolation=res.record(str(src.get("source") or source_layer.name)))
    data, kwargs, kind = tilt_series_layer_data(res.series, meta, name)
    kwargs["contrast_limits"] = list(source_layer.contrast_limits)
    return Layer.create(data, kwargs, kind)
