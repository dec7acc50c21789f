"""Reader and writer of the napari plugin on files written by tomoprior.io."""

import numpy as np
import pytest

from tomoprior import io
from tomoprior._napari._reader import get_reader, layer_data_from_file, read_files
from tomoprior._napari._writer import write_image_layer
from tomoprior.geometry import TiltGeometry, angles_from_range

pytest.importorskip("napari")


@pytest.fixture
def notes(monkeypatch):
    """Messages passed to napari's show_warning / show_error."""
    from napari.utils import notifications

    got = {"warning": [], "error": []}
    monkeypatch.setattr(notifications, "show_warning", got["warning"].append)
    monkeypatch.setattr(notifications, "show_error", got["error"].append)
    return got


@pytest.fixture
def series():
    rng = np.random.default_rng(0)
    return rng.random((7, 12, 16), dtype=np.float32)


@pytest.fixture
def geometry():
    return TiltGeometry(angles_from_range(-60, 60, 20), tilt_axis=90, pixel_size=0.8)


def _check_tilt_series(ld, series, geometry, path):
    data, kwargs, kind = ld
    assert kind == "image"
    # shown as (tilt, 1, y, x): tilts and the volume's z get their own sliders
    assert data.shape == (series.shape[0], 1, *series.shape[1:])
    np.testing.assert_allclose(np.asarray(data, np.float32)[:, 0], series, rtol=1e-6)
    assert kwargs["axis_labels"] == ("tilt", "z", "y", "x")
    assert kwargs["units"] == ("pixel", "nm", "nm", "nm")
    depth = max(series.shape[1:]) * 0.8
    assert kwargs["scale"] == pytest.approx((1.0, depth, 0.8, 0.8), rel=1e-4)
    md = kwargs["metadata"]
    assert md["tomoprior_kind"] == "tilt_series"
    assert md["angles"] == pytest.approx(list(geometry.angles))
    assert md["tilt_axis"] == pytest.approx(90.0)
    assert md["pixel_size"] == pytest.approx(0.8, rel=1e-4)
    assert md["pixel_unit"] == "nm"
    assert md["angle_source"]
    assert md["source"] == str(path)


@pytest.mark.parametrize("ext", [".tif", ".mrc"])
def test_reader_tilt_series_with_rawtlt(tmp_path, series, geometry, notes, ext):
    path = io.write_tilt_series(tmp_path / f"ts{ext}", series, geometry)
    assert path.with_suffix(".rawtlt").exists()
    reader = get_reader(str(path))
    assert reader is not None
    (ld,) = reader(str(path))
    _check_tilt_series(ld, series, geometry, path)
    assert ld[1]["name"] == "ts"
    assert not notes["warning"] and not notes["error"]


def test_reader_accepts_every_supported_extension_and_refuses_others():
    for ext in io.SUPPORTED_EXTENSIONS:
        assert get_reader(f"x{ext}") is read_files
        assert get_reader(f"x{ext.upper()}") is read_files
    assert get_reader("x.png") is None
    assert get_reader(["a.tif", "b.png"]) is None
    assert get_reader(["a.tif", "b.mrc"]) is read_files


def test_reader_without_angles_warns_and_flags(tmp_path, series, notes):
    path = io.write_tilt_series(tmp_path / "noangles.mrc", series)
    (ld,) = read_files(str(path))
    md = ld[1]["metadata"]
    assert md["tomoprior_kind"] == "tilt_series"
    assert md["angles"] == []
    assert any("no tilt angles" in w for w in md["warnings"])
    assert len(notes["warning"]) == 1
    assert "start and step" in notes["warning"][0]
    assert "Reconstruction" in notes["warning"][0]


def test_reader_volume_with_provenance(tmp_path):
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    prov = {"method": "sirt", "iterations": 3}
    for ext in (".tif", ".mrc"):
        path = io.write_volume(tmp_path / f"vol{ext}", vol, pixel_size=1.5, provenance=prov)
        data, kwargs, kind = layer_data_from_file(path)
        md = kwargs["metadata"]
        assert md["tomoprior_kind"] == "volume"
        assert md["provenance"]["method"] == "sirt"
        assert kwargs["scale"] == pytest.approx((1.5, 1.5, 1.5), rel=1e-4)
        np.testing.assert_array_equal(np.asarray(data), vol)


def test_reader_passes_lazy_data_through(tmp_path, series, geometry, monkeypatch):
    import tomoprior.io._read as read_mod

    path = io.write_tilt_series(tmp_path / "big.mrc", series, geometry)
    monkeypatch.setattr(read_mod, "LAZY_THRESHOLD_BYTES", 0)
    data, _, _ = layer_data_from_file(path)
    assert isinstance(data, np.memmap) or not isinstance(data, np.ndarray)
    np.testing.assert_allclose(np.asarray(data)[:, 0], series)


