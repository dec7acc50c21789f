"""INR: fitting, pose recovery, determinism, stopping, virtual projections."""

import numpy as np
import pytest
import torch

from tomoprior.algorithms.inr import inr, render_projections
from tomoprior.metrics import ssim
from tomoprior.operators import make_projector
from tomoprior.phantoms import make_phantom, simulate
from tomoprior.step import last_step as _last
from tomoprior.transforms import to_canonical, volume_to_canonical


def _problem(angles, seed=1, **sim):
    ph = make_phantom("blobs", 24, seed=seed, supersample=2)
    truth = ph.coarse()
    series, g = simulate(ph, angles, seed=seed, **sim)
    nominal = g.replace(shifts=None, tilt_axis=0.0)
    yc = to_canonical(series, nominal)
    vc = volume_to_canonical(truth.volume, nominal)
    A = make_projector(nominal.angles, vc.shape, yc.shape[2], device="cpu")
    return A, torch.from_numpy(yc), vc, g


@pytest.mark.slow
def test_inr_fits_and_renders():
    A, y, truth, _ = _problem(np.arange(-60, 61, 10.0))
    st = _last(inr(A, y, iterations=150, every=150, batch_rays=1024, seed=0))
    assert st.volume.shape == A.domain_shape
    assert ssim(st.volume, truth, fit=True) > 0.8
    assert st.extras["rays_per_s"] > 0 and st.heldout is not None
    model = st.model
    proj = render_projections(model, [0.0, 35.0, 75.0])  # 35 and 75 were never measured
    assert proj.shape == (3, y.shape[1], y.shape[2])
    measured0 = y[list(A.angles).index(0.0)].numpy()
    assert np.corrcoef(proj[0].ravel(), measured0.ravel())[0, 1] > 0.95


@pytest.mark.slow
def test_inr_recovers_a_known_shift():
    angles = np.arange(-60, 61, 20.0)
    drift = np.zeros((angles.size, 2))
    drift[1] = (0.0, 2.0)  # tilt at -40° displaced by 2 px across the axis
    drift[5] = (1.5, 0.0)  # tilt at +40° displaced by 1.5 px along the axis
    A, y, _, g = _problem(angles, shifts=drift)
    st = _last(inr(A, y, iterations=150, every=150, batch_rays=1024, learn_pose=True,
                   pose_start=0.1, lr_pose=3e-2, seed=0))
    poses = st.poses
    assert poses["reference"] == 3  # the 0° tilt
    # corrections in the canonical frame, compared with the truth there
    learned = np.asarray(poses["shifts"])
    truth_c = _canonical_shifts(g)
    err = np.abs(learned - truth_c)
    assert err.max() < 0.5, (learned[[1, 5]], truth_c[[1, 5]])


def _canonical_shifts(g):
    """True shift corrections expressed in the canonical frame (quarter turn of a horizontal axis)."""
    s = np.asarray(g.shifts)
    # canonical content = raw content turned by +90°: (dy, dx) -> (dx, -dy)
    return np.stack((s[:, 1], -s[:, 0]), axis=1)


def test_inr_is_deterministic_and_stops():
    A, y, _, _ = _problem(np.arange(-60, 61, 20.0))
    a = _last(inr(A, y, iterations=20, every=10, batch_rays=256, seed=3))
    b = _last(inr(A, y, iterations=20, every=10, batch_rays=256, seed=3))
    np.testing.assert_array_equal(a.volume, b.volume)
    gen = inr(A, y, iterations=10_000, every=1, batch_rays=128)
    first = next(gen)
    gen.close()
    assert first.iteration == 1
    with pytest.raises(StopIteration):
        next(gen)


def test_inr_options_checked():
    A, y, _, _ = _problem(np.arange(-60, 61, 20.0))
    with pytest.raises(ValueError, match="loss"):
        next(inr(A, y, loss="l3"))
    with pytest.raises(ValueError, match="field must be one of"):
        next(inr(A, y, field="hash"))


def test_inr_shows_pictures_between_snapshots_at_its_pace(monkeypatch):
    from tomoprior.algorithms import _driver as driver
    from tomoprior.algorithms import inr as inr_module

    A, y, _, _ = _problem(np.arange(-60, 61, 20.0))
    clock = iter(range(0, 10_000, 1))  # one second passes at every look at the clock
    monkeypatch.setattr(driver, "_now", lambda: float(next(clock)))
    steps = list(inr(A, y, iterations=12, every=12, batch_rays=256, seed=3))
    pictures, (last,) = steps[:-1], steps[-1:]
    assert len(pictures) >= 3 and last.iteration == 12  # every alone would show only the last
    assert all(s.heldout is None and s.phase == "iterate" for s in pictures)
    assert all(s.residual is not None and np.isfinite(s.volume).all() for s in pictures)
    assert last.heldout is not None and last.model is not None
    # pictures change nothing: the fit is the one without them
    monkeypatch.setattr(inr_module._INR, "pace", None)
    (alone,) = list(inr(A, y, iterations=12, every=12, batch_rays=256, seed=3))
    np.testing.assert_array_equal(alone.volume, last.volume)
