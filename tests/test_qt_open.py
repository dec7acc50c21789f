"""Opening files and samples through napari's own entry points (drag and drop, File menu)."""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from tomoprior import io

pytestmark = pytest.mark.gui

PLUGIN = "napari-tomoprior"


def test_open_file_without_angles_warns_the_user(make_napari_viewer, tmp_path, notes):
    series = np.random.default_rng(0).random((9, 16, 16), dtype=np.float32)
    path = io.write_tilt_series(tmp_path / "bare.mrc", series)
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction")
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.metadata["tomoprior_kind"] == "tilt_series" and layer.metadata["angles"] == []
    assert any(s == "warning" and "start and step" in m for s, m in notes)
    assert w.tilt.layer() is layer  # the widget takes the new series
    assert "No tilt angles" in w.tilt.angles_label.text()
    assert w.tilt.use_start_step.isChecked()


def test_open_sample_through_the_menu_entry(make_napari_viewer, monkeypatch):
    from tomoprior._napari import _sample_data as sd

    monkeypatch.setattr(sd, "SAMPLE_SIZE", 16)
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample(PLUGIN, "pt_haadf_series")
    assert layer.data.shape == (61, 1, 16, 16)
    assert layer.scale[0] == 1.0
    (truth,) = viewer.open_sample(PLUGIN, "pt_haadf_truth")
    assert truth.metadata["tomoprior_kind"] == "volume"
    (needle,) = viewer.open_sample(PLUGIN, "needle_haadf")
    assert needle.data.shape == (77, 1, 256, 256)
    assert tuple(needle.scale) == pytest.approx((1.0, 256 * 3.36, 3.36, 3.36), rel=1e-4)
    sd._simulated.cache_clear()


def test_series_and_volume_have_their_own_sliders_and_one_unit(make_napari_viewer, monkeypatch):
    """A (tilt, y, x) series beside a (z, y, x) volume shared napari's first slider, and
    any unit on the volume made napari warn about inconsistent units (its canvas warns
    when ``layers.extent.units`` is None)."""
    from tomoprior._napari import _sample_data as sd

    monkeypatch.setattr(sd, "SAMPLE_SIZE", 16)
    viewer = make_napari_viewer()
    (series,) = viewer.open_sample(PLUGIN, "pt_haadf_series")
    (truth,) = viewer.open_sample(PLUGIN, "pt_haadf_truth")
    dims = viewer.dims
    assert dims.axis_labels == ("tilt", "z", "y", "x")
    assert dims.nsteps[:2] == (61, 16)  # one slider for tilts, one for slices
    units = viewer.layers.extent.units
    assert units is not None and [str(u) for u in units] == ["pixel"] + ["nanometer"] * 3
    # the series stays in view at every slice of the volume, and a tilt shows its image
    for z in (0, 7, 15):
        dims.set_current_step(1, z)
        dims.set_current_step(0, 30)
        assert not series._slice.empty and not truth._slice.empty
        np.testing.assert_array_equal(series._slice.image.view, np.asarray(series.data)[30, 0])
