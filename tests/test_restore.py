"""Learned restoration: training pairs, training, model files, the restore method, DIP-TV init."""

import json

import numpy as np
import pytest
import torch

from tomoprior.algorithms._restore_model import load_model, save_model
from tomoprior.algorithms._unetpp import NestedUNet
from tomoprior.errors import ModelError, ParameterError
from tomoprior.phantoms import PairRanges, restoration_pairs, simulate_specimen
from tomoprior.training import TrainConfig, train_restore

pytestmark = pytest.mark.usefixtures("one_thread")

# the Pt and object families only: three tiny specimens of the domain-randomised "matter"
# family are too varied for 120 steps to show a falling loss
SMALL = {"sizes": (32,), "step": (10.0, 20.0), "base_iterations": 20, "slices": 6,
         "families": ("pt_haadf", "pt_adf", "particles", "faces"),
         "family_weights": (0.3, 0.35, 0.15, 0.2)}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    losses = []
    cfg = TrainConfig(steps=120, batch=8, patch=32, lr=3e-3, channels=(8, 16), specimens=3,
                      val_specimens=1, validate_every=60, checkpoint_every=60, ranges=SMALL)
    card = train_restore(out, cfg, step_callback=lambda k, v: losses.append(v))
    return out, card, losses


def test_pairs_are_deterministic_and_seeded():
    r = PairRanges(**SMALL)
    a = restoration_pairs(seed=4, ranges=r)
    b = restoration_pairs(seed=4, ranges=r)
    c = restoration_pairs(seed=5, ranges=r)
    for _ in range(3):
        (xa, ta, ia), (xb, tb, ib) = next(a), next(b)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta, tb)
        assert ia == ib and xa.dtype == np.float32 and xa.shape == ta.shape
    assert not np.array_equal(next(a)[1], next(c)[1])


def test_pairs_cover_the_declared_ranges():
    r = PairRanges(**SMALL)
    infos = [simulate_specimen(100_000 + i, r).info for i in range(8)]
    for info in infos:
        lo, hi = info["tilt_range"]
        assert 45 <= hi <= 75 and -75 <= lo <= -37 and 10 <= info["step"] <= 20
        assert 1e3 <= info["dose"] <= 1e5 and info["family"] in r.families
    assert len({i["family"] for i in infos}) >= 2


def test_targets_are_what_the_projector_of_the_inputs_sees():
    """Without noise, offset and misalignment, projecting the target slices gives the data."""
    from tomoprior.operators import make_projector

    clean = PairRanges(**SMALL, dose=(1e12, 1e12), offset=(0.0, 0.0), drift=(0.0, 0.0),
                       axis_error=0.0, diffraction=(0.0, 0.0))
    for seed in (100_001, 100_002):
        sp = simulate_specimen(seed, clean, keep_series=True)
        A = make_projector(sp.angles, sp.truth.shape, sp.series.shape[2], device="cpu")
        proj = A(torch.from_numpy(sp.truth)).numpy()
        err = np.linalg.norm(proj - sp.series) / np.linalg.norm(sp.series)
        assert err < 0.05, (sp.info["family"], err)


def test_a_tiny_model_trains_and_its_loss_falls(tiny_model):
    from tomoprior.algorithms._restore_model import restore_volume

    out, card, losses = tiny_model
    assert len(losses) == 120 and np.isfinite(losses).all()
    # the network starts as the identity; on its training slices it must now beat the base
    net = load_model(out).net
    first, last = card["data"]["train_specimen_seeds"]
    before = after = 0.0
    for seed in range(first, last + 1):
        sp = simulate_specimen(seed, PairRanges(**SMALL))
        restored = restore_volume(net, sp.base, sp.scale).numpy()
        before += float(np.abs(sp.base - sp.truth).mean())
        after += float(np.abs(restored - sp.truth).mean())
    assert after < 0.95 * before
    assert out.is_file() and out.with_suffix(".json").is_file()
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["training"]["seed"] == 0 and on_disk["architecture"]["channels"] == [8, 16]
    assert {"base_ssim", "restored_ssim"} <= set(on_disk["validation"]["all"])
    assert [e["step"] for e in on_disk["log"]] == [60, 120]


