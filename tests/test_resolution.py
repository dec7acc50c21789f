"""Spherical and directional FSC (tomoprior.resolution): limits, the wedge, units, the CLI."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tomoprior import io, metrics
from tomoprior.errors import DataError, ParameterError
from tomoprior.resolution import crossing, directional_fsc, half_bit


def noise(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def wedge_filtered(volume, max_tilt=60.0, axis="x"):
    """The volume without the Fourier components a ±max_tilt series about ``axis`` misses.

    A tilt about the axis measures the central slice normal to the tilted beam, so the
    components with ``|k_z| > tan(max_tilt) |k_p|`` (``p``: across the axis in the image
    plane) are never measured, whatever their component along the axis.
    """
    kz, ky, kx = np.meshgrid(*(np.fft.fftfreq(n) for n in volume.shape), indexing="ij")
    kp = np.abs(ky if axis == "x" else kx)
    keep = np.abs(kz) <= np.tan(np.radians(max_tilt)) * kp + 1e-9
    return np.fft.ifftn(np.fft.fftn(volume) * keep).real.astype(np.float32)


def test_a_volume_with_itself_correlates_fully_in_every_direction():
    v = noise((24, 32, 28), 0)  # not cubic: shells stay spherical in cycles per pixel
    r = directional_fsc(v, v, polar_step=15)
    for which, curve in r.curves.items():
        counted = r.counts[which] > 0
        np.testing.assert_allclose(curve[counted], 1.0, atol=1e-5, err_msg=which)
    np.testing.assert_allclose(r.polar[r.polar_counts > 0], 1.0, atol=1e-5)
    assert r.resolution("z") == pytest.approx(2.0) and r.at_nyquist("z")


def test_independent_noise_correlates_near_zero_beyond_the_lowest_shells():
    r = directional_fsc(noise((32, 32, 32), 1), noise((32, 32, 32), 2))
    for which, curve in r.curves.items():
        n = r.counts[which]
        far = n >= 50
        assert far.sum() >= 5
        # the FSC of independent noise has a standard deviation of about 1/sqrt(n/2)
        assert np.all(np.abs(curve[far]) < 4.0 / np.sqrt(n[far] / 2)), which
    assert r.resolution("spherical") > 8  # falls below 0.143 at once: a very coarse volume


def test_spherical_curve_is_the_metrics_fsc():
    a, b = noise((20, 26, 30), 3), noise((20, 26, 30), 4)
    b = 0.7 * a + b
    r = directional_fsc(a, b)
    ref = metrics.fsc(a, b)
    np.testing.assert_allclose(r.curves["spherical"], ref["fsc"], atol=1e-5)
    np.testing.assert_array_equal(r.counts["spherical"], ref["n"])
    np.testing.assert_allclose(r.frequency, ref["frequency"])
    assert r.resolution("spherical") == pytest.approx(metrics.fsc_resolution(a, b), rel=1e-3)


def test_the_missing_wedge_shows_as_a_dip_along_z():
    truth = noise((32, 32, 32), 5)
    rec = wedge_filtered(truth, 60.0, axis="x")  # tilted about x (a horizontal axis, 0°)
    r = directional_fsc(rec, truth, pixel_size=0.5, tilt_axis=0.0)
    z, xy = r.curves["z"], r.curves["xy"]
    # the z cone lies inside the wedge: nothing left there but float32 round-off, which
    # correlates with the truth no more than independent noise does
    assert np.mean(np.abs(z[r.counts["z"] >= 8])) < 0.15
    assert np.all(xy[r.counts["xy"] >= 8] > 0.8)
    z_res = r.resolution("z")
    assert np.isnan(z_res) or z_res > 4 * r.resolution("xy")
    polar = r.polar_resolution()
    angles = list(r.polar_angles)
    assert polar[angles.index(90.0)] == pytest.approx(1.0)  # 2 px of 0.5 nm: measured
    assert np.isnan(polar[angles.index(0.0)]) or polar[angles.index(0.0)] > 4.0
    assert r.resolution("xy") == pytest.approx(1.0) and r.unit == "nm"


def test_the_tilt_plane_follows_the_tilt_axis():
    truth = noise((32, 32, 32), 6)
    rec = wedge_filtered(truth, 60.0, axis="x")
    right = directional_fsc(rec, truth, tilt_axis=0.0, polar_step=45)
    wrong = directional_fsc(rec, truth, tilt_axis=90.0, polar_step=45)
    at45 = list(right.polar_angles).index(45.0)
    # 45° from z towards y is measured for an axis along x; towards x (wrong axis) it is not
    assert right.polar[at45][right.polar_counts[at45] >= 8].min() > 0.5
    assert wrong.polar[at45][wrong.polar_counts[at45] >= 8].max() < 0.6
    assert right.polar_resolution()[at45] < wrong.polar_resolution()[at45]


def test_crossing_thresholds_and_units():
    f = np.linspace(0.05, 0.5, 10)
    c = 1.0 - 2.0 * f  # crosses 0.143 at f = 0.4285
    n = np.full(10, 1000.0)
    assert crossing(f, c, n, 0.143) == pytest.approx(0.4285, abs=1e-3)
    assert half_bit(np.array([1e12]))[0] == pytest.approx(0.2071 / 1.2071, rel=1e-4)
    assert crossing(f, c, n, "half-bit") < crossing(f, c, n, 0.143)  # ½-bit is higher at n=1000
    assert np.isnan(crossing(f, c, np.full(10, 2.0), 0.143))  # no shell with enough voxels
    v = noise((16, 16, 16), 7)
    px = directional_fsc(v, v + noise((16, 16, 16), 8))
    nm = directional_fsc(v, v + noise((16, 16, 16), 8), pixel_size=0.8)
    assert nm.resolution("spherical") == pytest.approx(0.8 * px.resolution("spherical"))
    assert px.unit == "px" and nm.summary()["resolution"]["z"]["0.143"] is not None
    with pytest.raises(ParameterError):
        crossing(f, c, n, "one-bit")


def test_bad_inputs_are_one_line_errors():
    v = noise((16, 16, 16), 9)
    with pytest.raises(DataError, match="shape"):
        directional_fsc(v, v[:8])
    with pytest.raises(DataError, match="3D"):
        directional_fsc(v[0], v[0])
    with pytest.raises(ParameterError, match="cone"):
        directional_fsc(v, v, cone=60)
    bad = v.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        directional_fsc(bad, v)


def test_assess_prints_resolutions_and_json(tmp_path, capsys):
    from tomoprior.cli import main

    truth = noise((24, 24, 24), 10)
    io.write_volume(tmp_path / "a.mrc", truth, pixel_size=0.5,
                    provenance={"geometry": {"tilt_axis": 0.0}})
    io.write_volume(tmp_path / "b.mrc", wedge_filtered(truth), pixel_size=0.5)
    assert main(["assess", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc")]) == 0
    text = capsys.readouterr().out
    assert "z (beam)" in text and "0.143" in text and "nm" in text
    assert main(["assess", str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["unit"] == "nm" and s["tilt_axis"] == 0.0
    assert s["resolution"]["xy"]["0.143"] == pytest.approx(1.0)
    assert s["resolution"]["z"]["0.143"] is None or s["resolution"]["z"]["0.143"] > 2.0
    assert len(s["curves"]["z"]) == len(s["frequency"]) == 12


def test_assess_refuses_volumes_of_different_shapes(tmp_path, capsys):
    from tomoprior.cli import main

    io.write_volume(tmp_path / "a.tif", noise((16, 16, 16), 11))
    io.write_volume(tmp_path / "b.tif", noise((16, 16, 12), 12))
    assert main(["assess", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ in shape" in err[0]


def test_assess_does_not_import_torch(tmp_path):
    io.write_volume(tmp_path / "a.npy", noise((16, 16, 16), 13))
    script = textwrap.dedent("""
        import sys
        from tomoprior.cli import main
        codes = []
        for argv in (["assess", "--help"], ["assess", sys.argv[1], sys.argv[1]]):
            try:
                codes.append(main(argv))
            except SystemExit as exc:
                codes.append(exc.code)
        print("CODES", codes, "TORCH", "torch" in sys.modules)
    """)
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.npy")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "CODES [0, 0] TORCH False"
