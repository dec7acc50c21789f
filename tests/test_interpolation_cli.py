"""`tomoprior interpolate` and `tomoprior train interpolate` on the command line."""

import json

import numpy as np
import pytest
import torch

from tomoprior import io
from tomoprior.cli import main
from tomoprior.geometry import TiltGeometry
from tomoprior.interpolation._model import save_model
from tomoprior.interpolation._net import InterpNet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def series_file(tmp_path):
    rng = np.random.default_rng(0)
    series = rng.random((5, 24, 32), dtype=np.float32)
    g = TiltGeometry([-20.0, -10.0, 0.0, 10.0, 20.0], tilt_axis="horizontal")
    path = tmp_path / "tilts.tif"
    io.write_tilt_series(path, series, g)
    return path, series


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_model(path, InterpNet((4, 8), fold=2), {"name": "tiny", "package_version": "test"})
    return path


def _main(argv) -> int:
    """``main``, with argparse's usage errors (SystemExit) as exit statuses."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tomoprior: error:")
    return err[0]


@pytest.mark.parametrize("method", ["linear", "learned"])
def test_interpolate_writes_series_angles_and_sidecar(series_file, model_file, tmp_path, capsys,
                                                       method):
    path, series = series_file
    out = tmp_path / f"dense_{method}.tif"
    extra = ["--model", str(model_file)] if method == "learned" else []
    assert main(["interpolate", str(path), "-o", str(out), "--factor", "4", "--method", method,
                 "--json", *extra]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["shape"] == [17, 24, 32] and summary["method"] == method
    f = io.read(out)
    assert f.geometry.angles.tolist() == list(np.arange(-20, 20.1, 2.5))
    assert out.with_suffix(".rawtlt").is_file()
    side = json.loads((tmp_path / f"dense_{method}.frames.json").read_text())
    assert side["measured"] == [i % 4 == 0 for i in range(17)]
    assert side["virtual_angles"][:3] == [-17.5, -15.0, -12.5]
    data = f.load()
    assert np.array_equal(data[::4], series)  # measured frames unchanged


def test_interpolate_step_and_vertical_axis(series_file, tmp_path, capsys):
    path, _ = series_file
    out = tmp_path / "dense.npy"
    assert main(["interpolate", str(path), "-o", str(out), "--step", "4", "--method", "linear",
                 "--tilt-axis", "vertical", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["shape"] == [13, 24, 32]
    assert io.read(out).geometry.tilt_axis == 90.0


def test_interpolate_reproject(series_file, tmp_path, capsys):
    path, series = series_file
    out = tmp_path / "re.tif"
    assert main(["interpolate", str(path), "-o", str(out), "--method", "reproject",
                 "--recon-method", "sirt", "--param", "iterations=3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["shape"] == [9, 24, 32]
    side = json.loads((tmp_path / "re.frames.json").read_text())
    assert side["reconstruction"]["method"] == "sirt"


@pytest.mark.parametrize("args, words", [
    (["--factor", "1"], "must be >= 2"),
    (["--factor", "2", "--step", "5"], "not allowed with"),
    (["--model", "nope.pt"], "model file not found"),
    (["--method", "linear", "--model", "x.pt"], "--model is for --method learned"),
    (["--method", "linear", "--param", "lam=1"], "--recon-method and --param"),
])
def test_interpolate_user_errors_are_one_line(series_file, tmp_path, capsys, args, words):
    path, _ = series_file
    out = tmp_path / "o.tif"
    assert _main(["interpolate", str(path), "-o", str(out), *args]) == 2
    assert words in _error_line(capsys)
    assert not out.exists()


def test_interpolate_single_frame(tmp_path, capsys):
    one = tmp_path / "one.tif"
    io.write_tilt_series(one, np.ones((1, 8, 8), np.float32))
    (tmp_path / "one.rawtlt").write_text("0\n")
    assert main(["interpolate", str(one), "-o", str(tmp_path / "o.tif"), "--method", "linear"]) == 2
    assert "not a tilt series" in _error_line(capsys)


def test_interpolate_damaged_model_file(series_file, tmp_path, capsys):
    path, _ = series_file
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["interpolate", str(path), "-o", str(tmp_path / "o.tif"), "--model", str(bad)]) == 2
    assert "not a readable tomoprior model file" in _error_line(capsys)


def test_interpolate_never_overwrites_its_input(series_file, capsys):
    path, _ = series_file
    before = path.read_bytes()
    assert main(["interpolate", str(path), "-o", str(path), "--method", "linear",
                 "--overwrite"]) == 2
    _error_line(capsys)
    assert path.read_bytes() == before


def test_interpolate_checks_the_output_first(series_file, tmp_path, capsys):
    path, _ = series_file
    out = tmp_path / "o.tif"
    out.write_bytes(b"keep")
    assert main(["interpolate", str(path), "-o", str(out), "--method", "linear"]) == 2
    assert "exists" in _error_line(capsys)
    assert out.read_bytes() == b"keep"


def test_train_interpolate_tiny(tmp_path, capsys, monkeypatch):
    from tomoprior.interpolation import training

    monkeypatch.setattr(training, "InterpTrainConfig", _tiny_config(training.InterpTrainConfig))
    out = tmp_path / "m.pt"
    assert main(["train", "interpolate", "-o", str(out), "--steps", "4", "--batch", "2",
                 "--series", "1", "--val-series", "1", "--validate-every", "2", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["output"] == str(out) and "all" in s["validation"]
    assert main(["train", "interpolate", "-o", str(out)]) == 2  # exists: no overwrite
    assert "exists" in _error_line(capsys)


def _tiny_config(base):
    """The trainer's config with a tiny network and data (the CLI fills in the rest)."""

    def make(**kw):
        return base(**kw, patch_rows=32, patch_cols=32, channels=(4, 8), fold=2,
                    ranges={"sizes": (32,), "max_tilt": 12, "gap": (2, 6)})

    return make