def test_training_is_reproducible_and_resumes_exactly(tmp_path):
    cfg = dict(steps=6, batch=2, patch=32, channels=(8, 16), specimens=1, val_specimens=1,
               validate_every=3, checkpoint_every=3, ranges=SMALL)
    whole, again, part = tmp_path / "whole.pt", tmp_path / "again.pt", tmp_path / "part.pt"
    train_restore(whole, TrainConfig(**cfg))
    train_restore(again, TrainConfig(**cfg))

    def interrupt(step, loss):
        if step == 4:  # after the step-3 checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_restore(part, TrainConfig(**cfg), step_callback=interrupt)
    assert not part.exists()
    train_restore(part, TrainConfig(**cfg), resume=True)
    a = load_model(whole).net.state_dict()
    for other in (again, part):
        b = load_model(other).net.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), other.name
    with pytest.raises(ParameterError, match="lr"):
        train_restore(part, TrainConfig(**{**cfg, "lr": 0.5}), resume=True)


def test_cached_specimens_give_the_same_model(tmp_path):
    cfg = dict(steps=3, batch=2, patch=32, channels=(8, 16), specimens=2, val_specimens=1,
               ranges=SMALL)
    cache = tmp_path / "cache"
    train_restore(tmp_path / "a.pt", TrainConfig(**cfg), cache=cache)
    assert len(list(cache.glob("specimen-*.npz"))) == 3
    train_restore(tmp_path / "b.pt", TrainConfig(**cfg), cache=cache)  # from the cache
    a, b = load_model(tmp_path / "a.pt").net.state_dict(), load_model(tmp_path / "b.pt").net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_saved_and_reloaded_model_gives_identical_output(tiny_model, tmp_path):
    out, _, _ = tiny_model
    m = load_model(out)
    x = torch.rand(3, 1, 20, 28)
    with torch.no_grad():
        first = m.net(x)
    again = save_model(tmp_path / "copy.pt", m.net, m.card)
    with torch.no_grad():
        np.testing.assert_array_equal(load_model(again).net(x).numpy(), first.numpy())
    assert first.shape == x.shape  # any slice size: padded inside


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "wrong_format", "shapes"])
def test_bad_model_files_give_one_clear_error(tiny_model, tmp_path, damage):
    out, _, _ = tiny_model
    bad = tmp_path / "bad.pt"
    if damage == "garbage":
        bad.write_bytes(b"not a model at all" * 10)
    elif damage == "truncated":
        bad.write_bytes(out.read_bytes()[:1000])
    elif damage == "wrong_format":
        torch.save({"format": "something-else"}, bad)
    elif damage == "shapes":
        blob = torch.load(out, weights_only=True)
        blob["card"]["architecture"]["channels"] = [8, 32]
        torch.save(blob, bad)
    with pytest.raises(ModelError) as info:
        load_model(bad)
    assert "\n" not in str(info.value) and "bad.pt" in str(info.value)


def test_network_starts_as_identity_and_any_size_works():
    net = NestedUNet((4, 8, 16))
    x = torch.rand(2, 1, 13, 30)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), x.numpy(), atol=1e-6)


# -- the method ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adf_series():
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("pt_adf", 24, seed=3, supersample=2)
    series, g = simulate(ph, np.arange(-60, 61, 15.0), noise="poisson", dose=5e3, seed=3)
    return series, g


def test_restore_streams_base_then_restored(tiny_model, adf_series):
    from tomoprior.engine import run

    out, _, _ = tiny_model
    series, g = adf_series
    rec = run("restore", series, g, model=str(out), iterations=20, every=5)
    steps = list(rec)
    assert [s.phase for s in steps] == ["base"] * 3 + ["restore"]
    assert [s.iteration for s in steps] == [5, 10, 15, 20]
    assert steps[-1].extras["model"] == "tiny" and np.isfinite(steps[-1].volume).all()
    assert not np.array_equal(steps[-1].volume, steps[-2].volume)


