"""DART and TVR-DART: segmentation, automatic grey levels, resume, levels checks, warnings."""

import json
import warnings

import numpy as np
import pytest
import torch

from tomoprior.algorithms import _grey_levels as gl
from tomoprior.algorithms.dart import dart, fit_levels
from tomoprior.algorithms.tvr_dart import tvr_dart
from tomoprior.cli import main
from tomoprior.engine import run, summary
from tomoprior.errors import ParameterError, TomopriorWarning
from tomoprior.geometry import TiltGeometry
from tomoprior.operators import make_projector
from tomoprior.step import last_step

pytestmark = pytest.mark.usefixtures("one_thread")

DENSITY = 1.5
ANGLES = np.arange(-60.0, 60.0 + 1e-6, 10.0)


def binary_phantom(n: int = 32, seed: int = 0) -> np.ndarray:
    """Five balls of one density in vacuum (z, y, x), exactly binary on the grid."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2,) * 3, indexing="ij")
    v = np.zeros((n, n, n), np.float32)
    for _ in range(5):
        c = rng.uniform(-n / 4, n / 4, 3)
        r = rng.uniform(n / 10, n / 6)
        v[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r] = DENSITY
    return v


@pytest.fixture(scope="module")
def binary():
    """A binary phantom, its projector (±60°, 10°) and noise-free data."""
    v = binary_phantom()
    A = make_projector(ANGLES, v.shape, device="cpu")
    return v, A, A(torch.from_numpy(v))


def _levels(step) -> tuple[float, ...]:
    return tuple(float(t) for t in step.extras["levels"].split(","))


# -- DART ------------------------------------------------------------------------------------
def test_dart_recovers_a_binary_segmentation_and_its_levels(binary):
    v, A, y = binary
    last = last_step(dart(A, y, iterations=20, every=10))
    assert last.phase == "iterate"
    accuracy = float(((last.volume > DENSITY / 2) == (v > DENSITY / 2)).mean())
    assert accuracy >= 0.98
    lo, hi = _levels(last)
    assert abs(lo) <= 0.05 * DENSITY and abs(hi - DENSITY) <= 0.05 * DENSITY
    # the segmented volume holds the two levels only (extras give 4 significant digits)
    values = np.unique(last.volume)
    assert len(values) == 2
    np.testing.assert_allclose(values, (lo, hi), rtol=1e-3, atol=1e-6)
    assert last.extras["level_fit"] > 0.9


def test_dart_beats_its_sirt_start_on_the_segmentation(binary):
    v, A, y = binary
    steps = list(dart(A, y, iterations=10, every=10))
    start = [s for s in steps if s.phase == "sirt start"][-1]
    wrong = lambda vol: float(((vol > DENSITY / 2) != (v > DENSITY / 2)).mean())  # noqa: E731
    assert wrong(steps[-1].volume) < 0.5 * wrong(start.volume)


def test_dart_continuous_output_keeps_the_fixed_voxels_on_their_levels(binary):
    _, A, y = binary
    last = last_step(dart(A, y, iterations=4, every=4, output="continuous"))
    lo, hi = _levels(last)
    on_level = np.isclose(last.volume, lo, atol=1e-6) | np.isclose(last.volume, hi, atol=1e-6)
    assert 0.5 < on_level.mean() < 1.0  # the boundary voxels stay continuous


def test_dart_given_levels_are_kept(binary):
    _, A, y = binary
    last = last_step(dart(A, y, iterations=3, every=3, levels="0,1.4"))
    assert _levels(last) == (0.0, 1.4)


def test_dart_resume_continues_exactly_with_random_free_voxels(binary):
    _, A, y = binary
    kw = dict(fix_probability=0.5, seed=7)
    whole = last_step(dart(A, y, iterations=6, every=6, **kw))
    first = last_step(dart(A, y, iterations=3, every=3, **kw))
    second = last_step(dart(A, y, iterations=3, every=3, resume=first.resume, **kw))
    assert second.iteration == whole.iteration == 6
    np.testing.assert_array_equal(second.volume, whole.volume)
    assert second.extras["levels"] == whole.extras["levels"]
    other = last_step(dart(A, y, iterations=6, every=6, fix_probability=0.5, seed=8,
                           output="continuous"))
    same = last_step(dart(A, y, iterations=6, every=6, output="continuous", **kw))
    assert not np.array_equal(other.volume, same.volume)  # the seed draws the free voxels


# -- TVR-DART ----------------------------------------------------------------------------------
def test_tvr_dart_learns_the_levels_and_the_segmentation(binary):
    v, A, y = binary
    last = last_step(tvr_dart(A, y, iterations=40, every=20, warm_iterations=60))
    lo, hi = _levels(last)
    assert abs(lo) <= 0.05 * DENSITY and abs(hi - DENSITY) <= 0.05 * DENSITY
    accuracy = float(((last.volume > DENSITY / 2) == (v > DENSITY / 2)).mean())
    assert accuracy >= 0.98
    assert last.objective_name == "0.5||M(A S(x)-y)||^2 + lam*TV(S(x))"
    assert last.extras["lam"] > 0 and last.extras["sharpness"] > 0


def test_tvr_dart_resume_continues_exactly(binary):
    _, A, y = binary
    kw = dict(lam=0.01, warm_start="sirt", warm_iterations=20)
    whole = last_step(tvr_dart(A, y, iterations=8, every=8, **kw))
    first = last_step(tvr_dart(A, y, iterations=4, every=4, **kw))
    second = list(tvr_dart(A, y, iterations=4, every=4, resume=first.resume, **kw))
    assert all(s.phase == "iterate" for s in second)
    np.testing.assert_allclose(second[-1].volume, whole.volume, rtol=1e-5, atol=1e-6)
    assert second[-1].extras["levels"] == whole.extras["levels"]
    with pytest.raises(ParameterError, match="lam"):
        list(tvr_dart(A, y, iterations=1, resume=first.resume, lam=0.5))


def test_tvr_dart_segmented_output_holds_the_levels(binary):
    _, A, y = binary
    last = last_step(tvr_dart(A, y, iterations=5, every=5, lam=0.01, warm_start="sirt",
                              warm_iterations=20, output="segmented"))
    assert len(np.unique(last.volume)) == 2


# -- grey levels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1,0", "0", "0,nan", "0,inf", "a,b", "0,0", "", "auto,1"])
@pytest.mark.parametrize("fn", [dart, tvr_dart])
def test_invalid_levels_are_one_line_parameter_errors(binary, fn, text):
    _, A, y = binary
    with pytest.raises(ParameterError, match="levels") as info:
        fn(A, y, levels=text)
    assert "\n" not in str(info.value)


def test_parse_levels():
    assert gl.parse_levels("auto") == "auto" and gl.parse_levels(" AUTO ") == "auto"
    assert gl.parse_levels("0, 1.5") == (0.0, 1.5)
    assert gl.parse_levels([0, 0.4, 1]) == (0.0, 0.4, 1.0)
    assert gl.parse_levels(gl.format_levels((0.0, 0.123456, 2.0))) == (0.0, 0.1235, 2.0)


def test_find_levels_on_a_three_level_histogram():
    rng = np.random.default_rng(1)
    v = np.zeros((32, 32, 32), np.float32)
    v[8:24, 8:24, 8:24] = 0.4
    v[12:20, 12:20, 12:20] = 1.0
    noisy = v + 0.02 * rng.standard_normal(v.shape).astype(np.float32)
    found = gl.find_levels(noisy, 3)
    np.testing.assert_allclose(found.levels, (0.0, 0.4, 1.0), atol=0.02)
    assert found.weights[0] > found.weights[1] > found.weights[2]
    # a blank volume still gives increasing levels
    blank = gl.find_levels(np.zeros((8, 8, 8), np.float32), 2)
    assert blank.levels[1] > blank.levels[0]


def test_fit_levels_is_least_squares_on_the_projections(binary):
    v, A, y = binary
    labels = torch.from_numpy((v > 0).astype(np.int64))
    start = torch.tensor([0.3, 0.9])
    fitted = fit_levels(A, y, labels, start)
    np.testing.assert_allclose(fitted.numpy(), (0.0, 0.9 + 0.5 * 0.6), atol=1e-4)  # capped
    again = fit_levels(A, y, labels, fitted)
    np.testing.assert_allclose(again.numpy(), (0.0, DENSITY), atol=1e-4)


def test_soft_segment_is_a_staircase_through_the_levels():
    levels = torch.tensor([0.0, 0.4, 1.0])
    x = torch.linspace(-0.5, 1.5, 201)
    s = gl.soft_segment(x, levels, 50.0)
    assert bool((s[1:] >= s[:-1]).all())
    np.testing.assert_allclose(gl.soft_segment(levels, levels, 50.0).numpy(), levels.numpy(),
                               atol=1e-6)
    far = gl.soft_segment(torch.tensor([-1.0, 0.1, 0.45, 2.0]), levels, 50.0)
    np.testing.assert_allclose(far.numpy(), (0.0, 0.0, 0.4, 1.0), atol=1e-3)


def test_the_smooth_tv_gradient_is_right():
    from tomoprior.algorithms._tv import tv_norm
    from tomoprior.algorithms.tvr_dart import _SmoothTV

    s = torch.rand(5, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _SmoothTV.apply(t, 1e-6), (s,))
    assert float(_SmoothTV.apply(s, 1e-6)) == pytest.approx(float(tv_norm(s.detach(), 1e-6)))


def test_level_fit_tells_a_few_level_volume_from_a_graded_one():
    v = np.zeros((24, 24, 24), np.float32)
    v[6:18, 6:18, 6:18] = 1.0
    assert gl.level_fit(v, (0.0, 1.0)) == 1.0
    ramp = v * np.linspace(0.3, 1.0, 24, dtype=np.float32)[None, None, :]
    assert gl.level_fit(ramp, (0.0, 1.0), tolerance=0.1) < 0.5
    assert gl.level_fit(np.zeros_like(v), (0.0, 1.0)) is None


# -- warnings, provenance, command line ------------------------------------------------------
def test_a_graded_specimen_gets_a_one_line_warning():
    n = 32
    v = np.zeros((n, n, n), np.float32)
    v[10:22, 6:26, 6:26] = np.linspace(0.1, 1.0, 20, dtype=np.float32)[None, None, :]
    A = make_projector(ANGLES, v.shape, device="cpu")
    y = A(torch.from_numpy(v))
    with pytest.warns(TomopriorWarning, match="fit the volume's histogram poorly") as caught:
        last = last_step(dart(A, y, iterations=10, every=10))
    messages = [str(w.message) for w in caught if issubclass(w.category, TomopriorWarning)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert last.extras["level_fit"] < 0.8
    assert last.extras["warning"] == messages[0]  # it reaches the provenance's result too


def test_a_binary_specimen_gets_no_warning(binary):
    _, A, y = binary
    with warnings.catch_warnings():
        warnings.simplefilter("error", TomopriorWarning)
        last_step(dart(A, y, iterations=5, every=5))


def _series(tmp_path):
    """A binary specimen's tilt series in a file, and its geometry."""
    v = binary_phantom(24, seed=2)
    g = TiltGeometry(ANGLES)
    A = make_projector(ANGLES, v.shape, device="cpu")
    series = A(torch.from_numpy(v)).numpy()
    from tomoprior import io

    path = tmp_path / "binary.tif"
    io.write_tilt_series(path, series, g)
    return path, series, g


