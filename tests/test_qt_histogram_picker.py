"""The grey-level picker of DART and TVR-DART: histogram, dragging, the method page, the widgets."""

import math

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import QPoint, Qt

from tomoprior.algorithms import METHODS
from tomoprior.errors import ParameterError

pytestmark = pytest.mark.gui

PLUGIN = "napari-tomoprior"


def three_levels(n: int = 32) -> np.ndarray:
    """Vacuum, a 0.4 shell and a 1.0 core, with a little noise."""
    v = np.zeros((n, n, n), np.float32)
    v[8:24, 8:24, 8:24] = 0.4
    v[12:20, 12:20, 12:20] = 1.0
    return v + 0.01 * np.random.default_rng(0).standard_normal(v.shape).astype(np.float32)


def drag(qtbot, picker, start: float, end: float) -> None:
    y = picker.height() // 2
    a, b = QPoint(round(picker.x_of(start)), y), QPoint(round(picker.x_of(end)), y)
    qtbot.mousePress(picker, Qt.LeftButton, pos=a)
    qtbot.mouseMove(picker, b)
    qtbot.mouseRelease(picker, Qt.LeftButton, pos=b)


def test_a_dragged_level_stays_between_its_neighbours(qtbot):
    from tomoprior._qt.histogram_picker import HistogramPicker

    picker = HistogramPicker()
    qtbot.addWidget(picker)
    picker.resize(300, 90)
    picker.show()
    picker.set_volume(three_levels())
    assert picker.counts.sum() > 0
    picker.set_levels((0.0, 0.4, 1.0))
    with qtbot.waitSignal(picker.levels_changed) as got:
        drag(qtbot, picker, 0.4, 0.7)
    lo, mid, hi = got.args[0]
    assert (lo, hi) == (0.0, 1.0) and mid == pytest.approx(0.7, abs=0.02)
    with qtbot.waitSignal(picker.levels_changed) as got:
        drag(qtbot, picker, 0.7, 5.0)  # past the next level: stops just below it
    assert 0.7 < got.args[0][1] < 1.0
    picker.grab()  # paints


def test_the_method_page_ties_the_picker_to_the_levels_field(qtbot):
    from tomoprior._qt.method_panel import MethodPage

    for name in ("dart", "tvr_dart"):
        page = MethodPage(METHODS[name])
        qtbot.addWidget(page)
        assert page.levels_panel is not None
    page = MethodPage(METHODS["dart"])
    qtbot.addWidget(page)
    page.show()
    panel, field = page.levels_panel, page.fields["levels"]
    assert page.params()["levels"] == "auto" and panel.picker.levels() == ()
    field.set("0,0.5,1")  # typed levels move the lines
    assert panel.picker.levels() == (0.0, 0.5, 1.0)
    panel.picker.resize(300, 90)
    with qtbot.waitSignal(panel.picker.levels_changed):
        drag(qtbot, panel.picker, 0.5, 0.3)
    lo, mid, hi = (float(v) for v in str(field.raw()).split(","))  # dragging writes the field
    assert (lo, hi) == (0.0, 1.0) and mid == pytest.approx(0.3, abs=0.03)
    assert page.params()["levels"] == field.raw()
    field.set("1,0")
    with pytest.raises(ParameterError, match=r"^Grey levels: levels must increase") as info:
        page.params()
    assert "\n" not in str(info.value)
    assert MethodPage(METHODS["sirt"]).levels_panel is None


def test_find_levels_on_a_layer_and_the_levels_a_run_found(make_napari_viewer, qtbot):
    from tomoprior._qt.method_panel import MethodPage

    viewer = make_napari_viewer()
    viewer.add_image(three_levels(), name="shell")
    page = MethodPage(METHODS["dart"])
    qtbot.addWidget(page)
    page.show()
    panel = page.levels_panel
    assert [panel.source.itemText(i) for i in range(panel.source.count())] == ["shell"]
    page.fields["n_levels"].set(3)
    panel.find()
    found = [float(v) for v in str(page.fields["levels"].raw()).split(",")]
    np.testing.assert_allclose(found, (0.0, 0.4, 1.0), atol=0.03)
    assert panel.picker.counts.sum() > 0
    # a layer made by a DART run: its levels and their fit, a poor fit in one warning line
    prov = {"method": "dart", "result": {"levels": "0.01,0.9", "level_fit": 0.4}}
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="dart result",
                     metadata={"provenance": prov})
    assert panel.source.currentText() == "dart result"  # the newest volume
    page.fields["levels"].set("auto")
    panel.refresh()
    assert panel.picker.levels() == (0.01, 0.9)
    text = panel.status.text()
    assert "0.01,0.9" in text and "0.40" in text and "poor" in text and "\n" not in text
    viewer.layers.remove("dart result")
    assert panel.source.currentText() == "shell"


