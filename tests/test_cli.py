"""The `tomoprior` command line: info, reconstruct, simulate, methods, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tomoprior import io
from tomoprior.cli import main
from tomoprior.geometry import TiltGeometry, angles_from_range


@pytest.fixture
def series_file(tmp_path, small_series):
    series, g, _ = small_series
    path = tmp_path / "tilts.tif"
    io.write_tilt_series(path, series, g)
    return path, series, g


def _json_tail(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_info_text_and_json(series_file, capsys):
    path, series, g = series_file
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "41 from -60° to 60°, step 3°" in out
    assert main(["info", str(path), "--json"]) == 0
    info = _json_tail(capsys.readouterr().out)
    assert info["n_tilts"] == 41 and info["angle_step"] == 3.0 and info["shape"] == [41, 32, 32]


def test_reconstruct_sirt_writes_volume_with_provenance(series_file, tmp_path, capsys):
    path, series, g = series_file
    out = tmp_path / "vol.mrc"
    rc = main(["reconstruct", str(path), "-o", str(out), "--method", "sirt", "--iterations", "12",
               "--tilt-range", "-45", "45", "--tilt-increment", "9", "--json"])
    assert rc == 0
    summary = _json_tail(capsys.readouterr().out)
    assert summary["method"] == "sirt" and summary["iterations"] == 12
    assert summary["kept_angles"] == [-45.0, -36.0, -27.0, -18.0, -9.0, 0.0, 9.0, 18.0, 27.0, 36.0, 45.0]
    vol = io.read(out)
    assert vol.data.shape == (32, 32, 32)
    prov = io.read_provenance(out)
    assert prov["method"] == "sirt" and prov["parameters"]["relaxation"] == 1.0


def test_reconstruct_slices_bin_and_params(series_file, tmp_path, capsys):
    path, _, _ = series_file
    out = tmp_path / "slab.tif"
    rc = main(["reconstruct", str(path), "-o", str(out), "--method", "cstv", "--iterations", "5",
               "--bin", "2", "--slices", "8:24", "--param", "lam=0.05", "--json"])
    assert rc == 0
    s = _json_tail(capsys.readouterr().out)
    assert s["volume_shape"] == [16, 16, 8] and s["parameters"]["lam"] == 0.05


def test_inr_with_pose_learning_writes_its_alignment(series_file, tmp_path, capsys):
    path, _, _ = series_file
    out = tmp_path / "inr.tif"
    rc = main(["reconstruct", str(path), "-o", str(out), "--method", "inr", "--iterations", "6",
               "--every", "3", "--bin", "2", "--tilt-increment", "12", "--param", "learn_pose=true",
               "--param", "pose_start=0", "--json"])
    assert rc == 0
    s = _json_tail(capsys.readouterr().out)
    xf, tlt, js = (tmp_path / f"inr_alignment{ext}" for ext in (".xf", ".tlt", ".json"))
    assert s["alignment"] == [str(xf), str(tlt), str(js)]
    kept = s["kept_angles"]
    assert len(xf.read_text().splitlines()) == len(kept) == 11
    np.testing.assert_allclose(np.loadtxt(tlt), kept)
    doc = json.loads(js.read_text())
    assert doc["report"]["binning"] == 2 and doc["report"]["method"] == "inr"
    assert doc["geometry"]["pixel_size"] == pytest.approx(0.8)  # input pixels, not binned ones
    assert io.read_provenance(out)["method"] == "inr"


def test_angles_from_start_step(tmp_path, small_series, capsys):
    series, _, _ = small_series
    raw = tmp_path / "noangles.npy"
    np.save(raw, series)
    out = tmp_path / "v.tif"
    assert main(["reconstruct", str(raw), "-o", str(out), "--method", "wbp"]) == 2
    assert "no tilt angles" in capsys.readouterr().err
    assert main(["reconstruct", str(raw), "-o", str(out), "--method", "wbp",
                 "--tilt-start", "-60", "--tilt-step", "3"]) == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "not found"),
        ("badext", "unknown extension"),
        ("mismatch", "angle"),
        ("nan", "NaN"),
        ("samefile", "would overwrite the input"),
        ("badparam", "relaxation"),
        ("unknownparam", "no parameter 'relaxaton'"),
        ("nanparam", "finite"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, small_series, capsys, setup, message):
    series, g, _ = small_series
    src = tmp_path / "in.tif"
    args = ["reconstruct", str(src), "-o", str(tmp_path / "out.tif"), "--method", "sirt",
            "--iterations", "2"]
    if setup == "missing":
        args[1] = str(tmp_path / "nope.tif")
    elif setup == "badext":
        args[1] = str(tmp_path / "x.xyz")
        (tmp_path / "x.xyz").write_text("hello")
    elif setup == "mismatch":
        io.write_tilt_series(src, series[:-1])
        args += ["--angles", str(_angle_file(tmp_path, g.angles))]
    elif setup == "nan":
        bad = series.copy()
        bad[2, 3, 4] = np.nan
        io.write_tilt_series(src, bad, g)
    elif setup == "samefile":
        io.write_tilt_series(src, series, g)
        args[3] = str(src)
    elif setup == "badparam":
        io.write_tilt_series(src, series, g)
        args += ["--param", "relaxation=5"]
    elif setup == "unknownparam":
        io.write_tilt_series(src, series, g)
        args += ["--param", "relaxaton=1.5"]
    elif setup == "nanparam":
        io.write_tilt_series(src, series, g)
        args[5:7] = ["cstv", "--param", "lam=nan", "--iterations"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tomoprior: error:")
    assert message.lower() in err[0].lower()
    if setup == "samefile":
        assert io.read(src).data.shape == series.shape  # input untouched


def _angle_file(tmp_path, angles):
    p = tmp_path / "angles.tlt"
    p.write_text("\n".join(f"{a:g}" for a in angles))
    return p


def test_simulate_writes_series_truth_and_geometry(tmp_path, capsys):
    out = tmp_path / "sim.tif"
    rc = main(["simulate", "blobs", "-o", str(out), "--size", "24", "--tilt-range", "-60", "60",
               "--tilt-step", "10", "--misalign", "2", "--axis-error", "1.5", "--noise", "poisson",
               "--dose", "1000", "--json"])
    assert rc == 0
    f = io.read(out)
    assert f.data.shape == (13, 24, 24)
    np.testing.assert_allclose(f.geometry.angles, angles_from_range(-60, 60, 10))
    truth = json.loads((tmp_path / "sim_geometry.json").read_text())
    g = TiltGeometry.from_dict(truth["geometry"])
    assert g.tilt_axis == pytest.approx(1.5)
    assert np.abs(g.shifts).max() <= 2.0 + 1e-6 and np.abs(g.shifts).max() > 0
    assert io.read(tmp_path / "sim_truth.tif").data.shape == (24, 24, 24)


def test_methods_lists_registry(capsys):
    from tomoprior.algorithms import METHODS

    assert main(["methods", "--json"]) == 0
    m = _json_tail(capsys.readouterr().out)
    assert list(m) == list(METHODS)
    for name, method in METHODS.items():
        assert m[name]["label"] == method.label
        assert {k: v["default"] for k, v in m[name]["params"].items()} == method.defaults()
    assert m["cstv"]["params"]["lam"]["default"] == "auto" and m["cstv"]["params"]["lam"]["auto"]
    assert "resumable" in m["sirt"]["capabilities"] and "learns_poses" in m["inr"]["capabilities"]
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert "--param lam_rule=median" in text


def test_readme_method_table_is_generated(capsys):
    from pathlib import Path

    assert main(["methods", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- methods-table:start -->", "<!-- methods-table:end -->"
    inside = readme[readme.index(start) + len(start):readme.index(end)].strip()
    assert inside == table, "README's method table is stale: paste `tomoprior methods --markdown`"


def test_method_choices_come_from_the_registry(tmp_path, capsys):
    from tomoprior.algorithms import METHODS

    with pytest.raises(SystemExit) as info:
        main(["reconstruct", "x.tif", "-o", str(tmp_path / "o.tif"), "--method", "art"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert all(repr(name) in err for name in METHODS)


def test_help_explains_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status" in out and "never a traceback" in out


def test_diverged_run_exits_2_with_one_line(monkeypatch, series_file, tmp_path, capsys):
    from tomoprior.algorithms import sirt as sirt_module

    monkeypatch.setattr(sirt_module._SIRT, "update", lambda self, k: float("nan"))
    path, _, _ = series_file
    out = tmp_path / "o.tif"
    assert main(["reconstruct", str(path), "-o", str(out), "--method", "sirt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("tomoprior: error: SIRT diverged at iteration 1 (the loss is not finite): "
                       "lower the relaxation")
    assert not out.exists()


def test_bug_is_not_disguised_as_user_error(monkeypatch, series_file, tmp_path):
    """Only errors a user can cause become one line; a bug keeps its traceback."""
    import tomoprior.engine as run_module

    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(run_module, "run", broken)
    path, _, _ = series_file
    with pytest.raises(KeyError):
        main(["reconstruct", str(path), "-o", str(tmp_path / "o.tif"), "--method", "sirt"])


def test_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "tomoprior.cli", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "napari-tomoprior" in res.stdout


def test_align_then_reconstruct(tmp_path, capsys):
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("pt_haadf", 32, seed=2, supersample=2)
    series, true = simulate(ph, angles_from_range(-60, 60, 5), shifts=2.0, seed=2)
    src = tmp_path / "raw.tif"
    io.write_tilt_series(src, series, true.replace(shifts=None))
    out = tmp_path / "aligned.tif"
    assert main(["align", str(src), "-o", str(out), "--no-axis", "--json"]) == 0
    res = _json_tail(capsys.readouterr().out)
    assert (tmp_path / "aligned.xf").exists() and (tmp_path / "aligned.json").exists()
    found = np.asarray(res["shifts"])
    assert np.abs(found).max() > 0.5
    aligned = io.read(out)
    assert aligned.geometry.tilt_axis == 0.0 and not np.any(aligned.geometry.shifts)
    vol = tmp_path / "v.tif"
    assert main(["reconstruct", str(src), "-o", str(vol), "--method", "sirt", "--iterations", "5",
                 "--align", "--json"]) == 0
    assert _json_tail(capsys.readouterr().out)["iterations"] == 5


# -- never lose a user's data ------------------------------------------------------------------
def _reconstruct(src, out, *extra):
    return main(["reconstruct", str(src), "-o", str(out), "--method", "sirt", "--iterations", "2",
                 *extra])


def test_hard_link_to_the_input_is_refused(series_file, tmp_path, capsys):
    path, series, _ = series_file
    link = tmp_path / "vol.tif"
    link.hardlink_to(path)
    before = path.read_bytes()
    assert _reconstruct(path, link, "--overwrite") == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert path.read_bytes() == before
    sym = tmp_path / "sym.tif"
    sym.symlink_to(path)
    assert _reconstruct(path, sym, "--overwrite") == 2
    assert path.read_bytes() == before


def test_output_sidecar_never_replaces_the_inputs(tmp_path, small_series, capsys):
    series, g, _ = small_series
    src = tmp_path / "x.npy"
    io.write_tilt_series(src, series, g)  # x.npy + x.json (pixel size, axis) + x.rawtlt
    side = (tmp_path / "x.json").read_bytes()
    assert _reconstruct(src, tmp_path / "x.mrc") == 2  # would write x.json
    assert "would overwrite the input's x.json" in capsys.readouterr().err
    assert (tmp_path / "x.json").read_bytes() == side and not (tmp_path / "x.mrc").exists()


def test_existing_outputs_need_overwrite(series_file, tmp_path, capsys):
    path, _, _ = series_file
    out = tmp_path / "good.tif"
    out.write_bytes(b"a user's good result")
    assert _reconstruct(path, out) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"a user's good result"
    assert _reconstruct(path, out, "--overwrite") == 0
    assert io.read(out).data.ndim == 3
    sim = tmp_path / "good2.tif"
    (tmp_path / "good2.rawtlt").write_text("1\n2\n")
    assert main(["simulate", "blobs", "-o", str(sim), "--size", "16"]) == 2
    assert (tmp_path / "good2.rawtlt").read_text() == "1\n2\n" and not sim.exists()


@pytest.mark.parametrize("where", ["missing_folder", "bad_extension", "folder_itself"])
def test_output_is_checked_before_any_computation(series_file, tmp_path, capsys, monkeypatch,
                                                  where):
    import tomoprior.engine as run_module

    path, _, _ = series_file
    out = {"missing_folder": tmp_path / "nope" / "v.tif", "bad_extension": tmp_path / "v.png",
           "folder_itself": tmp_path}[where]
    monkeypatch.setattr(run_module, "run", lambda *a, **k: pytest.fail("computed first"))
    assert _reconstruct(path, out, "--overwrite") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tomoprior: error:")


def test_interrupted_write_keeps_the_previous_file(series_file, tmp_path, monkeypatch):
    """A write that dies half-way leaves the earlier result, not a fragment."""
    from tomoprior.io import _write

    path, _, _ = series_file
    out = tmp_path / "v.mrc"
    assert _reconstruct(path, out) == 0
    before = out.read_bytes()
    real = _write.write_mrc

    def dies(tmp, data, **kw):
        real(tmp, data[:1], **kw)  # part of the data on disk, then the process is stopped
        raise KeyboardInterrupt

    monkeypatch.setattr(_write, "write_mrc", dies)
    assert _reconstruct(path, out, "--overwrite") == 130
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_written_files_get_ordinary_permissions(series_file, tmp_path):
    import os

    path, _, _ = series_file
    out = tmp_path / "v.mrc"
    assert _reconstruct(path, out) == 0
    mask = os.umask(0)
    os.umask(mask)
    for f in (out, out.with_suffix(".json")):
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f.name


@pytest.mark.parametrize(
    "args",
    [
        ["--bin", "0"], ["--bin", "-3"], ["--tilt-increment", "0"], ["--tilt-increment", "-10"],
        ["--heldout", "-1"], ["--heldout", "nan"], ["--iterations", "x"], ["--every", "0"],
        ["--tilt-range", "60", "-60"], ["--thickness", "100000"], ["--param", "lam=nan"],
        ["--param", "lam=inf"], ["--chunk", "0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_numbers_are_refused_in_one_line(series_file, tmp_path, capsys, args):
    path, _, _ = series_file
    rc = _rc(["reconstruct", str(path), "-o", str(tmp_path / "v.tif"), "--method", "cstv", *args])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tomoprior: error:"), err
    assert not (tmp_path / "v.tif").exists()


def _rc(argv):
    """Exit status of the command line, whether it returns or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("args", [["--tilt-step", "0.0001"], ["--supersample", "64"],
                                  ["--size", "1024", "--supersample", "2"],
                                  ["--tilt-range", "10", "-10"]])
