"""Test-time adaptation of the trained network: losses, wedge geometry, stop, saved models."""

import json
import threading

import numpy as np
import pytest
import torch

from conftest import ellipsoid_volume
from tomoprior.algorithms._adapt import AdaptOptions, adapt_network, tilt_halves
from tomoprior.algorithms._common import robust_scale
from tomoprior.algorithms._driver import Problem
from tomoprior.algorithms._restore_model import load_model, restore_volume
from tomoprior.algorithms._wedge import rotate_patches, slice_plane_angles, wedge_mask
from tomoprior.algorithms.diptv import diptv
from tomoprior.algorithms.restore import restore
from tomoprior.algorithms.restore_tv import restore_tv
from tomoprior.algorithms.sirt import sirt
from tomoprior.cancel import StopRequested, stop_when
from tomoprior.errors import ParameterError
from tomoprior.operators import make_projector
from tomoprior.step import last_step

pytestmark = pytest.mark.usefixtures("one_thread")

ANGLES = np.arange(-60.0, 61.0, 10.0)


@pytest.fixture(scope="module")
def problem():
    vol = ellipsoid_volume(32, seed=3)
    A = make_projector(ANGLES, vol.shape, device="cpu", backend="rotate")
    return A, A(torch.from_numpy(vol)), vol


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("loss", ["halves", "wedge", "projection"])
def test_adaptation_lowers_its_loss_and_changes_the_weights(problem, loss):
    A, y, _ = problem
    model = load_model(None, "cpu")
    before = _params(model.net)
    base = torch.from_numpy(last_step(sirt(A, y, iterations=30)).volume)
    gen = adapt_network(model, Problem.build(A, y), base, AdaptOptions(40, loss, 1e-4),
                        seed=1, batch=4, base_iterations=30)
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as done:
        summary = done.value
    assert summary["adapt_loss_last"] < summary["adapt_loss_first"]
    assert any(not torch.equal(a, b) for a, b in zip(before, _params(model.net), strict=True))
    adapt_steps = [s for s in steps if s.phase == "adapt"]
    assert adapt_steps and adapt_steps[-1].extras["adapt_step"] == 40
    assert adapt_steps[-1].volume.shape == base.shape
    assert (loss == "wedge") == all(s.phase == "adapt" for s in steps)  # halves need SIRTs


def test_adapt_zero_is_the_shipped_network(problem):
    """adapt=0 keeps today's result bit for bit: SIRT, then the network as shipped."""
    A, y, _ = problem
    base = last_step(sirt(A, y, iterations=20, every=2)).volume
    expected = restore_volume(load_model(None, "cpu").net, base, robust_scale(base)).numpy()
    got = last_step(restore(A, y, iterations=20, adapt=0)).volume
    np.testing.assert_array_equal(got, expected)
    steps = list(restore_tv(A, y, iterations=3, base_iterations=20, lam=0.01, adapt=0))
    net_step = next(s for s in steps if s.phase == "restore")
    np.testing.assert_array_equal(net_step.volume, expected)
    assert not any(s.phase.startswith("adapt") for s in steps)


def test_adapted_restore_is_deterministic_and_reports_its_summary(problem):
    A, y, _ = problem
    runs = [last_step(restore(A, y, iterations=20, adapt=6, adapt_loss="wedge", seed=2))
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].volume, runs[1].volume)
    ex = runs[0].extras
    assert ex["adapt_steps"] == 6 and ex["adapt_loss"] == "wedge"
    assert runs[0].residual is not None
    other = last_step(restore(A, y, iterations=20, adapt=6, adapt_loss="wedge", seed=3))
    assert not np.array_equal(other.volume, runs[0].volume)


def test_saved_adapted_model_reloads_to_identical_output(problem, tmp_path):
    A, y, _ = problem
    path = tmp_path / "adapted.pt"
    adapted = last_step(restore(A, y, iterations=20, adapt=5, adapt_loss="projection",
                                adapt_save=str(path)))
    assert path.exists() and adapted.extras["adapt_saved"] == str(path)
    reused = last_step(restore(A, y, iterations=20, model=str(path)))
    np.testing.assert_array_equal(reused.volume, adapted.volume)
    card = load_model(path).card
    assert card["adapted"]["steps"] == 5 and card["adapted"]["loss"] == "projection"
    with pytest.raises(ParameterError, match="exists"):  # never overwritten, checked first
        restore(A, y, iterations=20, adapt=5, adapt_save=str(path))


