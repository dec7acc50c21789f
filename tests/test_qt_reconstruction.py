"""The Reconstruction dock widget (pytest-qt under Xvfb), created through the manifest."""

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
    series, geom = simulate(ph, angles_from_range(-60, 60, 10), seed=0, device="cpu")
    return series, geom


def add_series(viewer, series, angles, name="tiny", pixel_size=0.5, axis=0.0):
    md = tilt_series_metadata(
        angles=angles,
        tilt_axis=axis,
        pixel_size=pixel_size,
        angle_source="test",
        source=f"test {name}",
    )
    data, kwargs, _ = tilt_series_layer_data(series, md, name)
    return viewer.add_image(data, **kwargs)


@pytest.fixture
def widget(make_napari_viewer, tiny):
    from tomoprior._qt.reconstruction import ReconstructionWidget

    viewer = make_napari_viewer()
    series, geom = tiny
    add_series(viewer, series, geom.angles)
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    assert isinstance(w, ReconstructionWidget)
    w.controller.interval_ms = 0  # show every step in tests
    yield w
    w.controller.shutdown()


def set_sirt(w, iterations=20, every=2):
    w.method_panel.set_method("sirt")
    w.method_panel.page.iterations.setValue(iterations)
    w.method_panel.page.every.setValue(every)


def results(viewer):
    return [lay for lay in viewer.layers if lay.metadata.get("tomoprior_kind") == "volume"]


def test_smoke_through_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    from tomoprior.algorithms import METHODS

    assert [w.method_panel.combo.itemData(i) for i in range(w.method_panel.combo.count())] == list(
        METHODS
    )
    assert w.tilt.layer() is None
    assert not w.stop_button.isEnabled()


def test_run_updates_one_live_layer_and_finishes(widget, qtbot, notes):
    w, viewer = widget, widget.viewer
    user_layer = viewer.layers["tiny"]
    before = np.array(user_layer.data, copy=True)
    set_sirt(w, 20, 2)
    data_events = []
    viewer.layers.events.inserted.connect(
        lambda e: e.value.events.data.connect(lambda _: data_events.append(1))
    )
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.controller.state.value == "done"
    (out,) = results(viewer)
    assert len(viewer.layers) == 2
    assert w.live.updates > 2 and len(data_events) >= 2  # updated in place, more than once
    assert out.name == "SIRT [it 20/20] tiny"
    assert out.data.shape == (32, 32, 32)
    assert np.isfinite(out.data).all() and out.data.max() > 0
    assert tuple(out.scale) == pytest.approx((0.5, 0.5, 0.5))
    prov = out.metadata["provenance"]
    assert prov["method"] == "sirt" and prov["iterations"] == 20
    assert prov["kept_tilts"] == list(range(13)) and prov["device"] == "cpu"
    assert out.metadata["pixel_size"] == pytest.approx(0.5)
    np.testing.assert_array_equal(user_layer.data, before)  # the user's data are untouched
    assert not notes.errors()
    assert "Done" in w.progress.status.text()
    assert w.progress.loss.train  # the loss plot got points


def test_tilt_selection_binning_and_slab_placement(widget, qtbot):
    w, viewer = widget, widget.viewer
    t = w.tilt
    t.range_min.setValue(-40)
    t.range_max.setValue(40)
    t.increment.setValue(20)
    assert t.kept_label.text().startswith("Keeps 5 of 13 tilts")
    t.binning.setCurrentIndex(1)  # 2×
    t.slab_check.setChecked(True)
    t.slab_from.setValue(8)
    t.slab_to.setValue(16)
    w.method_panel.set_method("wbp")
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    (out,) = results(viewer)
    assert out.name == "WBP tiny"
    assert out.data.shape == (16, 16, 4)  # horizontal axis: the slab is along x
    assert tuple(out.scale) == pytest.approx((1.0, 1.0, 1.0))  # 0.5 nm binned 2×
    assert tuple(out.translate) == pytest.approx(
        (0.0, 0.0, 4.0)
    )  # 4 binned px × 1 nm = 8 px × 0.5 nm
    prov = out.metadata["provenance"]
    assert prov["kept_angles"] == pytest.approx([-40, -20, 0, 20, 40])
    assert prov["binning"] == 2