def test_reader_bad_file_gives_error_notification_not_exception(tmp_path, notes):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff at all")
    out = read_files(str(bad))
    assert out == [(None,)]  # napari's "handled, no layer" sentinel
    assert len(notes["error"]) == 1 and "broken.tif" in notes["error"][0]


@pytest.mark.parametrize("ext", [".tif", ".mrc"])
def test_writer_round_trip_with_provenance(tmp_path, ext):
    vol = np.random.default_rng(1).random((6, 8, 10), dtype=np.float32)
    prov = {"method": "cstv", "parameters": {"lam": 0.02}, "kept_tilts": [0, 2, 4]}
    meta = {
        "name": "CS-TV result",
        "metadata": {
            "tomoprior_kind": "volume",
            "pixel_size": 2.5,
            "pixel_unit": "nm",
            "provenance": prov,
        },
    }
    (written,) = write_image_layer(str(tmp_path / f"out{ext}"), vol, meta)
    assert io.read_provenance(written) == prov
    data, kwargs, _ = layer_data_from_file(written)
    np.testing.assert_allclose(np.asarray(data), vol, rtol=1e-6)
    assert kwargs["metadata"]["pixel_size"] == pytest.approx(2.5, rel=1e-4)
    assert kwargs["metadata"]["provenance"] == prov


def test_writer_tilt_series_layer_keeps_angles(tmp_path, series, geometry):
    meta = {
        "name": "ts",
        "metadata": {
            "tomoprior_kind": "tilt_series",
            "angles": list(geometry.angles),
            "tilt_axis": 90.0,
            "pixel_size": 0.8,
            "pixel_unit": "nm",
        },
    }
    (written,) = write_image_layer(str(tmp_path / "copy.tif"), series, meta)
    f = io.read(written)
    assert f.geometry.n_tilts == 7
    assert f.geometry.tilt_axis == pytest.approx(90.0)


def test_writer_error_is_a_notification(tmp_path, notes):
    vol = np.zeros((2, 3, 4), np.float32)
    out = write_image_layer(str(tmp_path / "missing" / "x.tif"), vol, {"name": "v", "metadata": {}})
    assert out == []
    assert notes["error"] and "folder" in notes["error"][0]


def test_reader_leaves_plain_pictures_to_napari(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "photo.tif", rng.integers(0, 255, (40, 50, 3), np.uint8),
                     photometric="rgb")
    tifffile.imwrite(tmp_path / "single.tif", rng.random((40, 50), dtype=np.float32))
    tifffile.imwrite(tmp_path / "stack.tif", rng.random((4, 40, 50), dtype=np.float32),
                     photometric="minisblack")
    np.save(tmp_path / "image.npy", rng.random((40, 50)))
    np.save(tmp_path / "stack.npy", rng.random((4, 40, 50)))
    assert get_reader(str(tmp_path / "photo.tif")) is None
    assert get_reader(str(tmp_path / "single.tif")) is None
    assert get_reader(str(tmp_path / "image.npy")) is None
    assert get_reader(str(tmp_path / "stack.tif")) is read_files
    assert get_reader(str(tmp_path / "stack.npy")) is read_files
    assert get_reader([str(tmp_path / "stack.tif"), str(tmp_path / "photo.tif")]) is None
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    assert get_reader(str(tmp_path / "broken.tif")) is read_files  # our message explains it


def test_a_dropped_serialem_folder_opens_its_stack(tmp_path):
    import mrcfile

    from tomoprior._napari._reader import serialem_stack

    folder = tmp_path / "session"
    folder.mkdir()
    with mrcfile.new(folder / "tilts.st") as mrc:
        mrc.set_data(np.random.default_rng(0).random((3, 16, 16), dtype=np.float32))
    (folder / "tilts.st.mdoc").write_text(
        "PixelSpacing = 3.42\n\n[ZValue = 0]\nTiltAngle = 0\n\n[ZValue = 1]\nTiltAngle = -30\n\n"
        "[ZValue = 2]\nTiltAngle = 30\n")
    (folder / "notes.txt").write_text("a session")
    assert serialem_stack(folder) == folder / "tilts.st"
    reader = get_reader(str(folder))
    ((data, kwargs, kind),) = reader(str(folder))
    assert kind == "image" and data.shape == (3, 1, 16, 16)
    assert list(kwargs["metadata"]["angles"]) == [0, -30, 30]
    assert get_reader(str(tmp_path)) is None  # no stack with an .mdoc directly inside