def test_restore_is_independent_of_the_data_scale(tiny_model, adf_series):
    from tomoprior.engine import run_to_end

    out, _, _ = tiny_model
    series, g = adf_series
    a, _ = run_to_end("restore", series, g, model=str(out), iterations=10)
    b, _ = run_to_end("restore", series * 250.0, g, model=str(out), iterations=10)
    np.testing.assert_allclose(b / 250.0, a, rtol=2e-3, atol=2e-4 * float(np.abs(a).max()))


def test_restore_wbp_base(tiny_model, adf_series):
    from tomoprior.engine import run

    out, _, _ = tiny_model
    series, g = adf_series
    steps = list(run("restore", series, g, model=str(out), base="wbp"))
    assert [s.phase for s in steps] == ["restore"]


def test_diptv_pretrained_starts_at_restore_and_fits_the_data(tiny_model, adf_series):
    from tomoprior.engine import run, run_to_end

    out, _, _ = tiny_model
    series, g = adf_series
    restored, _ = run_to_end("restore", series, g, model=str(out), iterations=20)
    # lr 0: the network does not move, so DIP-TV returns restore's volume
    still, _ = run_to_end("diptv", series, g, model=str(out), init="pretrained", lr=0.0,
                           iterations=1, lam=0.0, val_fraction=0.0)
    np.testing.assert_allclose(still, restored, rtol=1e-4, atol=1e-4 * float(restored.max()))
    rec = run("diptv", series, g, model=str(out), init="pretrained", lr=1e-3, iterations=30,
              every=10, lam=0.0, val_fraction=0.0, batch_slices=0)
    last = None
    for last in rec:
        pass
    fitted = rec.evaluate(last.volume)["reprojection_residual"]
    assert fitted < rec.evaluate(restored)["reprojection_residual"]


def test_cli_restore_and_bad_model(tiny_model, adf_series, tmp_path, capsys):
    from tomoprior import io
    from tomoprior.cli import main

    out, _, _ = tiny_model
    series, g = adf_series
    src = tmp_path / "s.tif"
    io.write_tilt_series(src, series, g)
    vol = tmp_path / "v.tif"
    assert main(["reconstruct", str(src), "-o", str(vol), "--method", "restore",
                 "--iterations", "10", "--param", f"model={out}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == "restore" and vol.is_file()
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00" * 64)
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "w.tif"), "--method", "restore",
                 "--param", f"model={bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.pt is not a readable tomoprior model file" in err[0]
    assert not (tmp_path / "w.tif").exists()


def test_restore_tv_streams_base_restore_search_then_fit(tiny_model, adf_series):
    from tomoprior.engine import run

    out, _, _ = tiny_model
    series, g = adf_series
    steps = list(run("restore_tv", series, g, model=str(out), base_iterations=20, iterations=20,
                     every=10, mu=0.01))
    phases = [s.phase for s in steps]
    assert phases[:11] == ["base"] * 10 + ["restore"]
    assert "lambda search" in phases and phases[-2:] == ["iterate", "iterate"]
    last = steps[-1]
    assert last.extras["mu"] == 0.01 and last.extras["model"] == "tiny"
    assert last.extras["prior"] > 0 and last.loss >= last.extras["prior"]


def test_restore_tv_spans_cstv_and_the_network(tiny_model, adf_series):
    """mu=0 is CS-TV started from the network's volume; a huge mu keeps that volume; in
    between the fit is closer to the data than the network and closer to it than CS-TV."""
    from tomoprior.engine import run, run_to_end

    out, _, _ = tiny_model
    series, g = adf_series
    kw = dict(model=str(out), base_iterations=20, lam=0.02, iterations=40)
    steps = list(run("restore_tv", series, g, mu=100.0, **kw))
    net = next(s.volume for s in steps if s.phase == "restore")
    np.testing.assert_allclose(steps[-1].volume, np.clip(net, 0, None), rtol=0,
                               atol=2e-3 * float(net.max()))
    free, _ = run_to_end("restore_tv", series, g, mu=0.0, **kw)
    cs, _ = run_to_end("cstv", series, g, lam=0.02, iterations=40, x0=net)
    np.testing.assert_allclose(free, cs, rtol=1e-4, atol=1e-4 * float(cs.max()))
    rec = run("restore_tv", series, g, mu=0.03, **kw)
    mid = None
    for mid in rec:
        pass
    res = {k: rec.evaluate(v)["reprojection_residual"] for k, v in
           (("net", net), ("mid", mid.volume), ("free", free))}
    assert res["free"] <= res["mid"] < res["net"]
    dist = lambda v: float(np.linalg.norm(v - net))  # noqa: E731
    assert dist(mid.volume) < dist(free)


def test_restore_tv_bad_parameters_and_model(tiny_model, adf_series, tmp_path):
    from tomoprior.engine import run

    series, g = adf_series
    with pytest.raises(ParameterError, match="mu"):
        list(run("restore_tv", series, g, mu=float("nan")))
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match=r"broken\.pt"):
        next(iter(run("restore_tv", series, g, model=str(bad))))