def test_start_step_for_a_series_without_angles(widget, qtbot, tiny):
    w, viewer = widget, widget.viewer
    series, _ = tiny
    layer = add_series(viewer, series, None, name="bare")
    w.tilt.set_layer(layer)
    assert w.tilt.use_start_step.isChecked() and not w.tilt.use_start_step.isEnabled()
    assert "No tilt angles" in w.tilt.angles_label.text()
    w.tilt.start.setValue(-60)
    w.tilt.step.setValue(10)
    geom = w.tilt.geometry()
    assert geom.angles == pytest.approx(angles_from_range(-60, 60, 10))
    assert w.tilt.range_min.value() == -60 and w.tilt.range_max.value() == 60
    set_sirt(w, 4, 2)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert (
        results(viewer)[-1]
        .metadata["provenance"]["geometry"]["angle_source"]
        .startswith("start -60")
    )


def test_stop_mid_run_keeps_the_last_volume(widget, qtbot, notes):
    w, viewer = widget, widget.viewer
    set_sirt(w, 1_000_000, 1)
    w.run_button.click()
    qtbot.waitUntil(lambda: w.controller.steps_received >= 3, timeout=60_000)
    assert w.stop_button.isEnabled()
    w.stop_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=10_000)
    assert w.controller.state.value == "stopped"
    (out,) = results(viewer)
    assert "stopped at it" in out.name
    assert out.data.shape == (32, 32, 32) and out.data.max() > 0
    assert out.metadata["provenance"]["stopped_early"] is True
    assert not notes.errors()


def test_run_while_running_asks_and_restarts(widget, qtbot, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    w, viewer = widget, widget.viewer
    answers = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a, **k: answers.append(1) or QMessageBox.Cancel
    )
    set_sirt(w, 1_000_000, 1)
    w.run_button.click()
    qtbot.waitUntil(lambda: w.controller.steps_received >= 2, timeout=60_000)
    w.run_button.click()  # cancel: the run goes on
    assert answers and w.controller.busy and w.controller.state.value == "running"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    set_sirt(w, 6, 2)
    w.run_button.click()  # stop the current one, then start the new one
    qtbot.waitUntil(lambda: not w.controller.busy and w._queued is None, timeout=60_000)
    assert w.controller.state.value == "done"
    names = [lay.name for lay in results(viewer)]
    assert len(names) == 2 and any("stopped" in n for n in names)
    assert "SIRT [it 6/6] tiny" in names


def test_reuse_layer(widget, qtbot):
    w, viewer = widget, widget.viewer
    set_sirt(w, 4, 2)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    first = results(viewer)[0]
    w.reuse.setChecked(True)
    w.method_panel.set_method("wbp")
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    (only,) = results(viewer)
    assert only is first and only.metadata["provenance"]["method"] == "wbp"
    w.reuse.setChecked(False)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert len(results(viewer)) == 2


def test_no_layer_gives_a_notification(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    w.run_button.click()
    assert not w.controller.busy
    assert any("no tilt series" in m for m in notes.errors())


def test_2d_layer_gives_a_notification(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.float32), name="flat")
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    assert w.tilt.layer().name == "flat"
    w.run_button.click()
    assert not w.controller.busy
    assert any("2D" in m and "3D stack" in m for m in notes.errors())


def test_angle_count_mismatch_gives_a_notification(widget, tiny, notes):
    w, viewer = widget, widget.viewer
    series, geom = tiny
    layer = add_series(viewer, series, geom.angles[:-1], name="short")  # 12 angles, 13 images
    w.tilt.set_layer(layer)
    assert "12 angles" in w.tilt.angles_label.text()
    w.run_button.click()
    assert not w.controller.busy
    assert any("12 tilt angles for 13 images" in m for m in notes.errors())


