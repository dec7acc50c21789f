"""Pieces of the Qt layer: registry-built parameter pages, controller, loss plot, messages."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("napari")

from tomoprior.algorithms import METHODS, Param
from tomoprior.algorithms._declare import method
from tomoprior.errors import GeometryError
from tomoprior.step import Step

pytestmark = pytest.mark.gui


def _descends(widget, ancestor):
    while widget is not None:
        if widget is ancestor:
            return True
        widget = widget.parentWidget()
    return False


@pytest.mark.parametrize("name", list(METHODS))
def test_every_registry_method_gets_a_page(qtbot, name):
    from tomoprior._qt.method_panel import MethodPage

    m = METHODS[name]
    page = MethodPage(m)
    qtbot.addWidget(page)
    assert set(page.fields) == {p.name for p in m.params}
    assert page.params() == m.resolve({})  # defaults survive the widgets
    assert page.iterations.value() == m.default_iterations
    assert page.every.value() == m.default_every
    for p in m.params:
        field = page.fields[p.name]
        assert (p.help or p.label) in field.widget.tooltip
        inside = page.collapsible is not None and _descends(field.widget.native, page.collapsible)
        assert inside == p.advanced


def test_iterations_follow_the_parameter_that_sets_them_unless_the_user_did(qtbot):
    """DIP-TV from the trained network defaults to 100 steps: the page follows its init."""
    from tomoprior._qt.method_panel import MethodPage

    page = MethodPage(METHODS["diptv"])
    qtbot.addWidget(page)
    assert page.iterations.value() == 1000
    page.fields["init"].widget.value = "pretrained"
    assert page.iterations.value() == 100
    page.fields["init"].widget.value = "warm"
    assert page.iterations.value() == 1000
    page.iterations.setValue(333)  # the user's own count stays
    page.fields["init"].widget.value = "pretrained"
    assert page.iterations.value() == 333


def test_a_registered_method_appears_without_special_code(qtbot, monkeypatch):
    from tomoprior._qt.method_panel import MethodPanel

    @method("fake", label="Fake", help="a test entry", params=(
        Param("k", "K", "an int", min=1, max=9),
        Param("mode", "Mode", "a choice", choices=("a", "b")),
        Param("w", "W", "a float", min=0.0, max=1.0, advanced=True),
        Param("lam", "λ", "auto or number", min=0.0, allow_auto=True, log=True),
    ))
    def fake_method(A, y, *, iterations=7, every=7, k=3, mode="a", w=0.5, lam=0.1):
        yield from ()

    fake = fake_method.__tomoprior_method__
    monkeypatch.setitem(METHODS, "fake", fake)
    panel = MethodPanel()
    qtbot.addWidget(panel)
    panel.set_method("fake")
    assert panel.method() is fake and panel.iterations() == 7
    assert panel.params() == {"k": 3, "mode": "a", "w": 0.5, "lam": 0.1}
    panel.page.fields["lam"].set("auto")
    panel.page.fields["mode"].set("b")
    assert panel.params()["lam"] == "auto" and panel.params()["mode"] == "b"
    panel.page.fields["lam"].set("much")
    with pytest.raises(ValueError, match=r"^λ: "):
        panel.params()
    panel.page.reset()
    assert panel.params()["lam"] == 0.1


def test_log_parameters_keep_small_values(qtbot):
    from tomoprior._qt.param_widgets import ParamField

    f = ParamField(Param("lr", "Learning rate", "Adam step", min=1e-6, max=1.0, log=True,
                         default=2e-3))
    qtbot.addWidget(f.widget.native)
    assert f.value() == pytest.approx(2e-3)
    f.set(3e-5)
    assert f.value() == pytest.approx(3e-5)


def test_loss_plot_paints(qtbot):
    from tomoprior._qt.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 110)
    plot.grab()  # empty
    for i in range(1, 20):
        plot.add(i, 1.0 / i, 2.0 / i if i % 2 else None)
    plot.add(20, float("nan"), -1.0)  # skipped on a log scale
    assert len(plot.train) == 19 and len(plot.val) == 10
    assert not plot.grab().isNull()


class _Rec:
    """A stand-in Reconstruction yielding ``n`` tiny steps."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at, self.i = n, fail_at, 0
        self.finished = self.stopped = False
        self.last = None
        self.device = "cpu"

    def __iter__(self):
        return self

    def __next__(self):
        if self.i == self.fail_at:
            raise GeometryError("bad geometry at step")
        if self.i >= self.n:
            self.finished = True
            raise StopIteration
        self.i += 1
        self.last = Step(iteration=self.i, volume=np.zeros((2, 2, 2), np.float32),
                         loss=1.0 / self.i, total=self.n)
        return self.last

    def close(self):
        if not self.finished:
            self.stopped = True


