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
    assert layer.data.shape == (61, 16, 16)
    assert layer.scale[0] == 1.0
    (truth,) = viewer.open_sample(PLUGIN, "pt_haadf_truth")
    assert truth.metadata["tomoprior_kind"] == "volume"
    (needle,) = viewer.open_sample(PLUGIN, "needle_haadf")
    assert needle.data.shape == (77, 256, 256)
    assert tuple(needle.scale) == pytest.approx((1.0, 3.36, 3.36), rel=1e-4)
    sd._simulated.cache_clear()
