"""The Python API as a script meets it: one name per thing, one-line errors, honest files."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tomoprior
from tomoprior import io
from tomoprior.engine import run_to_end, summary
from tomoprior.errors import DataError, GeometryError, ParameterError, TomopriorWarning
from tomoprior.geometry import TiltGeometry

ANGLES = np.linspace(-60, 60, 13)


@pytest.fixture
def series():
    rng = np.random.default_rng(0)
    return rng.random((ANGLES.size, 16, 16)).astype(np.float32) + 0.1


@pytest.fixture
def geom():
    return TiltGeometry(angles=ANGLES, pixel_size=2.0)


def test_run_is_the_function_after_every_import():
    """Importing the engine, slabs or the command line never replaces ``tomoprior.run``."""
    code = (
        "import numpy as np, tomoprior\n"
        "from tomoprior.engine import reconstruct_dask\n"
        "import tomoprior.slabs, tomoprior.cli, tomoprior.engine.entry\n"
        "g = tomoprior.TiltGeometry(angles=np.linspace(-60, 60, 7))\n"
        "y = np.random.default_rng(0).random((7, 8, 8), dtype=np.float32)\n"
        "for _ in (0, 1):\n"
        "    assert len(list(tomoprior.run('sirt', y, g, iterations=2))) >= 1\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok"


@pytest.mark.parametrize("name", ["run", "reconstruct", "reconstruct_dask", "io", "metrics",
                                  "alignment", "phantoms", "operators", "interpolation", "slabs",
                                  "engine", "TiltGeometry", "errors", "TomopriorWarning"])
def test_public_names_are_listed_and_reachable(name):
    assert name in dir(tomoprior) and name in tomoprior.__all__
    assert getattr(tomoprior, name) is not None


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tomoprior.nope  # noqa: B018


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"iterations": 0}, ParameterError, "iterations must be >= 1"),
    ({"iterations": 2.5}, ParameterError, "whole number"),
    ({"bin": 0}, ParameterError, "bin must be >= 1"),
    ({"bin": 65}, ParameterError, "bin must be <= 64"),
    ({"tilt_range": (60, -60)}, GeometryError, "reversed"),
    ({"tilt_range": [13, 18, 23]}, GeometryError, "TiltGeometry.subset"),
    ({"tilt_range": (-60, float("nan"))}, GeometryError, "finite"),
    ({"increment": 0}, GeometryError, "increment must be > 0"),
    ({"heldout": 0.9}, ParameterError, "heldout must be between 0 and 0.5"),
    ({"seed": -1}, ParameterError, "seed must be >= 0"),
])
def test_api_refuses_what_the_command_line_refuses(series, geom, kwargs, error, words):
    with pytest.raises(error, match=words):
        tomoprior.run("sirt", series, geom, **kwargs)


def test_select_reads_a_range_not_a_list_of_indices(geom):
    with pytest.raises(GeometryError, match="min, max"):
        geom.select([-60, 0, 60])
    with pytest.raises(GeometryError, match="reversed"):
        geom.select((60, -60))
    assert geom.select((-20, 20)).count == 5


def test_all_zero_series_is_one_error_for_every_method(geom):
    zeros = np.zeros((ANGLES.size, 16, 16), np.float32)
    for method in ("sirt", "cstv", "wbp"):
        with pytest.raises(DataError, match="all zeros"):
            tomoprior.run(method, zeros, geom)


def test_radian_angles_warn_through_the_api(series):
    g = TiltGeometry(angles=np.radians(ANGLES))
    with pytest.warns(TomopriorWarning, match="radians"):
        rec = tomoprior.run("wbp", series, g)
    assert any("radians" in w for w in rec.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TomopriorWarning)
        tomoprior.run("wbp", series, TiltGeometry(angles=ANGLES))  # degrees: no warning


def test_clipped_slices_and_ignored_iterations_warn(series, geom):
    with pytest.warns(TomopriorWarning, match="reaches past the 16 positions"):
        rec = tomoprior.run("sirt", series, geom, slices="4:900", iterations=2)
    assert rec.prepared.slab == (4, 16)
    with pytest.warns(TomopriorWarning, match="WBP does not iterate"):
        rec = tomoprior.run("wbp", series, geom, iterations=50)
    assert rec.provenance()["warnings"] == ["WBP does not iterate: iterations=50 is ignored"]


def test_every_scales_with_iterations(series, geom):
    m = tomoprior.algorithms.get_method("sirt")
    short = list(tomoprior.run("sirt", series, geom))
    long = list(tomoprior.run("sirt", series, geom, iterations=4 * m.default_iterations))
    assert len(long) == len(short)
    assert long[-1].iteration == 4 * m.default_iterations
    assert len(list(tomoprior.run("sirt", series, geom, iterations=40, every=1))) == 40


def test_method_names_ignore_case(series, geom):
    a = tomoprior.reconstruct(series, geom, "SIRT", iterations=3)
    b = tomoprior.reconstruct(series, geom, "sirt", iterations=3)
    np.testing.assert_array_equal(a, b)


def test_one_call_reconstruct_matches_the_streaming_run(series, geom):
    vol = tomoprior.reconstruct(series, ANGLES, method="sirt", iterations=7)
    ref, _ = run_to_end("sirt", series, TiltGeometry(angles=ANGLES), iterations=7)
    np.testing.assert_array_equal(vol, ref)
    assert vol.dtype == np.float32 and vol.shape == (16, 16, 16)
    rad = tomoprior.reconstruct(series, np.radians(ANGLES), method="sirt", iterations=7,
                                angles_unit="rad")
    np.testing.assert_allclose(rad, ref, rtol=1e-5, atol=1e-6)
    with pytest.warns(TomopriorWarning, match="radians"):
        tomoprior.reconstruct(series, np.radians(ANGLES), method="wbp")
    with pytest.raises(GeometryError, match="angles_unit"):
        tomoprior.reconstruct(series, ANGLES, angles_unit="grad")


def test_pixel_size_follows_the_binning_into_files(series, geom, tmp_path):
    rec = tomoprior.run("wbp", series, geom, bin=2)
    for step in rec:
        pass
    assert rec.pixel_size == 4.0 and rec.pixel_unit == "nm"
    prov = rec.provenance()
    assert prov["pixel_size"] == 4.0
    out = io.write_volume(tmp_path / "v.mrc", step.volume, provenance=prov)
    assert io.read(out).pixel_size == pytest.approx(4.0)
    with pytest.raises(ParameterError, match="binned by 2"):
        io.write_volume(tmp_path / "w.mrc", step.volume, pixel_size=2.0, provenance=prov)
    assert not (tmp_path / "w.mrc").exists()
    same = io.write_volume(tmp_path / "s.tif", step.volume, pixel_size=40.0, pixel_unit="Å",
                           provenance=prov)
    assert io.read(same).pixel_size == pytest.approx(4.0)


def test_summary_reports_the_values_chosen(series, geom):
    rec = tomoprior.run("cstv", series, geom, iterations=4, lam="auto")
    for _ in rec:
        pass
    s = summary(rec)
    assert s["parameters"]["lam"] != "auto" and s["parameters"]["lam"] == s["chosen"]["lam"]
    assert isinstance(s["chosen"]["lam"], float)
    assert s["pixel_size"] == 2.0
    json.dumps(s)


def test_virtual_frames_travel_into_the_provenance(series, geom, tmp_path):
    from tomoprior.interpolation import interpolate, write_sidecar

    dense = interpolate(series, geom, factor=2, method="linear")
    path = io.write_tilt_series(tmp_path / "dense.tif", dense.series, dense.geometry)
    write_sidecar(path, dense)
    f = io.read(path)
    assert f.virtual_frames["indices"] == [int(i) for i in dense.virtual]
    assert f.virtual_frames["method"] == "linear"
    rec = tomoprior.run("wbp", f.data, f.geometry, virtual=f.virtual_frames,
                        increment=5)
    prov = rec.provenance()["virtual_frames"]
    kept = set(rec.prepared.selection.indices.tolist())
    assert prov["indices"] == sorted(kept & set(f.virtual_frames["indices"]))
    assert prov["method"] == "linear" and prov["kept"] == len(kept)
    plain = tomoprior.run("wbp", f.data, f.geometry, increment=10)
    assert plain.provenance()["virtual_frames"] is None


def test_sidecar_of_another_series_is_ignored_with_a_warning(series, geom, tmp_path):
    path = io.write_tilt_series(tmp_path / "s.tif", series, geom)
    (tmp_path / "s.frames.json").write_text(json.dumps({"measured": [True, False]}))
    f = io.read(path)
    assert f.virtual_frames is None
    assert any("belongs to another series" in w for w in f.warnings)