def test_simulate_refuses_unbounded_work(tmp_path, capsys, args):
    assert _rc(["simulate", "blobs", "-o", str(tmp_path / "s.tif"), *args]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_json_summary_is_strict(series_file, tmp_path, capsys):
    path, _, _ = series_file
    assert main(["reconstruct", str(path), "-o", str(tmp_path / "v.tif"), "--method", "wbp",
                 "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


@pytest.mark.parametrize("save", [False, True])
def test_ctrl_c_writes_nothing_unless_asked(series_file, tmp_path, monkeypatch, capsys, save):
    from tomoprior import engine as run_module

    path, _, _ = series_file
    out = tmp_path / "v.tif"
    real = run_module.Reconstruction.__next__
    calls = []

    def interrupted_after_one(self):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(run_module.Reconstruction, "__next__", interrupted_after_one)
    extra = ["--save-interrupted"] if save else []
    assert _reconstruct(path, out, *extra) == 130
    assert out.exists() == save
    err = capsys.readouterr().err
    assert ("last iterate kept" in err) == save and ("nothing written" in err) != save


def test_exclude_takes_image_numbers_from_one(series_file, tmp_path, capsys):
    path, series, _ = series_file
    out = tmp_path / "v.mrc"
    n = series.shape[0]
    assert _reconstruct(path, out, "--exclude", f"1,{n - 1}-{n}", "--json") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    prov = io.read_provenance(out)
    assert prov["excluded_tilts"] == [0, n - 2, n - 1]
    assert summary["kept_tilts"] == list(range(1, n - 2))
    assert _reconstruct(path, tmp_path / "w.mrc", "--exclude", "0") == 2
    assert "image numbers from 1" in capsys.readouterr().err


# -- --pixel-size ------------------------------------------------------------------------------------
@pytest.fixture
def no_pixel_file(tmp_path, small_series):
    series, g, _ = small_series
    path = tmp_path / "nopixel.tif"
    io.write_tilt_series(path, series, g.replace(pixel_size=None))
    assert io.read(path).pixel_size is None
    return path


def test_info_pixel_size_sets_and_overrides(no_pixel_file, series_file, capsys):
    assert main(["info", str(no_pixel_file)]) == 0
    assert "pixel size" not in capsys.readouterr().out
    assert main(["info", str(no_pixel_file), "--pixel-size", "0.42"]) == 0
    assert "pixel size 0.42 nm (from --pixel-size)" in capsys.readouterr().out
    assert main(["info", str(no_pixel_file), "--pixel-size", "0.42", "--json"]) == 0
    info = _json_tail(capsys.readouterr().out)
    assert info["pixel_size"] == 0.42 and info["pixel_size_source"] == "--pixel-size"
    path, _, _ = series_file  # a file with 0.8 nm
    assert main(["info", str(path), "--pixel-size", "0.5"]) == 0
    assert "pixel size 0.5 nm (from --pixel-size; the file says 0.8 nm)" in capsys.readouterr().out


@pytest.mark.parametrize("ext", [".mrc", ".tif"])
def test_reconstruct_pixel_size_reaches_file_and_provenance(no_pixel_file, tmp_path, capsys, ext):
    out = tmp_path / f"v{ext}"
    assert main(["reconstruct", str(no_pixel_file), "-o", str(out), "--method", "wbp",
                 "--pixel-size", "0.6", "--json"]) == 0
    assert io.read(out).pixel_size == pytest.approx(0.6, rel=1e-4)
    assert io.read_provenance(out)["geometry"]["pixel_size"] == pytest.approx(0.6)
    assert _json_tail(capsys.readouterr().out)["output"] == str(out)


def test_align_pixel_size_reaches_the_aligned_series(no_pixel_file, tmp_path, capsys):
    out = tmp_path / "aligned.mrc"
    assert main(["align", str(no_pixel_file), "-o", str(out), "--no-axis", "--pixel-size",
                 "1.5"]) == 0
    assert io.read(out).pixel_size == pytest.approx(1.5, rel=1e-4)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc", "-inf"])
@pytest.mark.parametrize("command", ["info", "reconstruct", "align"])
def test_bad_pixel_size_is_one_line_exit_2(no_pixel_file, tmp_path, capsys, value, command):
    args = [command, str(no_pixel_file), f"--pixel-size={value}"]
    if command != "info":
        args += ["-o", str(tmp_path / "o.mrc")]
    if command == "reconstruct":
        args += ["--method", "wbp"]
    assert _rc(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pixel-size" in err[0], err
    assert not (tmp_path / "o.mrc").exists()


def test_slabs_streamed_to_zarr_need_one_slab_of_memory(series_file, tmp_path, capsys, monkeypatch):
    """A volume the budget cannot hold whole still streams to OME-Zarr, slab by slab."""
    from tomoprior.slabs import plan_slabs

    path, series, g = series_file
    plan = plan_slabs("sirt", series, g, chunk=8, iterations=2, device="cpu")
    streamed = plan.memory_need(whole_volume=False)["total"]
    whole = plan.memory_need(whole_volume=True)["total"]
    assert whole - streamed == 4 * 32**3
    deeper = plan_slabs("sirt", np.concatenate([series] * 4, axis=2), g, chunk=8, iterations=2)
    assert deeper.memory_need(whole_volume=False)["total"] == streamed  # depth does not count
    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", str(streamed + 1024))
    args = ["reconstruct", str(path), "--method", "sirt", "--iterations", "2", "--chunk", "8"]
    assert main([*args, "-o", str(tmp_path / "v.mrc")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--chunk N -o vol.ome.zarr" in err
    assert not (tmp_path / "v.mrc").exists()
    assert main([*args, "--scheduler", "threads", "-o", str(tmp_path / "v.mrc")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "whole volume" in err and ".ome.zarr" in err
    assert main([*args, "-o", str(tmp_path / "v.ome.zarr")]) == 0
    assert io.read(tmp_path / "v.ome.zarr").data.shape == (32, 32, 32)