def test_the_found_levels_are_in_the_provenance_and_summary(tmp_path):
    _, series, g = _series(tmp_path)
    rec = run("dart", series, g, iterations=4, every=2)
    last = last_step(rec)
    prov = rec.provenance()
    assert prov["parameters"]["levels"] == "auto"
    assert prov["result"]["levels"] == last.extras["levels"]
    s = summary(rec)
    assert s["chosen"]["levels"] == last.extras["levels"]
    assert s["parameters"]["levels"] == last.extras["levels"]


@pytest.mark.parametrize("text", ["1,0", "0", "0,nan"])
def test_cli_refuses_invalid_levels_with_exit_2(tmp_path, capsys, text):
    path, _, _ = _series(tmp_path)
    out = tmp_path / "v.mrc"
    rc = main(["reconstruct", str(path), "-o", str(out), "--method", "dart", "--iterations", "2",
               "--param", f"levels={text}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "levels" in err[0] and err[0].startswith("tomoprior:")
    assert not out.exists()


def test_cli_prints_the_level_fit_warning_once_and_records_it(tmp_path, capsys):
    from tomoprior import io

    n = 32
    v = np.zeros((n, n, n), np.float32)
    v[10:22, 6:26, 6:26] = np.linspace(0.1, 1.0, 20, dtype=np.float32)[None, None, :]
    A = make_projector(ANGLES, v.shape, device="cpu")
    path = tmp_path / "graded.tif"
    io.write_tilt_series(path, A(torch.from_numpy(v)).numpy(),
                         TiltGeometry(ANGLES, tilt_axis="vertical"))  # the canonical frame
    out = tmp_path / "v.tif"
    rc = main(["reconstruct", str(path), "-o", str(out), "--method", "dart", "--iterations", "10",
               "--json"])
    cap = capsys.readouterr()
    lines = [line for line in cap.err.splitlines() if "histogram poorly" in line]
    assert rc == 0 and len(lines) == 1 and lines[0].startswith("tomoprior: warning:")
    report = json.loads(cap.out.strip().splitlines()[-1])
    assert any("histogram poorly" in w for w in report["warnings"])
    assert any("histogram poorly" in w for w in io.read_provenance(out)["warnings"])
