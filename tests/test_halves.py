"""Half-set runs, ensembles and the uncertainty map (tomoprior.engine.halves), API and CLI."""

import json
import threading

import numpy as np
import pytest

import tomoprior
from tomoprior import io
from tomoprior.algorithms import METHODS
from tomoprior.cancel import stop_when
from tomoprior.engine import Reconstruction
from tomoprior.engine.halves import (
    TrustRun,
    TrustStep,
    even_odd,
    jackknife_folds,
    random_halves,
    spread,
)
from tomoprior.errors import GeometryError, ParameterError

pytestmark = pytest.mark.usefixtures("one_thread")


def last_step(rec):
    last = None
    for last in rec:
        pass
    return last


# -- splits -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [4, 7, 41])
def test_even_and_odd_tilts_are_disjoint_cover_every_kept_tilt_and_alternate(n):
    angles = np.random.default_rng(n).permutation(np.linspace(-60, 60, n))  # any order
    even, odd = even_odd(angles)
    assert np.intersect1d(even, odd).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([even, odd])), np.arange(n))
    assert even.size - odd.size in (0, 1)
    order = np.argsort(angles)
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    assert set(rank[even] % 2) == {0} and set(rank[odd] % 2) == {1}


def test_random_halves_and_folds_are_disjoint_cover_and_stay_spread():
    angles = np.linspace(-60, 60, 25)
    rng = np.random.default_rng(0)
    a, b = random_halves(angles, rng)
    assert np.intersect1d(a, b).size == 0 and a.size + b.size == 25
    assert abs(a.size - b.size) <= 1
    for i in range(0, 24, 2):  # each neighbouring pair is split between the halves
        assert (i in a) != (i + 1 in a)
    folds = jackknife_folds(angles, 4, rng)
    everything = np.concatenate(folds)
    assert np.unique(everything).size == everything.size == 25
    assert max(f.size for f in folds) - min(f.size for f in folds) <= 1
    for f in folds:  # one tilt of every group of 4 neighbours
        assert np.all(np.diff(f) <= 7)


