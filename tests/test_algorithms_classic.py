"""WBP and SIRT: correctness, warm start, snapshots, stopping, masks."""

import numpy as np
import pytest
import torch

from tomoprior.algorithms.sirt import sirt
from tomoprior.algorithms.wbp import angular_weights, ramp_filter, wbp
from tomoprior.operators import make_projector


@pytest.fixture
def problem(small_volume):
    angles = np.arange(-90, 90, 3.0)
    vc = np.ascontiguousarray(small_volume.transpose(0, 2, 1))
    A = make_projector(angles, vc.shape, device="cpu", dtype=torch.float64)
    y = A(torch.from_numpy(vc).double())
    return A, y, vc


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_wbp_full_range_is_accurate_and_scaled(problem):
    A, y, vc = problem
    (step,) = list(wbp(A, y))
    assert step.iteration == 1 and step.volume.dtype == np.float32
    assert _rel(step.volume, vc) < 0.2
    ratio = float((step.volume * vc).sum() / (vc * vc).sum())
    assert ratio == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize("name", ["ram-lak", "shepp-logan", "cosine", "hamming", "hann"])
def test_filters_are_ramps(name):
    r = ramp_filter(64, name)
    assert r[0] == pytest.approx(0.0, abs=0.01)
    assert np.all(r[1:32] > 0)


def test_angular_weights_nonuniform():
    w = angular_weights(np.array([0.0, 10.0, -20.0, 20.0]))
    # sorted: -20 (end, gap 20), 0 (between 20 and 10), 10, 20 (end, gap 10)
    np.testing.assert_allclose(np.rad2deg(w), [15.0, 10.0, 20.0, 10.0])


def test_sirt_converges_and_beats_wbp_on_limited_range(small_volume):
    angles = np.arange(-60, 61, 3.0)
    vc = np.ascontiguousarray(small_volume.transpose(0, 2, 1))
    A = make_projector(angles, vc.shape, device="cpu")
    y = A(torch.from_numpy(vc))
    steps = list(sirt(A, y, iterations=60, every=20))
    assert [s.iteration for s in steps] == [20, 40, 60]
    assert steps[-1].loss < steps[0].loss
    (w,) = list(wbp(A, y))
    assert _rel(steps[-1].volume, vc) < _rel(w.volume, vc)


def test_sirt_warm_start_equals_one_run(problem):
    A, y, _ = problem
    one = list(sirt(A, y, iterations=30, every=30))[-1]
    x = None
    start = 0
    for _ in range(3):
        last = list(sirt(A, y, iterations=10, x0=x, start=start, every=10))[-1]
        x, start = last.volume.astype(np.float64), last.iteration
    assert last.iteration == 30
    np.testing.assert_allclose(last.volume, one.volume, rtol=1e-5, atol=1e-6)


def test_sirt_every_includes_last_and_snapshots_are_copies(problem):
    A, y, _ = problem
    steps = list(sirt(A, y, iterations=7, every=3))
    assert [s.iteration for s in steps] == [3, 6, 7]
    assert steps[0].total == 7
    assert not np.shares_memory(steps[0].volume, steps[1].volume)
    assert not np.allclose(steps[0].volume, steps[1].volume)


def test_sirt_stops_when_closed(problem):
    A, y, _ = problem
    gen = sirt(A, y, iterations=1000, every=1)
    first = next(gen)
    gen.close()
    assert first.iteration == 1
    with pytest.raises(StopIteration):
        next(gen)


def test_sirt_nonneg_and_relaxation(problem):
    A, y, _ = problem
    noisy = y + 0.5 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=y.dtype)
    pos = list(sirt(A, noisy, iterations=5, nonneg=True))[-1].volume
    free = list(sirt(A, noisy, iterations=5, nonneg=False))[-1].volume
    assert pos.min() >= 0 and free.min() < 0
    with pytest.raises(ValueError, match="relaxation"):
        next(sirt(A, y, relaxation=2.5))


def test_sirt_mask_ignores_held_out_pixels(problem):
    A, y, _ = problem
    corrupt = y.clone()
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[5, 10:20, :] = False
    corrupt[~mask] = 1e3  # garbage where the mask says "held out"
    clean = list(sirt(A, y, iterations=10, mask=mask))[-1].volume
    masked = list(sirt(A, corrupt, iterations=10, mask=mask))[-1].volume
    np.testing.assert_allclose(masked, clean, rtol=1e-6, atol=1e-6)


def test_bad_data_rejected(problem):
    from tomoprior.errors import DataError, GeometryError

    A, y, _ = problem
    bad = y.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        next(sirt(A, bad))
    with pytest.raises(GeometryError, match="shape"):
        next(sirt(A, y[:-1]))