def test_bad_parameter_gives_a_notification(widget, notes):
    w = widget
    w.method_panel.set_method("cstv")
    w.method_panel.page.fields["lam"].set("lots")
    w.run_button.click()
    assert not w.controller.busy
    assert any(m.startswith("TV weight") for m in notes.errors())


def test_worker_errors_are_one_line_notifications(widget, qtbot, notes, monkeypatch):
    class OutOfMemory:
        finished, last, device = False, None, "cuda"

        def __iter__(self):
            return self

        def __next__(self):
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\n(long text)")

        def close(self):
            pass

    monkeypatch.setattr("tomoprior.engine.run", lambda *a, **k: OutOfMemory())
    w = widget
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=10_000)
    assert w.controller.state.value == "failed"
    (msg,) = notes.errors()
    assert msg.startswith("Out of memory") and "binning" in msg and "CPU" in msg
    assert "\n" not in msg
    assert not results(w.viewer)


def test_writer_saves_the_result_with_provenance(widget, qtbot, tmp_path):
    from tomoprior import io

    w, viewer = widget, widget.viewer
    set_sirt(w, 4, 2)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    (out,) = results(viewer)
    path = tmp_path / "result.tif"
    written = out.save(str(path), plugin=PLUGIN)
    assert written
    prov = io.read_provenance(path)
    assert prov["method"] == "sirt" and prov["iterations"] == 4
    back = io.read(path)
    assert back.pixel_size == pytest.approx(0.5, rel=1e-4)


def test_save_result_button_keeps_provenance_and_pixel_size(widget, qtbot, tmp_path, monkeypatch,
                                                           notes):
    """napari lists its own TIFF writer first; the widget's Save result… always uses the plugin's."""
    from qtpy.QtWidgets import QFileDialog

    from tomoprior import io

    w = widget
    assert not w.save_button.isEnabled()
    set_sirt(w, 4, 2)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.save_button.isEnabled()
    assert not w.save_hint.isHidden() and "Save result" in w.save_hint.text()  # a line, no toast
    for name in ("result.mrc", "result.tif"):
        path = tmp_path / name
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, p=path, **k: (str(p), ""))
        w.save_button.click()
        assert io.read_provenance(path)["method"] == "sirt"
        assert io.read(path).pixel_size == pytest.approx(0.5, rel=1e-4)
        np.testing.assert_allclose(io.read(path).load(), w.last_layer.data, rtol=1e-6)
    assert not notes.errors()


def test_restore_streams_the_base_then_the_restored_volume(widget, qtbot, notes):
    w, viewer = widget, widget.viewer
    w.method_panel.set_method("restore")
    w.method_panel.page.iterations.setValue(10)
    w.method_panel.page.every.setValue(5)
    phases = []
    w.controller.step.connect(lambda ev: phases.append(ev.step.phase))
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.controller.state.value == "done", w.progress.status.text()
    assert phases[:2] == ["preview", "base"] and phases[-1] == "restore"
    (out,) = results(viewer)
    assert out.data.shape == (32, 32, 32) and np.isfinite(out.data).all()
    prov = out.metadata["provenance"]
    assert prov["method"] == "restore" and prov["result"]["model"] == "restore_default"
    assert not notes.errors()


def test_restore_tv_shows_each_phase_then_the_fit(widget, qtbot, notes):
    w, viewer = widget, widget.viewer
    w.method_panel.set_method("restore_tv")
    page = w.method_panel.page
    page.iterations.setValue(10)
    page.every.setValue(5)
    page.fields["base_iterations"].set(10)
    page.fields["lam"].set("0.02")
    texts, phases = [], []

    def seen(ev):
        phases.append(ev.step.phase)
        texts.append(w.progress.status.text())

    w.controller.step.connect(seen)
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    assert w.controller.state.value == "done", w.progress.status.text()
    assert phases[0] == "preview" and {"base", "restore"} <= set(phases)
    assert phases[-1] == "iterate"
    assert any("restoration network" in t for t in texts[1:]), texts
    (out,) = results(viewer)
    prov = out.metadata["provenance"]
    assert prov["method"] == "restore_tv" and prov["result"]["mu"] == 0.01
    assert not notes.errors()