def test_napari_opens_a_serialem_folder_through_the_manifest(make_napari_viewer, tmp_path):
    import mrcfile

    folder = tmp_path / "session"
    folder.mkdir()
    with mrcfile.new(folder / "tilts.mrc") as mrc:
        mrc.set_data(np.random.default_rng(0).random((3, 16, 16), dtype=np.float32))
    (folder / "tilts.mdoc").write_text(
        "[ZValue = 0]\nTiltAngle = -30\n\n[ZValue = 1]\nTiltAngle = 0\n\n[ZValue = 2]\nTiltAngle = 30\n")
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-tomoprior")
    (layer,) = viewer.layers
    assert layer.data.shape == (3, 1, 16, 16) and list(layer.metadata["angles"]) == [-30, 0, 30]


@pytest.mark.parametrize("name", ["out.ome.zarr", "out.zarr"])
def test_writer_and_reader_round_trip_ome_zarr(tmp_path, notes, name):
    import dask.array as da

    vol = np.random.default_rng(2).random((6, 8, 10), dtype=np.float32)
    prov = {"method": "sirt", "geometry": {"tilt_axis": 90.0}}
    meta = {"name": "SIRT", "metadata": {"tomoprior_kind": "volume", "pixel_size": 2.5,
                                         "pixel_unit": "nm", "provenance": prov}}
    lazy = da.from_array(vol, chunks=(6, 3, 10))  # a lazy layer is written chunk by chunk
    (written,) = write_image_layer(str(tmp_path / name), lazy, meta)
    assert written == str(tmp_path / name)
    assert get_reader(written) is read_files and get_reader(written + "/") is read_files
    ((data, kwargs, kind),) = read_files(written)
    assert kind == "image" and kwargs["name"] == "out"
    assert isinstance(data, da.Array)  # opened lazily
    np.testing.assert_array_equal(data.compute(), vol)
    assert kwargs["scale"] == pytest.approx((2.5, 2.5, 2.5))
    assert kwargs["metadata"]["provenance"] == prov
    assert kwargs["metadata"]["tomoprior_kind"] == "volume"
    assert not notes["warning"] and not notes["error"]
    # existing store: the napari writer replaces it (napari's save dialog asks first)
    (again,) = write_image_layer(written, vol * 2, meta)
    np.testing.assert_array_equal(np.asarray(read_files(again)[0][0]), vol * 2)


def test_reader_explains_a_zarr_folder_that_is_no_store(tmp_path, notes):
    (tmp_path / "empty.zarr").mkdir()
    assert get_reader(str(tmp_path / "empty.zarr")) is read_files
    assert read_files(str(tmp_path / "empty.zarr")) == [(None,)]
    assert len(notes["error"]) == 1 and "not a Zarr store" in notes["error"][0]


def test_napari_saves_and_opens_ome_zarr_through_the_manifest(make_napari_viewer, tmp_path):
    vol = np.random.default_rng(3).random((5, 6, 7), dtype=np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(vol, name="rec", scale=(0.5, 0.5, 0.5),
                     metadata={"tomoprior_kind": "volume", "pixel_size": 0.5, "pixel_unit": "nm",
                               "provenance": {"method": "wbp"}})
    out = tmp_path / "rec.ome.zarr"
    viewer.layers.save(str(out), plugin="napari-tomoprior")
    assert io.read_provenance(out) == {"method": "wbp"}
    viewer.layers.clear()
    viewer.open(str(out), plugin="napari-tomoprior")
    (layer,) = viewer.layers
    np.testing.assert_array_equal(np.asarray(layer.data), vol)
    assert tuple(layer.scale) == pytest.approx((0.5, 0.5, 0.5))


def test_reader_carries_the_virtual_frames_of_a_filled_in_series(tmp_path, series, geometry):
    from tomoprior.interpolation import interpolate, write_sidecar

    dense = interpolate(series, geometry, factor=2, method="linear")
    path = io.write_tilt_series(tmp_path / "dense.tif", dense.series, dense.geometry)
    write_sidecar(path, dense)
    (ld,) = get_reader(str(path))(str(path))
    frames = ld[1]["metadata"]["virtual_frames"]
    assert frames["indices"] == [int(i) for i in dense.virtual] and frames["method"] == "linear"
    (path.with_name("dense.frames.json")).unlink()
    (plain,) = get_reader(str(path))(str(path))
    assert "virtual_frames" not in plain[1]["metadata"]
