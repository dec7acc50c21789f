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
