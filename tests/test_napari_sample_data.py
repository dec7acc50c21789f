"""Sample data: valid LayerData with the plugin's metadata keys."""

import numpy as np
import pytest

from tomoprior._napari import _sample_data as sd

TILT_KEYS = {
    "tomoprior_kind",
    "angles",
    "tilt_axis",
    "pixel_size",
    "pixel_unit",
    "angle_source",
    "source",
}


def _check(ld, kind):
    assert isinstance(ld, tuple) and len(ld) == 3
    data, kwargs, layer_type = ld
    assert layer_type == "image"
    ndim = 4 if kind == "tilt_series" else 3  # a series is shown as (tilt, 1, y, x)
    assert data.ndim == ndim and (ndim == 3 or data.shape[1] == 1)
    assert isinstance(kwargs["name"], str) and kwargs["name"]
    md = kwargs["metadata"]
    assert md["tomoprior_kind"] == kind
    assert len(kwargs["scale"]) == len(kwargs["units"]) == ndim
    return data, kwargs, md


@pytest.fixture
def small_samples(monkeypatch):
    monkeypatch.setattr(sd, "SAMPLE_SIZE", 24)
    yield
    sd._simulated.cache_clear()


def test_sample_folder_is_shipped():
    folder = sd.sample_data_dir() / "needle_haadf"
    assert (folder / "needle_haadf.tif").is_file()
    assert (folder / "needle_haadf.rawtlt").is_file()
    readme = (folder / "README.md").read_text()
    assert "NIST" in readme and "etspy" in readme  # the notice travels with the copy


def test_needle_sample():
    (ld,) = sd.needle_haadf()
    data, kwargs, md = _check(ld, "tilt_series")
    assert data.shape == (77, 1, 256, 256) and data.dtype == np.uint16
    assert TILT_KEYS <= set(md)
    assert len(md["angles"]) == 77
    assert md["angles"][0] == pytest.approx(-76) and md["angles"][-1] == pytest.approx(76)
    assert md["pixel_size"] == pytest.approx(3.36, rel=1e-4)
    assert md["angle_source"] == "needle_haadf.rawtlt"
    assert md["tilt_axis"] == 0.0
    assert kwargs["scale"] == pytest.approx((1.0, 256 * 3.36, 3.36, 3.36), rel=1e-4)
    assert kwargs["units"] == ("pixel", "nm", "nm", "nm")


@pytest.mark.parametrize("contrast", ["haadf", "adf"])
def test_simulated_samples(small_samples, contrast):
    (series,) = getattr(sd, f"pt_{contrast}_series")()
    data, kwargs, md = _check(series, "tilt_series")
    assert TILT_KEYS <= set(md)
    assert data.shape == (61, 1, 24, 24) and data.dtype == np.float32
    assert md["angles"] == pytest.approx(list(np.arange(-60, 61, 2.0)))
    assert md["ground_truth"] == f"pt_{contrast}_truth"
    assert kwargs["scale"][0] == 1.0 and kwargs["scale"][2] == pytest.approx(md["pixel_size"])
    (truth,) = getattr(sd, f"pt_{contrast}_truth")()
    vol, tkw, tmd = _check(truth, "volume")
    assert vol.shape == (24, 24, 24)
    assert tmd["ground_truth"] is True and tmd["provenance"]["phantom"] == f"pt_{contrast}"
    assert tkw["name"] == md["ground_truth"]
    assert tkw["scale"] == pytest.approx((md["pixel_size"],) * 3)
    # deterministic, cached, and every call hands out its own copy
    (again,) = getattr(sd, f"pt_{contrast}_series")()
    np.testing.assert_array_equal(again[0], data)
    assert again[0] is not data