def _run(qtbot, controller, jobs):
    events = {"steps": [], "finished": [], "failed": [], "ended": []}
    controller.step.connect(events["steps"].append)
    controller.job_finished.connect(events["finished"].append)
    controller.failed.connect(events["failed"].append)
    controller.run_ended.connect(events["ended"].append)
    controller.start(jobs)
    qtbot.waitUntil(lambda: not controller.busy, timeout=20_000)
    return events


def test_controller_throttles_and_always_shows_the_last_step(qtbot):
    from tomoprior._qt.controller import Job, RunController, RunState

    c = RunController(interval_ms=60_000)
    ev = _run(qtbot, c, [Job("a", lambda: _Rec(50)), Job("b", lambda: _Rec(30))])
    assert c.steps_received == 80
    assert c.steps_shown <= 4  # first and last of each job
    last_a = [e for e in ev["steps"] if e.index == 0][-1]
    assert last_a.step.iteration == 50
    assert ev["steps"][-1].step.iteration == 30
    assert [f.index for f in ev["finished"]] == [0, 1]
    assert ev["ended"] == [RunState.DONE] and c.state == RunState.DONE
    c.start([Job("long", lambda: _Rec(10**9))])
    with pytest.raises(RuntimeError, match="in progress"):  # never two workers
        c.start([Job("other", lambda: _Rec(1))])
    c.stop()
    assert c.state == RunState.STOPPING
    qtbot.waitUntil(lambda: not c.busy, timeout=20_000)
    assert c.state == RunState.STOPPED



def test_controller_lets_the_first_picture_of_each_job_be_drawn_before_going_on(qtbot):
    """The worker waits after a job's first step until the main thread has shown it."""
    from tomoprior._qt.controller import Job, RunController

    received, seen_at_step2 = [], []

    class _Watched(_Rec):
        def __next__(self):
            if self.i == 1:  # computing step 2: has the main thread had step 1?
                seen_at_step2.append(len(received))
            return super().__next__()

    c = RunController(interval_ms=0)
    c.step.connect(received.append)
    _run(qtbot, c, [Job("a", lambda: _Watched(3)), Job("b", lambda: _Watched(3))])
    assert seen_at_step2 == [1, 4]  # job a's first step; job b's first (after a's three)


def test_hold_returns_on_stop_or_when_drawn():
    import threading

    from tomoprior._qt.controller import _hold

    drawn, stop = threading.Event(), threading.Event()
    stop.set()
    _hold(drawn, stop, limit=600.0)  # would wait ten minutes without the stop check
    drawn.set()
    _hold(drawn, threading.Event(), limit=600.0)


class _Phased(_Rec):
    """Steps in phases: 20 of "base", then 20 of "fit"."""

    def __next__(self):
        step = super().__next__()
        self.last = Step(iteration=step.iteration, volume=step.volume, loss=step.loss,
                         total=self.n, phase="base" if step.iteration <= 20 else "fit")
        return self.last


def test_controller_shows_the_last_picture_of_every_phase(qtbot):
    from tomoprior._qt.controller import Job, RunController

    c = RunController(interval_ms=60_000)
    ev = _run(qtbot, c, [Job("a", lambda: _Phased(40))])
    shown = [(e.step.phase, e.step.iteration) for e in ev["steps"]]
    assert ("base", 20) in shown and shown[-1] == ("fit", 40)
    assert len(shown) <= 4  # still throttled within a phase


