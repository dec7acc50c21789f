"""The Compare methods dock widget (pytest-qt under Xvfb), created through the manifest."""

import math

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from tomoprior._napari._layers import (
    tilt_series_layer_data,
    tilt_series_metadata,
    volume_layer_data,
    volume_metadata,
)
from tomoprior.geometry import angles_from_range

pytestmark = pytest.mark.gui

PLUGIN = "napari-tomoprior"


@pytest.fixture(scope="module")
def tiny():
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("blobs", 32, seed=0)
    series, geom = simulate(ph, angles_from_range(-60, 60, 10), seed=0, device="cpu")
    return series, geom, ph.coarse().volume


@pytest.fixture
def viewer(make_napari_viewer, tiny):
    series, geom, truth = tiny
    v = make_napari_viewer()
    md = tilt_series_metadata(
        angles=geom.angles,
        pixel_size=0.5,
        angle_source="test",
        source="test",
        ground_truth="tiny_truth",
    )
    data, kwargs, _ = tilt_series_layer_data(series, md, "tiny")
    v.add_image(data, **kwargs)
    data, kwargs, _ = volume_layer_data(truth, volume_metadata(pixel_size=0.5), "tiny_truth")
    v.add_image(data, **kwargs)
    return v


def choose(w, **iterations):
    for name, c in w.choices.items():
        c.check.setChecked(name in iterations)
        if name in iterations and c.method.capabilities.iterative:
            c.iterations.setValue(iterations[name])


def test_smoke_through_manifest(make_napari_viewer):
    from tomoprior._qt.comparison import ComparisonWidget

    v = make_napari_viewer()
    _, w = v.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    assert isinstance(w, ComparisonWidget)
    ticked = {n for n, c in w.choices.items() if c.check.isChecked()}
    assert ticked == {"sirt", "cstv", "restore", "diptv"}
    assert w.reference.currentText() == "none"


def test_compare_wbp_and_sirt_fills_the_table(viewer, qtbot, notes):
    from tomoprior._qt.comparison import grid_of

    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    assert w.tilt.layer().name == "tiny"
    assert w.reference.currentText() == "tiny_truth"  # picked from the series' metadata
    choose(w, wbp=1, sirt=10)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=120_000)
    assert w.controller.state.value == "done"
    assert w.table.rowCount() == 2
    for row, (label, cell) in enumerate([("WBP", "WBP"), ("SIRT", "SIRT · 10 it")]):
        r = w.table.results[row]
        assert r["method"] == label
        assert w.table.item(row, 0).text() == cell
        for key in ("reprojection_residual", "ssim", "psnr", "seconds"):
            assert math.isfinite(r[key]), (label, key)
    assert math.isfinite(w.table.results[1]["heldout_error"])  # SIRT fitted without them
    assert w.table.item(0, 2).text() == "—"  # WBP fits no pixels: no held-out error
    assert w.table.item(1, 3).text() == f"{w.table.results[1]['ssim']:.3f}"
    layers = w.result_layers()
    assert [lay.name for lay in layers] == ["WBP tiny", "SIRT [it 10/10] tiny"]
    for lay, heldout in zip(layers, (0.0, 0.05)):  # WBP fits no pixels: it holds none out
        prov = lay.metadata["provenance"]
        assert prov["heldout_fraction"] == heldout and prov["seed"] == 0
    assert not [m for s, m in notes if s == "warning"]  # nothing ignored, nothing to warn of
    # side by side: grid on, the series hidden, one common scale of contrast
    assert grid_of(viewer).enabled and w.side_by_side.isChecked()
    assert not viewer.layers["tiny"].visible
    assert all(lay.visible for lay in layers)
    # the difference map of the selected row
    w.table.selectRow(1)
    diff = w.add_difference()
    assert diff.name == "SIRT − tiny_truth"
    assert diff.data.shape == (32, 32, 32)
    lo, hi = diff.contrast_limits
    assert lo == pytest.approx(-hi)
    # back to the normal view: the hidden layer comes back
    w.side_by_side.setChecked(False)
    assert not grid_of(viewer).enabled and viewer.layers["tiny"].visible
    assert not notes.errors()


