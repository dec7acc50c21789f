"""tomoprior.engine: data preparation, orientation, slabs, chunks, provenance."""

import dask.array as da
import numpy as np
import pytest

from tomoprior.engine import prepare, reconstruct_dask, run, run_to_end
from tomoprior.errors import DataError, GeometryError, MethodUnavailable


def test_run_streams_steps_in_input_frame(small_series):
    series, g, vol = small_series
    rec = run("sirt", series, g, iterations=20, every=5)
    steps = list(rec)
    assert [s.iteration for s in steps] == [5, 10, 15, 20]
    assert steps[-1].volume.shape == vol.shape
    err = np.linalg.norm(steps[-1].volume - vol) / np.linalg.norm(vol)
    assert err < 0.5
    prov = rec.provenance()
    assert prov["method"] == "sirt" and prov["iterations"] == 20
    assert prov["kept_tilts"] == list(range(g.n_tilts))
    assert prov["geometry"]["pixel_size"] == 0.8
    assert prov["seconds"] > 0 and prov["version"]


def test_turning_the_images_turns_the_volume(small_series):
    """The same experiment recorded with the camera turned by 90° gives the same volume, turned."""
    series, g, _ = small_series
    h = run_to_end("sirt", series, g, iterations=20)[0]
    turned = np.ascontiguousarray(np.rot90(series, -1, axes=(1, 2)))  # content +90°: axis 0° -> 90°
    v = run_to_end("sirt", turned, g.replace(tilt_axis="vertical"), iterations=20)[0]
    np.testing.assert_allclose(v, np.rot90(h, -1, axes=(1, 2)), rtol=1e-4, atol=1e-4)


def test_tilt_selection_and_binning(small_series):
    series, g, _ = small_series
    rec = run("wbp", series, g, tilt_range=(-45, 45), increment=15, bin=2)
    assert rec.prepared.selection.count == 7
    (step,) = list(rec)
    assert step.volume.shape == (16, 16, 16)
    prov = rec.provenance()
    assert prov["kept_angles"] == [-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0]
    assert prov["binning"] == 2 and prov["geometry"]["pixel_size"] == pytest.approx(1.6)


def test_slab_matches_full_volume_and_knows_its_place(small_series):
    series, g, _ = small_series
    full = run_to_end("sirt", series, g, iterations=10)[0]
    rec = run("sirt", series, g, iterations=10, slices="8:20")
    slab = list(rec)[-1].volume
    # horizontal axis: slices along the axis are columns (x)
    assert slab.shape == (32, 32, 12)
    off = rec.prepared.slab_translate()
    assert off == (0.0, 0.0, 8.0)
    np.testing.assert_allclose(slab, full[:, :, 8:20], rtol=1e-4, atol=1e-4)


def test_chunks_equal_one_pass_for_separable_methods(small_series):
    series, g, _ = small_series
    full = run_to_end("sirt", series, g, iterations=10)[0]
    steps = list(run("sirt", series, g, iterations=10, every=10, chunk=12))
    assert [s.chunk for s in steps] == [(0, 3), (1, 3), (2, 3)]
    np.testing.assert_allclose(steps[-1].volume, full, rtol=1e-4, atol=1e-4)


def test_dask_reconstruction_is_lazy_and_equal(small_series):
    series, g, _ = small_series
    full = run_to_end("sirt", series, g, iterations=10)[0]
    lazy_in = da.from_array(series, chunks=(4, 32, 32))
    vol = reconstruct_dask("sirt", lazy_in, g, chunk=10, iterations=10)
    assert isinstance(vol, da.Array) and vol.shape == full.shape
    np.testing.assert_allclose(vol.compute(), full, rtol=1e-4, atol=1e-4)


def test_warm_start_through_run(small_series):
    series, g, _ = small_series
    one = run_to_end("sirt", series, g, iterations=20)[0]
    half = run_to_end("sirt", series, g, iterations=10)[0]
    rec = run("sirt", series, g, iterations=10, x0=half, start=10)
    last = list(rec)[-1]
    assert last.iteration == 20
    np.testing.assert_allclose(last.volume, one, rtol=1e-4, atol=1e-5)


def test_stop_keeps_last_volume(small_series):
    series, g, _ = small_series
    rec = run("sirt", series, g, iterations=500, every=1)
    for step in rec:
        if step.iteration == 3:
            rec.close()
            break
    assert rec.last.iteration == 3 and rec.provenance()["stopped_early"]
    with pytest.raises(StopIteration):
        next(rec)


def test_user_errors_are_clear(small_series):
    series, g, _ = small_series
    bad = series.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        run("sirt", bad, g)
    with pytest.raises(GeometryError, match="angle count"):
        run("sirt", series[:-1], g)
    with pytest.raises(DataError, match="3D stack"):
        run("sirt", series[0], g)
    with pytest.raises(MethodUnavailable, match="unknown"):
        run("magic", series, g)
    with pytest.raises(ValueError, match="relaxation"):
        run("sirt", series, g, relaxation="7")
    with pytest.raises(ValueError, match="no parameter"):
        run("sirt", series, g, lam=3)
    with pytest.raises(GeometryError, match="no tilt angles"):
        prepare(series, None)


def test_heldout_mask_is_used(small_series):
    series, g, _ = small_series
    rec = run("sirt", series, g, iterations=5, heldout=0.1, seed=3)
    mask = rec.heldout_mask()
    assert mask.shape == rec.prepared.series.shape
    assert abs(mask.mean() - 0.1) < 0.01
    list(rec)
    assert rec.provenance()["heldout_fraction"] == 0.1
