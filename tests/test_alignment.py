"""Tilt-series alignment: registration, cosine stretching, axis search, projection matching, files.

Accuracy is judged on simulated misalignment (random shifts up to ±3 px and
a 2° tilt-axis error) after removing the motions no method can observe: a
rigid translation of the specimen changes the projections by a constant
along the axis and by ``x0 cos(theta) + z0 sin(theta)`` across it. The
reference tilt (nearest 0°) fixes the constant and ``x0`` in the found
shifts, but the simulation's specimen need not sit where the found gauge
puts it, so both sides are compared after a least-squares removal of
those three terms (see :func:`_shift_error`).
"""

import json
import os

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from tomoprior.alignment import (
    AlignmentError,
    align_series,
    aligned_geometry,
    apply_transforms,
    read_transforms,
    register,
    stretch_across,
    write_transforms,
    xcorr_shifts,
    xf_lines,
)
from tomoprior.errors import DataError, GeometryError, MethodUnavailable, TomopriorError
from tomoprior.frames import (
    canonical_series,
    fix_reference,
    from_canonical_shifts,
    to_canonical_shifts,
)
from tomoprior.geometry import TiltGeometry, angles_from_range
from tomoprior.phantoms import make_phantom, simulate
from tomoprior.transforms import bin_images, to_canonical, warp_images

pytestmark = pytest.mark.usefixtures("one_thread")

NEEDLE = os.path.join(os.path.dirname(__file__), "..", "sample_data", "needle_haadf",
                      "needle_haadf.tif")


def _shift_error(found: TiltGeometry, true: TiltGeometry) -> float:
    """RMS shift error (pixels, over tilts) modulo the unobservable specimen translation."""
    t = np.deg2rad(true.angles)
    e = to_canonical_shifts(found.shifts, found.tilt_axis) - to_canonical_shifts(true.shifts, true.tilt_axis)
    along = e[:, 0] - e[:, 0].mean()
    M = np.stack([np.cos(t), np.sin(t)], axis=1)
    k, *_ = np.linalg.lstsq(M, e[:, 1], rcond=None)
    across = e[:, 1] - M @ k
    return float(np.sqrt(np.mean(along**2 + across**2)))


@pytest.fixture(scope="module")
def misaligned():
    """Pt on carbon, 48 px, ±60° every 4°, shifts up to ±3 px, axis off by 2°."""
    angles = angles_from_range(-60, 60, 4)
    rng = np.random.default_rng(3)
    drift = rng.uniform(-3, 3, (angles.size, 2))
    drift[np.argmin(np.abs(angles))] = 0
    ph = make_phantom("pt_haadf", 48, seed=1, supersample=2)
    series, true = simulate(ph, angles, shifts=drift, axis_error=2.0, seed=1, noise="poisson",
                            dose=5e3, device="cpu")
    return series, true, TiltGeometry(angles, tilt_axis="horizontal", pixel_size=true.pixel_size)


@pytest.fixture(scope="module")
def aligned_pm(misaligned):
    series, _, nominal = misaligned
    messages = []
    out = align_series(series, nominal, method="pm", progress=messages.append)
    return (*out, messages)


def _smooth_images(n=6, size=40, seed=0, sigma=1.0):
    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.random((n, size, size)), (0, sigma, sigma)).astype(np.float32)


# -- building blocks ----------------------------------------------------------------------------
@pytest.mark.parametrize("phase", [False, True])
def test_register_recovers_subpixel_shifts(phase):
    imgs = _smooth_images()
    shifts = np.random.default_rng(1).uniform(-3, 3, (imgs.shape[0], 2))
    moved = warp_images(torch.from_numpy(imgs), torch.from_numpy(shifts).float(),
                        padding_mode="border").numpy()
    found = register(imgs, moved, phase=phase)
    np.testing.assert_allclose(found, -shifts, atol=0.05)


def test_stretch_expands_content_across_about_the_centre():
    img = np.zeros((1, 8, 41), np.float32)
    img[0, :, 30] = 1.0  # 10 px right of the centre column 20
    out = stretch_across(img, 1.5)
    assert int(np.argmax(out[0, 4])) == 35