def test_cli_train_writes_model_and_card(tmp_path, capsys):
    from tomoprior.cli import main

    out = tmp_path / "m.pt"
    assert main(["train", "restore", "-o", str(out), "--steps", "2", "--batch", "2", "--size", "32",
                 "--specimens", "1", "--val-specimens", "1", "--validate-every", "2",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["output"] == str(out) and out.is_file() and "all" in res["validation"]
    assert main(["train", "restore", "-o", str(out), "--steps", "2"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["train", "restore", "-o", str(tmp_path / "m.txt")]) == 2
    assert main(["train", "restore", "-o", str(tmp_path / "no" / "m.pt")]) == 2


def test_epochs_set_the_steps(tmp_path):
    cfg = TrainConfig(epochs=0.5, batch=4, patch=32, channels=(8, 16), specimens=1,
                      val_specimens=1, ranges=SMALL)
    card = train_restore(tmp_path / "e.pt", cfg)
    slices = card["training"]["slices"]
    assert card["training"]["steps"] == -(-slices // 8) and card["training"]["epochs"] == 0.5


def test_restore_tv_reports_progress_and_the_residual_in_every_phase():
    from tomoprior.algorithms.restore_tv import restore_tv
    from tomoprior.operators import make_projector
    from tomoprior.phantoms import make_phantom

    ph = make_phantom("blobs", 16, seed=0).volume
    A = make_projector(np.arange(-60, 61, 15.0), ph.shape, device="cpu")
    y = A(torch.from_numpy(ph))
    steps = list(restore_tv(A, y, iterations=4, every=2, base_iterations=4, lam="auto"))
    search = [s for s in steps if s.phase == "lambda search"]
    fractions = [s.extras["phase_fraction"] for s in search]
    assert len(search) > 1 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(s.extras["candidates"] > 1 for s in search)
    assert all(s.residual is not None and 0 <= s.residual < 2 for s in steps)
    assert {s.phase for s in steps} == {"base", "restore", "lambda search", "iterate"}


def test_training_can_start_from_a_model_file(tiny_model, tmp_path):
    import hashlib

    path, _, _ = tiny_model
    cfg = TrainConfig(steps=1, batch=2, patch=32, lr=1e-9, channels=(8, 16), specimens=1,
                      val_specimens=1, validate_every=1, checkpoint_every=1, ranges=SMALL,
                      init=str(path))
    card = train_restore(tmp_path / "ft.pt", cfg)
    assert card["training"]["init"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    before = load_model(path).net.state_dict()
    after = load_model(tmp_path / "ft.pt").net.state_dict()
    for key, value in before.items():  # one step at lr 1e-9: the same weights
        torch.testing.assert_close(after[key], value, atol=1e-3, rtol=0)
    wrong = TrainConfig(steps=1, channels=(8, 16, 32), specimens=1, val_specimens=1,
                        ranges=SMALL, init=str(path))
    with pytest.raises(ParameterError, match="channels"):
        train_restore(tmp_path / "wrong.pt", wrong)
