"""The "Fill in tilts" part of the Reconstruction widget (pytest-qt under Xvfb)."""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from tomoprior._napari._layers import tilt_series_layer_data, tilt_series_metadata

pytestmark = pytest.mark.gui

PLUGIN = "napari-tomoprior"
ANGLES = [-40.0, -20.0, 0.0, 20.0, 40.0]


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    series = rng.random((5, 24, 32), dtype=np.float32)
    md = tilt_series_metadata(angles=ANGLES, tilt_axis=0.0, pixel_size=0.5, angle_source="test",
                              source="test tiny")
    data, kwargs, _ = tilt_series_layer_data(series, md, "tiny")
    viewer.add_image(data, **kwargs)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    yield w
    w.fill.task.wait(30)
    w.controller.shutdown()


def _fill(w, qtbot, factor=2, method="linear"):
    w.fill.factor.setValue(factor)
    w.fill.method.setCurrentIndex(w.fill.method.findData(method))
    w.fill.button.click()
    qtbot.waitUntil(lambda: not w.fill.task.busy, timeout=60_000)


def test_fill_in_adds_a_denser_layer_with_virtual_frames_flagged(widget, qtbot, notes):
    w, viewer = widget, widget.viewer
    source = viewer.layers["tiny"]
    before = np.array(source.data, copy=True)
    _fill(w, qtbot, factor=4, method="linear")
    assert not notes.errors()
    layer = w.fill.layer
    assert layer.name == viewer.layers[-1].name == "tiny filled ×4 (linear)"
    assert w.tilt.layer().name == "tiny"  # Run still reconstructs the series it had
    md = layer.metadata
    assert layer.data.shape == (17, 1, 24, 32) and md["tomoprior_kind"] == "tilt_series"
    assert md["angles"] == list(np.arange(-40.0, 40.1, 5.0))
    assert md["virtual_frames"] == [i for i in range(17) if i % 4]
    assert md["interpolation"]["method"] == "linear"
    assert md["interpolation"]["measured"] == [i % 4 == 0 for i in range(17)]
    assert np.array_equal(layer.data[::4], before)
    assert np.array_equal(source.data, before)  # the user's layer is untouched
    assert tuple(layer.scale) == pytest.approx((1.0, 0.5 * 32, 0.5, 0.5))


def test_the_canvas_marks_virtual_frames(widget, qtbot):
    w, viewer = widget, widget.viewer
    _fill(w, qtbot, factor=2, method="linear")
    viewer.layers.selection.active = viewer.layers[-1]
    viewer.dims.set_current_step(0, 1)
    text = viewer.text_overlay.text
    assert text == "tiny filled ×2 (linear): tilt 2/9 at -30° · VIRTUAL (linear)"
    assert viewer.text_overlay.color.tolist()[:3] != [1.0, 1.0, 1.0]
    viewer.dims.set_current_step(0, 2)
    assert viewer.text_overlay.text == "tiny filled ×2 (linear): tilt 3/9 at -20°"
    viewer.layers.selection.active = viewer.layers["tiny"]
    viewer.dims.set_current_step(0, 1)
    assert viewer.text_overlay.text == "tiny: tilt 2/5 at -20°"


def test_fill_in_uses_the_kept_tilts_and_a_step(widget, qtbot):
    w = widget
    w.tilt.increment.setValue(40)  # keep -40, 0, 40
    w.fill.mode.setCurrentIndex(1)
    w.fill.step.setValue(10.0)
    w.fill.method.setCurrentIndex(w.fill.method.findData("linear"))
    w.fill.button.click()
    qtbot.waitUntil(lambda: not w.fill.task.busy, timeout=60_000)
    assert w.fill.layer.metadata["angles"] == list(np.arange(-40.0, 40.1, 10.0))


def test_fill_in_with_a_bad_model_shows_one_error(widget, qtbot, notes, monkeypatch, tmp_path):
    from tomoprior.interpolation import _model

    monkeypatch.setattr(_model, "default_model_path", lambda: tmp_path / "missing.pt")
    _fill(widget, qtbot, factor=2, method="learned")
    assert widget.fill.layer is None
    assert any("model file not found" in m for m in notes.errors())


def test_a_run_from_a_filled_in_series_records_its_virtual_frames(widget, qtbot, notes):
    w = widget
    assert w.tilt.virtual_label.isHidden()  # the measured series has none
    _fill(w, qtbot, factor=2, method="linear")  # 9 frames: -40, -30, ..., 40; odd ones virtual
    w.tilt.set_layer(w.fill.layer)
    assert not w.tilt.virtual_label.isHidden()
    assert w.tilt.virtual_label.text() == "4 of 9 frames are virtual (linear)"
    w.tilt.range_min.setValue(-25)  # keeps -20 .. 40: frames 2 to 8
    w.method_panel.set_method("sirt")
    w.method_panel.page.iterations.setValue(2)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.controller.state.value == "done"
    prov = w.last_layer.metadata["provenance"]
    assert prov["kept_tilts"] == [2, 3, 4, 5, 6, 7, 8]
    virtual = prov["virtual_frames"]
    assert virtual["indices"] == [3, 5, 7] and virtual["method"] == "linear"
    assert virtual["positions"] == [1, 3, 5] and virtual["count"] == 3
    assert not notes.errors()


def test_virtual_frames_are_read_from_either_form_of_metadata():
    from tomoprior._qt.fill_tilts import virtual_frames

    filled = {"virtual_frames": [3, 1], "interpolation": {"method": "learned"}}
    assert virtual_frames(filled) == {"indices": [1, 3], "method": "learned"}
    read = {"virtual_frames": {"indices": [2], "method": "reproject", "measured": 4}}
    assert virtual_frames(read) == {"indices": [2], "method": "reproject"}
    assert virtual_frames({"virtual_frames": []}) is None and virtual_frames({}) is None
