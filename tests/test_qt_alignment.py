"""The Alignment dock widget (pytest-qt under Xvfb), created through the manifest."""

import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from tomoprior._napari._layers import (
    geometry_from_metadata,
    tilt_series_layer_data,
    tilt_series_metadata,
)
from tomoprior.geometry import angles_from_range

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_thread")]

PLUGIN = "napari-tomoprior"
WAIT = 120_000  # ms; generous: the machine is shared


@pytest.fixture(scope="module")
def misaligned():
    """Pt on carbon, 32 px, ±60° every 6°, drift up to 2 px, axis off by 1.5°."""
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("pt_haadf", 32, supersample=2)
    series, true = simulate(
        ph, angles_from_range(-60, 60, 6), shifts=2.0, axis_error=1.5, seed=0, device="cpu"
    )
    return series, true


def add_series(viewer, series, angles, name="tiny", pixel_size=0.5):
    md = tilt_series_metadata(angles=angles, tilt_axis=0.0, pixel_size=pixel_size,
                              angle_source="test", source=f"test {name}")
    data, kwargs, _ = tilt_series_layer_data(series, md, name)
    return viewer.add_image(data, **kwargs)


def open_widget(viewer):
    from tomoprior._qt.alignment import AlignmentWidget

    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Alignment")
    assert isinstance(w, AlignmentWidget)
    w.device.combo.setCurrentText("cpu")
    return w


@pytest.fixture
def widget(make_napari_viewer, misaligned):
    viewer = make_napari_viewer()
    add_series(viewer, misaligned[0], misaligned[1].angles)
    w = open_widget(viewer)
    yield w
    w.shutdown()


def aligned_layers(viewer):
    return [lay for lay in viewer.layers if "alignment" in lay.metadata]


def run_alignment(w, qtbot):
    w.align_button.click()
    assert w.task.busy
    qtbot.waitUntil(lambda: not w.task.busy, timeout=WAIT)
    # the preview of the found axis follows
    qtbot.waitUntil(lambda: w.previews >= 1 and not w.preview_task.busy, timeout=WAIT)


def test_smoke_through_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    w = open_widget(viewer)
    assert [w.method.itemData(i) for i in range(w.method.count())] == ["xcorr", "com", "pm"]
    assert w.tilt.layer() is None
    assert not w.stop_button.isEnabled() and not w.save_button.isEnabled()
    assert not w.plot.has_data
    w.method.setCurrentIndex(2)
    assert w.rounds.isEnabled() and "projection matching" in w.method_help.text()
    w.method.setCurrentIndex(1)
    assert not w.com.isEnabled() and not w.rounds.isEnabled()
    assert "stretch" not in w.options() and "rounds" not in w.options()


def test_align_makes_a_new_layer_and_shows_shifts_and_axis(widget, qtbot, notes, misaligned):
    w, viewer = widget, widget.viewer
    user = viewer.layers["tiny"]
    before = np.array(user.data, copy=True)
    meta_before = json.dumps(user.metadata, sort_keys=True, default=str)
    messages = []
    w.task.message.connect(messages.append)
    run_alignment(w, qtbot)
    assert w.task.state.value == "done" and not notes.errors()
    assert messages and messages[-1].startswith("done: axis")
    assert "Done" in w.status.text() and "Alignment" in str(viewer.status)
    (out,) = aligned_layers(viewer)
    assert out.name == "tiny aligned" and out != user
    assert out.data.shape == user.data.shape and np.isfinite(out.data).all()
    assert tuple(out.scale) == pytest.approx(tuple(user.scale))
    md = out.metadata
    assert md["tomoprior_kind"] == "tilt_series" and md["tilt_axis"] == 0.0
    assert "shifts" not in md  # the aligned images need no more shifts
    g = geometry_from_metadata(md, 21)  # what the Reconstruction widget will use
    assert g.tilt_axis == 0.0 and not g.shifts.any()
    assert md["angles"] == pytest.approx(misaligned[1].angles)
    al = md["alignment"]
    assert np.shape(al["shifts"]) == (21, 2) and np.abs(al["shifts"]).max() > 0.5
    assert al["tilt_axis"] == pytest.approx(w.base.found.tilt_axis)
    assert abs(al["tilt_axis"]) < 5 and al["report"]["method"] == "xcorr"
    # the user's layer is untouched
    np.testing.assert_array_equal(user.data, before)
    assert json.dumps(user.metadata, sort_keys=True, default=str) == meta_before
    # shift plot and axis text
    assert w.plot.has_data and w.plot.shifts.shape == (21, 2)
    assert f"{al['tilt_axis']:+.2f}°" in w.summary.text()
    assert "offset" in w.summary.text()
    assert w.save_button.isEnabled()
    # the slider sits on the found axis; the preview shows it below the series
    assert w.angle.value() == pytest.approx(al["tilt_axis"], abs=0.01)
    prev = viewer.layers["tiny axis preview"]
    assert prev.ndim == 2 and prev.data.shape[0] == 32
    assert prev.translate[0] > 32 * 0.5  # below the series


