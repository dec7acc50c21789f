"""The regularised methods' shortcuts reach the same volumes: convergence stops, λ on sample
slabs, the λ path's early end, and run defaults that follow from a parameter."""

import numpy as np
import pytest
import torch

from tomoprior.algorithms import get_method
from tomoprior.algorithms._lambda_search import sample_rows
from tomoprior.algorithms.cstv import cstv, cstv_objective
from tomoprior.operators import make_projector
from tomoprior.step import last_step

pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(shape, seed=0):
    """Soft ellipsoids filling a (z, y, x) box, the y extent the longest (as a needle)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    v = np.zeros(shape, np.float32)
    for _ in range(8):
        c = rng.uniform(-0.5, 0.5, 3) * (1, 1.6, 1)
        r = rng.uniform(0.15, 0.35, 3)
        d = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        v += rng.uniform(0.5, 1.0) / (1 + np.exp((d - 1) * 10))
    return v


def _noisy(shape):
    """Projections of blobs at ±60° every 6° with 5 % Gaussian noise."""
    vol = torch.from_numpy(_blobs(shape))
    A = make_projector(np.arange(-60.0, 61.0, 6.0), vol.shape, device="cpu")
    y = A(vol)
    g = torch.Generator().manual_seed(0)
    return A, y + 0.05 * float(y.std()) * torch.randn(y.shape, generator=g), vol


@pytest.fixture(scope="module")
def problem():
    """A (16, 48, 16) volume: 48 slices, so the λ search samples."""
    return _noisy((16, 48, 16))


def test_converged_fit_reaches_the_long_solves_objective(problem):
    A, y, _ = problem
    lam = 0.02
    stopped = last_step(cstv(A, y, lam=lam, iterations=3000, every=3000, tol=1e-5))
    full = last_step(cstv(A, y, lam=lam, iterations=3000, every=3000, tol=0.0))
    assert stopped.iteration < 3000 and full.iteration == 3000  # the tolerance stopped it
    lam_eff = lam * A.n_tilts
    f_stop = cstv_objective(A, torch.from_numpy(stopped.volume), y, lam_eff)[0]
    f_full = cstv_objective(A, torch.from_numpy(full.volume), y, lam_eff)[0]
    assert abs(f_stop - f_full) / f_full < 1e-3


def test_default_tolerance_stops_early_near_the_fixed_count_volume(problem):
    A, y, _ = problem
    quick = last_step(cstv(A, y, lam=0.02, iterations=1000, every=1000))
    fixed = last_step(cstv(A, y, lam=0.02, iterations=1000, every=1000, tol=0.0))
    assert quick.iteration < fixed.iteration
    err = np.linalg.norm(quick.volume - fixed.volume) / np.linalg.norm(fixed.volume)
    assert err < 0.02, err


def test_lambda_on_sample_slabs_is_the_whole_volumes_pick():
    """On a specimen wide enough for a few thousand held-out pixels in the sample slabs."""
    A, y, _ = _noisy((24, 48, 48))
    assert sample_rows(y) is not None  # 48 slices: the search samples
    sample = last_step(cstv(A, y, lam="auto", iterations=60, every=60, lam_search="sample"))
    whole = last_step(cstv(A, y, lam="auto", iterations=60, every=60, lam_search="whole"))
    assert sample.extras["lam"] == whole.extras["lam"]
    assert sample.extras.get("search_slices") is None  # extras of the fit, not of the search


def test_sample_rows_cover_the_bands_where_the_signal_is():
    y = torch.zeros((5, 120, 10))
    y[:, 50:58] = 1.0  # all the signal in one band's middle
    rows = sample_rows(y)
    assert len(rows) == 3 and all(s.stop - s.start == 8 for s in rows)
    assert slice(50, 58) in rows
    assert all(0 <= s.start and s.stop <= 120 for s in rows)
    assert sample_rows(torch.zeros((5, 36, 10))) is None  # small volumes: searched whole


def test_search_steps_say_how_many_slices_they_use(problem):
    A, y, _ = problem
    steps = [s for s in cstv(A, y, lam="auto", iterations=40, every=40)
             if s.phase == "lambda search"]
    assert {s.extras["search_slices"] for s in steps} == {24}
    assert steps[-1].extras["phase_fraction"] == 1.0


def test_resumed_cstv_with_tolerance_equals_one_run(problem):
    A, y, _ = problem
    one = last_step(cstv(A, y, lam=0.02, iterations=90, every=90, tol=5e-3))
    a = last_step(cstv(A, y, lam=0.02, iterations=30, every=30, tol=5e-3))
    b = last_step(cstv(A, y, lam=0.02, iterations=30, every=30, tol=5e-3, resume=a.resume))
    c = last_step(cstv(A, y, lam=0.02, iterations=30, every=30, tol=5e-3, resume=b.resume))
    assert c.iteration == one.iteration
    np.testing.assert_allclose(c.volume, one.volume, rtol=1e-5, atol=1e-6)


def test_run_defaults_follow_a_parameter_in_one_place():
    m = get_method("diptv")
    assert m.run_defaults() == (m.default_iterations, m.default_every) == (1000, 25)
    assert m.run_defaults(m.resolve({"init": "pretrained"})) == (100, 25)
    assert get_method("sirt").run_defaults({}) == (100, 5)


def test_engine_takes_the_pretrained_start_s_iterations():
    from tomoprior.engine import run
    from tomoprior.geometry import TiltGeometry

    series = np.random.default_rng(0).random((7, 16, 16), dtype=np.float32) + 0.1
    g = TiltGeometry(angles=np.linspace(-60, 60, 7))
    assert run("diptv", series, g, init="pretrained").iterations == 100
    assert run("diptv", series, g).iterations == 1000
    assert run("diptv", series, g, init="pretrained", iterations=7).iterations == 7


def test_diptv_stops_on_a_held_out_plateau(problem):
    """With a zero learning rate nothing improves: the run ends after ``patience`` snapshots."""
    from tomoprior.algorithms.diptv import diptv

    A, y, _ = problem
    steps = list(diptv(A, y, iterations=200, every=2, lr=0.0, lam=0.02, warm_start="sirt",
                       warm_iterations=5, channels="4,8", in_channels=2, patience=3, seed=0))
    fit = [s for s in steps if s.phase == "iterate"]
    # snapshots at 2, 4, 6 without a better error: the next step is the last
    assert fit[-1].iteration == 7
    forever = list(diptv(A, y, iterations=12, every=2, lr=0.0, lam=0.02, warm_start="sirt",
                         warm_iterations=5, channels="4,8", in_channels=2, patience=0, seed=0))
    assert forever[-1].iteration == 12


def test_diptv_auto_lambda_with_a_made_start_runs_no_cstv_fit(problem):
    """The SIRT start is made: CS-TV only chooses λ, its fit would be thrown away."""
    from tomoprior.algorithms.cstv import AUTO_GRID, DEFAULT_LAM
    from tomoprior.algorithms.diptv import diptv

    A, y, _ = problem
    steps = list(diptv(A, y, iterations=2, every=2, lam="auto", warm_start="sirt",
                       warm_iterations=40, channels="4,8", in_channels=2, seed=0))
    parts = {s.extras.get("warm_part") for s in steps if s.phase == "warm start"}
    assert parts == {"SIRT", "λ search"}
    lam = steps[-1].extras["lam"]
    assert any(abs(lam - DEFAULT_LAM * f) < 1e-12 for f in AUTO_GRID)
