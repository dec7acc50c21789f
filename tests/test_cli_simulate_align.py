"""`simulate` writes what a microscope would; `reconstruct --align` bins, reports and records."""

import json

import numpy as np
import pytest

from tomoprior import io
from tomoprior.cli import main


def test_simulated_file_carries_the_nominal_geometry(tmp_path, capsys):
    out = tmp_path / "sim.tif"
    assert main(["simulate", "blobs", "-o", str(out), "--size", "16", "--tilt-step", "20",
                 "--misalign", "2", "--axis-error", "2", "--noise", "poisson", "--seed", "1",
                 "--supersample", "1"]) == 0
    g = io.read(out).geometry
    assert g.tilt_axis == 0.0 and not np.any(g.shifts)
    truth = json.loads((tmp_path / "sim_geometry.json").read_text())
    assert truth["geometry"]["tilt_axis"] == pytest.approx(2.0) and truth["true_tilt_axis"] == 2.0
    assert truth["nominal_tilt_axis"] == 0.0 and np.abs(truth["drift"]).max() > 0
    assert truth["noise"] == "poisson" and truth["dose"] == 1e4  # the dose applied, not None
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "tilt axis  horizontal" in capsys.readouterr().out


def test_simulate_noise_options_must_agree(tmp_path, capsys):
    assert main(["simulate", "blobs", "-o", str(tmp_path / "s.tif"), "--noise", "none",
                 "--dose", "100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dose" in err[0] and not (tmp_path / "s.tif").exists()
    assert main(["simulate", "CLUSTERS", "-o", str(tmp_path / "c.tif"), "--size", "16",
                 "--tilt-step", "30", "--supersample", "1", "--dose", "50", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["noise"] == "poisson" and summary["dose"] == 50.0


@pytest.fixture
def fake_alignment(monkeypatch):
    """align_series replaced: records what it was given, finds 1.5 px shifts, reports progress."""
    from tomoprior import alignment

    seen = {}

    def align_series(series, geometry, *, method, progress=None, **options):
        seen.update(shape=series.shape, pixel_size=geometry.pixel_size, method=method, **options)
        progress("cross-correlation: shifts up to 1.5 px")
        found = geometry.replace(shifts=np.full((series.shape[0], 2), 1.5))
        return series, found, {"method": method, "seconds": 0.0, "steps": []}

    monkeypatch.setattr(alignment, "align_series", align_series)
    return seen


def test_reconstruct_align_bins_reports_and_writes_files(small_series, tmp_path, capsys,
                                                         fake_alignment):
    series, g, _ = small_series
    src = tmp_path / "raw.tif"
    io.write_tilt_series(src, series[::5], g.subset(range(0, series.shape[0], 5)))
    out = tmp_path / "v.mrc"
    assert main(["reconstruct", str(src), "-o", str(out), "--method", "sirt", "--iterations", "2",
                 "--align", "--align-method", "com", "--bin", "2", "--json"]) == 0
    captured = capsys.readouterr()
    s = json.loads(captured.out.strip().splitlines()[-1])
    assert fake_alignment["shape"] == (9, 16, 16) and fake_alignment["method"] == "com"
    assert fake_alignment["pixel_size"] == pytest.approx(1.6)  # the binned series' pixels
    assert "align (com, bin 2): cross-correlation: shifts up to 1.5 px" in captured.err
    files = [tmp_path / f"v_alignment{ext}" for ext in (".xf", ".tlt", ".json")]
    assert s["alignment"] == [str(p) for p in files] and all(p.is_file() for p in files)
    doc = json.loads(files[2].read_text())
    np.testing.assert_allclose(doc["geometry"]["shifts"], 3.0)  # in pixels of the input
    assert doc["geometry"]["pixel_size"] == pytest.approx(0.8)
    assert doc["report"]["input_binning"] == 2
    assert s["align_seconds"] >= 0 and s["volume_shape"] == [16, 16, 16]
    assert s["seconds"] == pytest.approx(s["reconstruct_seconds"] + s["align_seconds"], abs=2e-3)


def test_reconstruct_align_never_overwrites_alignment_files(small_series, tmp_path, capsys,
                                                            fake_alignment):
    series, g, _ = small_series
    src = tmp_path / "raw.tif"
    io.write_tilt_series(src, series, g)
    xf = tmp_path / "v_alignment.xf"
    xf.write_text("a user's alignment\n")
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "v.mrc"), "--method", "sirt",
                 "--align"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "v_alignment.xf" in err[0]
    assert xf.read_text() == "a user's alignment\n" and not fake_alignment
