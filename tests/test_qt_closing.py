"""Closing the viewer, or removing a dock, ends its runs quietly (pytest-qt under Xvfb).

Each test starts work that would go on for minutes, closes the viewer or
removes the dock while it runs, and checks that the worker thread has
finished when the call returns, that nothing more reaches the widgets, and
that nothing was printed, raised in a thread or shown as an error.
"""

import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from tomoprior._napari._layers import tilt_series_layer_data, tilt_series_metadata
from tomoprior.geometry import angles_from_range

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_thread")]

PLUGIN = "napari-tomoprior"
FOREVER = 10**6  # iterations: a run that only a stop ends
QUIET_MS = 300  # how long the event loop runs after the close, for late events to show


@pytest.fixture(scope="module")
def tiny():
    """A 32 px blobs phantom seen at 13 tilts (-60..60°, 10° steps)."""
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("blobs", 32, seed=0)
    return simulate(ph, angles_from_range(-60, 60, 10), seed=0, device="cpu")


@pytest.fixture
def viewer(make_napari_viewer, tiny):
    v = make_napari_viewer()
    series, geom = tiny
    md = tilt_series_metadata(angles=geom.angles, tilt_axis=0.0, pixel_size=0.5,
                              angle_source="test", source="test tiny")
    data, kwargs, _ = tilt_series_layer_data(series, md, "tiny")
    v.add_image(data, **kwargs)
    return v


@pytest.fixture
def quiet(capfd, monkeypatch, notes, recwarn):
    """``check()`` asserts that nothing went wrong out of sight while work ended."""
    caught = []
    monkeypatch.setattr(sys, "unraisablehook", caught.append)
    monkeypatch.setattr(threading, "excepthook", caught.append)
    capfd.readouterr()

    def check():
        err = capfd.readouterr().err
        for bad in ("Traceback", "has been deleted", "RuntimeError"):
            assert bad not in err, err
        assert not caught, caught
        assert not notes.errors()
        assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]

    return check


def started(qtbot, controller):
    """Wait for a few steps of the running job; its worker, Reconstruction and step list."""
    recs, steps = [], []
    controller.job_started.connect(lambda ev: recs.append(ev.rec))
    controller.step.connect(steps.append)
    worker = controller._worker
    assert worker is not None
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=60_000)
    return worker, recs, steps


def settled(qtbot, worker, steps):
    """The worker has finished already; no step arrives afterwards."""
    assert not worker.is_running
    n = len(steps)
    qtbot.wait(QUIET_MS)
    assert len(steps) == n


def reconstruction(viewer):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    w.controller.interval_ms = 0
    w.method_panel.set_method("sirt")
    w.method_panel.page.iterations.setValue(FOREVER)
    w.method_panel.page.every.setValue(1)
    return w


def test_closing_the_viewer_ends_a_run_quietly(viewer, qtbot, quiet):
    w = reconstruction(viewer)
    w.run_button.click()
    worker, recs, steps = started(qtbot, w.controller)
    viewer.close()  # napari deletes the window and its widgets before it returns
    assert recs[0].stopped  # closed in the worker, which has finished
    assert w.guard.ended == 1
    settled(qtbot, worker, steps)
    quiet()


def test_removing_the_reconstruction_dock_ends_its_run_quietly(viewer, qtbot, quiet):
    w = reconstruction(viewer)
    w.run_button.click()
    worker, recs, steps = started(qtbot, w.controller)
    (result,) = [lay for lay in viewer.layers if lay.metadata.get("tomoprior_kind") == "volume"]
    viewer.window.remove_dock_widget(w)
    assert recs[0].stopped and not w.controller.busy
    settled(qtbot, worker, steps)
    assert result in viewer.layers  # the last volume stays
    assert w.guard.ended == 1
    quiet()


