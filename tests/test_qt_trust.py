"""Half sets and ensembles in the widgets: the uncertainty layer, the resolution dock, the
comparison's resolution column, and the layout at laptop size (pytest-qt under Xvfb)."""

import math

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from tomoprior._napari._layers import tilt_series_layer_data, tilt_series_metadata
from tomoprior.geometry import angles_from_range

pytestmark = pytest.mark.gui

PLUGIN = "napari-tomoprior"


@pytest.fixture(scope="module")
def tiny():
    """A 32 px blobs phantom seen at 13 tilts (-60..60°, 10° steps)."""
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("blobs", 32, seed=0)
    return simulate(ph, angles_from_range(-60, 60, 10), seed=0, device="cpu")


def add_series(viewer, series, angles, name="tiny"):
    md = tilt_series_metadata(angles=angles, tilt_axis=0.0, pixel_size=0.5, angle_source="test",
                              source=f"test {name}")
    data, kwargs, _ = tilt_series_layer_data(series, md, name)
    return viewer.add_image(data, **kwargs)


@pytest.fixture
def widget(make_napari_viewer, tiny):
    viewer = make_napari_viewer()
    series, geom = tiny
    add_series(viewer, series, geom.angles)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    w.controller.interval_ms = 0
    w.method_panel.set_method("sirt")
    w.method_panel.page.iterations.setValue(20)
    w.method_panel.page.every.setValue(5)
    yield w
    w.controller.shutdown()


def test_trust_panel_options(qtbot):
    from tomoprior._qt.uncertainty import TrustPanel

    p = TrustPanel()
    qtbot.addWidget(p)
    assert p.options() == {} and p.ensemble.text() == "off"
    p.ensemble.setValue(3)
    assert p.options() == {"ensemble": 3} and "3 runs" in p.note.text()
    p.halves.setChecked(True)
    assert p.options() == {"halves": True, "ensemble": 3} and "6 runs" in p.note.text()
    p.ensemble.setValue(1)
    assert p.options() == {"halves": True}


def test_halves_add_an_uncertainty_layer_and_the_resolution_dock(widget, qtbot, notes):
    from tomoprior._qt.resolution_plot import ResolutionDock

    w, viewer = widget, widget.viewer
    w.trust.halves.setChecked(True)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.controller.state.value == "done" and not notes.errors()
    result, umap = w.last_layer, w.uncertainty.layer
    assert umap is not None and umap in viewer.layers and umap.name == f"{result.name} uncertainty"
    kinds = [lay for lay in viewer.layers if lay.name.endswith("uncertainty")]
    assert len(kinds) == 1  # updated in place, never a layer per step
    assert umap.data.shape == result.data.shape == (32, 32, 32)
    assert tuple(umap.scale) == tuple(result.scale) and tuple(umap.translate) == tuple(result.translate)
    assert np.all(np.asarray(umap.data) >= 0) and np.asarray(umap.data).max() > 0
    prov = result.metadata["provenance"]
    assert prov["trust"]["mode"] == "halves" and umap.metadata["provenance"] == prov
    assert umap.colormap.name == "inferno" and str(umap.blending) == "additive"
    w.trust.overlay.setChecked(False)  # a grey layer of its own
    assert umap.colormap.name == "gray" and str(umap.blending) == "translucent"
    qtbot.waitUntil(lambda: w.resolution_dock is not None, timeout=10_000)
    dock = w.resolution_dock
    assert isinstance(dock, ResolutionDock) and dock.plot.summary is not None
    assert "z (beam)" in dock.numbers.text() and "nm" in dock.numbers.text()
    assert viewer.layers.selection.active.name == result.name  # the result stays active
    dock.plot.grab()  # paints the curves and the polar plot


def test_an_ensemble_streams_the_map_as_it_forms(widget, qtbot):
    w = widget
    w.trust.ensemble.setValue(3)
    shown = []
    w.controller.step.connect(lambda ev: shown.append(ev.step.member))
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert {(0, 3), (1, 3), (2, 3)} <= set(shown) and shown[-1] is None  # then the final mean
    assert w.uncertainty.updates >= 2  # a map while the members ran, then the final one
    prov = w.last_layer.metadata["provenance"]
    assert len(prov["trust"]["members"]) == 3 and "resolution" not in prov["trust"]
    assert w.resolution_dock is None  # no half sets: no resolution