def test_a_broken_model_file_is_one_notification(widget, qtbot, notes, tmp_path):
    w = widget
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"garbage")
    w.method_panel.set_method("restore")
    w.method_panel.page.fields["model"].set(str(bad))
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    errors = notes.errors()
    assert errors and "broken.pt is not a readable tomoprior model file" in errors[-1]
    assert "\n" not in errors[-1]


@pytest.mark.parametrize("slices", [1, 2, 3, 4])
def test_thin_slabs_show_as_volumes_not_colour_images(widget, qtbot, notes, slices):
    """A slab 3 or 4 slices thick once made napari guess an RGB image and fail."""
    w, viewer = widget, widget.viewer
    t = w.tilt
    t.binning.setCurrentIndex(0)  # napari guesses colour when the other sides exceed 30 px
    t.slab_check.setChecked(True)
    t.slab_from.setValue(8)
    t.slab_to.setValue(8 + slices)
    w.method_panel.set_method("wbp")
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    (out,) = results(viewer)
    assert out.data.shape == (32, 32, slices) and not out.rgb
    assert out.axis_labels == ("z", "y", "x")
    assert notes.errors() == []


def test_a_newly_opened_series_becomes_the_selected_layer(widget, tiny):
    w, viewer = widget, widget.viewer
    series, geom = tiny
    assert w.tilt.layer().name == "tiny"
    add_series(viewer, series[:, ::-1], geom.angles, name="second")
    assert w.tilt.layer().name == "second"  # widgets see layers through napari's proxies
    viewer.add_image(np.zeros((16, 16)), name="flat")  # a 2D picture does not take over
    assert w.tilt.layer().name == "second"


def test_typed_pixel_size_reaches_layer_and_provenance(widget, qtbot, monkeypatch):
    w, viewer = widget, widget.viewer
    layer = viewer.layers["tiny"]
    assert w.tilt.pixel_size.value() == pytest.approx(0.5)
    w.tilt.pixel_size.setValue(0.8)
    assert layer.metadata["pixel_size"] == pytest.approx(0.8)
    assert tuple(layer.scale)[-2:] == pytest.approx((0.8, 0.8))
    assert layer.scale[1] == pytest.approx(0.8 * max(layer.data.shape[-2:]))  # the depth
    w.method_panel.set_method("wbp")
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    (out,) = results(viewer)
    assert out.metadata["provenance"]["geometry"]["pixel_size"] == pytest.approx(0.8)
    assert tuple(out.scale) == pytest.approx((0.8, 0.8, 0.8))


def test_memory_line_warns_before_run(widget, monkeypatch):
    w = widget
    assert w.tilt.memory_label.text().startswith("Memory: at least")
    assert "too much" not in w.tilt.memory_label.text()
    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", "1K")
    w.tilt.binning.setCurrentIndex(1)  # any edit refreshes the line
    assert "too much" in w.tilt.memory_label.text()


def test_the_canvas_says_which_tilt_angle_is_shown(widget):
    w, viewer = widget, widget.viewer
    viewer.dims.set_current_step(0, 3)
    text = viewer.text_overlay.text
    assert viewer.text_overlay.visible and text == "tiny: tilt 4/13 at -30°"
    viewer.layers["tiny"].visible = False
    w.angle_overlay.refresh()
    assert not viewer.text_overlay.visible