def test_controller_reports_errors_as_events(qtbot):
    from tomoprior._qt.controller import Job, RunController, RunState

    def boom():
        raise MemoryError()

    c = RunController(interval_ms=0)
    ev = _run(qtbot, c, [Job("a", lambda: _Rec(5, fail_at=2)), Job("b", boom)])
    (failed,) = ev["failed"]
    assert failed.index == 0 and failed.message == "bad geometry at step"
    assert c.state == RunState.FAILED and ev["ended"] == [RunState.FAILED]
    ev = _run(qtbot, RunController(), [Job("b", boom, info={"device": "cpu"})])
    msg = ev["failed"][0].message
    assert msg.startswith("Out of memory") and "CPU" not in msg


def test_controller_evaluation_error_keeps_the_volume(qtbot):
    from tomoprior._qt.controller import Job, RunController

    def evaluate(rec):
        raise GeometryError("reference has another shape")

    ev = _run(qtbot, RunController(), [Job("a", lambda: _Rec(3), evaluate=evaluate)])
    (fin,) = ev["finished"]
    assert fin.error == "reference has another shape" and fin.rec.last.iteration == 3


linux_only = pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                                reason="per-thread nice values are Linux's")


def _nice() -> int:
    import os
    import threading

    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@linux_only
def test_workers_run_below_the_event_loop(qtbot):
    """Runs and tasks lower their own thread (and torch's team it starts), never the GUI's."""
    from tomoprior._priority import BACKGROUND_NICE
    from tomoprior._qt.controller import Job, RunController, TaskRunner

    seen = {}

    def make():
        seen["run"] = _nice()
        return _Rec(2)

    gui = _nice()
    _run(qtbot, RunController(), [Job("a", make)])
    runner = TaskRunner()
    runner.start(lambda progress: seen.setdefault("task", _nice()))
    qtbot.waitUntil(lambda: not runner.busy, timeout=20_000)
    assert seen["run"] >= BACKGROUND_NICE and seen["task"] >= BACKGROUND_NICE
    assert _nice() == gui < BACKGROUND_NICE


@linux_only
def test_lower_thread_priority_reaches_threads_started_after_it():
    import threading

    from tomoprior._priority import lower_thread_priority

    out = {}

    def child():
        out["child"] = _nice()

    def work():
        out["before"] = _nice()
        out["ok"] = lower_thread_priority(7)
        out["after"] = _nice()
        out["again"] = lower_thread_priority(3)  # never raises a priority back
        t = threading.Thread(target=child)
        t.start()
        t.join()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert out["ok"] and out["again"]
    assert out["after"] == max(7, out["before"]) == out["child"]


def test_messages():
    from tomoprior._qt.messages import user_message
    from tomoprior._qt.progress import format_seconds

    assert user_message(GeometryError("angles bad")) == "angles bad"
    assert user_message(ValueError("λ must be >= 0\nmore")) == "λ must be >= 0"
    assert user_message(RuntimeError("CUDA out of memory")).startswith("Out of memory")
    assert user_message(KeyError("x")).startswith("Reconstruction failed (KeyError)")
    assert format_seconds(3.21) == "3.2 s" and format_seconds(125) == "2 min 05 s"


def test_metrics_table_marks_the_best_value_and_says_which_way_is_better(qtbot):
    from tomoprior._qt.metrics_table import COLUMNS, MetricsTable

    t = MetricsTable()
    qtbot.addWidget(t)
    t.start_rows(["SIRT", "CS-TV", "DIP-TV"])
    t.set_results(0, {"ssim": 0.80, "reprojection_residual": 0.10, "seconds": 3.0})
    t.set_results(1, {"ssim": 0.90, "reprojection_residual": 0.12, "seconds": 9.0})
    t.set_results(2, {"ssim": 0.90, "reprojection_residual": float("nan"), "seconds": 30.0})
    col = {key: i for i, (key, *_r) in enumerate(COLUMNS)}
    assert t.best_rows("ssim") == [1, 2] and t.best_rows("reprojection_residual") == [0]
    bold = [t.item(r, col["ssim"]).font().bold() for r in range(3)]
    assert bold == [False, True, True]
    assert t.item(0, col["reprojection_residual"]).font().bold()
    assert t.horizontalHeaderItem(col["ssim"]).text().endswith("↑")
    assert "Lower is better" in t.horizontalHeaderItem(col["heldout_error"]).toolTip()
    assert t.best_rows("heldout_error") == []  # no values: nothing to mark


