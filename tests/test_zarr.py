"""OME-Zarr volumes: round trip, slab-by-slab writing, lazy reading, safe replacing."""

import json
import pickle
import random
import threading

import numpy as np
import pytest

from tomoprior import io
from tomoprior.cli import main
from tomoprior.errors import FormatError
from tomoprior.io import ZarrVolumeWriter, slab_axis, slab_chunks

zarr = pytest.importorskip("zarr")

PROV = {"method": "sirt", "parameters": {"relaxation": 1.0}, "geometry": {"tilt_axis": 0.0}}


@pytest.fixture
def volume():
    return np.random.default_rng(1).standard_normal((24, 40, 36)).astype(np.float32)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_round_trip_keeps_values_pixel_size_and_provenance(tmp_path, volume):
    path = io.write_volume(tmp_path / "vol.ome.zarr", volume, pixel_size=3.2, pixel_unit="Å",
                           provenance=PROV)
    f = io.read(path)
    assert f.lazy and type(f.data).__module__.startswith("dask")
    np.testing.assert_array_equal(f.data.compute(), volume)
    assert f.pixel_size == pytest.approx(0.32) and f.pixel_unit == "nm"
    assert f.metadata["volume"] and f.metadata["provenance"] == PROV
    assert f.metadata["format"] == "OME-Zarr 0.4"
    assert io.read_provenance(path) == PROV
    attrs = json.loads((path / ".zattrs").read_text())
    (ms,) = attrs["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in ms["axes"]} == {"nanometer"}
    (ds,) = ms["datasets"]
    assert ds["path"] == "0"
    assert ds["coordinateTransformations"] == [{"type": "scale", "scale": [0.32] * 3}]
    assert attrs["tomoprior"]["provenance"] == PROV
    # a horizontal tilt axis: slabs run along x (axis 2) in the written frame
    assert zarr.open_array(str(path / "0"), mode="r").chunks == (24, 40, 36)
    assert _leftovers(tmp_path) == []


def test_without_pixel_size_no_unit_and_unit_scale(tmp_path, volume):
    path = io.write_volume(tmp_path / "plain.zarr", volume.astype(np.uint16))
    ms = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    assert all("unit" not in a for a in ms["axes"])
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0]
    f = io.read(path, lazy=False)
    assert isinstance(f.data, np.ndarray) and f.data.dtype == np.uint16
    assert f.pixel_size is None and io.read_provenance(path) is None


@pytest.mark.parametrize("tilt_axis", [0.0, 90.0, -90.0, 180.0, 30.0, 70.0, -20.0])
def test_slab_axis_follows_the_canonical_frame(tilt_axis):
    from tomoprior.transforms import canonical_turns

    k, _ = canonical_turns(tilt_axis)
    assert slab_axis(tilt_axis) == (2 if k % 2 else 1)
    assert slab_axis(None) == 1


def test_slab_chunks():
    assert slab_chunks((300, 50, 400), axis=1, size=8) == (128, 8, 128)
    assert slab_chunks((20, 50, 30), axis=2, size=100) == (20, 50, 30)
    assert slab_chunks((20, 50, 30)) == (20, 50, 30)