def test_removing_the_comparison_dock_ends_its_run_quietly(viewer, qtbot, quiet):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    w.controller.interval_ms = 0
    for name, choice in w.choices.items():
        choice.check.setChecked(name in ("sirt", "wbp"))
        choice.iterations.setValue(FOREVER if name == "sirt" else 1)
    w.run_button.click()
    worker, recs, steps = started(qtbot, w.controller)
    viewer.window.remove_dock_widget(w)
    assert recs[-1].stopped
    settled(qtbot, worker, steps)
    (row,) = [i for i, job in enumerate(w.jobs) if job.info["method"] == "sirt"]
    assert "reprojection_residual" not in w.table.results[row]  # no figures after the close
    quiet()


def slow_task(progress, *args, **kwargs):
    """Reports progress until it is told to stop (by raising from ``progress``)."""
    while True:
        progress("working")
        time.sleep(0.01)


def test_removing_the_alignment_dock_ends_its_task_quietly(viewer, qtbot, quiet, monkeypatch):
    monkeypatch.setattr("tomoprior._qt.alignment.align",
                        lambda *a, progress, **k: slow_task(progress))
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Alignment")
    messages = []
    w.task.message.connect(messages.append)
    w.align_button.click()
    worker = w.task._worker
    qtbot.waitUntil(lambda: len(messages) >= 3, timeout=30_000)
    viewer.window.remove_dock_widget(w)
    assert not w.task.busy
    settled(qtbot, worker, messages)
    assert w.status.text() == "Stopped; nothing was changed."  # not "Done": no result came
    quiet()


def test_closing_the_viewer_ends_a_fill_in_quietly(viewer, qtbot, quiet, monkeypatch):
    monkeypatch.setattr("tomoprior.interpolation.interpolate",
                        lambda *a, progress, **k: slow_task(progress))
    w = reconstruction(viewer)
    w.fill.method.setCurrentIndex(w.fill.method.findData("linear"))
    messages = []
    w.fill.task.message.connect(messages.append)
    w.fill.button.click()
    worker = w.fill.task._worker
    qtbot.waitUntil(lambda: len(messages) >= 3, timeout=30_000)
    viewer.close()
    settled(qtbot, worker, messages)
    assert w.fill.layer is None
    quiet()


def test_a_closed_widget_can_run_again(viewer, qtbot, quiet):
    """close() ends one run; the controller starts the next as usual."""
    w = reconstruction(viewer)
    w.run_button.click()
    worker, _, steps = started(qtbot, w.controller)
    assert w.end_work()
    assert not w.stop_button.isEnabled() and w.progress.status.text().startswith("Stopped")
    settled(qtbot, worker, steps)
    w.method_panel.page.iterations.setValue(4)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.controller.state.value == "done"
    assert np.isfinite(w.last_layer.data).all()
    quiet()


class _FromTheUser:
    """An event as the window system sends it (``spontaneous``)."""

    def __init__(self, kind):
        self.kind = kind

    def type(self):
        return self.kind

    def spontaneous(self):
        return True


def test_the_guard_waits_for_a_close_the_user_may_refuse_and_follows_the_dock(qtbot):
    """The user's close ends the work once it hides the window; leaving the dock ends it."""
    from qtpy.QtCore import QEvent, Qt
    from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

    from tomoprior._qt.closing import WorkGuard

    window = QMainWindow()
    qtbot.addWidget(window)
    inner, ends = QWidget(), []
    guard = WorkGuard(inner, lambda: ends.append(1) or True)
    dock = QDockWidget("work")
    dock.setWidget(inner)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.show()
    qtbot.waitExposed(window)
    guard.eventFilter(window, _FromTheUser(QEvent.Type.Close))  # napari asks...
    guard.eventFilter(window, _FromTheUser(QEvent.Type.Hide))  # ...the user minimises instead
    assert ends == []
    window.hide()  # the close went through: the window is hidden by it
    assert ends == [1]
    window.show()
    window.hide()  # hidden for another reason: the work goes on
    assert ends == [1]
    inner.setParent(None)  # napari removes the dock
    assert ends == [1, 1] and guard.ended == 2
    inner.deleteLater()