def test_at_laptop_size_run_and_stop_stay_in_sight_after_a_run(make_napari_viewer, tiny, qtbot,
                                                              tmp_path, notes):
    """The views open as a tab beside the Reconstruction dock, never squeezing it; the save
    hint is a line in the widget, not a toast over the canvas."""
    from qtpy.QtWidgets import QDockWidget

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(1366, 768)
    series, geom = tiny
    add_series(viewer, series, geom.angles)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    w.controller.interval_ms = 0
    w.method_panel.set_method("wbp")
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    docks = {d.windowTitle(): d for d in window.findChildren(QDockWidget)}
    qtbot.waitUntil(lambda: any("Orthogonal views" in t for t in
                                (d.windowTitle() for d in window.findChildren(QDockWidget))),
                    timeout=10_000)
    qtbot.wait(200)
    docks = {d.windowTitle(): d for d in window.findChildren(QDockWidget)}
    ours = next(d for t, d in docks.items() if t.startswith("Reconstruction"))
    views = next(d for t, d in docks.items() if t.startswith("Orthogonal views"))
    assert views in window.tabifiedDockWidgets(ours)  # a tab beside it, not under it
    assert ours.height() > 0.75 * window.height()
    shot = window.grab()
    assert (shot.width(), shot.height()) == (window.width(), window.height())
    shot.save(str(tmp_path / "laptop.png"))
    for button in (w.run_button, w.stop_button, w.save_button):
        seen = button.visibleRegion().boundingRect()
        assert (seen.width(), seen.height()) == (button.width(), button.height()), button.text()
        corner = button.mapTo(window, button.rect().bottomRight())
        assert 0 <= corner.x() < window.width() and 0 <= corner.y() < window.height()
    assert w.save_hint.isVisible() and "Save result" in w.save_hint.text()
    assert not any("Save result" in m for _, m in notes)  # no toast over the canvas


def test_the_comparison_adds_resolution_xy_and_z(make_napari_viewer, tiny, qtbot):
    viewer = make_napari_viewer()
    series, geom = tiny
    add_series(viewer, series, geom.angles)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    for name, c in w.choices.items():
        c.check.setChecked(name in ("wbp", "sirt"))
    w.choices["sirt"].iterations.setValue(10)
    w.halves.setChecked(True)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=120_000)
    assert w.controller.state.value == "done"
    from tomoprior._qt.metrics_table import COLUMNS

    col = [key for key, *_ in COLUMNS].index("resolution")
    assert w.table.horizontalHeaderItem(col).text() == "Resolution xy / z"
    for row in range(2):
        r = w.table.results[row]
        assert r["resolution_xy"] > 0 and r["resolution_z"] > 0 and r["resolution_unit"] == "nm"
        assert w.table.item(row, col).text() == r["resolution"] and r["resolution"].endswith("nm")
    assert math.isfinite(w.table.results[1]["heldout_error"])  # SIRT's halves hold pixels out
    for lay in w.result_layers():
        assert lay.metadata["provenance"]["trust"]["mode"] == "halves"


def test_the_resolution_plot_paints_with_and_without_a_summary(qtbot):
    from tomoprior._qt.resolution_plot import ResolutionPlot, resolution_text
    from tomoprior.resolution import directional_fsc

    rng = np.random.default_rng(0)
    a = rng.standard_normal((24, 24, 24)).astype(np.float32)
    s = directional_fsc(a, a + rng.standard_normal(a.shape).astype(np.float32),
                        pixel_size=0.5).summary()
    plot = ResolutionPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 190)
    plot.grab()
    plot.set_summary(s)
    image = plot.grab().toImage()
    assert image.width() == 400
    assert "x-y" in resolution_text(s) and "(FSC 0.143)" in resolution_text(s)
    assert "½-bit" in resolution_text(s, "half-bit")