def test_slab_by_slab_equals_whole_write(tmp_path, volume):
    whole = io.write_volume(tmp_path / "whole.zarr", volume, pixel_size=0.8, provenance=PROV)
    chunks = slab_chunks(volume.shape, axis=2, size=5)
    w = ZarrVolumeWriter(tmp_path / "slabs.ome.zarr", volume.shape, np.float32, chunks,
                         pixel_size=0.8, provenance={"method": "unknown yet"})
    regions = list(w.regions())
    assert len(regions) == 8 and all(r[2].stop - r[2].start <= 5 for r in regions)
    random.Random(0).shuffle(regions)
    remote = pickle.loads(pickle.dumps(w))  # what a worker process receives
    threads = [threading.Thread(target=remote.write, args=(r, volume[r])) for r in regions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not (tmp_path / "slabs.ome.zarr").exists()  # published only by close()
    assert w.close(provenance=PROV) == tmp_path / "slabs.ome.zarr"
    with pytest.raises(RuntimeError, match="closed"):  # a straggling worker writes nothing
        remote.write(regions[0], volume[regions[0]])
    a, b = io.read(whole), io.read(tmp_path / "slabs.ome.zarr")
    np.testing.assert_array_equal(a.data.compute(), b.data.compute())
    assert b.pixel_size == a.pixel_size == pytest.approx(0.8)
    assert io.read_provenance(tmp_path / "slabs.ome.zarr") == PROV
    assert _leftovers(tmp_path) == []


def test_dask_array_is_stored_without_recomputing(tmp_path, volume):
    import dask.array as da

    calls = []

    def block(x, block_info=None):
        calls.append(block_info[0]["array-location"])
        return x

    lazy = da.from_array(volume, chunks=(24, 40, 9)).map_blocks(block, dtype=np.float32)
    with ZarrVolumeWriter(tmp_path / "d.zarr", volume.shape, np.float32,
                          slab_chunks(volume.shape, 2, 9)) as w:
        da.store(lazy, w, lock=False)
    assert len(calls) == 4  # each slab computed once
    np.testing.assert_array_equal(io.read(tmp_path / "d.zarr").data.compute(), volume)
    with ZarrVolumeWriter(tmp_path / "e.zarr", volume.shape, np.float32,
                          slab_chunks(volume.shape, 2, 9)) as w:
        lazy.to_zarr(w.array)
    np.testing.assert_array_equal(io.read(tmp_path / "e.zarr").data.compute(), volume)


def test_regions_off_the_chunk_grid_are_refused(tmp_path, volume):
    with ZarrVolumeWriter(tmp_path / "g.zarr", volume.shape, np.float32,
                          slab_chunks(volume.shape, 1, 10)) as w:
        with pytest.raises(ValueError, match="chunk grid"):
            w.write((slice(None), slice(5, 15)), volume[:, 5:15])
        w.write((slice(None), slice(30, 40)), volume[:, 30:])  # the last, short slab is fine
        for r in w.regions():
            w.write(r, volume[r])


def test_incomplete_store_is_never_published(tmp_path, volume):
    w = ZarrVolumeWriter(tmp_path / "part.zarr", volume.shape, np.float32,
                         slab_chunks(volume.shape, 1, 10))
    w.write((slice(None), slice(0, 10)), np.zeros_like(volume[:, :10]))  # zeros count as written
    with pytest.raises(FormatError, match="not completely written"):
        w.close()
    assert not (tmp_path / "part.zarr").exists() and _leftovers(tmp_path) == []


def test_lazy_read_loads_no_data(tmp_path, volume):
    path = io.write_volume(tmp_path / "lazy.zarr", volume, provenance=PROV)
    for chunk in (path / "0").rglob("*"):
        if chunk.is_file() and not chunk.name.startswith("."):
            chunk.write_bytes(b"damaged")  # any read of the data would fail now
    f = io.read(path)
    assert f.data.shape == volume.shape and f.metadata["provenance"] == PROV
    with pytest.raises(Exception):  # noqa: B017 - the codec's own error
        f.data.compute()


def test_existing_store_needs_overwrite_and_other_folders_are_never_replaced(tmp_path, volume):
    path = io.write_volume(tmp_path / "v.zarr", volume)
    with pytest.raises(FormatError, match="exists"):
        io.write_volume(path, volume * 2, overwrite=False)
    np.testing.assert_array_equal(io.read(path).data.compute(), volume)
    io.write_volume(path, volume * 2, overwrite=True)
    np.testing.assert_array_equal(io.read(path).data.compute(), volume * 2)
    folder = tmp_path / "mine.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    (tmp_path / "file.zarr").write_text("a file")
    for target in (folder, tmp_path / "file.zarr"):
        with pytest.raises(FormatError, match="not a Zarr store"):
            io.write_volume(target, volume, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "file.zarr").read_text() == "a file"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_write_leaves_no_partial_store(tmp_path, volume, error):
    import dask.array as da

    def explode(x, block_info=None):
        if block_info[0]["chunk-location"][2] == 2:
            raise error("stop")
        return x

    lazy = da.from_array(volume, chunks=(24, 40, 9)).map_blocks(explode, dtype=np.float32)
    with pytest.raises(error):
        io.write_volume(tmp_path / "new.ome.zarr", lazy, provenance=PROV)
    assert not (tmp_path / "new.ome.zarr").exists()
    old = io.write_volume(tmp_path / "old.zarr", volume)
    with pytest.raises(error):
        io.write_volume(old, lazy, overwrite=True)
    np.testing.assert_array_equal(io.read(old).data.compute(), volume)  # the old store is intact
    assert _leftovers(tmp_path) == []


ZARR3 = int(zarr.__version__.split(".")[0]) >= 3


@pytest.mark.skipif(not ZARR3, reason="Zarr format 3 needs zarr 3")
def test_reads_ngff_05_of_other_programs(tmp_path, volume):
    # OME-NGFF 0.5 (Zarr format 3) with a pixel size in Å, two resolution levels
    g = zarr.open_group(str(tmp_path / "ngff05.ome.zarr"), mode="w", zarr_format=3)
    g.create_array("s0", shape=volume.shape, chunks=(8, 8, 8), dtype="f4")[:] = volume
    g.create_array("s1", shape=(12, 20, 18), chunks=(8, 8, 8), dtype="f4")
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    levels = [{"path": p, "coordinateTransformations": [{"type": "scale", "scale": [s] * 3}]}
              for p, s in (("s0", 5.0), ("s1", 10.0))]
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": levels}]}
    f = io.read(tmp_path / "ngff05.ome.zarr")
    np.testing.assert_array_equal(f.data.compute(), volume)
    assert f.pixel_size == pytest.approx(0.5) and f.metadata["volume"]
    assert f.metadata["format"] == "OME-Zarr 0.5"


def test_a_bare_array_is_a_tilt_series_without_angles(tmp_path):
    a = zarr.open_array(str(tmp_path / "bare.zarr"), mode="w", shape=(5, 8, 8), dtype="f4",
                        **({"zarr_format": 2} if ZARR3 else {}))
    a[:] = 1.0
    f = io.read(tmp_path / "bare.zarr")
    assert f.geometry is None and not f.metadata.get("volume") and f.data.shape == (5, 8, 8)
    assert any("no tilt angles" in w for w in f.warnings)


def test_a_folder_that_is_no_store_gives_one_line(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(FormatError, match="not a Zarr store"):
        io.read(tmp_path / "empty.zarr")
    with pytest.raises(FormatError, match="file not found"):
        io.read(tmp_path / "missing.zarr")


# -- command line -----------------------------------------------------------------------------------
@pytest.fixture
def series_file(tmp_path, small_series):
    series, g, _ = small_series
    path = tmp_path / "tilts.tif"
    io.write_tilt_series(path, series, g.replace(pixel_size=None))
    return path


def test_cli_reconstruct_to_ome_zarr_with_pixel_size(series_file, tmp_path, capsys):
    out = tmp_path / "rec.ome.zarr"
    args = ["reconstruct", str(series_file), "-o", str(out), "--method", "wbp",
            "--pixel-size", "0.5"]
    assert main(args) == 0
    f = io.read(out)
    assert f.data.shape == (32, 32, 32) and f.pixel_size == pytest.approx(0.5)
    prov = io.read_provenance(out)
    assert prov["method"] == "wbp" and prov["geometry"]["pixel_size"] == pytest.approx(0.5)
    assert zarr.open_array(str(out / "0"), mode="r").chunks[2] == 32  # slabs along x
    capsys.readouterr()
    assert main(args) == 2  # exists: refused before any work
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert main([*args, "--overwrite", "--pixel-size", "0.25"]) == 0
    assert io.read(out).pixel_size == pytest.approx(0.25)
    assert main(["info", str(out)]) == 0
    assert "pixel size 0.25 nm" in capsys.readouterr().out
    assert _leftovers(tmp_path) == []


def test_cli_refuses_a_folder_that_is_no_store_and_the_input_itself(series_file, tmp_path, capsys):
    (tmp_path / "data.zarr").mkdir()
    (tmp_path / "data.zarr" / "x.txt").write_text("keep")
    assert main(["reconstruct", str(series_file), "-o", str(tmp_path / "data.zarr"),
                 "--method", "wbp", "--overwrite"]) == 2
    assert "not a Zarr store" in capsys.readouterr().err
    assert (tmp_path / "data.zarr" / "x.txt").read_text() == "keep"
    store = io.write_volume(tmp_path / "in.zarr", np.zeros((4, 8, 8), np.float32))
    assert main(["reconstruct", str(store), "-o", str(store), "--method", "wbp",
                 "--overwrite"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err


def test_reads_a_5d_ngff_04_image_as_a_volume(tmp_path, volume):
    fmt = {"zarr_format": 2} if ZARR3 else {}
    g = zarr.open_group(str(tmp_path / "tczyx.ome.zarr"), mode="w", **fmt)
    make = g.create_array if ZARR3 else g.create_dataset
    arr = make("0", shape=(1, 1, *volume.shape), chunks=(1, 1, 8, 8, 8), dtype="f4")
    arr[:] = volume[None, None]
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
            *({"name": a, "type": "space", "unit": "micrometer"} for a in "zyx")]
    scale = [1.0, 1.0, 0.002, 0.002, 0.002]
    g.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]
    f = io.read(tmp_path / "tczyx.ome.zarr")
    assert f.data.shape == volume.shape and f.metadata["volume"]
    assert f.pixel_size == pytest.approx(2.0)
    np.testing.assert_array_equal(np.asarray(f.data), volume)


def test_a_symbolic_link_is_never_replaced(tmp_path, volume):
    store = io.write_volume(tmp_path / "real.zarr", volume)
    (tmp_path / "link.zarr").symlink_to(store)
    with pytest.raises(FormatError, match="symbolic link"):
        io.write_volume(tmp_path / "link.zarr", volume * 2, overwrite=True)
    np.testing.assert_array_equal(io.read(store).data.compute(), volume)


@pytest.mark.skipif(__import__("os").name != "posix", reason="processes are probed on POSIX")
@pytest.mark.parametrize("output", ["vol.ome.zarr", "vol.mrc"])
def test_a_killed_write_is_cleaned_up_by_the_next_one(tmp_path, volume, output):
    """SIGKILL leaves the hidden partial store or file; the next write of that output removes
    it, and never a partial of a live process, another host or another output."""
    import signal
    import subprocess
    import sys

    from tomoprior._atomic import partial_prefix

    target = tmp_path / output
    killed = f"""
import os, signal, numpy as np
from tomoprior import io
from tomoprior._atomic import replacing
from tomoprior.io import ZarrVolumeWriter
if {output!r}.endswith('.zarr'):
    w = ZarrVolumeWriter({str(target)!r}, (24, 40, 36), 'float32', (8, 40, 36))
    w.write((slice(0, 8), slice(None), slice(None)), np.ones((8, 40, 36), np.float32))
else:
    with replacing({str(target)!r}) as tmp:
        tmp.write_bytes(b'half a volume')
        os.kill(os.getpid(), signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.Popen([sys.executable, "-c", killed])
    assert proc.wait() == -signal.SIGKILL
    name = target.stem if output.endswith(".mrc") else output  # files: the stem, then .mrc
    (left,) = _leftovers(tmp_path)
    assert left.startswith(f".{name}.partial-{proc.pid}@")
    mine = tmp_path / (partial_prefix(name) + "live")  # this (live) process: kept
    other = tmp_path / f".{name}.partial-1@elsewhere-x"  # another host: kept
    old_style = tmp_path / f".{name}.partial-abc123"  # not ours to judge: kept
    for p in (mine, other, old_style):
        p.write_bytes(b"")
    io.write_volume(target, volume, overwrite=True)
    assert target.exists()
    assert _leftovers(tmp_path) == sorted(p.name for p in (mine, other, old_style))