def test_interpolate_reproject_takes_iterations_and_shows_progress(series_file, tmp_path,
                                                                   capsys):
    path, _ = series_file
    out = tmp_path / "re.tif"
    assert main(["interpolate", str(path), "-o", str(out), "--method", "reproject",
                 "--recon-method", "SIRT", "--iterations", "4", "--json"]) == 0
    captured = capsys.readouterr()
    side = json.loads((tmp_path / "re.frames.json").read_text())
    assert side["reconstruction"]["method"] == "sirt"
    assert side["reconstruction"]["iterations"] == 4
    progress = [ln for ln in captured.err.splitlines()
                if ln.startswith("interpolate (reproject, sirt): SIRT")]
    assert len(progress) >= 2, captured.err  # one line per step, not silence
    assert main(["interpolate", str(path), "-o", str(tmp_path / "w.tif"), "--method",
                 "reproject", "--recon-method", "wbp", "--iterations", "3"]) == 0
    assert "tomoprior: warning: WBP does not iterate: iterations=3 is ignored" in \
        capsys.readouterr().err
    assert _main(["interpolate", str(path), "-o", str(tmp_path / "l.tif"), "--method", "linear",
                  "--iterations", "4"]) == 2
    assert "--iterations" in _error_line(capsys)


def test_info_lists_the_virtual_frames(series_file, tmp_path, capsys):
    path, _ = series_file
    out = tmp_path / "dense.tif"
    assert main(["interpolate", str(path), "-o", str(out), "--method", "linear"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "virtual    4 of 9 frames filled in (linear, from dense.frames.json): images " \
           "2,4,6,8" in text
    assert main(["info", str(out), "--json"]) == 0
    v = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["virtual_frames"]
    assert v["indices"] == [1, 3, 5, 7] and v["count"] == 4 and v["method"] == "linear"
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["virtual_frames"] is None


def test_interpolate_reproject_bins_the_reconstruction_not_the_frames(tmp_path, capsys):
    """--bin N reconstructs from the binned series; virtual frames come back at full size,
    close to those of the unbinned run on smooth data, measured frames bit for bit."""
    yy, xx = np.mgrid[:26, :34]
    blob = np.exp(-((yy - 13) ** 2 + (xx - 17) ** 2) / 60.0).astype(np.float32)
    series = np.stack([np.roll(blob, int(round(a / 10)), axis=1) for a in (-20, -10, 0, 10, 20)])
    g = TiltGeometry([-20.0, -10.0, 0.0, 10.0, 20.0], tilt_axis="horizontal")
    src = tmp_path / "smooth.tif"
    io.write_tilt_series(src, series, g)
    common = ["--method", "reproject", "--recon-method", "sirt", "--iterations", "20"]
    assert main(["interpolate", str(src), "-o", str(tmp_path / "b1.tif"), *common]) == 0
    assert main(["interpolate", str(src), "-o", str(tmp_path / "b2.tif"), *common,
                 "--bin", "2", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["shape"] == [9, 26, 34]
    full, binned = io.read(tmp_path / "b1.tif").load(), io.read(tmp_path / "b2.tif").load()
    np.testing.assert_array_equal(binned[::2], series)
    err = np.abs(binned[1::2] - full[1::2]).max() / np.abs(full[1::2]).max()
    assert err < 0.15, err
    assert _main(["interpolate", str(src), "-o", str(tmp_path / "l.tif"), "--method", "linear",
                  "--bin", "2"]) == 2
    assert "--bin" in _error_line(capsys)