@pytest.fixture
def widget(make_napari_viewer):
    from tomoprior._napari._layers import tilt_series_layer_data, tilt_series_metadata
    from tomoprior._qt.reconstruction import ReconstructionWidget
    from tomoprior.geometry import angles_from_range
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("spheres", 32, seed=0)
    series, geom = simulate(ph, angles_from_range(-60, 60, 10), seed=0, device="cpu")
    viewer = make_napari_viewer()
    md = tilt_series_metadata(angles=geom.angles, pixel_size=0.5, angle_source="test",
                              source="test")
    data, kwargs, _ = tilt_series_layer_data(series, md, "tiny")
    viewer.add_image(data, **kwargs)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    assert isinstance(w, ReconstructionWidget)
    w.controller.interval_ms = 0
    yield w
    w.controller.shutdown()


def test_invalid_levels_are_one_line_in_the_widget(widget, notes):
    w = widget
    w.method_panel.set_method("dart")
    w.method_panel.page.fields["levels"].set("0,nan")
    w.run_button.click()
    assert not w.controller.busy
    (msg,) = notes.errors()
    assert msg.startswith("Grey levels: levels must be finite") and "\n" not in msg


def test_a_dart_run_reports_its_levels_in_the_layer_and_the_picker(widget, qtbot, notes):
    w = widget
    w.method_panel.set_method("dart")
    page = w.method_panel.page
    page.iterations.setValue(4)
    page.every.setValue(2)
    page.fields["sirt_iterations"].set(10)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.controller.state.value == "done"
    assert not notes.errors()
    out = w.last_layer
    prov = out.metadata["provenance"]
    assert prov["method"] == "dart" and prov["parameters"]["levels"] == "auto"
    levels = [float(v) for v in prov["result"]["levels"].split(",")]
    assert len(levels) == 2 and levels[0] < levels[1] and math.isfinite(levels[1])
    panel = page.levels_panel
    # the widget's viewer is napari's proxy of the one the panel sees: compare names
    qtbot.waitUntil(lambda: getattr(panel.layer(), "name", None) == out.name, timeout=5_000)
    assert panel.source.currentText() == out.name  # renamed as the run went on
    panel.refresh()
    assert panel.picker.levels() == pytest.approx(levels, rel=1e-3)
    assert prov["result"]["levels"] in panel.status.text()


def test_the_comparison_puts_dart_beside_sirt(make_napari_viewer, qtbot, notes):
    from tomoprior._napari._layers import tilt_series_layer_data, tilt_series_metadata
    from tomoprior.geometry import angles_from_range
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("spheres", 24, seed=0)
    series, geom = simulate(ph, angles_from_range(-60, 60, 20), seed=0, device="cpu")
    viewer = make_napari_viewer()
    md = tilt_series_metadata(angles=geom.angles, pixel_size=0.5, angle_source="test",
                              source="test")
    data, kwargs, _ = tilt_series_layer_data(series, md, "tiny")
    viewer.add_image(data, **kwargs)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    assert {"dart", "tvr_dart"} <= set(w.choices)
    for name, c in w.choices.items():
        c.check.setChecked(name in ("sirt", "dart"))
        if name in ("sirt", "dart"):
            c.iterations.setValue(4)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=120_000)
    assert w.controller.state.value == "done"
    assert [r["method"] for r in w.table.results] == ["SIRT", "DART"]
    assert all(math.isfinite(r["reprojection_residual"]) for r in w.table.results)
    assert not notes.errors()
