"""The Compare methods dock widget: several methods, one tilt selection, side by side.

The methods run one after another in ONE worker, each streaming live into
its own layer, all on the same tilt selection and, those that fit pixels,
with the same 5 % of detector pixels held out (``heldout=0.05``, same
seed) so that their held-out errors compare. Then napari's grid mode shows
them side by side (same slice, one camera) with contrast limits on a
common scale, and a table lists, per method, the reprojection residual (the
one figure every method has in the same sense; a method's own objective is
only in the method cell's tooltip), the held-out error, SSIM and PSNR
against an optional reference volume, the compute time and, with "Half sets"
ticked (each method then runs on the even and the odd tilts apart and shows
their average), the resolution in the x-y plane and along z from the halves'
Fourier shell correlation, computed in the worker with the other figures.
What a run warns of is shown once, however many methods warn of it.
"Difference map" adds the selected method minus the reference (or minus the
first method) as a new layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .._napari._layers import KIND_KEY, TILT_SERIES, napari_unit
from ..algorithms import METHODS, Method
from ..device import resolve_device
from ..errors import DataError, TomopriorError
from .closing import WorkGuard
from .common import ScrollHost, ask_stop_and_restart
from .controller import Job, JobFinished, JobStarted, JobStep, RunController, RunFailed, RunState
from .device_picker import DevicePicker
from .difference import add_difference_layer
from .live_layer import LiveLayer, shared_limits
from .messages import notify_error, notify_warning, user_message
from .method_panel import MethodPage, MethodPanel
from .metrics_table import MetricsTable
from .profile_plot import ProfilePlot
from .progress import RunProgress, objective_text
from .resolution_plot import resolution_figures
from .results import layer_name, placement, result_metadata
from .tilt_panel import TiltPanel

if TYPE_CHECKING:
    import napari

__all__ = ["DEFAULT_METHODS", "HELDOUT", "ComparisonWidget", "grid_of"]

DEFAULT_METHODS = ("sirt", "cstv", "restore", "diptv")
HELDOUT = 0.05
SEED = 0
NO_REFERENCE = "none"


def grid_of(viewer: Any) -> Any:
    """napari's grid model: ``viewer.canvas.grid`` (0.9+) or ``viewer.grid`` before."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def show_name(layer: Any, on: bool) -> None:
    """Show the layer's name in its grid cell (napari 0.6+; a no-op before)."""
    overlay = getattr(layer, "name_overlay", None)
    if overlay is not None:
        overlay.visible = on


class MethodChoice:
    """A checkbox and an iteration count for one method (its parameters: ``page``)."""

    def __init__(self, method: Method) -> None:
        self.method = method
        self.page: MethodPage | None = None  # set by the widget (its parameters panel)
        self.check = QCheckBox(method.label)
        self.check.setChecked(method.name in DEFAULT_METHODS)
        self.check.setToolTip(method.help)
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 10_000_000)
        self.iterations.setValue(method.default_iterations)
        self.iterations.setSuffix(" it")
        self.iterations.setToolTip(f"Iterations of {method.label}")
        if not method.capabilities.iterative:
            self.iterations.setEnabled(False)
            self.iterations.setSpecialValueText("one pass")
            self.iterations.setValue(1)

    def follow_page(self) -> None:
        """Take the iterations that follow a parameter on ``page`` (DIP-TV from the trained
        network: 100), unless the user has set another count here."""
        if self.page is None or not self.method.capabilities.iterative:
            return
        shown = [self.page.iterations.value()]

        def follow(value: int) -> None:
            if self.iterations.value() == shown[0]:
                self.iterations.setValue(value)
            shown[0] = value

        self.page.iterations.valueChanged.connect(follow)