@pytest.mark.parametrize("axis", [0.0, 90.0, -90.0, 180.0, 3.0])
def test_canonical_shift_mapping_matches_to_canonical(axis):
    img = _smooth_images(1, 48, sigma=2.0)
    shift = np.array([[1.5, -2.0]])
    g0 = TiltGeometry([0.0, 1.0], tilt_axis=axis)
    plain = to_canonical(np.repeat(img, 2, 0), g0)[:1]
    moved = to_canonical(np.repeat(img, 2, 0), g0.replace(shifts=np.repeat(shift, 2, 0)))[:1]
    t = register(moved, plain)  # moves the plain image onto the shifted one
    np.testing.assert_allclose(t[0], to_canonical_shifts(shift, axis)[0], atol=0.05)


def test_reference_gauge_zeroes_the_reference_tilt():
    angles = np.array([-40.0, -20.0, 2.0, 20.0])
    s = fix_reference(np.arange(8.0).reshape(4, 2), angles)
    np.testing.assert_allclose(s[2], 0.0, atol=1e-12)


def test_cosine_stretching_keeps_high_tilts_aligned():
    """A thin specimen at ±70°: stretching removes most of the chain error."""
    rng = np.random.default_rng(0)
    vol = np.zeros((48, 48, 48), np.float32)
    vol[21:27, 4:-4, 4:-4] = rng.random((6, 40, 40)) > 0.9
    vol = gaussian_filter(vol, 1.0)
    angles = angles_from_range(-70, 70, 5)
    drift = rng.uniform(-3, 3, (angles.size, 2))
    drift[np.argmin(np.abs(angles))] = 0
    series, true = simulate(vol, angles, shifts=drift, seed=1, noise="poisson", dose=5e3, device="cpu")
    canon = canonical_series(series, true.tilt_axis)
    errors = {}
    for stretch in (True, False):
        sc = xcorr_shifts(canon, angles, stretch=stretch)
        errors[stretch] = _shift_error(true.replace(shifts=from_canonical_shifts(sc, 0.0)), true)
    assert errors[True] < 0.15
    assert errors[True] < 0.5 * errors[False]


# -- the pipeline -------------------------------------------------------------------------------
@pytest.mark.parametrize("method, options", [("xcorr", {}), ("com", {}), ("xcorr", {"com": True})])
def test_align_recovers_shifts_and_axis(misaligned, method, options):
    series, true, nominal = misaligned
    aligned, found, report = align_series(series, nominal, method=method, **options)
    assert _shift_error(found, true) < 0.5
    assert abs(found.tilt_axis - true.tilt_axis) < 0.3
    assert report["method"] == method
    assert aligned.shape == series.shape and aligned.dtype == np.float32


def test_projection_matching_is_most_accurate(aligned_pm, misaligned):
    series, true, _ = misaligned
    aligned, found, report, _ = aligned_pm
    assert _shift_error(found, true) < 0.15
    assert abs(found.tilt_axis - true.tilt_axis) < 0.3
    assert report["rounds"] >= 1 and len(report["residuals"]) == report["rounds"]
    assert found.shifts[np.argmin(np.abs(found.angles))].tolist() == [0.0, 0.0]


def test_aligned_series_is_the_raw_series_seen_through_the_found_geometry(aligned_pm, misaligned):
    series, _, nominal = misaligned
    aligned, found, _, _ = aligned_pm
    assert aligned_geometry(found).tilt_axis == 0.0
    np.testing.assert_allclose(to_canonical(aligned, aligned_geometry(found)),
                               to_canonical(series, found), atol=1e-5)


def test_report_is_json_ready_and_progress_is_reported(aligned_pm):
    _, found, report, messages = aligned_pm
    assert messages and report["steps"] == messages
    assert any("axis" in m for m in messages)
    text = json.dumps(report)
    for key in ("method", "tilt_axis", "axis_offset", "residuals", "seconds", "shift_range"):
        assert key in json.loads(text)


def test_transform_files_round_trip(tmp_path, aligned_pm, misaligned):
    series, _, _ = misaligned
    aligned, found, report, _ = aligned_pm
    paths = write_transforms(tmp_path / "al", found, report)
    assert [p.name for p in paths] == ["al.xf", "al.tlt", "al.json"]
    back = TiltGeometry.from_dict(read_transforms(paths[2]))
    assert back == found
    from_xf = read_transforms(paths[0], nominal_axis="horizontal")
    np.testing.assert_allclose(from_xf["angles"], found.angles, atol=1e-3)
    np.testing.assert_allclose(from_xf["shifts"], found.shifts, atol=1e-4)
    assert abs(from_xf["tilt_axis"] - found.tilt_axis) < 1e-5
    np.testing.assert_allclose(apply_transforms(series, paths[2]), aligned, atol=1e-5)
    np.testing.assert_allclose(apply_transforms(series, from_xf), aligned, atol=1e-3)


