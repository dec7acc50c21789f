"""Synthetic specimens and tilt-series simulation (tomoprior.phantoms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from tomoprior.errors import DataError, GeometryError, MethodUnavailable
from tomoprior.geometry import TiltGeometry
from tomoprior.operators import make_projector
from tomoprior.phantoms import (
    PHANTOMS,
    Phantom,
    downsample_volume,
    make_phantom,
    random_drift,
    simulate,
)
from tomoprior.transforms import series_from_canonical, to_canonical, volume_to_canonical

ANGLES = np.arange(-60.0, 61.0, 10.0)
RANDOM_NAMES = [n for n in PHANTOMS if n != "shepp_logan"]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def pt32() -> dict[str, Phantom]:
    return {c: make_phantom(f"pt_{c}", 32, seed=1) for c in ("haadf", "adf")}


@pytest.fixture(scope="module")
def pt48() -> Phantom:
    return make_phantom("pt_haadf", 48, seed=0)


# -- phantoms ------------------------------------------------------------------------------


def test_registry_names():
    assert set(PHANTOMS) == {"pt_haadf", "pt_adf", "shepp_logan", "faces", "blobs", "spheres",
                             "clusters", "matter"}
    with pytest.raises(MethodUnavailable, match="unknown phantom"):
        make_phantom("nope", 24)
    assert make_phantom("Shepp-Logan", 24).name == "shepp_logan"


@pytest.mark.parametrize("name", list(PHANTOMS))
@pytest.mark.parametrize("supersample", [1, 2])
def test_phantom_shapes_values_masks(name, supersample):
    ph = make_phantom(name, 24, seed=3, supersample=supersample)
    n = 24 * supersample
    assert ph.name == name
    assert ph.volume.shape == (n, n, n) and ph.volume.dtype == np.float32
    assert np.all(np.isfinite(ph.volume)) and ph.volume.min() >= 0 and ph.volume.max() > 0
    assert ph.supersample == supersample == ph.info["supersample"]
    # the specimen mask holds (almost) all of the mass, and is not the whole volume
    m = ph.specimen_mask
    assert m.dtype == bool and m.shape == ph.volume.shape
    assert ph.volume[m].sum() > 0.97 * ph.volume.sum()
    assert 0.01 < m.mean() < 0.8
    # components add up to the volume
    total = sum(c for _, c in ph.components)
    np.testing.assert_allclose(total, ph.volume, atol=1e-5)
    for mask in (ph.particle_mask, ph.support_mask):
        assert mask is None or (mask.dtype == bool and mask.shape == ph.volume.shape)


@pytest.mark.parametrize("name", RANDOM_NAMES)
def test_deterministic_for_a_seed(name):
    a = make_phantom(name, 24, seed=5)
    b = make_phantom(name, 24, seed=5)
    c = make_phantom(name, 24, seed=6)
    np.testing.assert_array_equal(a.volume, b.volume)
    np.testing.assert_array_equal(a.specimen_mask, b.specimen_mask)
    assert not np.array_equal(a.volume, c.volume)


def test_shepp_logan_is_fixed_and_standard():
    a = make_phantom("shepp_logan", 32, seed=0)
    b = make_phantom("shepp_logan", 32, seed=9)
    np.testing.assert_array_equal(a.volume, b.volume)
    v = a.volume
    assert 0.9 < v.max() <= 1.0 + 1e-6  # the (thin, partial-volume) skull
    assert np.median(v[v > 0.05]) == pytest.approx(0.2, abs=0.02)  # brain: 1 - 0.8
    orig = make_phantom("shepp_logan", 32, modified=False).volume
    assert 0.9 < orig.max() <= 1.0 + 1e-6 and np.median(orig[orig > 0.005]) < 0.1


@pytest.mark.parametrize("name", ["blobs", "pt_haadf", "faces"])
def test_supersampled_render_bins_to_the_coarse_one(name):
    coarse = make_phantom(name, 24, seed=2)
    fine = make_phantom(name, 24, seed=2, supersample=2)
    binned = fine.coarse()
    assert binned.volume.shape == coarse.volume.shape and binned.supersample == 1
    np.testing.assert_array_equal(binned.volume, downsample_volume(fine.volume, 2))
    tol = 0.02 if name == "blobs" else 0.15
    assert rel_err(binned.volume, coarse.volume) < tol
    if coarse.particles is not None:
        np.testing.assert_allclose(binned.particles, coarse.particles, atol=1e-9)
    assert np.mean(binned.specimen_mask != coarse.specimen_mask) < 0.02


# -- the Pt on carbon specimen ----------------------------------------------------------


def test_pt_contrast_haadf_vs_adf(pt32):
    ratios = {}
    for c, ph in pt32.items():
        assert ph.info["contrast"] == c
        ratios[c] = ph.volume[ph.particle_mask].mean() / ph.volume[ph.support_mask].mean()
    # same specimen, different contrast
    np.testing.assert_array_equal(pt32["haadf"].particle_mask, pt32["adf"].particle_mask)
    assert ratios["haadf"] > 10  # Pt (Z=78) bright, carbon (Z=6) faint
    assert 1.5 < ratios["adf"] < 5  # support clearly visible in ADF
    assert ratios["haadf"] > 4 * ratios["adf"]


def test_pt_support_is_graded_and_porous(pt48):
    ph = pt48
    core = ndimage.binary_erosion(ph.support_mask, iterations=1)
    vals = ph.volume[core]
    assert vals.size > 1000
    assert np.unique(vals).size > 0.5 * vals.size  # not piecewise constant
    assert vals.std() / vals.mean() > 0.15
    # a large-scale gradient: the two halves of the support differ on average
    z, y, x = np.nonzero(core)
    means = [np.mean(vals[a < np.median(a)]) / np.mean(vals[a >= np.median(a)]) for a in (z, y, x)]
    assert max(abs(np.log(m)) for m in means) > 0.05
    # pores: low-density holes within the support
    pores = vals < 0.4 * np.median(vals)
    assert 0.02 < pores.mean() < 0.3
    assert 0.02 < ph.info["pore_fraction"] < 0.3
    # slab thickness 25-40 % of the volume height
    assert 0.25 <= ph.info["slab_fraction"] <= 0.40


def test_pt_particles_on_and_in_the_support(pt48):
    ph = pt48
    n, s = ph.info["n_particles"], ph.info["size"]
    assert ph.particles.shape == (n, 4) and n >= 10
    radii = ph.particles[:, 3]
    assert radii.min() >= 1.5 * s / 64 - 1e-9 and radii.max() <= 6.0 * s / 64 + 1e-9
    kinds = ph.info["placement"]
    assert "inside" in kinds and ({"top", "bottom"} & set(kinds))
    z, y, x = np.indices(ph.shape)
    for (cz, cy, cx, r), kind in zip(ph.particles, kinds):
        assert ph.particle_mask[round(cz), round(cy), round(cx)]
        d = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
        shell = (d >= r + 1) & (d <= r + 2.5)
        support = ph.support_mask[shell].mean()
        vacuum = (ph.volume[shell] < 1e-3).mean()
        if kind == "inside":
            assert support > 0.5, (kind, support)
        else:  # sitting on a surface: carbon on one side, vacuum on the other
            assert 0.05 < support < 0.6 and vacuum > 0.25, (kind, support, vacuum)
    # no interpenetration; touching pairs are in contact
    c, r = ph.particles[:, :3], ph.particles[:, 3]
    dist = np.linalg.norm(c[:, None] - c[None], axis=-1)
    gap = dist - (r[:, None] + r[None])
    assert np.all(gap[np.triu_indices(n, 1)] > -1e-6)
    for i, j in ph.info["touching_pairs"]:
        assert abs(gap[i, j]) < 1e-6


def test_pt_sometimes_touching():
    counts = [len(make_phantom("pt_adf", 24, seed=k).info["touching_pairs"]) for k in range(4)]
    assert sum(counts) >= 1


def test_pt_masks_consistent(pt32):
    ph = pt32["haadf"]
    assert not np.any(ph.particle_mask & ph.support_mask)
    union = ph.particle_mask | ph.support_mask
    assert np.all(ph.specimen_mask[union])
    assert ph.specimen_mask.sum() > 1.1 * union.sum()  # dilated
    assert np.all(ph.volume[~ph.specimen_mask] == 0)
    kinds = [k for k, _ in ph.components]
    assert kinds[0] == "support" and all(k.startswith("particles_") for k in kinds[1:])
    assert 1 < len(kinds) <= 5


def test_phantom_binned_keeps_particles():
    fine = make_phantom("pt_haadf", 24, seed=4, supersample=2)
    coarse = fine.binned(2)
    assert coarse.volume.shape == (24, 24, 24)
    np.testing.assert_allclose(coarse.particles[:, 3] * 2, fine.particles[:, 3])
    for cz, cy, cx, _ in coarse.particles:
        assert coarse.particle_mask[round(cz), round(cy), round(cx)]
    assert coarse.info["pixel_size"] == fine.info["pixel_size"]
    # binning past the nominal size makes the binned grid the nominal one
    half = coarse.binned(2)
    assert half.supersample == 1 and half.info["size"] == 12
    assert half.info["pixel_size"] == pytest.approx(2 * fine.info["pixel_size"])
    assert not np.any(coarse.particle_mask & coarse.support_mask)
    np.testing.assert_allclose(sum(c for _, c in coarse.components), coarse.volume, atol=1e-5)


# -- simulate ------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0.0, 90.0, 25.0])
def test_simulate_shapes_and_true_geometry(axis):
    vol = make_phantom("blobs", 24, seed=1).volume[2:22, :, 4:20]  # (20, 24, 16)
    series, geom = simulate(vol, ANGLES, tilt_axis=axis, shifts=2.0, axis_error=1.5, seed=2)
    assert series.shape == (ANGLES.size, 24, 16) and series.dtype == np.float32
    assert isinstance(geom, TiltGeometry)
    np.testing.assert_array_equal(geom.angles, ANGLES)
    assert geom.tilt_axis == pytest.approx(axis + 1.5)
    drift = geom.extra["drift"]
    np.testing.assert_array_equal(geom.shifts, -drift)
    assert np.abs(drift).max() == pytest.approx(2.0)
    assert np.all(drift[np.argmin(np.abs(ANGLES))] == 0)
    assert geom.thickness == 20
    geom.validate(series.shape[0])


def test_simulate_pixel_size_and_supersample():
    ph = make_phantom("pt_haadf", 24, seed=0, supersample=2)
    series, geom = simulate(ph, ANGLES)
    assert series.shape == (ANGLES.size, 24, 24)
    assert geom.pixel_size == pytest.approx(ph.info["pixel_size"]) == pytest.approx(2.0)
    assert geom.thickness == 24 and geom.extra["simulation"]["supersample"] == 2
    _, g2 = simulate(ph, ANGLES, pixel_size=1.25)
    assert g2.pixel_size == 1.25
    fine_series, g3 = simulate(ph, ANGLES, supersample=1)  # the fine grid itself
    assert fine_series.shape == (ANGLES.size, 48, 48) and g3.pixel_size == pytest.approx(1.0)
    with pytest.raises(DataError, match="supersample"):
        simulate(ph.volume[:, :, :47], ANGLES, supersample=2)


def test_simulate_is_the_documented_forward_model():
    """At supersample 1: series_from_canonical(A(volume_to_canonical(v)), true geometry)."""
    vol = make_phantom("faces", 24, seed=0).volume
    series, geom = simulate(vol, ANGLES, tilt_axis=0.0, shifts=1.5, axis_error=3.0, seed=1)
    vc = volume_to_canonical(vol, geom)
    op = make_projector(ANGLES, vc.shape, vc.shape[2], backend="rotate", device="cpu")
    with torch.no_grad():
        proj = op(torch.from_numpy(vc)).numpy()
    expected = series_from_canonical(proj, geom)
    np.testing.assert_allclose(series, expected, rtol=1e-4, atol=1e-5 * expected.max())


@pytest.mark.parametrize("axis, moving_axis", [(0.0, 1), (90.0, 2)])
def test_tilt_axis_convention(axis, moving_axis):
    """A point off the z-centre moves across the tilt axis, never along it."""
    vol = np.zeros((24, 24, 24), np.float32)
    vol[6:9, 10:13, 10:13] = 1.0  # off-centre in z
    series, _ = simulate(vol, ANGLES, tilt_axis=axis)
    rows, cols = np.indices(series.shape[1:])
    m = series.sum((1, 2))
    cy = (series * rows).sum((1, 2)) / m
    cx = (series * cols).sum((1, 2)) / m
    moves = cy if moving_axis == 1 else cx
    still = cx if moving_axis == 1 else cy
    assert np.ptp(moves) > 5 and np.ptp(still) < 0.05


def test_drift_moves_image_content():
    vol = make_phantom("spheres", 32, seed=0).volume
    drift = np.tile([2.0, -3.0], (ANGLES.size, 1))
    ref, _ = simulate(vol, ANGLES)
    moved, geom = simulate(vol, ANGLES, shifts=drift)
    np.testing.assert_array_equal(geom.shifts, -drift)
    # integer displacement: the images are the reference rolled by (2, -3), borders aside
    np.testing.assert_allclose(moved[:, 4:-4, 4:-4], ref[:, 2:-6, 7:-1], atol=1e-5)
    with pytest.raises(GeometryError):
        simulate(vol, ANGLES, shifts=np.zeros((3, 2)))


def test_random_drift_smooth_and_anchored():
    angles = np.concatenate([np.arange(0, 61, 3.0), -np.arange(3, 61, 3.0)])  # any order
    d = random_drift(angles, 4.0, np.random.default_rng(0))
    assert d.shape == (angles.size, 2)
    assert np.abs(d).max() == pytest.approx(4.0)
    np.testing.assert_array_equal(d[np.argmin(np.abs(angles))], 0)
    steps = np.diff(d[np.argsort(angles)], axis=0)
    assert np.abs(steps).max() < 0.5 * 4.0  # a walk, not independent jumps
    again = random_drift(angles, 4.0, np.random.default_rng(0))
    np.testing.assert_array_equal(d, again)


@pytest.fixture(scope="module")
def fine_phantoms() -> dict[str, Phantom]:
    return {
        "blobs": make_phantom("blobs", 32, seed=1, supersample=2),
        "pt_haadf": make_phantom("pt_haadf", 48, seed=1, supersample=2),
    }


@pytest.mark.parametrize(
    "name, axis, tol",
    [
        ("blobs", 0.0, 0.05),
        ("blobs", 90.0, 0.05),
        ("blobs", 30.0, 0.05),
        ("pt_haadf", 0.0, 0.1),
        ("pt_haadf", -75.0, 0.1),
    ],
)
def test_misalignment_is_undone_by_the_true_geometry(fine_phantoms, name, axis, tol):
    """to_canonical(series, true geometry) recovers the aligned canonical projections.

    The residual error is the blur of two bilinear resamplings (the drift and
    axis rotation applied here, their correction in to_canonical), larger on
    the sharp particles than on smooth blobs.
    """
    ph = fine_phantoms[name]
    size = ph.coarse().shape[1]
    ref, g0 = simulate(ph, ANGLES, tilt_axis=axis)
    mis, g1 = simulate(ph, ANGLES, tilt_axis=axis, shifts=3.0, axis_error=2.0, seed=4)
    assert g1.tilt_axis == pytest.approx(axis + 2.0)
    c = slice(size // 4, size - size // 4)
    truth = to_canonical(ref, g0)[:, c, c]
    aligned = to_canonical(mis, g1)[:, c, c]
    nominal = to_canonical(mis, g1.replace(tilt_axis=axis, shifts=None))[:, c, c]
    assert rel_err(aligned, truth) < tol
    assert rel_err(nominal, truth) > 3 * rel_err(aligned, truth)  # the misalignment matters


def test_poisson_noise_statistics():
    ph = make_phantom("blobs", 32, seed=0)
    clean, _ = simulate(ph, ANGLES)
    dose = 500.0
    noisy, geom = simulate(ph, ANGLES, noise="poisson", dose=dose, seed=3)
    assert geom.extra["simulation"]["noise"] == "poisson"
    counts = noisy.astype(np.float64) * dose / clean.max()
    lam = clean.astype(np.float64) * dose / clean.max()
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)  # whole electrons
    assert ((counts - lam) ** 2).sum() / lam.sum() == pytest.approx(1.0, abs=0.15)  # var ~ mean
    assert counts.mean() == pytest.approx(lam.mean(), rel=0.02)
    again, _ = simulate(ph, ANGLES, noise="poisson", dose=dose, seed=3)
    other, _ = simulate(ph, ANGLES, noise="poisson", dose=dose, seed=4)
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, other)
    # default dose, and a dose alone means Poisson
    _, g = simulate(ph, ANGLES, dose=200)
    assert g.extra["simulation"]["noise"] == "poisson"
    _, g = simulate(ph, ANGLES, noise="poisson")
    assert g.extra["simulation"]["dose"] == 1e4


def test_gaussian_noise_and_background():
    ph = make_phantom("blobs", 24, seed=0)
    clean, _ = simulate(ph, ANGLES, background=0.5)
    noisy, _ = simulate(ph, ANGLES, noise="gaussian", sigma=0.02, background=0.5, seed=1)
    resid = (noisy - clean).astype(np.float64)
    peak = float(clean.max())
    assert float(clean.min()) == pytest.approx(0.5)
    assert resid.mean() == pytest.approx(0.0, abs=3e-3 * peak)
    assert resid.std() == pytest.approx(0.02 * peak, rel=0.05)
    with pytest.raises(DataError):
        simulate(ph, ANGLES, noise="speckle")
    with pytest.raises(DataError):
        simulate(ph, ANGLES, noise="poisson", dose=-1)


def test_adf_particle_contrast_varies_with_tilt(pt32):
    """Projections conserve mass: image sums vary with tilt only through ADF contrast."""
    angles = np.arange(-60.0, 61.0, 5.0)
    cv = {}
    for c, ph in pt32.items():
        series, geom = simulate(ph, angles, seed=2)
        sums = series.sum(axis=(1, 2))
        cv[c] = sums.std() / sums.mean()
        factors = geom.extra["diffraction_factors"]
        if c == "adf":
            n_groups = len(ph.components) - 1
            assert factors.shape == (angles.size, n_groups)
            assert factors.min() >= 0.6 and factors.max() <= 1.4
            assert np.ptp(factors) > 0.3
        else:
            assert factors is None
    assert cv["haadf"] < 0.01
    assert cv["adf"] > 0.02 and cv["adf"] > 5 * cv["haadf"]


def test_supersampled_projection_close_but_not_identical():
    coarse = make_phantom("blobs", 32, seed=3)
    fine = make_phantom("blobs", 32, seed=3, supersample=2)
    s1, _ = simulate(coarse, ANGLES)
    s2, _ = simulate(fine, ANGLES)
    assert s2.shape == s1.shape
    err = rel_err(s2, s1)
    assert 1e-4 < err < 0.03


def test_random_matter_is_seeded_non_negative_and_sums_its_components():
    from tomoprior.phantoms import make_phantom
    from tomoprior.phantoms._pairs import FAMILIES

    a = make_phantom("matter", 24, seed=3, n_objects=6)
    b = make_phantom("matter", 24, seed=3, n_objects=6)
    c = make_phantom("matter", 24, seed=4, n_objects=6)
    np.testing.assert_array_equal(a.volume, b.volume)
    assert not np.array_equal(a.volume, c.volume)
    assert a.volume.min() >= 0 and a.volume.max() > 0 and a.specimen_mask.any()
    np.testing.assert_allclose(sum(v for _, v in a.components), a.volume, atol=1e-5)
    assert any(k.startswith("particles_") for k, _ in a.components)
    assert "matter" in FAMILIES  # the training generator draws it