def test_stop_during_adaptation_keeps_the_last_volume(problem, monkeypatch):
    import tomoprior.algorithms._adapt as adapt_mod

    monkeypatch.setattr(adapt_mod, "PACE", 0.0)  # a picture after every step
    A, y, _ = problem
    event = threading.Event()
    shown = []
    with stop_when(event):
        gen = restore(A, y, iterations=10, adapt=50, adapt_loss="wedge")
        with pytest.raises(StopRequested):
            for st in gen:
                shown.append(st)
                if st.phase == "adapt":  # the first picture of the adaptation: stop there
                    event.set()
    assert shown[-1].phase == "adapt" and shown[-1].extras["adapt_step"] < 50
    assert sum(st.phase == "adapt" for st in shown) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"adapt": -1}, "adapt"),
    ({"adapt": 2, "adapt_loss": "noise"}, "adapt_loss"),
    ({"adapt": 2, "adapt_lr": 0.0}, "adapt_lr"),
    ({"adapt": 0, "adapt_save": "x.pt"}, "adapt_save needs adapt"),
    ({"adapt": 2, "base": "wbp"}, "base=sirt"),
])
def test_bad_adaptation_parameters_are_one_line_errors(problem, kwargs, match):
    A, y, _ = problem
    with pytest.raises(ParameterError, match=match):
        restore(A, y, **kwargs)


def test_diptv_adapts_only_the_pretrained_network(problem):
    A, y, _ = problem
    with pytest.raises(ParameterError, match="init=pretrained"):
        diptv(A, y, adapt=3)
    last = last_step(diptv(A, y, init="pretrained", adapt=4, adapt_loss="wedge", iterations=2,
                           every=1, seed=0))
    assert last.extras["adapt_steps"] == 4


def test_halves_are_disjoint_and_cover_the_kept_tilts(problem):
    A, y, _ = problem
    mask = torch.ones_like(y)
    mask[3] = 0  # a tilt the caller left out stays out of both halves
    even, odd = tilt_halves(A, y, mask)
    assert not torch.any((even > 0) & (odd > 0))
    np.testing.assert_array_equal((even + odd).numpy(), mask.numpy())
    per_tilt = even.sum(dim=(1, 2)) > 0
    assert int(per_tilt.sum()) in (6, 7)


@pytest.mark.parametrize("angles", [np.arange(-30.0, 71.0, 2.0), np.arange(-70.0, 31.0, 2.0)])
def test_wedge_mask_holds_the_measured_spectrum_of_an_asymmetric_range(angles):
    n = 48
    A = make_projector(angles, (n, 4, n), device="cpu", backend="rotate")
    lines = slice_plane_angles(A)
    noise = torch.randn(n, 4, n, generator=torch.Generator().manual_seed(0))
    slc = torch.from_numpy(last_step(sirt(A, A(noise), iterations=30)).volume[:, 1])
    power = torch.fft.fft2(slc).abs() ** 2

    def share(mask):
        return float((power * mask).sum() / power.sum())

    assert share(wedge_mask(n, lines)) > share(wedge_mask(n, -lines)) + 0.05
    # a patch turned by phi knows the wedge turned by phi
    pat = rotate_patches(slc[None, None], torch.tensor([[23.5, 23.5]]), torch.tensor([40.0]), 32)
    pp = torch.fft.fft2(pat[0, 0]).abs() ** 2
    turned = wedge_mask(32, lines, torch.tensor([40.0]))[0]
    back = wedge_mask(32, lines, torch.tensor([-40.0]))[0]
    assert float((pp * turned).sum()) > float((pp * back).sum())


def test_cli_adapts_and_refuses_a_bad_adaptation_in_one_line(tmp_path, capsys, problem):
    from tomoprior import io
    from tomoprior.cli import main
    from tomoprior.geometry import TiltGeometry

    _, y, _ = problem
    path = tmp_path / "s.tif"
    series = np.ascontiguousarray(y.numpy().transpose(0, 2, 1))  # any layout: a valid series
    io.write_tilt_series(path, series, TiltGeometry(ANGLES))
    out = tmp_path / "v.tif"
    bad = ["reconstruct", str(path), "-o", str(out), "--method", "restore",
           "--param", "adapt=5", "--param", "adapt_loss=noise"]
    try:
        code = main(bad)
    except SystemExit as exc:
        code = int(exc.code)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "adapt_loss" in err[0] and not out.exists()
    good = ["reconstruct", str(path), "-o", str(out), "--method", "restore", "--iterations", "10",
            "--param", "adapt=3", "--param", "adapt_loss=wedge", "--json"]
    assert main(good) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.exists() and report["parameters"]["adapt"] == 3