def test_axis_slider_updates_the_preview_in_place(widget, qtbot):
    w, viewer = widget, widget.viewer
    assert "tiny axis preview" not in viewer.layers
    w.angle.setValue(w.angle.value() + 3.0)  # before any alignment: around the nominal axis
    assert w.debounce.isActive() and w.previews == 0  # debounced, not yet computed
    qtbot.waitUntil(lambda: w.previews == 1 and not w.preview_task.busy, timeout=WAIT)
    layer = viewer.layers["tiny axis preview"]
    first = np.array(layer.data, copy=True)
    assert layer.metadata["tilt_axis"] == pytest.approx(3.0)
    n = len(viewer.layers)
    events = []
    layer.events.data.connect(lambda e: events.append(1))
    for v in (-1.0, -2.0, -4.0):  # quick moves: one preview after the last
        w.angle.setValue(v)
    w.offset.setValue(1.5)
    qtbot.waitUntil(lambda: w.previews >= 2 and not w.preview_task.busy
                    and not w.debounce.isActive(), timeout=WAIT)
    assert len(viewer.layers) == n
    assert viewer.layers["tiny axis preview"] == layer
    assert events and layer.metadata["tilt_axis"] == pytest.approx(-4.0)
    assert layer.metadata["extra_offset"] == pytest.approx(1.5)
    assert layer.data.shape == first.shape and not np.allclose(layer.data, first)


def test_use_this_axis_and_save_transforms(widget, qtbot, tmp_path, notes, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    from tomoprior.alignment import read_transforms

    w, viewer = widget, widget.viewer
    w.tilt.binning.setCurrentIndex(0)
    run_alignment(w, qtbot)
    (out,) = aligned_layers(viewer)
    found = w.base.found.tilt_axis
    w.angle.setValue(found + 1.0)
    w.use_button.click()
    qtbot.waitUntil(lambda: not w.task.busy, timeout=WAIT)
    assert aligned_layers(viewer) == [out]  # the aligned layer is updated in place
    assert out.metadata["alignment"]["tilt_axis"] == pytest.approx(found + 1.0)
    assert "set by hand" in w.summary.text()
    paths = w.save_transforms(tmp_path / "tiny")
    assert sorted(p.suffix for p in paths) == [".json", ".tlt", ".xf"]
    assert all(p.exists() for p in paths)
    back = read_transforms(tmp_path / "tiny.json")
    assert back["tilt_axis"] == pytest.approx(found + 1.0)
    assert np.shape(back["shifts"]) == (21, 2)
    assert len((tmp_path / "tiny.xf").read_text().splitlines()) == 21
    # the button asks for a file name, then writes the three files next to it
    chosen = str(tmp_path / "dialog.xf")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (chosen, ""))
    w.save_button.click()
    assert all((tmp_path / f"dialog{ext}").exists() for ext in (".xf", ".tlt", ".json"))
    assert any("Saved dialog.xf" in m for _, m in notes)
    assert not notes.errors()