class ComparisonWidget(ScrollHost):
    """Compare reconstruction methods on one tilt selection."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.tilt = TiltPanel(napari_viewer)
        self.choices = {name: MethodChoice(m) for name, m in METHODS.items()}
        # the parameters of every method, built from the registry as in the Reconstruction widget
        self.params_panel = MethodPanel(title="", iterations=False)
        for name, c in self.choices.items():
            c.page = self.params_panel.pages[name]
            c.follow_page()
        methods_box = QGroupBox("Methods")
        box = QVBoxLayout(methods_box)
        grid = QGridLayout()
        for i, c in enumerate(self.choices.values()):
            grid.addWidget(c.check, i, 0)
            grid.addWidget(c.iterations, i, 1)
        box.addLayout(grid)
        params = QCollapsible("Parameters")
        params.setToolTip("Parameters of each method (defaults from the method registry)")
        params.addWidget(self.params_panel)
        box.addWidget(params)
        self.reference = QComboBox()
        self.reference.setToolTip(
            "A ground-truth or full-range volume of the same shape as the reconstructions: "
            "adds SSIM and PSNR to the table and is the base of difference maps"
        )
        self.device = DevicePicker()
        self.halves = QCheckBox("Half sets: resolution x-y / z")
        self.halves.setToolTip(
            "Run every method on the even and the odd tilts apart (about the time of one run) "
            "and show their average; the table adds the resolution from their Fourier shell "
            "correlation")
        self.run_button = QPushButton("Run comparison")
        self.run_button.setToolTip(
            "Run the ticked methods one after another, then show them side by side"
        )
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress = RunProgress()
        self.table = MetricsTable()
        self.side_by_side = QCheckBox("Side by side (grid)")
        self.side_by_side.setToolTip(
            "Show the results in napari's grid mode: same slice, one camera, common contrast"
        )
        self.diff_button = QPushButton("Difference map")
        self.diff_button.setToolTip(
            "Add the selected row's volume minus the reference (or minus the first method), "
            "after a least-squares intensity fit, as a new layer"
        )
        self.profile_button = QPushButton("Profile line")
        self.profile_button.setToolTip(
            "Add a line across the middle of the results (drag its ends onto a particle): the "
            "plot below shows every method's values along it"
        )
        self.profile = ProfilePlot()
        self.controller = RunController(self)

        content = QWidget()
        lay = QVBoxLayout(content)
        # the table must be visible during and after a run: the tilt panel folds away on Run
        self.tilt_box = QCollapsible("Tilt series and selection")
        self.tilt_box.addWidget(self.tilt)
        self.tilt_box.expand(animate=False)
        lay.addWidget(self.tilt_box)
        lay.addWidget(methods_box)
        form = QFormLayout()
        form.addRow("Reference", self.reference)
        form.addRow("Device", self.device)
        form.addRow(self.halves)
        lay.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        note = QLabel(f"All methods that fit pixels hold out the same {HELDOUT:.0%} of "
                      "detector pixels.")
        note.setStyleSheet("color: gray;")
        lay.addWidget(note)
        lay.addWidget(self.table)
        after = QHBoxLayout()
        after.addWidget(self.side_by_side)
        after.addWidget(self.diff_button)
        after.addWidget(self.profile_button)
        lay.addLayout(after)
        lay.addWidget(self.profile)
        lay.addStretch(1)
        self.set_content(content)

        self.lives: list[LiveLayer] = []
        self.jobs: list[Job] = []
        self._recs: dict[int, Any] = {}
        self._queued: list[Job] | None = None
        self._hidden: list[Any] = []

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.controller.stop)
        self.side_by_side.toggled.connect(self._on_side_by_side)
        self.diff_button.clicked.connect(self.add_difference)
        self.profile_button.clicked.connect(self.add_profile_line)
        self._profile_layer: Any = None
        c = self.controller
        c.state_changed.connect(lambda s: self.stop_button.setEnabled(s == RunState.RUNNING))
        c.job_started.connect(self._on_job_started)
        c.step.connect(self._on_step)
        c.job_finished.connect(self._on_job_finished)
        c.failed.connect(self._on_failed)
        c.run_ended.connect(self._on_run_ended)
        c.warning.connect(notify_warning)
        layers = napari_viewer.layers
        layers.events.inserted.connect(self._refresh_references)
        layers.events.removed.connect(self._refresh_references)
        self.tilt.changed.connect(self._pick_ground_truth)
        self._refresh_references()
        self._pick_ground_truth()
        self.guard = WorkGuard(self, self.end_work)

    # -- line profiles ----------------------------------------------------------------
    def add_profile_line(self) -> Any:
        """A line across the middle of the first result at the current slice; returns the layer."""
        results = [lv.layer for lv in self.lives if lv.alive]
        if not results:
            notify_error("run a comparison first: the profile goes through its results")
            return None
        layer = results[0]
        if self._profile_layer is not None and self._profile_layer in self.viewer.layers:
            return self._profile_layer
        lo, hi = (np.asarray(e, float) for e in layer.extent.world)
        z = float(self.viewer.dims.point[-3])  # a (tilt, 1, y, x) series may add a 4th axis
        y = 0.5 * (lo[1] + hi[1])
        line = np.array([[z, y, lo[2] + 0.2 * (hi[2] - lo[2])], [z, y, lo[2] + 0.8 * (hi[2] - lo[2])]])
        shapes = self.viewer.add_shapes([line], shape_type="line", edge_color="yellow",
                                        edge_width=max(float(layer.scale[-1]), 1e-6),
                                        name="profile", ndim=3)
        shapes.mode = "direct"
        shapes.events.data.connect(lambda *_: self.update_profile())
        self._profile_layer = shapes
        self.update_profile()
        return shapes

    def update_profile(self) -> None:
        shapes = self._profile_layer
        if shapes is None or shapes not in self.viewer.layers or not len(shapes.data):
            return
        from .._napari.profiles import line_profile

        start, end = np.asarray(shapes.data[0], float)[[0, -1]]
        curves = []
        for row, lv in enumerate(self.lives):
            if lv.alive:
                d, v = line_profile(lv.layer, start, end)
                curves.append((self.table.results[row]["method"], d, v))
        unit = "nm" if any(lv.alive and lv.layer.metadata.get("pixel_size")
                           for lv in self.lives) else "px"
        self.profile.set_curves(curves, unit)

    # -- reference volumes -------------------------------------------------------------
    def _reference_candidates(self) -> list[Any]:
        from napari.layers import Image

        ours = {id(lv.layer) for lv in self.lives}
        return [
            lay
            for lay in reversed(list(self.viewer.layers))
            if isinstance(lay, Image)
            and lay.ndim == 3
            and id(lay) not in ours
            and lay.metadata.get(KIND_KEY) != TILT_SERIES
            and "difference_of" not in lay.metadata
        ]

    def _refresh_references(self, event: Any = None) -> None:
        current = self.reference.currentText()
        self.reference.blockSignals(True)
        self.reference.clear()
        self.reference.addItem(NO_REFERENCE)
        for lay in self._reference_candidates():
            self.reference.addItem(lay.name)
        i = self.reference.findText(current)
        self.reference.setCurrentIndex(max(0, i))
        self.reference.blockSignals(False)
        self._pick_ground_truth()

    def _pick_ground_truth(self) -> None:
        """Choose the ground truth named by a simulated series when no reference is set."""
        layer = self.tilt.layer()
        truth = None if layer is None else layer.metadata.get("ground_truth")
        if self.reference.currentText() == NO_REFERENCE and isinstance(truth, str):
            i = self.reference.findText(truth)
            if i > 0:
                self.reference.setCurrentIndex(i)

    def reference_layer(self) -> Any:
        name = self.reference.currentText()
        if name == NO_REFERENCE or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    # -- run --------------------------------------------------------------------------
    def make_jobs(self) -> list[Job]:
        """Validate the inputs and build one job per ticked method."""
        from ..engine import run

        req = self.tilt.request()
        chosen = [c for c in self.choices.values() if c.check.isChecked()]
        if not chosen:
            raise DataError("tick at least one method to compare")
        device = self.device.device()
        resolve_device(device)
        ref_layer = self.reference_layer()
        reference = None if ref_layer is None else np.asarray(ref_layer.data, dtype=np.float32)
        series, geometry, kwargs, source = req.series, req.geometry, req.kwargs, req.source
        if req.virtual is not None:  # recorded in the provenance: the frames kept that are virtual
            kwargs = {**kwargs, "virtual": req.virtual}
        if self.halves.isChecked():
            kwargs = {**kwargs, "halves": True}

        def evaluate(rec: Any) -> dict:
            vol = rec.last.volume
            out = rec.evaluate(vol)
            out.update(resolution_figures(rec))
            if reference is not None:
                if reference.shape == vol.shape:
                    out.update(rec.evaluate(vol, reference))
                else:
                    out["reference_note"] = (
                        f"reference {reference.shape} and result {vol.shape} differ in shape"
                    )
            out["iterations"] = rec.last.iteration if rec.method.capabilities.iterative else None
            out["stopped"] = bool(rec.stopped)
            return out

        jobs = []
        for c in chosen:
            m, its, params = c.method, c.iterations.value(), c.page.params()
            m.resolve(params)

            def make(m: Method = m, its: int = its, params: dict = params) -> Any:
                return run(
                    m.name,
                    series,
                    geometry,
                    iterations=its,
                    # pictures at the declared pace, however long the run (a live view)
                    every=m.run_defaults(params)[1],
                    device=device,
                    # a method that fits no pixels (WBP) would only warn that it ignores it
                    heldout=HELDOUT if m.capabilities.uses_mask else 0.0,
                    seed=SEED,
                    source=source,
                    preview=True,
                    **kwargs,
                    **params,
                )

            jobs.append(
                Job(
                    label=m.label,
                    make=make,
                    evaluate=evaluate,
                    info={
                        "series": req.name,
                        "source": source,
                        "device": device,
                        "method": m.name,
                        "iterative": m.capabilities.iterative,
                    },
                )
            )
        return jobs

    def run(self) -> None:
        try:
            jobs = self.make_jobs()
        except (TomopriorError, ValueError) as exc:
            notify_error(user_message(exc))
            return
        if self.controller.busy:
            if not ask_stop_and_restart(self, "A comparison"):
                return
            self._queued = jobs
            self.controller.stop()
            return
        self._start(jobs)

    def _start(self, jobs: list[Job]) -> None:
        self.side_by_side.setChecked(False)
        self.tilt_box.collapse(animate=False)
        self.jobs = jobs
        self.lives = [LiveLayer(self.viewer) for _ in jobs]
        self._recs = {}
        self.table.start_rows([j.label for j in jobs])
        self.progress.begin(len(jobs))
        self.controller.start(jobs)

    # -- controller events ---------------------------------------------------------------
    def _on_job_started(self, ev: JobStarted) -> None:
        self._recs[ev.index] = ev.rec
        self.table.set_status(ev.index, "starting")
        self.progress.job_started(ev.index, ev.job.label)

    def _show(self, index: int, step: Any, state: str, final: bool) -> None:
        rec, job = self._recs.get(index), self.jobs[index]
        if rec is None or step is None:
            return
        scale, translate, ps, unit = placement(rec)
        meta = result_metadata(
            rec,
            job.info["source"],
            final=final,
            step=step,
            series=job.info["series"],
            comparison=True,
        )
        name = layer_name(job.label, step, job.info["series"], state, job.info["iterative"])
        self.lives[index].show(
            step.volume, name=name, scale=scale, translate=translate, metadata=meta,
            units=(napari_unit(ps, unit),) * 3, final=final,
        )

    def _on_step(self, ev: JobStep) -> None:
        self._show(ev.index, ev.step, "running", final=False)
        self.table.set_status(ev.index, f"it {ev.step.iteration}")
        self.progress.show_step(ev.index, ev.step, ev.elapsed)

    def _on_job_finished(self, ev: JobFinished) -> None:
        self._show(ev.index, ev.rec.last, "stopped" if ev.stopped else "done", final=True)
        self.update_profile()
        note = ev.error or ev.results.get("reference_note", "")
        last = ev.rec.last
        objective = objective_text(last) if last is not None else ""
        self.table.set_results(ev.index, {**ev.results, "objective": objective}, note)
        if ev.error:
            notify_error(f"{ev.job.label}: the figures could not be computed: {ev.error}")

    def _on_failed(self, ev: RunFailed) -> None:
        label = ev.job.label if ev.job is not None else "comparison"
        notify_error(f"{label}: {ev.message}")
        if ev.job is not None:
            self.table.set_status(ev.index, "failed")

    def _on_run_ended(self, state: RunState) -> None:
        self.progress.end(state)
        for row, r in enumerate(self.table.results):
            if "reprojection_residual" not in r and self.table.item(row, 0) is not None:
                if self.table.item(row, 0).text().endswith("(queued)"):
                    self.table.set_status(row, "not run")
        queued, self._queued = self._queued, None
        if queued is not None:
            self._start(queued)
            return
        if any(lv.alive for lv in self.lives):
            self.side_by_side.setChecked(True)

    # -- side by side ------------------------------------------------------------------------
    def result_layers(self) -> list[Any]:
        return [lv.layer for lv in self.lives if lv.alive]

    def apply_shared_contrast(self) -> None:
        layers = self.result_layers()
        ref = self.reference_layer()
        if ref is not None:
            layers = [*layers, ref]
        if not layers:
            return
        limits = shared_limits([np.asarray(lay.data) for lay in layers])
        for lv in self.lives:
            lv.auto_contrast = False
        for lay, (lo, hi) in zip(layers, limits):
            lay.contrast_limits_range = (
                min(lo, lay.contrast_limits_range[0]),
                max(hi, lay.contrast_limits_range[1]),
            )
            lay.contrast_limits = (lo, hi)

    def _on_side_by_side(self, on: bool) -> None:
        v = self.viewer
        if not on:
            grid_of(v).enabled = False
            for lay in self._hidden:
                if lay in v.layers:
                    lay.visible = True
            self._hidden = []
            for lay in v.layers:
                show_name(lay, False)
            return
        shown = self.result_layers()
        if not shown:
            return
        ref = self.reference_layer()
        shown += [ref] if ref is not None else []
        shown += [lay for lay in v.layers if "difference_of" in lay.metadata]
        self.apply_shared_contrast()
        self._hidden = [lay for lay in v.layers if lay.visible and lay not in shown]
        for lay in self._hidden:
            lay.visible = False
        for lay in shown:
            lay.visible = True
            show_name(lay, True)
        v.dims.ndisplay = 2
        grid_of(v).enabled = True
        first = shown[0]
        lo, hi = first.extent.world[:, 0]
        v.dims.set_point(v.dims.ndim - 3, (lo + hi) / 2)
        v.reset_view()

    def add_difference(self) -> Any:
        """Add the selected row's volume minus the reference (or the first method)."""
        layers = self.result_layers()
        if not layers:
            notify_error("run a comparison first: there are no results to subtract")
            return None
        row = self.table.currentRow()
        row = row if 0 <= row < len(self.lives) and self.lives[row].alive else len(self.lives) - 1
        if not self.lives[row].alive:
            notify_error("the selected method has no result layer (it was removed or did not run)")
            return None
        layer = self.lives[row].layer
        base = self.reference_layer()
        if base is None:
            base = layers[0]
            if base is layer:
                notify_error(
                    "choose a reference volume, or select another row than the first method "
                    "(the difference is taken to the first method)"
                )
                return None
        label = f"{self.jobs[row].label} − {base.name}"
        try:
            diff = add_difference_layer(self.viewer, layer, base, label=label)
        except TomopriorError as exc:
            notify_error(str(exc))
            return None
        if grid_of(self.viewer).enabled:
            show_name(diff, True)
        return diff

    def end_work(self) -> bool:
        """Stop the comparison quietly (the widget, its dock or the viewer closes).

        Nothing more is shown; returns whether its thread has finished.
        """
        self._queued = None
        running = self.controller.busy
        ended = self.controller.close()
        if running:
            self.progress.end(RunState.STOPPED)
        return ended

    def closeEvent(self, event: Any) -> None:
        self.end_work()
        super().closeEvent(event)