def test_imod_transforms_with_per_tilt_rotations(tmp_path):
    imgs = _smooth_images(3, 40, sigma=2.0)
    xf = tmp_path / "imod.xf"
    rows = []
    for r, (dx, dy) in zip([2.0, 3.0, 4.0], [(1.0, 0.0), (0.0, -1.0), (0.5, 0.5)]):
        c, s = np.cos(np.deg2rad(r)), np.sin(np.deg2rad(r))
        rows.append(f"{c} {-s} {s} {c} {dx} {dy}")
    xf.write_text("\n".join(rows) + "\n")
    t = read_transforms(xf)
    assert t["angles"] is None
    np.testing.assert_allclose(t["rotations"], [2.0, 3.0, 4.0], atol=1e-9)
    out = apply_transforms(imgs, t)
    for i, (r, shift) in enumerate(zip(t["rotations"], t["shifts"])):
        one = warp_images(torch.from_numpy(imgs[i : i + 1]), torch.tensor([shift]).float(), float(r),
                          padding_mode="border").numpy()
        np.testing.assert_allclose(out[i], one[0], atol=1e-5)


def test_xf_lines_follow_the_documented_convention():
    g = TiltGeometry([0.0, 10.0], tilt_axis=-3.0, shifts=[[1.0, 2.0], [-0.5, 0.25]])
    a11, a12, a21, a22, dx, dy = map(float, xf_lines(g)[1].split())
    c, s = np.cos(np.deg2rad(3.0)), np.sin(np.deg2rad(3.0))
    np.testing.assert_allclose([a11, a12, a21, a22, dx, dy], [c, -s, s, c, 0.25, -0.5], atol=1e-6)


def test_transforms_reapply_to_a_twice_finer_series(aligned_pm, misaligned):
    series, _, _ = misaligned
    aligned, found, _, _ = aligned_pm
    fine = np.kron(series, np.ones((1, 2, 2), np.float32))  # bins back to series exactly
    redo = bin_images(apply_transforms(fine, found, binning=2), 2)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    offsets = register(aligned[inner], redo[inner])
    assert np.abs(offsets).max() < 0.05
    assert np.corrcoef(redo[inner].ravel(), aligned[inner].ravel())[0, 1] > 0.995


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors(misaligned):
    series, _, nominal = misaligned
    with pytest.raises(DataError, match="3D tilt series"):
        align_series(series[0], nominal)
    with pytest.raises(GeometryError, match="angle count"):
        align_series(series[:-1], nominal)
    with pytest.raises(GeometryError, match="TiltGeometry"):
        align_series(series, list(nominal.angles))
    bad = series.copy()
    bad[3, 5, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        align_series(bad, nominal)
    with pytest.raises(MethodUnavailable, match="xcorr"):
        align_series(series, nominal, method="magic")
    with pytest.raises(AlignmentError, match="unknown alignment option"):
        align_series(series, nominal, rounds_max=3)
    with pytest.raises(TomopriorError, match="out of range"):
        align_series(series, nominal, rounds=0)
    with pytest.raises(GeometryError):
        apply_transforms(series[:-1], nominal)


# -- the real needle ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.needle
@pytest.mark.skipif(not os.path.exists(NEEDLE), reason="needle data not available")
def test_needle_alignment_sharpens_the_reconstruction():
    from tomoprior import io
    from tomoprior.engine import run_to_end

    f = io.read(NEEDLE)
    data, geom = bin_images(f.load(), 4), f.geometry.binned(4)  # 64 px
    aligned, found, report = align_series(data, geom, method="pm")
    # the axis runs along the needle, turned ~3° clockwise on screen (+x towards +y)
    assert 1.5 < found.tilt_axis < 4.0
    assert np.abs(found.shifts).max() > 3.0  # drifts of several (binned) pixels

    def quality(series, g):
        vol, _ = run_to_end("sirt", series, g, iterations=30, device="cpu")
        from tomoprior.metrics import reprojection_residual
        from tomoprior.operators import make_projector
        from tomoprior.transforms import volume_to_canonical

        vc = volume_to_canonical(vol, g)
        A = make_projector(g.angles, vc.shape, vc.shape[2], device="cpu")
        return reprojection_residual(A, vc, to_canonical(series, g)), float(vol.var())

    before = quality(data, geom)
    after = quality(aligned, aligned_geometry(found))
    assert after[0] < 0.5 * before[0]  # consistent data: far smaller residual
    assert after[1] > 1.2 * before[1]  # sharper: more contrast, less smear
