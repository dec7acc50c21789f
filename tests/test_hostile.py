"""Fuzz and fault suite: hostile inputs get one clear line, fast, in bounded memory.

The files come from ``hostile_files.make_hostile`` (seeded): zero bytes,
random bytes and truncations of every format, headers that claim terabytes,
object arrays, deeply nested metadata, pathological text beside the data,
symlink loops. The output side (hard links, sidecars, existing files,
interrupted writes) is covered in test_cli.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from hostile_files import make_hostile
from tomoprior import io
from tomoprior.cli import main
from tomoprior.engine import memory_estimate, prepare, run
from tomoprior.errors import FormatError, GeometryError, MemoryBudgetError, TomopriorError
from tomoprior.geometry import TiltGeometry

HERE = pathlib.Path(__file__).parent

#: what a few cases must say (the rest only have to fail cleanly or open)
EXPECTED = {
    "mrc claims 1024x1024x512 floats": "truncated or its header is wrong",
    "mrc claims 100000^3": "truncated or its header is wrong",
    "npy claims 10^12 floats": "truncated or its header is wrong",
    "tif claims 100000x100000": "truncated or its header is wrong",
    "truncated tif 0.5": "truncated",
    "truncated mrc": "truncated",
    "npy object array": "Python objects",
    "symlink loop": "symbolic link",
    "zero-bytes .dm4": "damaged or not a DigitalMicrograph file",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return make_hostile(tmp_path_factory.mktemp("hostile"))


def test_every_hostile_file_fails_cleanly_under_a_memory_limit(tmp_path):
    """In a child limited to 512 MiB more address space than it has after its imports."""
    code = (
        "import resource, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "import hostile_files, tomoprior.io, tifffile, mrcfile, rsciio.digitalmicrograph\n"
        "vm = int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmSize')][0])\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + 512 * 1024**2,) * 2)\n"
        "for row in hostile_files.read_all(sys.argv[1]):\n"
        "    print(hostile_files.json.dumps(row))\n"
    )
    if not pathlib.Path("/proc/self/status").exists():
        pytest.skip("needs /proc to set an address-space limit")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(HERE)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip() == ""  # no library chatter on the console
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) >= 40
    for row in rows:
        assert row["outcome"] in ("read", "error"), row
        assert row["peak_growth_kib"] < 64 * 1024, row  # nothing near a header's claim
        if row["outcome"] == "error":
            assert "\n" not in row["message"] and len(row["message"]) < 400, row
        if row["case"] in EXPECTED:
            assert row["outcome"] == "error", row
            assert EXPECTED[row["case"]] in row["message"], row


def test_cli_info_gives_one_line_for_every_hostile_file(hostile, capsys):
    for case, path in hostile.items():
        code = main(["info", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code in (0, 2), case
        if code == 2:
            assert len(err) == 1 and err[0].startswith("tomoprior: error:"), (case, err)
            assert "Traceback" not in err[0] and str(path.parent) not in err[0], (case, err)
        else:
            assert err == [], (case, err)


def test_napari_reader_never_raises(hostile, notes):
    from tomoprior._napari._reader import read_files

    for case, path in hostile.items():
        before = len(notes.errors())
        layers = read_files(str(path))
        if layers[0][0] is None:
            assert len(notes.errors()) == before + 1, case
            assert "\n" not in notes.errors()[-1]


def test_nested_metadata_is_ignored_not_fatal(hostile):
    f = io.read(hostile["ImageJ Info nested 100000 deep"])
    assert f.shape == (5, 16, 16) and "provenance" not in f.metadata
    f = io.read(hostile["npy with hostile sidecars"])
    assert any("100000 characters long" in w for w in f.warnings)
    f = io.read(hostile["npy with a 65 MiB mdoc"])
    assert any("too large" in w for w in f.warnings)


def test_mdoc_and_labels_parse_in_linear_time(tmp_path):
    """Lines built to make backtracking patterns explode parse at once (or are refused)."""
    from tomoprior.io._angles import angles_from_labels, angles_from_text, read_mdoc

    p = tmp_path / "x.mdoc"
    p.write_text("[" + " " * 4000 + "\n" + "[T = " + "Tilt axis angle" * 200 + " ]\n"
                 + "[ZValue = 0]\nTiltAngle = " + "9" * 3000 + ".5\n")
    info = read_mdoc(p)
    assert info.tilt_axis_imod is None
    assert angles_from_labels(["tilt " + " " * 5000 + "x"] * 3, 3) is None
    assert angles_from_text("tilt_angles" + " :" * 100000, 3) is None


def test_memory_budget_refuses_a_whole_read_before_allocating(tmp_path, monkeypatch):
    np.save(tmp_path / "s.npy", np.zeros((4, 64, 64), np.float32))
    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", "10K")
    with pytest.raises(MemoryBudgetError, match="needs 64 KiB of memory"):
        io.read(tmp_path / "s.npy", lazy=False)
    f = io.read(tmp_path / "s.npy")  # the default opens it lazily instead
    assert isinstance(f.data, np.memmap)


def test_run_refuses_what_cannot_fit_and_says_how_to_fit(tmp_path, monkeypatch, capsys):
    series = np.random.default_rng(0).random((9, 32, 32), dtype=np.float32)
    g = TiltGeometry(angles=np.linspace(-60, 60, 9))
    need = memory_estimate(prepare(series, g))
    assert need["total"] == sum(v for k, v in need.items() if k != "total")
    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", str(need["total"] - 1))
    with pytest.raises(MemoryBudgetError, match="needs at least"):
        run("sirt", series, g, iterations=1)
    io.write_tilt_series(tmp_path / "s.tif", series, g)
    assert main(["reconstruct", str(tmp_path / "s.tif"), "-o", str(tmp_path / "v.tif"),
                 "--method", "sirt", "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bin 2" in err[0] and "--chunk N" in err[0]
    assert not (tmp_path / "v.tif").exists()
    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", str(need["total"]))
    assert next(iter(run("sirt", series, g, iterations=1))).volume.shape == (32, 32, 32)


def test_memory_mapped_series_reads_only_the_slab(tmp_path, monkeypatch):
    """--slices on a lazily opened file: the images are read one by one, never all mapped."""
    series = np.random.default_rng(1).random((7, 40, 48), dtype=np.float32)
    np.save(tmp_path / "s.npy", series)
    g = TiltGeometry(angles=np.linspace(-60, 60, 7), tilt_axis=12.0,
                     shifts=np.random.default_rng(2).normal(0, 1, (7, 2)))
    lazy = io.read(tmp_path / "s.npy", lazy=True).data
    assert isinstance(lazy, np.memmap)
    touched = []
    original = np.memmap.__getitem__
    monkeypatch.setattr(np.memmap, "__getitem__",
                        lambda self, k: touched.append(k) or original(self, k))
    for kw in ({"slices": "8:20", "bin": 2}, {"tilt_range": (-40, 40)}, {}):
        a = prepare(series, g, **kw).series
        b = prepare(lazy, g, **kw).series
        np.testing.assert_array_equal(a, b)
    assert touched == []  # plain file reads, so the map's pages never become resident


def test_radians_warn_and_convert(tmp_path, capsys):
    series = np.random.default_rng(0).random((7, 16, 16), dtype=np.float32)
    io.write_tilt_series(tmp_path / "s.tif", series)
    rad = np.radians(np.linspace(-60, 60, 7))
    (tmp_path / "s.rawtlt").write_text("".join(f"{a:.6f}\n" for a in rad))
    f = io.read(tmp_path / "s.tif")
    assert any("radians" in w for w in f.warnings)
    f = io.read(tmp_path / "s.tif", angles_unit="rad")
    np.testing.assert_allclose(f.geometry.angles, np.linspace(-60, 60, 7), atol=1e-4)
    assert not any("radians" in w for w in f.warnings)
    assert main(["info", str(tmp_path / "s.tif"), "--angles-unit", "rad", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["angle_range"] == pytest.approx([-60, 60], abs=1e-3)
    degrees = io.read(tmp_path / "s.tif", angles=np.linspace(-1, 1, 7))  # ±1°: a narrow scan
    assert any("radians" in w for w in degrees.warnings)
    wide = io.read(tmp_path / "s.tif", angles=np.linspace(-60, 60, 7))
    assert not any("radians" in w for w in wide.warnings)


def test_angle_file_problems_are_named_with_counts(tmp_path, capsys):
    series = np.random.default_rng(0).random((6, 16, 16), dtype=np.float32)
    io.write_tilt_series(tmp_path / "s.tif", series)
    (tmp_path / "s.rawtlt").write_text("-20\n-10\n0\n0\n10\n20\n")
    args = ["reconstruct", str(tmp_path / "s.tif"), "-o", str(tmp_path / "v.tif"), "--method", "wbp"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0° appears 2 times (at positions 3, 4)" in err[0]
    assert "6 angles, 5 distinct" in err[0]
    (tmp_path / "s.rawtlt").write_text("-20\n-10\n0\n10\n20\n")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "5 tilt angles for 6 images" in err[0] and "s.rawtlt" in err[0]
    with pytest.raises(GeometryError, match="appears 3 times"):
        TiltGeometry(angles=[1.0, 1.0, 1.0, 2.0])


def test_mrc_with_volume_flag_and_angles_is_a_tilt_series(tmp_path):
    series = np.random.default_rng(0).random((5, 16, 16), dtype=np.float32)
    with mrcfile.new(tmp_path / "s.mrc") as mrc:
        mrc.set_data(series)  # mrcfile marks 3D data as a volume (space group 1)
    assert io.read(tmp_path / "s.mrc").metadata["volume"] is True
    (tmp_path / "s.rawtlt").write_text("-40\n-20\n0\n20\n40\n")
    f = io.read(tmp_path / "s.mrc")
    assert f.metadata["volume"] is False and f.geometry.n_tilts == 5
    from tomoprior._napari._reader import layer_data_from_file

    _, kwargs, _ = layer_data_from_file(tmp_path / "s.mrc")
    assert list(kwargs["metadata"]["angles"]) == [-40, -20, 0, 20, 40]


def test_read_turns_any_library_failure_into_one_format_error(tmp_path, monkeypatch):
    from tomoprior.io import _read

    def explode(path, lazy):
        raise IndexError("list index out of range deep inside a parser")

    monkeypatch.setitem(_read._READERS, ".tif", explode)
    (tmp_path / "a.tif").write_bytes(b"II*\0")
    with pytest.raises(FormatError, match=r"a\.tif: it is damaged") as info:
        io.read(tmp_path / "a.tif")
    assert "index" not in str(info.value)

    def deep(path, lazy):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setitem(_read._READERS, ".tif", deep)
    with pytest.raises(TomopriorError, match="nested too deeply"):
        io.read(tmp_path / "a.tif")


def test_option_and_data_problems_give_one_line_before_any_work(tmp_path, capsys):
    series = np.random.default_rng(0).random((7, 16, 16), dtype=np.float32)
    g = TiltGeometry(angles=np.linspace(-60, 60, 7))
    io.write_tilt_series(tmp_path / "s.tif", series, g)
    io.write_tilt_series(tmp_path / "big.tif", series * np.float32(3e38), g)
    os.symlink("loop2.tif", tmp_path / "loop1.tif")
    os.symlink("loop1.tif", tmp_path / "loop2.tif")
    base = ["reconstruct", str(tmp_path / "s.tif"), "--method", "wbp"]
    cases = [
        ([*base, "-o", str(tmp_path / "a.tif"), "--tilt-start", "-60", "--tilt-step", "30"],
         "ends at 120°"),
        (["reconstruct", str(tmp_path / "big.tif"), "--method", "sirt", "-o",
          str(tmp_path / "b.tif")], "too large for 32-bit"),
        ([*base, "-o", str(tmp_path / "loop1.tif")], "loop of symbolic links"),
        ([*base[:3], "diptv", "-o", str(tmp_path / "c.tif"), "--param", "model=x.pt"],
         "init='pretrained'"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
    assert list(tmp_path.glob("[abc].*")) == []


def test_non_ascii_output_name_writes_an_mrc(tmp_path, capsys):
    series = np.random.default_rng(0).random((7, 16, 16), dtype=np.float32)
    io.write_tilt_series(tmp_path / "s.tif", series, TiltGeometry(angles=np.linspace(-60, 60, 7)))
    out = tmp_path / "größe_µm.mrc"
    assert main(["reconstruct", str(tmp_path / "s.tif"), "-o", str(out), "--method", "wbp"]) == 0
    assert io.read(out).shape == (16, 16, 16)