def test_binned_alignment_scales_the_layer(widget, qtbot):
    w, viewer = widget, widget.viewer
    w.tilt.binning.setCurrentIndex(1)  # 2×: 16 px images, the smallest the alignment takes
    w.method.setCurrentIndex(1)  # com
    w.axis_search.setChecked(False)
    run_alignment(w, qtbot)
    assert w.task.state.value == "done"
    (out,) = aligned_layers(viewer)
    assert out.data.shape == (21, 1, 16, 16)
    assert tuple(out.scale) == pytest.approx((1.0, 16.0, 1.0, 1.0))  # 0.5 nm × 2
    assert out.metadata["pixel_size"] == pytest.approx(1.0)
    assert out.metadata["alignment"]["binning"] == 2
    assert out.metadata["alignment"]["report"]["input_binning"] == 2


def test_stop_discards_the_run(widget, qtbot, notes):
    w, viewer = widget, widget.viewer
    w.method.setCurrentIndex(2)  # pm: the longest
    w.align_button.click()
    qtbot.waitUntil(lambda: w.stop_button.isEnabled(), timeout=WAIT)
    w.stop_button.click()
    assert w.task.state.value in ("stopping", "stopped")
    qtbot.waitUntil(lambda: not w.task.busy, timeout=WAIT)
    assert w.task.state.value == "stopped"
    assert not aligned_layers(viewer) and "Stopped" in w.status.text()
    assert not notes.errors() and w.align_button.isEnabled()


def test_no_layer_gives_a_notification(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    w = open_widget(viewer)
    w.align_button.click()
    assert not w.task.busy
    assert any("no tilt series" in m for m in notes.errors())
    w.use_button.click()
    assert not w.task.busy
    with pytest.raises(Exception, match="align the series first"):
        w.save_transforms("nowhere")


def test_2d_layer_gives_a_notification(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="flat")
    w = open_widget(viewer)
    w.align_button.click()
    assert not w.task.busy
    assert any("2D" in m and "3D stack" in m for m in notes.errors())


def test_angle_mismatch_gives_a_notification(widget, misaligned, notes):
    w, viewer = widget, widget.viewer
    layer = add_series(viewer, misaligned[0], misaligned[1].angles[:-1], name="short")
    w.tilt.set_layer(layer)
    w.align_button.click()
    assert not w.task.busy
    assert any("20 tilt angles for 21 images" in m for m in notes.errors())


def test_worker_errors_are_one_line_notifications(widget, qtbot, notes, monkeypatch):
    def broken(*a, **k):
        raise KeyError("boom\nwith a long second line")

    monkeypatch.setattr("tomoprior._napari.align_model.align_series", broken)
    w = widget
    w.align_button.click()
    qtbot.waitUntil(lambda: not w.task.busy, timeout=WAIT)
    assert w.task.state.value == "failed"
    (msg,) = notes.errors()
    assert msg.startswith("Alignment failed (KeyError)") and "\n" not in msg
    assert not aligned_layers(w.viewer) and w.align_button.isEnabled()


def test_hand_geometry_and_preview_model(misaligned):
    """The Qt-free model: a hand-set axis turns the shifts; the preview is three slices."""
    from tomoprior._napari.align_model import hand_geometry, preview_image
    from tomoprior.alignment import AlignmentError
    from tomoprior.geometry import TiltGeometry

    series, true = misaligned
    base = TiltGeometry(true.angles, tilt_axis=1.0, shifts=np.ones((21, 2)))
    assert hand_geometry(base, 1.0, 0.0) is base
    g = hand_geometry(base, 3.0, 2.0)
    assert g.tilt_axis == 3.0 and g.shifts.shape == (21, 2)
    assert np.allclose(g.shifts[10], 0.0)  # the reference tilt (0°) keeps no correction
    with pytest.raises(AlignmentError, match="quarter turn"):
        hand_geometry(base, 50.0)
    image, b = preview_image(series, g, device="cpu", gap=4)
    assert b == 1 and image.shape == (32, 3 * 32 + 2 * 4)
    assert image.min() >= 0 and image.max() <= 1
