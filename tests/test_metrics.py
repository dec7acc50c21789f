"""Tests of tomoprior.metrics: small arrays, fixed seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from tomoprior import metrics
from tomoprior.errors import DataError


def smooth(shape, seed=0, sigma=2.0):
    a = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return (a - a.min()) / (a.max() - a.min())


def ball(shape, center, semi_axes):
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r2 = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, center, semi_axes))
    return (r2 <= 1.0).astype(np.float64)


# -- psnr / rmse / scale_to ------------------------------------------------------------------
def test_psnr_identical_is_inf():
    ref = smooth((16, 16, 16))
    assert metrics.psnr(ref, ref) == float("inf")
    assert metrics.rmse(ref, ref) == 0.0


def test_psnr_constant_offset_known_value():
    ref = smooth((20, 20))  # range exactly [0, 1]
    assert metrics.psnr(ref + 0.1, ref) == pytest.approx(20.0)
    assert metrics.psnr(ref + 0.1, ref, data_range=10.0) == pytest.approx(40.0)
    assert metrics.rmse(ref + 0.1, ref) == pytest.approx(0.1)
    # an affine change is undone by fit=True
    assert metrics.psnr(3 * ref - 2, ref, fit=True) > 100


def test_psnr_mask_and_errors():
    ref = smooth((12, 12))
    x = ref.copy()
    x[:, 6:] += 1.0
    mask = np.zeros_like(ref, dtype=bool)
    mask[:, :6] = True
    assert metrics.psnr(x, ref, mask=mask, data_range=1.0) == float("inf")
    with pytest.raises(DataError):
        metrics.psnr(x[:5], ref)
    with pytest.raises(DataError):
        metrics.psnr(x, ref, mask=np.zeros_like(mask))
    with pytest.raises(DataError):
        metrics.psnr(x, np.ones_like(ref))  # constant reference: no data range


def test_scale_to_recovers_affine():
    ref = smooth((8, 10, 12), seed=1)
    x = (ref - 0.3) / 2.5  # ref = 2.5 x + 0.3
    np.testing.assert_allclose(metrics.scale_to(x, ref), ref, atol=1e-12)
    # fitted only inside the mask, applied everywhere
    mask = np.zeros(ref.shape, dtype=bool)
    mask[2:6] = True
    x_out = x.copy()
    x_out[~mask] = 7.0
    fitted = metrics.scale_to(x_out, ref, mask)
    np.testing.assert_allclose(fitted[mask], ref[mask], atol=1e-12)
    np.testing.assert_allclose(fitted[~mask], 2.5 * 7.0 + 0.3)
    # a constant input maps to the reference mean
    np.testing.assert_allclose(metrics.scale_to(np.ones_like(ref), ref), ref.mean())


# -- ssim ---------------------------------------------------------------------------------------
def test_ssim_identical_is_one():
    ref = smooth((16, 16, 16))
    assert metrics.ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(40, 36), (18, 20, 22)])
def test_ssim_matches_skimage(shape):
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    ref = smooth(shape, seed=2)
    x = ref + 0.1 * rng.standard_normal(shape)
    expected = skm.structural_similarity(
        x, ref, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert metrics.ssim(x, ref, data_range=1.0) == pytest.approx(expected, abs=1e-3)
    assert metrics.ssim(x, ref) == pytest.approx(expected, abs=1e-3)  # default range = 1


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(4)
    ref = smooth((16, 16, 16), seed=5)
    noise = rng.standard_normal(ref.shape)
    scores = [metrics.ssim(ref + s * noise, ref) for s in (0.0, 0.02, 0.05, 0.1, 0.3)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)


def test_ssim_mask_only_looks_inside():
    rng = np.random.default_rng(6)
    ref = smooth((40, 40), seed=7)
    x = ref.copy()
    x[:, 28:] += rng.standard_normal((40, 12))
    mask = np.zeros(ref.shape, dtype=bool)
    mask[:, :20] = True  # more than a window radius (5 px) from the corruption
    assert metrics.ssim(x, ref) < 0.9
    assert metrics.ssim(x, ref, mask=mask, data_range=1.0) == pytest.approx(1.0, abs=1e-12)


def test_compare_fits_scaling():
    rng = np.random.default_rng(8)
    ref = smooth((16, 16, 16), seed=9)
    x = ref + 0.05 * rng.standard_normal(ref.shape)
    plain = metrics.compare(x, ref, fit=False)
    scaled = metrics.compare(10 * x + 3, ref)
    assert set(plain) == {"ssim", "psnr", "rmse"}
    assert scaled["ssim"] == pytest.approx(plain["ssim"], abs=0.02)
    assert scaled["psnr"] >= plain["psnr"] - 0.1
    assert metrics.compare(10 * x + 3, ref, fit=False)["psnr"] < 0


# -- fsc ------------------------------------------------------------------------------------------
def lowpass(a, cutoff):
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in a.shape], indexing="ij")
    keep = np.sqrt(sum(g * g for g in grids)) <= cutoff
    return np.fft.ifftn(np.fft.fftn(a) * keep).real


def test_fsc_identical_is_one():
    a = np.random.default_rng(10).standard_normal((24, 24, 24))
    curve = metrics.fsc(a, a)
    assert curve["frequency"].shape == curve["fsc"].shape == (12,)
    assert curve["frequency"][-1] == pytest.approx(0.5)
    np.testing.assert_allclose(curve["fsc"], 1.0, atol=1e-10)
    assert np.all(curve["n"] > 0)
    half = metrics.fsc(a, a, pixel_size=2.0)["frequency"]
    np.testing.assert_allclose(half, curve["frequency"] / 2.0)


def test_fsc_independent_noise_is_small():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((2, 32, 32, 32))
    curve = metrics.fsc(a, b)
    assert np.all(np.abs(curve["fsc"][curve["frequency"] > 0.2]) < 0.05)


@pytest.mark.parametrize("shape", [(32, 32, 32), (64, 64)])
def test_fsc_resolution_of_lowpassed_signal(shape):
    rng = np.random.default_rng(12)
    signal = lowpass(rng.standard_normal(shape), cutoff=0.2)  # detail down to 5 px
    noise = 0.05 * signal.std() * rng.standard_normal((2, *shape))
    a, b = signal + noise[0], signal + noise[1]
    res = metrics.fsc_resolution(a, b)
    assert 4.5 < res < 6.0
    assert 4.5 < metrics.fsc_resolution(a, b, threshold="half-bit") < 6.0
    assert metrics.fsc_resolution(a, b, pixel_size=0.5) == pytest.approx(res / 2)
    assert metrics.fsc_resolution(a, a) == pytest.approx(2.0)  # never crosses: Nyquist


# -- data consistency ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def projector():
    from tomoprior.operators import make_projector

    return make_projector(np.linspace(-60, 60, 13), (12, 6, 16), backend="sparse", device="cpu")


def test_reprojection_residual(projector):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    vol = rng.random(projector.domain_shape).astype(np.float32)
    with torch.no_grad():
        data = projector(torch.from_numpy(vol)).numpy()
    assert metrics.reprojection_residual(projector, vol, data) < 1e-6
    assert metrics.reprojection_residual(projector, torch.from_numpy(vol), data) < 1e-6
    noisy = data + 0.1 * data.std() * rng.standard_normal(data.shape).astype(np.float32)
    res = metrics.reprojection_residual(projector, vol, noisy)
    assert 0.01 < res < 0.5
    assert metrics.reprojection_residual(projector, np.zeros_like(vol), data) == pytest.approx(1.0)
    with pytest.raises(DataError):
        metrics.reprojection_residual(projector, vol, data[:-1])


def test_heldout_mask_fraction_and_determinism():
    m = metrics.heldout_mask((10, 20, 30), fraction=0.05, seed=1)
    assert m.dtype == bool and m.shape == (10, 20, 30)
    assert m.sum() == 300
    np.testing.assert_array_equal(m, metrics.heldout_mask((10, 20, 30), fraction=0.05, seed=1))
    assert not np.array_equal(m, metrics.heldout_mask((10, 20, 30), fraction=0.05, seed=2))
    assert not metrics.heldout_mask((4, 5, 6), fraction=0.0).any()
    with pytest.raises(ValueError):
        metrics.heldout_mask((4, 5, 6), fraction=1.5)


def test_heldout_error(projector):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    vol = rng.random(projector.domain_shape).astype(np.float32)
    with torch.no_grad():
        data = projector(torch.from_numpy(vol)).numpy()
    mask = metrics.heldout_mask(data.shape, fraction=0.1, seed=0)
    assert metrics.heldout_error(projector, vol, data, mask) < 1e-10
    corrupted = data.copy()
    corrupted[mask] += 0.5
    assert metrics.heldout_error(projector, vol, corrupted, mask) == pytest.approx(0.25, rel=1e-4)
    corrupted[~mask] += 10.0  # only the held-out pixels count
    assert metrics.heldout_error(projector, vol, corrupted, torch.from_numpy(mask)) == (
        pytest.approx(0.25, rel=1e-4)
    )
    with pytest.raises(DataError):
        metrics.heldout_error(projector, vol, data, np.zeros_like(mask))


# -- artefact scores ------------------------------------------------------------------------------
def test_particle_elongation_sphere_and_ellipsoid():
    shape = (48, 40, 40)
    vol = ball(shape, (24, 12, 12), (4, 4, 4)) + ball(shape, (24, 28, 28), (6, 4, 4))
    vol = ndi.gaussian_filter(vol, 0.7)
    vol += 0.01 * np.random.default_rng(15).standard_normal(shape)
    out = metrics.particle_elongation(vol, [(24, 12, 12), (24, 28, 28)], [4, 4])
    sphere, ellipsoid = out["values"]
    assert sphere == pytest.approx(1.0, abs=0.05)
    assert ellipsoid > 1.3
    assert out["median"] == pytest.approx(np.median(out["values"]))
    empty = metrics.particle_elongation(np.zeros(shape), [(24, 20, 20)], 4)
    assert math.isnan(empty["values"][0]) and math.isnan(empty["median"])


def test_support_homogeneity():
    rng = np.random.default_rng(16)
    shape = (24, 24, 24)
    support = ball(shape, (12, 12, 12), (8, 8, 8)).astype(bool)
    truth = support * 1.0
    noisy_rec = truth + 0.3 * rng.standard_normal(shape)
    smoothed_rec = ndi.gaussian_filter(noisy_rec, 1.5)  # over-smoothed version of the same
    textured_truth = truth * (1 + 0.1 * rng.standard_normal(shape))
    noisy = metrics.support_homogeneity(noisy_rec, support, reference=textured_truth, erosion=2)
    smoothed = metrics.support_homogeneity(
        smoothed_rec, support, reference=textured_truth, erosion=2
    )
    assert noisy["cv"] > 3 * smoothed["cv"]
    assert noisy["ratio"] == pytest.approx(noisy["cv"] / noisy["cv_reference"])
    assert noisy["ratio"] > 2 and smoothed["ratio"] < 1
    assert set(metrics.support_homogeneity(noisy_rec, support)) == {"cv"}
    with pytest.raises(DataError):
        metrics.support_homogeneity(smoothed_rec, np.zeros(shape, dtype=bool))
