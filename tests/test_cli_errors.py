"""Failures, interruptions and warnings on the command line: one line each, and JSON with --json."""

import json
import os
import signal
import warnings

import numpy as np
import pytest

from tomoprior import io
from tomoprior.cli import main
from tomoprior.errors import ParameterError, TomopriorWarning
from tomoprior.geometry import TiltGeometry


@pytest.fixture
def series_file(tmp_path):
    series = np.random.default_rng(0).random((7, 16, 16), dtype=np.float32)
    path = tmp_path / "s.tif"
    io.write_tilt_series(path, series, TiltGeometry(np.linspace(-60, 60, 7)))
    return path


def _status(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _outcome(capsys) -> tuple[list[str], dict]:
    out, err = capsys.readouterr()
    return err.strip().splitlines(), json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["usage", "missing", "exists", "budget"])
def test_json_errors_end_stdout_with_an_object(series_file, tmp_path, capsys, monkeypatch, case):
    out = tmp_path / "v.tif"
    argv = ["reconstruct", str(series_file), "-o", str(out), "--method", "wbp", "--json"]
    if case == "usage":
        argv[5] = "art"
    elif case == "missing":
        argv[1] = str(tmp_path / "nope.tif")
    elif case == "exists":
        out.write_bytes(b"keep")
    else:
        monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", "lots")
    assert _status(argv) == 2
    err, obj = _outcome(capsys)
    assert len(err) == 1 and err[0] == f"tomoprior: error: {obj['error']}"
    assert obj["exit_status"] == 2 and set(obj) == {"error", "exit_status"}


def test_unreadable_memory_budget_is_one_line(series_file, capsys, monkeypatch):
    from tomoprior.io._budget import memory_budget

    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", "lots")
    with pytest.raises(ParameterError, match=r"TOMOPRIOR_MEMORY_BUDGET='lots'.*2G"):
        memory_budget()
    assert main(["info", str(series_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TOMOPRIOR_MEMORY_BUDGET" in err[0] and "512M" in err[0]
    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", "2G")
    assert memory_budget() == 2 * 1024**3


def _sigterm(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM did not interrupt")  # the handler raises first


@pytest.mark.parametrize("when", ["reading", "first_step", "first_step_save"])
def test_sigterm_exits_130_at_any_point(series_file, tmp_path, capsys, monkeypatch, when):
    from tomoprior import engine

    if when == "reading":
        monkeypatch.setattr(io, "read", _sigterm)
    else:
        monkeypatch.setattr(engine.Reconstruction, "__next__", _sigterm)
    out = tmp_path / "v.tif"
    extra = ["--save-interrupted"] if when.endswith("save") else []
    assert main(["reconstruct", str(series_file), "-o", str(out), "--method", "sirt",
                 "--iterations", "2", "--json", *extra]) == 130
    err, obj = _outcome(capsys)
    assert err[-1].startswith("tomoprior: interrupted")
    assert obj == {"error": err[-1].removeprefix("tomoprior: "), "exit_status": 130}
    assert not out.exists()


def test_engine_warnings_are_lines_once_each_and_in_json(tmp_path, capsys):
    series = np.random.default_rng(0).random((7, 16, 16), dtype=np.float32)
    path = tmp_path / "r.tif"
    io.write_tilt_series(path, series)
    (tmp_path / "r.rawtlt").write_text("".join(f"{a:.6f}\n" for a in np.radians(
        np.linspace(-60, 60, 7))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["reconstruct", str(path), "-o", str(tmp_path / "v.mrc"), "--method", "wbp",
                     "--iterations", "5", "--slices", "4:900", "--json"]) == 0
    assert not [w for w in caught if issubclass(w.category, TomopriorWarning)]
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.startswith("tomoprior: warning: ")]
    assert len([ln for ln in lines if "radian" in ln]) == 1
    assert any("iterations=5 is ignored" in ln for ln in lines)
    assert any("4:900" in ln for ln in lines)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["warnings"] == [ln.removeprefix("tomoprior: warning: ") for ln in lines]