def test_spread_of_halves_and_of_an_ensemble():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 6, 7, 8)).astype(np.float32)
    np.testing.assert_allclose(spread([a, b], "halves", 1, smooth=0), np.abs(a - b) / 2, rtol=1e-6)
    members = rng.standard_normal((4, 6, 7, 8)).astype(np.float32)
    jack = np.sqrt(3 / 4 * ((members - members.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(spread(list(members), "ensemble", 4, smooth=0), jack, rtol=1e-5)
    assert spread([a], "ensemble", 4) is None and spread([a], "halves", 1) is None
    assert spread([a, a, a], "ensemble", 3).max() < 1e-6  # members that agree: no spread
    assert spread([a, b], "halves", 1, smooth=1.0).shape == a.shape


# -- runs ---------------------------------------------------------------------------------------
def test_halves_reconstruct_even_and_odd_tilts_apart_and_average_them(small_series):
    series, g, _ = small_series
    rec = tomoprior.run("sirt", series, g, iterations=20, halves=True)
    assert isinstance(rec, TrustRun)
    steps = list(rec)
    last = steps[-1]
    assert isinstance(last, TrustStep) and last.member is None and rec.finished
    assert {s.member for s in steps[:-1]} == {(0, 2), (1, 2)}
    a, b = rec.halves()
    np.testing.assert_allclose(last.volume, (a + b) / 2, rtol=1e-6, atol=1e-7)
    even, odd = even_odd(g.angles)
    alone = last_step(tomoprior.run("sirt", series[even], g.subset(even), iterations=20)).volume
    np.testing.assert_allclose(a, alone, rtol=1e-5, atol=1e-6)  # a half is a plain run of its tilts
    u = last.uncertainty
    assert u.shape == last.volume.shape and u.dtype == np.float32 and np.all(u >= 0)
    prov = rec.provenance()
    trust = prov["trust"]
    t1, t2 = (set(m["kept_tilts"]) for m in trust["members"])
    assert not t1 & t2 and t1 | t2 == set(prov["kept_tilts"])
    assert trust["uncertainty"]["contrast"] > 0 and trust["uncertainty"]["median"] > 0
    res = trust["resolution"]["resolution"]
    assert res["xy"]["0.143"] <= res["z"]["0.143"]  # ±60°: z is never better than x-y
    assert trust["resolution"]["unit"] == "nm" and prov["pixel_size"] == pytest.approx(0.8)
    assert last.extras["resolution_z"] == pytest.approx(res["z"]["0.143"])
    assert 0 < last.residual < 1


def test_an_ordinary_run_is_untouched(small_series):
    series, g, _ = small_series
    plain = tomoprior.run("sirt", series, g, iterations=10)
    off = tomoprior.run("sirt", series, g, iterations=10, halves=False, ensemble=None)
    assert type(plain) is Reconstruction and type(off) is Reconstruction
    np.testing.assert_array_equal(last_step(plain).volume, last_step(off).volume)
    assert "trust" not in off.provenance()


def test_an_ensemble_leaves_out_one_fold_per_member(small_series):
    series, g, _ = small_series
    rec = tomoprior.run("sirt", series, g, iterations=10, ensemble=3, seed=5)
    last = last_step(rec)
    members = rec.provenance()["trust"]["members"]
    assert [m["seed"] for m in members] == [5, 6, 7]
    kept = set(rec.provenance()["kept_tilts"])
    left_out = [kept - set(m["kept_tilts"]) for m in members]
    assert all(left_out) and set().union(*left_out) == kept
    assert not left_out[0] & left_out[1]
    np.testing.assert_allclose(last.volume, np.mean(rec.volumes, axis=0), rtol=1e-6, atol=1e-7)
    assert rec.halves() is None and rec.fsc is None and last.resolution is None
    assert last.uncertainty.shape == last.volume.shape and last.uncertainty.max() > 0


def test_the_live_steps_carry_the_running_mean_and_the_map(small_series):
    series, g, _ = small_series
    rec = tomoprior.run("sirt", series, g, iterations=10, every=5, halves=True, preview=True)
    steps = list(rec)
    assert steps[0].phase == "preview"
    second = [s for s in steps if s.member == (1, 2)]
    first_final = [s for s in steps if s.member == (0, 2)][-1].volume
    np.testing.assert_allclose(second[-1].volume, (first_final + rec.volumes[1]) / 2, rtol=1e-6,
                               atol=1e-7)
    assert second[0].uncertainty is not None  # the map appears as the second half forms
    assert second[0].phase == "half 2/2"


def test_bad_trust_options_are_one_line_errors(small_series):
    series, g, _ = small_series
    with pytest.raises(ParameterError, match="ensemble"):
        tomoprior.run("sirt", series, g, ensemble=1)
    with pytest.raises(ParameterError, match="ensemble"):
        tomoprior.run("sirt", series, g, halves=True, ensemble=0)
    with pytest.raises(ParameterError, match="x0"):
        tomoprior.run("sirt", series, g, halves=True, x0=np.zeros((32, 32, 32), np.float32))
    with pytest.raises(GeometryError, match="4 kept tilts"):
        tomoprior.run("sirt", series[:3], g.subset([0, 1, 2]), halves=True)
    with pytest.raises(GeometryError, match="too few"):
        tomoprior.run("sirt", series[:3], g.subset([0, 1, 2]), ensemble=2)


def test_a_stop_ends_the_whole_run_and_keeps_the_last_mean(small_series):
    series, g, _ = small_series
    stop = threading.Event()
    rec = tomoprior.run("sirt", series, g, iterations=40, every=5, ensemble=3)
    seen = []
    with stop_when(stop):
        for st in rec:
            seen.append(st)
            if st.member == (1, 3):
                stop.set()
    assert rec.stopped and not rec.finished
    assert len(rec.runs) == 2 and seen[-1].member == (1, 3)  # the third never started
    assert rec.provenance()["stopped_early"] and rec.uncertainty is None


# -- command line ---------------------------------------------------------------------------------
@pytest.fixture
def series_file(tmp_path, small_series):
    series, g, _ = small_series
    path = tmp_path / "s.tif"
    io.write_tilt_series(path, series, g)
    return path


def test_reconstruct_halves_writes_the_map_and_halves_beside_the_volume(tmp_path, series_file,
                                                                        capsys):
    from tomoprior.cli import main

    out = tmp_path / "v.mrc"
    code = main(["reconstruct", str(series_file), "-o", str(out), "--method", "sirt",
                 "--iterations", "10", "--halves", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    s = json.loads(captured.out.strip().splitlines()[-1])
    assert "resolution (FSC 0.143 of the half sets)" in captured.err
    std, h1, h2 = (tmp_path / f"v_{n}.mrc" for n in ("std", "half1", "half2"))
    assert s["uncertainty_map"] == str(std) and s["halves"] == [str(h1), str(h2)]
    assert s["trust"]["mode"] == "halves" and "z" in s["trust"]["resolution"]["resolution"]
    vol, umap = io.read(out), io.read(std)
    assert umap.data.shape == vol.data.shape and umap.pixel_size == pytest.approx(vol.pixel_size)
    prov_v, prov_u = io.read_provenance(out), io.read_provenance(std)
    assert prov_u["content"].startswith("uncertainty map")
    assert {k: v for k, v in prov_u.items() if k != "content"} == prov_v
    a, b = np.asarray(io.read(h1).data), np.asarray(io.read(h2).data)
    np.testing.assert_allclose(np.asarray(vol.data), (a + b) / 2, rtol=1e-5, atol=1e-6)
    # written under temporary names and renamed: nothing else is left in the folder
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("s.")) == sorted(
        ["v.mrc", "v.json", "v_std.mrc", "v_std.json", "v_half1.mrc", "v_half1.json",
         "v_half2.mrc", "v_half2.json"])


def test_an_existing_map_is_refused_before_anything_runs(tmp_path, series_file, capsys):
    from tomoprior.cli import main

    (tmp_path / "v_std.tif").write_bytes(b"keep me")
    code = main(["reconstruct", str(series_file), "-o", str(tmp_path / "v.tif"), "--method",
                 "sirt", "--ensemble", "2"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "v_std.tif" in err[0]
    assert not (tmp_path / "v.tif").exists() and (tmp_path / "v_std.tif").read_bytes() == b"keep me"


@pytest.mark.parametrize("extra", [["--ensemble", "1"], ["--halves", "--chunk", "8",
                                                         "--scheduler", "threads"]])
def test_reconstruct_refuses_impossible_trust_options(tmp_path, series_file, capsys, extra):
    from tomoprior.cli import main

    code = main(["reconstruct", str(series_file), "-o", str(tmp_path / "v.tif"), "--method",
                 "sirt", *extra])
    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "v.tif").exists()


# -- every registered method ----------------------------------------------------------------------
def _tiny_series():
    from tomoprior.geometry import TiltGeometry
    from tomoprior.operators import make_projector

    x = np.zeros((16, 12, 16), np.float32)
    x[4:10, 3:9, 5:12] = 1.0
    x[6:8, :, 2:4] = 2.0
    g = TiltGeometry(np.arange(-60, 61, 20.0), tilt_axis="vertical", pixel_size=1.0)
    import torch

    A = make_projector(g.angles, x.shape, device="cpu")
    y = A(torch.from_numpy(x)).numpy()  # canonical frame = input frame for a vertical axis
    return y + 0.01 * np.random.default_rng(0).standard_normal(y.shape).astype(np.float32), g


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_as_half_sets(name):
    """Halves work for any registered method, through its ordinary run (fast settings of the
    method contract test)."""
    from test_method_contract import _kwargs

    series, g = _tiny_series()
    kw = _kwargs(name)
    its, every = kw.pop("iterations", None), kw.pop("every", None)
    rec = tomoprior.run(name, series, g, iterations=its, every=every, halves=True, **kw)
    last = last_step(rec)
    assert isinstance(last, TrustStep) and last.member is None and rec.finished
    assert last.volume.shape == last.uncertainty.shape == (16, 12, 16)
    assert np.isfinite(last.volume).all() and np.isfinite(last.uncertainty).all()
    assert len(rec.provenance()["trust"]["members"]) == 2 and rec.fsc is not None