def test_result_opens_orthogonal_views_with_the_missing_wedge(widget, qtbot):
    from tomoprior._napari.ortho import log_power, orthogonal_slices
    from tomoprior._qt.ortho_views import OrthoViews

    w, viewer = widget, widget.viewer
    w.method_panel.set_method("wbp")
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    (out,) = results(viewer)
    views = w.show_orthogonal_views()  # the same dock again, not a second one
    assert isinstance(views, OrthoViews) and views.layer().name == out.name
    assert views.xz.image is not None and views.xz.image.shape[1] == out.data.shape[2]
    views.yz_fourier.setChecked(True)
    assert views.yz.image.shape[:2] == (out.data.shape[0], out.data.shape[1])
    # the wedge: ±60° tilts about a horizontal (x) axis leave the sectors of the y-z
    # plane's spectrum around the beam (z) direction nearly empty
    cut = orthogonal_slices(np.asarray(out.data), (16, 16, 16))
    power = log_power(cut["yz"])
    kz, kx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(32)), np.fft.fftshift(np.fft.fftfreq(32)),
                         indexing="ij")
    ring = (np.hypot(kz, kx) > 0.1) & (np.hypot(kz, kx) < 0.4)
    along_z = ring & (np.abs(kx) < 0.3 * np.abs(kz))  # within ~17° of the z axis
    along_x = ring & (np.abs(kz) < 0.3 * np.abs(kx))
    assert power[along_z].mean() < power[along_x].mean()
    # Shift + hover moves the cut; a plain hover does not
    views.yz_fourier.setChecked(False)

    class Move:
        def __init__(self, pos, shift):
            self.position, self.modifiers = pos, ({"Shift"} if shift else set())

    at = tuple(np.array([16, 16, 3]) * np.asarray(out.scale) + np.asarray(out.translate))
    before = views.title.text()
    assert not before.endswith("x 3")
    views._on_move(viewer, Move(at, False))
    assert views.title.text() == before
    views._on_move(viewer, Move(at, True))
    assert views.title.text().endswith("x 3")


def test_a_lazy_volume_gives_planes_without_being_read_whole():
    import dask.array as da

    from tomoprior._napari.ortho import orthogonal_slices

    vol = da.from_array(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), chunks=(4, 1, 6))
    cut = orthogonal_slices(vol, (1, 2, 3))
    np.testing.assert_array_equal(cut["xz"], np.asarray(vol[:, 2, :]))
    np.testing.assert_array_equal(cut["yz"], np.asarray(vol[:, :, 3]))


def test_unticked_tilts_are_left_out_and_recorded(widget, qtbot):
    w, viewer = widget, widget.viewer
    t = w.tilt
    t.tilts_check.setChecked(True)
    assert t.tilt_list.count() == 13 and t.tilt_list.item(0).text() == "1: -60°"
    assert not t.tilt_list.item(0).icon().isNull()
    t.tilt_list.set_excluded([0, 12])
    assert t.kept_label.text().startswith("Keeps 11 of 13 tilts: -50° to 50°")
    assert "(2 excluded)" in t.kept_label.text()
    w.method_panel.set_method("wbp")
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
    (out,) = results(viewer)
    prov = out.metadata["provenance"]
    assert prov["excluded_tilts"] == [0, 12] and 0 not in prov["kept_tilts"]
    assert prov["kept_angles"][0] == pytest.approx(-50)


def test_the_run_shows_the_residual_and_keeps_the_objective_under_its_name(widget, qtbot):
    w = widget
    w.method_panel.set_method("cstv")
    w.method_panel.page.iterations.setValue(6)
    w.method_panel.page.every.setValue(2)
    steps = []
    w.controller.step.connect(lambda ev: steps.append(ev.step))
    w.run_button.click()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=120_000)
    last = steps[-1]
    assert last.phase == "iterate" and last.residual is not None and last.loss != last.residual
    plot = w.progress.loss
    assert plot.label == "residual"
    assert 10 ** plot.train[-1][1] == pytest.approx(last.residual, rel=1e-6)
    assert f"{last.objective_name} = " in plot.values_at(1.0)
    assert f"Final residual {last.residual:.4g}" in w.progress.status.text()
    prov = w.last_layer.metadata["provenance"]
    assert prov["final_residual"] == pytest.approx(last.residual)
    assert prov["final_objective"]["name"] == last.objective_name
