"""The Reconstruction dock widget: one method, live result, provenance.

Layout (top to bottom), scrolling: the tilt-series panel, the method panel,
"Where to trust it" (half sets, an ensemble: :mod:`.uncertainty`), device,
"reuse the result layer", progress with the live residual plot, and "Fill in
tilts" (:mod:`.fill_tilts`: a denser series with virtual frames as a new
layer, never used by Run unless chosen); below them, always in sight, Run /
Stop / Save result…. A run streams into ONE result layer (created on the first step, then updated
in place, at most a few times per second); the user's layers are never
modified. A finished (or stopped) run records its provenance in the layer's
``metadata["provenance"]``, which the writer saves with the volume (with
the virtual frames it kept, when the series was filled in). A run with half
sets or an ensemble streams a second layer beside the result, the uncertainty
map, and a half-set run opens the Resolution dock (:mod:`.resolution_plot`).
The docks it opens (the orthogonal views, the resolution) are tabbed with the
method docks and this one stays in front, so Run and Stop never leave sight.
What the run warns of (``rec.warnings``) is shown once as a notification. Closing the
widget, its dock or the viewer ends the run quietly (:mod:`.closing`).

napari's Save dialog lists napari's own TIFF writer before the plugin's (it
orders writers by registration, and napari's come first), and that writer
drops the provenance and the pixel size. "Save result…" always writes
through the plugin's writer; a line under the buttons says so after the first
result (a notification would stay over the canvas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .._napari._layers import napari_unit
from ..device import resolve_device
from ..errors import TomopriorError, logger
from .closing import WorkGuard
from .common import ScrollHost, ask_stop_and_restart
from .controller import Job, JobFinished, JobStarted, JobStep, RunController, RunFailed, RunState
from .device_picker import DevicePicker
from .fill_tilts import FillTiltsPanel
from .live_layer import LiveLayer
from .messages import notify_error, notify_info, notify_warning, user_message
from .method_panel import MethodPanel
from .progress import RunProgress
from .resolution_plot import ResolutionDock
from .results import layer_name, placement, result_metadata
from .tilt_overlay import TiltAngleOverlay
from .tilt_panel import TiltPanel
from .uncertainty import TrustPanel, UncertaintyLayer

if TYPE_CHECKING:
    import napari

__all__ = ["ReconstructionWidget"]


class ReconstructionWidget(ScrollHost):
    """Reconstruct the chosen tilt series with one method of the registry."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.tilt = TiltPanel(napari_viewer)
        self.method_panel = MethodPanel()
        self.trust = TrustPanel()
        self.device = DevicePicker()
        self.fill = FillTiltsPanel(napari_viewer, self.tilt, self.device.device)
        self.angle_overlay = TiltAngleOverlay(
            napari_viewer, lambda: self.fill.shown_layer() or self.tilt.layer())
        self.tilt.changed.connect(self.angle_overlay.refresh)
        napari_viewer.layers.selection.events.active.connect(self.angle_overlay.refresh)
        self.reuse = QCheckBox("Reuse the result layer of the previous run")
        self.reuse.setToolTip(
            "Unticked: every run makes a new layer. Ticked: the next run overwrites the "
            "previous run's result layer (never a layer you opened)."
        )
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Reconstruct in the background; the result updates live")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and keep the last volume")
        self.stop_button.setEnabled(False)
        self.save_button = QPushButton("Save result…")
        self.save_button.setToolTip(
            "Write the last result as .mrc, .tif or .ome.zarr with its pixel size and "
            "provenance (napari's own TIFF writer drops both)"
        )
        self.save_button.setEnabled(False)
        self.save_hint = QLabel(
            "To keep the provenance and pixel size, save with \"Save result…\" or pick "
            "napari-tomoprior in napari's Save dialog")
        self.save_hint.setWordWrap(True)
        self.save_hint.setStyleSheet("color: gray;")
        self.save_hint.hide()
        self.progress = RunProgress()
        self.controller = RunController(self)

        content = QWidget()
        lay = QVBoxLayout(content)
        lay.addWidget(self.tilt)
        lay.addWidget(self.method_panel)
        lay.addWidget(self.trust)
        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow(self.reuse)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        lay.addWidget(self.fill)
        lay.addStretch(1)
        self.set_content(content)
        # Run, Stop and Save stay in sight under the scrolling settings, whatever the dock's
        # height (at 1366x768 the settings alone are taller than the screen)
        footer = QWidget()
        foot = QVBoxLayout(footer)
        foot.setContentsMargins(6, 2, 6, 4)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.save_button)
        foot.addLayout(buttons)
        foot.addWidget(self.save_hint)
        self.layout().addWidget(footer)

        self.live: LiveLayer | None = None
        self.uncertainty: UncertaintyLayer | None = None
        self.resolution_dock: ResolutionDock | None = None
        self.last_layer: Any = None
        self._queued: Job | None = None
        self._run: dict[str, Any] = {}

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self.save_dialog)
        c = self.controller
        c.state_changed.connect(self._on_state)
        c.job_started.connect(self._on_job_started)
        c.step.connect(self._on_step)
        c.job_finished.connect(self._on_job_finished)
        c.failed.connect(self._on_failed)
        c.run_ended.connect(self._on_run_ended)
        c.warning.connect(notify_warning)
        self.trust.overlay_changed.connect(self._on_overlay)
        self.guard = WorkGuard(self, self.end_work)

    # -- actions -------------------------------------------------------------------------
    def make_job(self) -> Job:
        """Validate the inputs and build the job (raises TomopriorError / ValueError)."""
        from ..engine import run

        req = self.tilt.request()
        method = self.method_panel.method()
        params = self.method_panel.params()
        method.resolve(params)
        iterations = self.method_panel.iterations()
        every = self.method_panel.every()
        device = self.device.device()
        resolve_device(device)
        series, geometry, kwargs, source = req.series, req.geometry, req.kwargs, req.source
        if req.virtual is not None:  # recorded in the provenance: the frames kept that are virtual
            kwargs = {**kwargs, "virtual": req.virtual}
        trust = self.trust.options()  # half sets, an ensemble: checked before the run starts
        if trust:
            from ..engine.halves import check_trust

            check_trust(trust.get("halves", False), trust.get("ensemble"))
            kwargs = {**kwargs, **trust}

        def make() -> Any:
            return run(
                method.name,
                series,
                geometry,
                iterations=iterations,
                every=every,
                device=device,
                source=source,
                preview=True,
                **kwargs,
                **params,
            )

        return Job(
            label=method.label,
            make=make,
            info={
                "series": req.name,
                "source": source,
                "device": device,
                "method": method.name,
                "iterative": method.capabilities.iterative,
                "trust": trust,
            },
        )

    def run(self) -> None:
        """Run button: start, or ask to stop the current run and start the new one."""
        try:
            job = self.make_job()
        except (TomopriorError, ValueError) as exc:
            notify_error(user_message(exc))
            return
        if self.controller.busy:
            if not ask_stop_and_restart(self):
                return
            self._queued = job
            self.controller.stop()
            return
        self._start(job)

    def stop(self) -> None:
        self.controller.stop()

    def _start(self, job: Job) -> None:
        reuse = self.reuse.isChecked() and self.last_layer is not None
        self.live = LiveLayer(self.viewer, self.last_layer if reuse else None)
        self.uncertainty = (UncertaintyLayer(self.viewer, self.trust.overlay.isChecked())
                            if job.info.get("trust") else None)
        self._run = {"job": job, "rec": None, "step": None}
        self.progress.begin(1)
        self.controller.start([job])

    # -- controller events ---------------------------------------------------------------
    def _on_state(self, state: RunState) -> None:
        self.stop_button.setEnabled(state == RunState.RUNNING)
        if state == RunState.STOPPING:
            self.progress.stopping()

    def _on_job_started(self, ev: JobStarted) -> None:
        self._run["rec"] = ev.rec
        self.progress.job_started(ev.index, ev.job.label)

    def _show(self, step: Any, state: str, final: bool) -> None:
        rec, job = self._run.get("rec"), self._run.get("job")
        if rec is None or job is None or self.live is None or step is None:
            return
        scale, translate, ps, unit = placement(rec)
        meta = result_metadata(
            rec, job.info["source"], final=final, step=step, series=job.info["series"]
        )
        name = layer_name(job.label, step, job.info["series"], state, job.info["iterative"])
        self.live.show(step.volume, name=name, scale=scale, translate=translate, metadata=meta,
                       units=(napari_unit(ps, unit),) * 3, final=final)
        # a half-set or ensemble run's map, when a new one formed (the step that carried it
        # may have been skipped by the throttled display: the run keeps the latest)
        umap = getattr(rec, "current_map", None)
        if umap is not None and self.uncertainty is not None and (
                final or umap is not self._run.get("map")):
            self._run["map"] = umap
            extra = {"uncertainty_of": name, "content": "per-voxel standard deviation relative "
                     "to the contrast of the result"}
            self.uncertainty.show(umap, name=f"{name} uncertainty", scale=scale,
                                  translate=translate, metadata={**meta, **extra},
                                  units=(napari_unit(ps, unit),) * 3)
            if self.live.alive and final:  # the result stays the active layer
                self.viewer.layers.selection.active = self.live.layer

    def _on_overlay(self, on: bool) -> None:
        if self.uncertainty is not None:
            self.uncertainty.set_overlay(on)

    def _on_step(self, ev: JobStep) -> None:
        self._run["step"] = ev.step
        self._show(ev.step, "running", final=False)
        self.progress.show_step(ev.index, ev.step, ev.elapsed)

    def _on_job_finished(self, ev: JobFinished) -> None:
        step = ev.rec.last
        self._show(step, "stopped" if ev.stopped else "done", final=True)
        if self.live is not None and self.live.alive:
            self.last_layer = self.live.layer
            self.save_button.setEnabled(True)
            self.save_hint.show()
            # each in its own turn of the event loop, after the final picture is drawn:
            # together they would hold the interface for ~0.2 s
            QTimer.singleShot(0, self._open_views_after_run)

    def _open_views_after_run(self) -> None:
        if self.last_layer is None or self.last_layer not in self.viewer.layers:
            return  # the result was closed before the views could open
        try:  # the dock now, the planes in a later turn (the first time ~0.17 s together)
            views = self._orthogonal_views_dock()
        except RuntimeError:  # the widget (or viewer) closed meanwhile
            return
        if views is not None:
            QTimer.singleShot(0, lambda: self._point_views(views))
        rec = self._run.get("rec")
        if getattr(rec, "fsc", None) is not None:
            QTimer.singleShot(0, self.show_resolution)

    def show_resolution(self) -> ResolutionDock | None:
        """Dock the resolution plot (once, tabbed with the method docks) on the last result."""
        if self.resolution_dock is None:
            dock = ResolutionDock(self.viewer)
            try:
                self.viewer.window.add_dock_widget(dock, name="Resolution (half sets)",
                                                   area="right", tabify=True)
            except Exception as exc:  # a viewer without a window: no dock
                logger.debug("resolution dock not shown: %s", exc)
                return None
            self.resolution_dock = dock
        self._keep_in_front()
        self.resolution_dock.show_layer(self.last_layer)
        return self.resolution_dock

    def _keep_in_front(self) -> None:
        """This dock's tab in front again after another dock was tabbed with it."""
        parent = self.parent()
        while parent is not None and not isinstance(parent, QDockWidget):
            parent = parent.parent()
        if parent is not None:
            parent.raise_()

    def save_result(self, path: str) -> list[str]:
        """Write the last result layer through the plugin's writer; returns the paths written."""
        from .._napari._writer import write_image_layer

        layer = self.last_layer
        if layer is None or layer not in self.viewer.layers:
            raise TomopriorError("nothing to save: run a reconstruction first")
        return write_image_layer(str(path), layer.data,
                                 {"metadata": dict(layer.metadata), "name": layer.name})

    def save_dialog(self) -> None:
        """Save result… button: choose a file, then write it with provenance and pixel size."""
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the result", (self.last_layer.name if self.last_layer else "volume"),
            "MRC (*.mrc *.rec);;TIFF (*.tif *.tiff);;OME-Zarr (*.ome.zarr)")
        if not path:
            return
        try:
            written = self.save_result(path)
        except TomopriorError as exc:
            notify_error(user_message(exc))
            return
        if written:
            notify_info("Saved " + ", ".join(written))

    def show_orthogonal_views(self) -> Any:
        """Dock the x-z / y-z views beside the canvas (once) and point them at the result."""
        views = self._orthogonal_views_dock()
        if views is not None:
            self._point_views(views)
        return views

    def _orthogonal_views_dock(self) -> Any:
        try:  # tabbed with the method docks: under this one it would squeeze Run and Stop away
            _, views = self.viewer.window.add_plugin_dock_widget(
                "napari-tomoprior", "Orthogonal views", tabify=True)
        except Exception as exc:  # a viewer without a window (headless use): no views
            logger.debug("orthogonal views not shown: %s", exc)
            return None
        self._keep_in_front()
        return views

    def _point_views(self, views: Any) -> None:
        try:
            layer, selection = self.last_layer, self.viewer.layers.selection
            if layer is not None and layer in self.viewer.layers and selection.active is not layer:
                selection.active = layer  # the views follow the selection: one redraw
            else:
                views.refresh()
        except RuntimeError:  # the widget, the views or the viewer closed meanwhile
            pass

    def _on_failed(self, ev: RunFailed) -> None:
        notify_error(ev.message)
        if self.live is not None and self.live.alive and self._run.get("step") is not None:
            job = self._run["job"]
            self.live.rename(
                layer_name(
                    job.label,
                    self._run["step"],
                    job.info["series"],
                    "failed",
                    job.info["iterative"],
                )
            )
            self.last_layer = self.live.layer

    def _on_run_ended(self, state: RunState) -> None:
        self.progress.end(state)
        queued, self._queued = self._queued, None
        if queued is not None:
            self._start(queued)

    def end_work(self) -> bool:
        """Stop the run and the fill-in quietly (the widget, its dock or the viewer closes).

        Nothing more is shown; returns whether their threads have finished.
        """
        self._queued = None
        running = self.controller.busy
        run_ended = self.controller.close()
        fill_ended = self.fill.end_work()
        if running:
            self.progress.end(RunState.STOPPED)
        return run_ended and fill_ended

    def closeEvent(self, event: Any) -> None:
        self.end_work()
        super().closeEvent(event)