def test_shared_contrast_uses_the_first_methods_scale():
    from tomoprior._qt.live_layer import shared_limits

    rng = np.random.default_rng(0)
    a = rng.random((8, 8, 8)).astype(np.float32)
    limits = shared_limits([a, 3 * a, a[:4]])
    (lo0, hi0), (lo1, hi1), _ = limits
    assert lo1 == pytest.approx(3 * lo0, rel=1e-5) and hi1 == pytest.approx(3 * hi0, rel=1e-5)


def test_nothing_ticked_gives_a_notification(viewer, notes):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    choose(w)
    w.run_button.click()
    assert not w.controller.busy
    assert any("at least one method" in m for m in notes.errors())


def test_reference_of_another_shape_is_reported_not_raised(viewer, qtbot, notes):
    viewer.add_image(np.zeros((8, 8, 8), np.float32), name="small_ref")
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    w.reference.setCurrentText("small_ref")
    choose(w, wbp=1)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    r = w.table.results[0]
    assert math.isfinite(r["reprojection_residual"]) and "ssim" not in r
    assert "differ in shape" in w.table.item(0, 3).toolTip()


def test_stop_keeps_the_finished_part(viewer, qtbot, notes):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    w.controller.interval_ms = 0
    choose(w, sirt=1_000_000, wbp=1)  # registry order: WBP first, then the endless SIRT
    w.run_button.click()
    qtbot.waitUntil(lambda: w.controller.steps_received >= 4, timeout=60_000)
    w.stop_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=10_000)
    assert w.controller.state.value == "stopped"
    assert w.table.item(0, 0).text() == "WBP"
    assert w.table.item(1, 0).text().endswith("(stopped)")
    assert math.isfinite(w.table.results[1]["reprojection_residual"])
    assert len(w.result_layers()) == 2
    assert not notes.errors()


def test_compare_includes_the_learned_restoration(viewer, qtbot, notes):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    choose(w, sirt=10, restore=10)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=120_000)
    assert w.controller.state.value == "done"
    labels = [r["method"] for r in w.table.results]
    assert labels == ["SIRT", "Restore (learned)"]
    for r in w.table.results:
        assert math.isfinite(r["ssim"]) and math.isfinite(r["reprojection_residual"])
    assert not notes.errors()


def test_profile_line_runs_through_every_method(viewer, qtbot, notes):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    assert w.add_profile_line() is None and notes.errors()  # nothing to go through yet
    choose(w, wbp=1, sirt=10)
    w.run_button.click()
    assert not w.tilt_box.isExpanded()  # the table is what matters now
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=120_000)
    shapes = w.add_profile_line()
    assert shapes.name == "profile" and len(w.profile.curves) == 2
    names = [c[0] for c in w.profile.curves]
    assert names == ["WBP", "SIRT"]
    d, v = w.profile.curves[1][1:]
    assert d[-1] > 0 and np.isfinite(v).all() and np.ptp(v) > 0
    # moving the line updates the curves
    before = w.profile.curves[0][2].copy()
    data = np.asarray(shapes.data[0]).copy()
    data[:, 1] += 3.0  # 3 nm down in y
    shapes.data = [data]
    assert not np.allclose(w.profile.curves[0][2], before)


def test_each_run_warning_is_shown_once_and_the_objective_stays_apart(make_napari_viewer, tiny,
                                                                      qtbot, notes):
    """Angles that look like radians: one warning for the whole comparison, in the engine's words."""
    series, geom, _ = tiny
    v = make_napari_viewer()
    md = tilt_series_metadata(angles=np.radians(geom.angles), pixel_size=0.5, angle_source="test",
                              source="test")
    data, kwargs, _ = tilt_series_layer_data(series, md, "radians")
    v.add_image(data, **kwargs)
    _, w = v.window.add_plugin_dock_widget(PLUGIN, "Compare methods")
    recs = []
    w.controller.job_started.connect(lambda ev: recs.append(ev.rec))
    choose(w, wbp=1, cstv=4)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=120_000)
    assert w.controller.state.value == "done" and len(recs) == 2
    expected = recs[0].warnings
    assert len(expected) == 1 and "radians" in expected[0] and recs[1].warnings == expected
    assert [m for s, m in notes if s == "warning"] == expected
    # the table's residual is the comparable figure; CS-TV's own objective is only a tooltip
    cstv = recs[1].last
    tip = w.table.item(1, 0).toolTip()
    assert f"{cstv.objective_name} = {cstv.loss:.4g}" in tip and "not comparable" in tip
    assert not notes.errors()
