"""Filling in tilts: triplet generator, tiny training, pass-through, angle bookkeeping, projections."""

import numpy as np
import pytest
import torch

from tomoprior.errors import GeometryError, ModelError, ParameterError
from tomoprior.geometry import TiltGeometry
from tomoprior.interpolation import interpolate, plan_angles
from tomoprior.interpolation._model import load_model, save_model
from tomoprior.interpolation._net import InterpNet
from tomoprior.phantoms._triplets import TripletRanges, interpolation_triplets
from tomoprior.projections import render_projections

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = TripletRanges(sizes=(32,), max_tilt=20, gap=(2, 8))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny untrained-but-nonzero network saved and loaded through the model file."""
    torch.manual_seed(0)
    net = InterpNet((4, 8), fold=2)
    with torch.no_grad():
        net.out.weight.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, net, {"name": "tiny", "package_version": "test"})
    return load_model(path)


def _series(n=7, shape=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32) * 100


def test_triplet_generator_is_deterministic():
    a = interpolation_triplets(3, ranges=SMALL, per_series=4)
    b = interpolation_triplets(3, ranges=SMALL, per_series=4)
    for _ in range(5):  # crosses into the second series
        ta, tb = next(a), next(b)
        for x, y in zip(ta[:4], tb[:4]):
            assert x.shape == (32, 32) and np.array_equal(x, y)
        assert ta[4] == tb[4] and 2 <= ta[4]["gap"] <= 8 and 0 < ta[4]["t"] < 1
    other = next(interpolation_triplets(4, ranges=SMALL, per_series=4))
    assert not np.array_equal(other[0], ta[0])
    left, mid, clean, right, info = ta
    assert np.abs(mid - clean).mean() > 0  # the measured middle is noisy, the target clean


def test_tiny_model_trains_and_its_loss_falls(tmp_path):
    from tomoprior.interpolation.training import InterpTrainConfig, train_interpolate

    cfg = InterpTrainConfig(steps=60, batch=8, patch_rows=32, patch_cols=32, lr=3e-3,
                            channels=(8, 16), fold=2, series=2, val_series=1, validate_every=60,
                            ranges={"sizes": (32,), "max_tilt": 20, "gap": (2, 8)})
    losses = []
    card = train_interpolate(tmp_path / "m.pt", cfg, step_callback=lambda s, v: losses.append(v))
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    m = load_model(tmp_path / "m.pt")
    assert m.card["data"]["generator"] == "tomoprior.phantoms.interpolation_triplets"
    assert set(card["validation"]) >= {"4", "8", "all"}
    assert (tmp_path / "m.json").is_file() and (tmp_path / "m.pt.ckpt").is_file()


def test_model_file_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable"):
        load_model(bad)
    torch.save({"format": "tomoprior-restore", "format_version": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a tomoprior interpolation model"):
        load_model(tmp_path / "other.pt")


@pytest.mark.parametrize("method", ["linear", "learned", "reproject"])
def test_measured_frames_pass_through_bit_for_bit(method, tiny_model):
    series = _series()
    g = TiltGeometry(np.arange(-30, 31, 10.0), tilt_axis=0.0)
    kw = {"model": tiny_model} if method == "learned" else {}
    if method == "reproject":
        kw = {"recon_method": "sirt", "iterations": 3}
    res = interpolate(series, g, factor=3, method=method, device="cpu", **kw)
    assert res.series.shape == (19, 24, 32) and res.series.dtype == np.float32
    kept = res.series[res.measured]
    assert np.array_equal(kept.view(np.uint32), series.view(np.uint32))
    assert np.all(np.isfinite(res.series[~res.measured]))
    assert res.record()["virtual_angles"][:2] == pytest.approx([-26.6667, -23.3333], abs=1e-3)


def test_linear_frames_are_the_angle_weighted_blend():
    series = _series(n=3)
    g = TiltGeometry([0.0, 4.0, 10.0])
    res = interpolate(series, g, factor=4, method="linear")
    assert res.geometry.angles.tolist() == [0, 1, 2, 3, 4, 5.5, 7, 8.5, 10]
    np.testing.assert_allclose(res.series[1], 0.75 * series[0] + 0.25 * series[1], rtol=1e-5)
    np.testing.assert_allclose(res.series[7], 0.25 * series[1] + 0.75 * series[2], rtol=1e-5)


def test_plan_non_uniform_and_step():
    p = plan_angles([0.0, 3.0, 10.0, 12.0], step=2.0)
    # gaps 3 -> 2 parts, 7 -> 4 parts, 2 -> 1 part (already fine enough)
    assert p.angles.tolist() == [0, 1.5, 3, 4.75, 6.5, 8.25, 10, 12]
    assert p.measured.tolist() == [True, False, True, False, False, False, True, True]
    assert p.source.tolist() == [0, -1, 1, -1, -1, -1, 2, 3]
    assert p.gaps[~p.measured].tolist() == [3, 7, 7, 7]
    assert plan_angles([0.0, 3.0], step=3.0).n_virtual == 0


def test_plan_descending_and_unordered_angles():
    p = plan_angles([20.0, 10.0, 0.0], factor=2)
    assert p.angles.tolist() == [20, 15, 10, 5, 0]
    assert p.source.tolist() == [0, -1, 1, -1, 2]
    q = plan_angles([0.0, 10.0, -10.0, 20.0], factor=2)  # dose-symmetric order: ascending out
    assert q.angles.tolist() == [-10, -5, 0, 5, 10, 15, 20]
    assert q.source.tolist() == [2, -1, 0, -1, 1, -1, 3]
    mid = int(np.flatnonzero(q.angles == 15)[0])
    assert (q.left[mid], q.right[mid], q.t[mid]) == (1, 3, 0.5)


def test_descending_series_keeps_its_frames_in_order():
    series = _series(n=3)
    g = TiltGeometry([20.0, 10.0, 0.0])
    res = interpolate(series, g, factor=2, method="linear")
    assert res.geometry.angles.tolist() == [20, 15, 10, 5, 0]
    assert np.array_equal(res.series[[0, 2, 4]], series)


@pytest.mark.parametrize("bad", [{"factor": 1}, {"factor": 2.5}, {"step": 0.0}, {},
                                 {"factor": 2, "step": 1.0}])
def test_plan_rejects_bad_requests(bad):
    with pytest.raises(ParameterError):
        plan_angles([0.0, 10.0], **bad)


def test_plan_needs_two_distinct_angles():
    with pytest.raises(GeometryError):
        plan_angles([5.0], factor=2)
    with pytest.raises(GeometryError, match="duplicate"):
        plan_angles([0.0, 5.0, 5.0], factor=2)


def test_learned_on_a_vertical_axis_is_the_transpose_of_horizontal(tiny_model):
    series = _series(n=4, shape=(32, 32))
    angles = [-15.0, -5.0, 5.0, 15.0]
    h = interpolate(series, TiltGeometry(angles, tilt_axis=0.0), factor=2, model=tiny_model)
    # the same specimen with the axis along the rows: the images turned a quarter turn
    turned = np.ascontiguousarray(np.rot90(series, -1, axes=(1, 2)))
    v = interpolate(turned, TiltGeometry(angles, tilt_axis=90.0), factor=2, model=tiny_model)
    assert v.geometry.tilt_axis == 90.0 and v.series.shape == h.series.shape
    np.testing.assert_allclose(v.series, np.rot90(h.series, -1, axes=(1, 2)), atol=1e-4)
    assert not np.allclose(h.series[1], 0.5 * (series[0] + series[1]), atol=1e-3)


def test_virtual_frames_carry_interpolated_shifts():
    series = _series(n=3)
    shifts = np.array([[0.0, 0.0], [2.0, -4.0], [0.0, 0.0]])
    g = TiltGeometry([0.0, 10.0, 20.0], shifts=shifts)
    res = interpolate(series, g, factor=2, method="linear")
    assert res.geometry.shifts.tolist() == [[0, 0], [1, -2], [2, -4], [1, -2], [0, 0]]


def test_render_projections_input_frame_for_any_axis():
    rng = np.random.default_rng(1)
    vol = np.zeros((16, 24, 24), np.float32)
    vol[4:12, 6:18, 8:14] = rng.random((8, 12, 6))
    g_h = TiltGeometry([0.0, 30.0], tilt_axis="horizontal")
    canon = render_projections(vol, g_h, [0.0, 25.0], frame="canonical")
    raw = render_projections(vol, g_h, [0.0, 25.0], frame="input")
    assert raw.shape == (2, 24, 24)
    np.testing.assert_allclose(raw, np.rot90(canon, 1, axes=(1, 2)), atol=1e-6)
    # at 0° the projection is the sum along the beam in the image frame
    np.testing.assert_allclose(raw[0], vol.sum(axis=0), rtol=1e-4, atol=1e-4)
    g_v = TiltGeometry([0.0, 30.0], tilt_axis="vertical")  # canonical is the input frame
    raw_v = render_projections(vol, g_v, [0.0, 25.0])
    np.testing.assert_allclose(raw_v, render_projections(vol, g_v, [0.0, 25.0], frame="canonical"))
    np.testing.assert_allclose(raw_v[0], vol.sum(axis=0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(raw_v[1], raw[1], atol=1e-3)  # the tilt turns about another axis
    with pytest.raises(GeometryError):
        render_projections(vol, g_h, [0.0], frame="sideways")


def test_inr_render_projections_input_frame():
    from tomoprior.algorithms.inr import inr
    from tomoprior.algorithms.inr import render_projections as inr_render
    from tomoprior.operators import make_projector
    from tomoprior.step import last_step

    vol = np.zeros((8, 8, 8), np.float32)
    vol[2:6, 3:5, 2:6] = 1.0
    angles = np.array([-30.0, 0.0, 30.0])
    A = make_projector(angles, vol.shape, 8, device="cpu")
    y = A(torch.from_numpy(vol))
    step = last_step(inr(A, y, iterations=2, every=2, batch_rays=64))
    canon = inr_render(step.model, [10.0])
    g = TiltGeometry(angles, tilt_axis="horizontal")
    raw = inr_render(step.model, [10.0], frame="input", geometry=g)
    np.testing.assert_allclose(raw, np.rot90(canon, 1, axes=(1, 2)), atol=1e-6)
    with pytest.raises(GeometryError):
        inr_render(step.model, [10.0], frame="input")


def test_until_stops_inside_the_schedule_and_resume_writes_the_same_model(tmp_path):
    from tomoprior.interpolation.training import InterpTrainConfig, train_interpolate

    kw = dict(steps=8, batch=2, patch_rows=32, patch_cols=32, channels=(4, 8), fold=2, series=1,
              val_series=1, validate_every=4, checkpoint_every=2,
              ranges={"sizes": (32,), "max_tilt": 12, "gap": (2, 6)})
    card = train_interpolate(tmp_path / "a.pt", InterpTrainConfig(until=4, **kw))
    assert card["training"]["stopped_at"] == 4 and card["log"][-1]["step"] == 4
    first = load_model(tmp_path / "a.pt").net.state_dict()
    card2 = train_interpolate(tmp_path / "a.pt", InterpTrainConfig(until=4, **kw), resume=True)
    assert card2["training"]["stopped_at"] == 4
    again = load_model(tmp_path / "a.pt").net.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    with pytest.raises(ParameterError):
        InterpTrainConfig(until=9, **kw).check()