def test_loss_plot_scale_ignores_the_first_huge_losses_and_hover_reads_values(qtbot):
    from tomoprior._qt.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.add(1, 100.0)
    for it in range(2, 41):
        plot.add(it, 1e-2 * (1 - it / 100), 2e-2)
    x0, x1, y0, y1 = plot._bounds()
    assert y1 < 0  # the top of the scale is ~1e-2, not the first loss of 100
    assert "it 1" in plot.values_at(0.0) and "held-out" in plot.values_at(1.0)


def test_loss_plot_zooms_about_the_cursor_and_resets(qtbot):
    from qtpy.QtCore import QPoint, QPointF, Qt
    from qtpy.QtGui import QWheelEvent

    from tomoprior._qt.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 110)
    for it in range(1, 101):
        plot.add(it, 10 ** (-it / 20))  # 1e-0.05 .. 1e-5
    plot.zoom(1.0, 0.2)  # the last fifth of the run
    x0, x1, y0, y1 = plot._bounds()
    assert x1 == 100 and 75 <= x0 <= 85 and y1 < -3.5  # the loss axis fits the points in view
    plot.grab()
    wheel = QWheelEvent(QPointF(150, 50), QPointF(150, 50), QPoint(0, 0), QPoint(0, -120),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    for _ in range(20):
        plot.wheelEvent(wheel)  # zooming out past everything shows everything
    assert plot.view is None
    plot.zoom(0.5, 0.5)
    assert plot.view is not None
    qtbot.mouseDClick(plot, Qt.LeftButton)
    assert plot.view is None


def test_search_plot_marks_the_chosen_lambda(qtbot):
    from tomoprior._qt.search_plot import SearchPlot

    plot = SearchPlot()
    qtbot.addWidget(plot)
    assert plot.isHidden()
    plot.set_search([{"lam": 0.1, "val_loss": 3.0}, {"lam": 0.03, "val_loss": 1.0},
                     {"lam": 0.01, "val_loss": 2.0}])
    assert not plot.isHidden() and len(plot.points) == 3
    assert plot.best() == pytest.approx((np.log10(0.03), 0.0))
    plot.grab()  # paints without error


def test_widgets_run_under_the_binding_all_installs():
    """`[all]` installs napari with PyQt6; the suite runs under it wherever it is installed."""
    import importlib.util
    import re
    from pathlib import Path

    import qtpy

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    binding = re.search(r'"napari\[(pyqt6|pyqt5|pyside6)\]', text).group(1)
    name = {"pyqt6": "PyQt6", "pyqt5": "PyQt5", "pyside6": "PySide6"}[binding]
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed here")
    assert qtpy.API_NAME == name


def test_live_layer_contrast_follows_at_most_once_a_second_and_yields_to_the_user(
        make_napari_viewer, monkeypatch):
    from tomoprior._qt import live_layer as ll

    viewer = make_napari_viewer()
    live = ll.LiveLayer(viewer)
    vol = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    show = dict(name="r", scale=(2.0,) * 3, units=("nm",) * 3)
    layer = live.show(vol, **show)
    assert layer.contrast_limits == pytest.approx(ll.robust_limits(vol), rel=1e-6)
    assert [str(u) for u in layer.units] == ["nanometer"] * 3
    live.show(vol * 10, **show)  # the next step at once: each contrast change is a redraw
    assert layer.contrast_limits[1] < 2
    live.show(vol * 10, **show, final=True)  # the final picture always gets its contrast
    assert layer.contrast_limits[1] > 5
    monkeypatch.setattr(ll, "CONTRAST_EVERY_S", 0.0)
    live.show(vol * 20, **show)
    assert layer.contrast_limits[1] > 15
    layer.contrast_limits = (0.0, 1.0)  # the user's choice is kept from now on
    live.show(vol * 50, **show, final=True)
    assert tuple(layer.contrast_limits) == (0.0, 1.0)


def test_live_layer_final_picture_of_the_last_step_is_not_drawn_twice(make_napari_viewer):
    from tomoprior._qt.live_layer import LiveLayer

    viewer = make_napari_viewer()
    live = LiveLayer(viewer)
    vol = np.random.default_rng(1).random((4, 16, 16), dtype=np.float32)
    layer = live.show(vol, name="r running", scale=(1.0,) * 3)
    updates, contrasts = [], []
    layer.events.data.connect(updates.append)
    layer.events.contrast_limits.connect(contrasts.append)
    live.show(vol, name="r done", scale=(1.0,) * 3, metadata={"run_state": "finished"},
              final=True)
    assert updates == [] and contrasts == [] and layer.name == "r done"
    assert layer.metadata["run_state"] == "finished"
    live.show(vol.copy(), name="r done", scale=(1.0,) * 3)  # a new array is always shown
    assert len(updates) == 1


def test_progress_plots_the_residual_and_names_the_objective_apart(qtbot):
    """The comparable residual is drawn and shown; the method's objective only under its name."""
    from tomoprior._qt.controller import RunState
    from tomoprior._qt.progress import RunProgress

    p = RunProgress()
    qtbot.addWidget(p)
    p.begin(1)
    p.job_started(0, "CS-TV")
    vol = np.zeros((2, 2, 2), np.float32)
    name = "0.5||M(Ax-y)||^2 + lam*TV(x)"
    for it in (1, 2, 3):
        p.show_step(0, Step(iteration=it, volume=vol, loss=2000.0 / it, residual=0.1 / it,
                            objective_name=name, total=3, heldout=1e-3), 1.0)
    plot = p.loss
    assert plot.label == "residual" and "the same measure" in plot.toolTip()
    assert [round(10**y, 6) for _, y in plot.train] == [0.1, 0.05, round(0.1 / 3, 6)]
    hover = plot.values_at(1.0)
    assert hover.startswith("residual 0.03333") and f"{name} = 666.7" in hover
    assert "loss" not in hover
    assert "residual 0.03333" in p.status.text() and "666.7" not in p.status.text()
    assert p.status.toolTip() == f"{name} = 666.7"
    p.end(RunState.DONE)
    assert "Final residual 0.03333" in p.status.text()


def test_progress_falls_back_to_the_named_objective_without_a_residual(qtbot):
    from tomoprior._qt.progress import RunProgress

    p = RunProgress()
    qtbot.addWidget(p)
    p.begin(1)
    p.job_started(0, "INR")
    vol = np.zeros((2, 2, 2), np.float32)
    p.show_step(0, Step(iteration=1, volume=vol, loss=5.0, objective_name="MSE + TV", total=9),
                1.0)
    p.show_step(0, Step(iteration=2, volume=vol, loss=4.0, objective_name="MSE + TV", total=9),
                1.0)
    assert p.loss.label == "MSE + TV" and "not comparable" in p.loss.toolTip()
    assert len(p.loss.train) == 2 and "residual" not in p.status.text()
    assert p.loss.values_at(1.0).startswith("MSE + TV 4")
    # a residual arrives: the curve starts again, as the residual
    p.show_step(0, Step(iteration=3, volume=vol, loss=3.0, residual=0.2, total=9), 1.0)
    assert p.loss.label == "residual" and [10**y for _, y in p.loss.train] == pytest.approx([0.2])
    p.loss.grab()  # paints the long name elided


def test_metrics_headers_stay_whole_in_a_narrow_dock(qtbot):
    """The figures' headers are never cut; a long method name is elided, its tooltip whole."""
    from tomoprior._qt.metrics_table import COLUMNS, MetricsTable

    table = MetricsTable()
    qtbot.addWidget(table)
    name = "Restore + TV (learned prior) · 150 it"
    table.start_rows([name, "SIRT · 100 it"])
    table.resize(360, 200)
    table.show()
    qtbot.waitExposed(table)
    header = table.horizontalHeader()
    metrics = header.fontMetrics()
    for col in range(1, len(COLUMNS)):
        text = table.horizontalHeaderItem(col).text()
        assert header.sectionSize(col) >= metrics.horizontalAdvance(text), text
    table._set(0, 0, name)
    assert table.item(0, 0).toolTip().startswith(name)
