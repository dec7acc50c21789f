"""Tests of tomoprior.io: readers, writers, angle sources, lazy reading."""

from __future__ import annotations

import json
import pathlib

import mrcfile
import numpy as np
import pytest
import tifffile

from tomoprior import io
from tomoprior.errors import DataError, FormatError, GeometryError
from tomoprior.geometry import TiltGeometry, parse_tilt_axis
from tomoprior.io import _angles, _read, _rsciio

NEEDLE = pathlib.Path(__file__).resolve().parent.parent / "sample_data" / "needle_haadf"
ANGLES = np.array([-60.0, -30.0, 0.0, 30.0, 60.0])


def stack(n: int = 5, shape: tuple[int, int] = (32, 40), dtype=np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape)) * 1000).astype(dtype)


def geometry(**kw) -> TiltGeometry:
    return TiltGeometry(angles=kw.pop("angles", ANGLES), **kw)


# -- real data -------------------------------------------------------------------


@pytest.mark.needle
@pytest.mark.skipif(not NEEDLE.is_dir(), reason="needle data not available")
def test_needle_tiff_with_rawtlt():
    f = io.read(NEEDLE / "needle_haadf.tif")
    assert f.shape == (77, 256, 256)
    assert f.data.dtype == np.uint16  # native dtype kept
    assert f.geometry is not None and f.geometry.n_tilts == 77
    assert f.geometry.angle_range == (-76.0, 76.0)
    assert f.geometry.angle_step == 2.0
    assert f.angle_source == "needle_haadf.rawtlt"
    # the bundled copy records its axis and pixel size (3.36 nm) in ImageJ metadata
    assert f.geometry.tilt_axis == 0.0 and f.geometry.pixel_size == pytest.approx(3.36)
    assert f.metadata["tilt_axis_source"] == "ImageJ metadata"
    assert f.warnings == []
    series = f.load()
    assert series.dtype == np.float32 and series.shape == (77, 256, 256)
    np.testing.assert_array_equal(series[3], f.data[3].astype(np.float32))
    lazy = io.read(NEEDLE / "needle_haadf.tif", lazy=True)  # deflate-compressed: dask
    assert lazy.lazy and not isinstance(lazy.data, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy.data[10]), f.data[10])


# -- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".tif", ".mrc", ".st", ".ali", ".npy"])
def test_tilt_series_round_trip(tmp_path, ext):
    data = stack(dtype=np.uint16)
    geom = geometry(pixel_size=0.5, tilt_axis=10.0)
    out = io.write_tilt_series(tmp_path / f"s{ext}", data, geom)
    assert out.exists() and (tmp_path / "s.rawtlt").exists()
    f = io.read(out)
    np.testing.assert_array_equal(f.data, data)
    assert f.data.dtype == np.uint16
    np.testing.assert_allclose(f.geometry.angles, ANGLES)
    assert f.angle_source == "s.rawtlt"
    assert f.pixel_size == pytest.approx(0.5, rel=1e-5) and f.pixel_unit == "nm"
    assert f.geometry.pixel_size == pytest.approx(0.5, rel=1e-5)
    assert f.geometry.tilt_axis == pytest.approx(10.0)
    assert f.warnings == []


def test_tiff_keeps_angles_without_sidecar(tmp_path):
    out = io.write_tilt_series(tmp_path / "s.tif", stack(), geometry(tilt_axis="vertical"))
    (tmp_path / "s.rawtlt").unlink()
    f = io.read(out)
    assert f.angle_source == "ImageJ metadata"
    np.testing.assert_allclose(f.geometry.angles, ANGLES)
    assert f.geometry.tilt_axis == 90.0
    with tifffile.TiffFile(out) as tif:  # a proper ImageJ hyperstack with tilt labels
        assert tif.is_imagej
        assert tif.imagej_metadata["Labels"][0] == "tilt -60°"


def test_tiff_angles_from_other_programs(tmp_path):
    data = stack(3, (8, 8), dtype=np.uint16)
    info = {"Info": "Acquired with X\ntilt_angles = -20, 0, 20\n"}
    tifffile.imwrite(tmp_path / "info.tif", data, imagej=True, metadata=info)
    f = io.read(tmp_path / "info.tif")
    assert f.angle_source == "ImageJ Info"
    np.testing.assert_allclose(f.geometry.angles, [-20, 0, 20])
    labels = {"Labels": ["-20.5", "0.0", "20.5"]}
    tifffile.imwrite(tmp_path / "labels.tif", data, imagej=True, metadata=labels)
    assert io.read(tmp_path / "labels.tif").angle_source == "ImageJ slice labels"
    ome = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="8" SizeY="8" '
        'SizeZ="3" SizeC="1" SizeT="1" PhysicalSizeX="0.5" PhysicalSizeXUnit="nm">'
        '<Channel ID="Channel:0" SamplesPerPixel="1"/><TiffData/></Pixels>'
        '<AnnotationRef ID="Annotation:0"/></Image><StructuredAnnotations>'
        '<MapAnnotation ID="Annotation:0"><Value><M K="tilt_angles">-20 0 20</M></Value>'
        "</MapAnnotation></StructuredAnnotations></OME>"
    )
    tifffile.imwrite(tmp_path / "o.tif", data, description=ome, photometric="minisblack")
    f = io.read(tmp_path / "o.tif")
    assert f.angle_source == "OME metadata" and f.pixel_size == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.uint8, np.uint8),
        (np.int16, np.int16),
        (np.float32, np.float32),
        (np.float64, np.float32),
    ],
)
def test_tiff_dtypes(tmp_path, dtype, expected):
    data = stack(3, (16, 16), dtype=dtype)
    f = io.read(io.write_tilt_series(tmp_path / "s.tif", data))
    assert f.data.dtype == expected
    np.testing.assert_allclose(f.load(), data.astype(np.float32))


def test_mrc_pixel_size_angstrom(tmp_path):
    geom = geometry(pixel_size=33.6, pixel_unit="Å")
    out = io.write_tilt_series(tmp_path / "t.mrc", stack(), geom)
    with mrcfile.open(out) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(33.6, rel=1e-5)
        assert int(mrc.header.ispg) == 0  # an image stack
    assert io.read(out).pixel_size == pytest.approx(3.36, rel=1e-5)


def test_writers_accept_dask(tmp_path):
    da = pytest.importorskip("dask.array")
    data = stack()
    for ext in (".tif", ".mrc", ".npy"):
        out = io.write_tilt_series(tmp_path / f"d{ext}", da.from_array(data, chunks=(2, 32, 40)))
        np.testing.assert_array_equal(io.read(out).data, data)


@pytest.mark.parametrize("budget", ["1G", "16K"])  # in memory; through a temporary memmap
@pytest.mark.parametrize("ext", [".tif", ".mrc", ".npy"])
def test_a_lazy_volume_is_computed_once_per_chunk(tmp_path, monkeypatch, ext, budget):
    """Plane-by-plane writers must not run a lazy reconstruction's slabs once per plane."""
    import dask
    import dask.array as da

    monkeypatch.setenv("TOMOPRIOR_MEMORY_BUDGET", budget)
    calls = []
    truth = np.arange(16 * 12 * 10, dtype=np.float32).reshape(16, 12, 10)

    def slab(i):
        calls.append(i)
        return truth[:, 4 * i : 4 * i + 4]

    blocks = [da.from_delayed(dask.delayed(slab)(i), (16, 4, 10), np.float32) for i in range(3)]
    vol = da.concatenate(blocks, axis=1)
    out = io.write_volume(tmp_path / f"v{ext}", vol, pixel_size=0.5)
    assert sorted(calls) == [0, 1, 2]
    np.testing.assert_array_equal(np.asarray(io.read(out).data), truth)
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


@pytest.mark.parametrize("ext", [".tif", ".mrc", ".rec", ".npy"])
def test_volume_provenance_and_pixel_size(tmp_path, ext):
    volume = stack(4, (24, 24))
    provenance = {
        "method": "sirt",
        "params": {"iterations": np.int64(30)},
        "geometry": geometry(),
        "version": "1.0",
    }
    out = io.write_volume(tmp_path / f"v{ext}", volume, pixel_size=3.36, provenance=provenance)
    back = io.read_provenance(out)
    assert back["method"] == "sirt" and back["params"]["iterations"] == 30
    np.testing.assert_allclose(back["geometry"]["angles"], ANGLES)
    f = io.read(out)
    np.testing.assert_array_equal(f.load(), volume)
    assert f.pixel_size == pytest.approx(3.36, rel=1e-5)
    assert f.metadata["provenance"]["method"] == "sirt"
    assert f.metadata["volume"] and f.warnings == []  # no "no tilt angles" for a volume
    if ext in (".mrc", ".rec"):
        with mrcfile.open(out) as mrc:
            assert float(mrc.voxel_size.x) == pytest.approx(33.6, rel=1e-5)  # stored in Å
            assert int(mrc.header.ispg) == 1  # a volume


def test_volume_pixel_unit_and_no_provenance(tmp_path):
    out = io.write_volume(tmp_path / "v.tif", stack(3, (8, 8)), pixel_size=12.0, pixel_unit="Å")
    assert io.read(out).pixel_size == pytest.approx(1.2, rel=1e-5)
    assert io.read_provenance(out) is None
    with pytest.raises(FormatError, match="unknown pixel unit"):
        io.write_volume(tmp_path / "w.tif", stack(3, (8, 8)), pixel_size=1.0, pixel_unit="furlong")
    io.write_tilt_series(tmp_path / "x.tif", stack(), geometry())
    with pytest.raises(FormatError, match=r"no provenance can be stored in \.rawtlt"):
        io.read_provenance(tmp_path / "x.rawtlt")


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    """As on the command line: an existing file is replaced only when asked to."""
    out = io.write_volume(tmp_path / "v.mrc", stack(3, (8, 8)))
    before = out.read_bytes()
    with pytest.raises(FormatError, match="exists already"):
        io.write_volume(out, stack(3, (8, 8)) + 1)
    with pytest.raises(FormatError, match="exists already"):
        io.write_tilt_series(tmp_path / "v.mrc", stack())
    assert out.read_bytes() == before
    io.write_volume(out, stack(3, (8, 8)) + 1, overwrite=True)
    assert out.read_bytes() != before


def test_writer_errors(tmp_path):
    with pytest.raises(FormatError, match=r"cannot write a tilt series as \.png"):
        io.write_tilt_series(tmp_path / "s.png", stack())
    with pytest.raises(DataError, match="3D array"):
        io.write_tilt_series(tmp_path / "s.tif", stack()[0])
    with pytest.raises(GeometryError, match="angle count"):
        io.write_tilt_series(tmp_path / "s.tif", stack(4), geometry())
    with pytest.raises(FormatError, match="does not exist"):
        io.write_volume(tmp_path / "missing" / "v.tif", stack())


# -- lazy reading ------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".tif", ".mrc", ".npy"])
def test_lazy_is_memmap_and_loads_like_eager(tmp_path, ext):
    data = stack(dtype=np.int16)
    out = io.write_tilt_series(tmp_path / f"s{ext}", data, geometry())
    lazy = io.read(out, lazy=True)
    assert isinstance(lazy.data, np.memmap) and lazy.lazy
    eager = io.read(out, lazy=False)
    assert not eager.lazy
    out_lazy = lazy.load()
    assert type(out_lazy) is np.ndarray and out_lazy.dtype == np.float32
    np.testing.assert_array_equal(out_lazy, eager.load())


def test_lazy_compressed_tiff_is_dask(tmp_path):
    data = stack(dtype=np.uint16)
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, data, compression="zlib", photometric="minisblack")
    f = io.read(path, lazy=True)
    assert not isinstance(f.data, np.ndarray) and hasattr(f.data, "compute")
    np.testing.assert_array_equal(f.load(), data.astype(np.float32))


def test_lazy_default_follows_file_size(tmp_path, monkeypatch):
    out = io.write_tilt_series(tmp_path / "s.npy", stack())
    assert not io.read(out).lazy
    monkeypatch.setattr(_read, "LAZY_THRESHOLD_BYTES", 100)
    assert io.read(out).lazy


# -- angles --------------------------------------------------------------------------


def test_no_angles_warns_and_start_step_fixes(tmp_path):
    out = io.write_tilt_series(tmp_path / "s.npy", stack())
    f = io.read(out)
    assert f.geometry is None and f.angle_source == ""
    assert f.warnings == [
        "no tilt angles found in s.npy: set the tilt start and step, "
        "or load an angle file (.rawtlt, .tlt)"
    ]
    g = f.with_start_step(-60, 30)
    np.testing.assert_allclose(g.geometry.angles, ANGLES)
    assert g.warnings == [] and g.angle_source.startswith("start -60")
    with pytest.raises(GeometryError, match="angle count"):
        f.with_angles([-10, 0, 10])


def test_angles_override_and_mismatch(tmp_path):
    out = io.write_tilt_series(tmp_path / "s.tif", stack(), geometry())
    f = io.read(out, angles=ANGLES / 2)
    assert f.angle_source == "user"
    np.testing.assert_allclose(f.geometry.angles, ANGLES / 2)
    txt = tmp_path / "other.txt"
    txt.write_text("# measured\n-50\n-25\n\n0\n25\n50\n")
    f = io.read(out, angles=txt)
    assert f.angle_source == "other.txt" and f.geometry.angles[0] == -50
    with pytest.raises(GeometryError, match="6 tilt angles for 5 images"):
        io.read(out, angles=np.arange(6.0))


def test_sidecar_with_wrong_count_opens_without_geometry(tmp_path):
    out = io.write_tilt_series(tmp_path / "s.npy", stack())
    (tmp_path / "s.rawtlt").write_text("-10\n0\n10\n")
    f = io.read(out)
    assert f.geometry is None
    assert any("from s.rawtlt do not fit s.npy" in w for w in f.warnings)
    assert len(f.warnings) == 1  # one message with the reason and the way out, not two


def test_sidecar_priority(tmp_path):
    out = io.write_tilt_series(tmp_path / "s.npy", stack())
    (tmp_path / "s.txt").write_text("\n".join(str(a) for a in ANGLES + 1))
    (tmp_path / "s.tlt").write_text("\n".join(str(a) for a in ANGLES + 2))
    assert io.read(out).angle_source == "s.tlt"
    (tmp_path / "s.rawtlt").write_text("\n".join(str(a) for a in ANGLES))
    assert io.read(out).angle_source == "s.rawtlt"
    ali = io.write_tilt_series(tmp_path / "s.ali", stack())
    assert io.read(ali).angle_source == "s.tlt"  # IMOD: aligned stack goes with .tlt


def test_read_angles(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("# tilts\n-60,\n\n  -30 # first half\n0\n30\n60\n")
    np.testing.assert_allclose(io.read_angles(p), ANGLES)
    p.write_text("-60 -30\n")
    with pytest.raises(FormatError, match=r"line 1 of a\.csv holds 2 values"):
        io.read_angles(p)
    p.write_text("angle\n1\n")
    with pytest.raises(FormatError, match="not a number"):
        io.read_angles(p)
    p.write_text("# nothing\n\n")
    with pytest.raises(FormatError, match="no tilt angles"):
        io.read_angles(p)
    with pytest.raises(FormatError, match="not found"):
        io.read_angles(tmp_path / "missing.tlt")


def test_angles_from_labels():
    assert _angles.angles_from_labels(["1", "2", "3"], 3) is None  # slice numbers
    np.testing.assert_allclose(_angles.angles_from_labels(["-2", "0", "2"], 3), [-2, 0, 2])
    np.testing.assert_allclose(_angles.angles_from_labels(["tilt 1°", "tilt 2°"], 2), [1, 2])
    assert _angles.angles_from_labels(["img_a", "img_b"], 2) is None


MDOC = """PixelSpacing = 3.42
ImageFile = tilts.st
ImageSize = 40 32

[T = SerialEM: Digitized on a Krios]

[T =     Tilt axis angle = 84.9, binning = 1  spot = 8  camera = 0]

[ZValue = 1]
TiltAngle = -30.01
RotationAngle = 175.1

[ZValue = 0]
TiltAngle = 0.02
RotationAngle = 175.1

[ZValue = 2]
TiltAngle = 29.99
RotationAngle = 175.1
"""


def test_read_mdoc(tmp_path):
    p = tmp_path / "tilts.st.mdoc"
    p.write_text(MDOC)
    info = io.read_mdoc(p)
    np.testing.assert_allclose(info.angles, [0.02, -30.01, 29.99])  # ZValue order
    assert info.pixel_size == pytest.approx(0.342)
    assert info.tilt_axis_imod == pytest.approx(84.9)
    assert info.values["ImageFile"] == "tilts.st"
    p.write_text(MDOC.replace("Tilt axis angle = 84.9, ", ""))
    assert io.read_mdoc(p).tilt_axis_imod == pytest.approx(85.1)  # RotationAngle - 90


def test_mrc_with_mdoc(tmp_path):
    data = stack(3)
    with mrcfile.new(tmp_path / "tilts.st") as mrc:
        mrc.set_data(data)
        mrc.set_image_stack()
    (tmp_path / "tilts.st.mdoc").write_text(MDOC)
    f = io.read(tmp_path / "tilts.st")
    assert f.angle_source == "tilts.st.mdoc"
    np.testing.assert_allclose(f.geometry.angles, [0.02, -30.01, 29.99])
    assert f.pixel_size == pytest.approx(0.342)  # header has no voxel size
    assert f.geometry.tilt_axis == pytest.approx(parse_tilt_axis(90 + 84.9))
    assert "tilts.st.mdoc" in f.metadata["tilt_axis_source"]
    assert f.metadata["imod_tilt_axis_angle"] == pytest.approx(84.9)


def test_mrc_fei_extended_header(tmp_path):
    data = stack(len(ANGLES))
    dtype = mrcfile.dtypes.get_ext_header_dtype(b"FEI1", "<")
    ext = np.zeros(len(ANGLES), dtype=dtype)
    ext["Metadata size"] = dtype.itemsize
    ext["Alpha tilt"] = ANGLES
    ext["Pixel size X"] = 2e-9  # metres
    path = tmp_path / "fei.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.set_extended_header(ext)
        mrc.header.exttyp = b"FEI1"
    f = io.read(path)
    assert f.angle_source == "FEI extended header"
    np.testing.assert_allclose(f.geometry.angles, ANGLES)
    assert f.pixel_size == pytest.approx(2.0)
    assert f.metadata["tilt_axis_source"] == "default"
    np.testing.assert_array_equal(f.data, data)


def test_mrc_serialem_extended_header(tmp_path):
    path = tmp_path / "seri.st"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stack(3))
        extra = bytearray(84)
        extra[16:20] = np.array([2, 1], dtype="<i2").tobytes()  # nint=2 bytes, nreal=tilt flag
        extra[40:44] = np.array([1146047817], dtype="<i4").tobytes()  # IMOD stamp
        mrc.header.extra2 = bytes(extra)
        mrc.header.exttyp = b"SERI"
        mrc.set_extended_header(np.array([-4512, 0, 4488], dtype="<i2"))
    f = io.read(path)
    assert f.angle_source == "SerialEM extended header"
    np.testing.assert_allclose(f.geometry.angles, [-45.12, 0.0, 44.88])


def test_mrc_imod_unsigned_bytes(tmp_path):
    path = tmp_path / "bytes.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.array([[[-1, 1]], [[-2, 2]]], dtype=np.int8))
        extra = bytearray(84)
        extra[40:44] = np.array([1146047817], dtype="<i4").tobytes()  # IMOD, flags 0: unsigned
        mrc.header.extra2 = bytes(extra)
    data = io.read(path, angles=[-10, 10]).data
    assert data.dtype == np.uint8 and data[0, 0, 0] == 255


# -- bad input -------------------------------------------------------------------------


def test_bad_files(tmp_path):
    with pytest.raises(FormatError, match="file not found"):
        io.read(tmp_path / "nothing.tif")
    with pytest.raises(FormatError, match="folder"):
        io.read(tmp_path)
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(FormatError, match=r"unknown extension '\.png'"):
        io.read(tmp_path / "a.png")
    for ext in (".tif", ".mrc", ".npy"):
        (tmp_path / f"junk{ext}").write_bytes(b"this is not an image file at all" * 10)
        with pytest.raises(FormatError, match="cannot read junk"):
            io.read(tmp_path / f"junk{ext}")


def test_dimensionality(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", stack(1)[0])
    with pytest.raises(FormatError, match="single 2D image 32 × 40, not a tilt series"):
        io.read(tmp_path / "one.tif")
    np.save(tmp_path / "four.npy", np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(FormatError, match="4D array"):
        io.read(tmp_path / "four.npy")
    np.save(tmp_path / "single.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert io.read(tmp_path / "single.npy").shape == (3, 8, 8)
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.float32))
    with pytest.raises(DataError, match="no images"):
        io.read(tmp_path / "empty.npy")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((3, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(FormatError, match="colour"):
        io.read(tmp_path / "rgb.tif")


def test_nan_is_reported_not_rejected(tmp_path):
    data = stack()
    data[1, 2, 3] = data[4, 0, 0] = np.nan
    out = io.write_tilt_series(tmp_path / "n.npy", data, geometry())
    f = io.read(out)
    assert f.geometry is not None
    assert any("2 NaN" in w for w in f.warnings)
    assert not any("NaN" in w for w in io.read(out, lazy=True).warnings)


def test_supported_extensions():
    exts = io.SUPPORTED_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in exts)
    for e in (".tif", ".tiff", ".mrc", ".st", ".ali", ".rec", ".preali", ".dm3", ".dm4"):
        assert e in exts
    assert {".emd", ".ser", ".npy"} <= set(exts)


def test_ome_pixel_size(tmp_path):
    path = tmp_path / "o.ome.tif"
    md = {"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm"}
    tifffile.imwrite(path, stack(dtype=np.uint16), metadata=md)
    assert io.read(path).pixel_size == pytest.approx(250.0)


# -- DM / EMD / SER through rosettasciio ----------------------------------------------------


def test_find_numbered_series(tmp_path):
    for name in (
        "scan_10.dm4",
        "scan_2.dm4",
        "scan_1.DM4",
        "scan_2_BF.dm4",
        "other.dm4",
        "scan_3.tif",
    ):
        (tmp_path / name).touch()
    names = [p.name for p in io.find_numbered_series(tmp_path / "scan_2.dm4")]
    assert names == ["scan_1.DM4", "scan_2.dm4", "scan_10.dm4"]
    assert io.find_numbered_series(tmp_path / "other.dm4") == [tmp_path / "other.dm4"]
    for name in ("t2024_a_001.dm3", "t2024_a_002.dm3", "t2025_a_001.dm3"):
        (tmp_path / name).touch()
    names = [p.name for p in io.find_numbered_series(tmp_path / "t2024_a_002.dm3")]
    assert names == ["t2024_a_001.dm3", "t2024_a_002.dm3"]  # the last varying number


def _dm_signal(data, alpha=None, units="nm", scale=0.5, axis0=None):
    tags = {"Microscope Info": {"Voltage": 200000.0}}
    if alpha is not None:
        tags["Microscope Info"]["Stage Position"] = {"Stage Alpha": alpha, "Stage Beta": 0.0}
    axes = [
        {"name": n, "size": s, "index_in_array": i, "scale": scale, "offset": 0.0, "units": units}
        for i, (n, s) in enumerate(zip("yx", data.shape[-2:]), start=data.ndim - 2)
    ]
    if axis0 is not None:
        axes.insert(0, {"name": "z", "size": data.shape[0], "index_in_array": 0, **axis0})
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": "stack"}, "Signal": {"signal_type": ""}},
        "original_metadata": {"ImageList": {"TagGroup0": {"ImageTags": tags}}},
    }


def test_dm_numbered_series(tmp_path, monkeypatch):
    images = {}
    for k, alpha in zip((1, 2, 3, 11), (-45.0, -15.0, 15.0, 45.0)):
        path = tmp_path / f"tomo_{k:02d}.dm4"
        path.write_bytes(bytes(1 << 16))  # room for the data the fake reader returns
        images[path.name] = _dm_signal(np.full((16, 24), k, np.uint16), alpha=alpha)

    def fake_reader(filename, lazy=False):
        return [images[pathlib.Path(filename).name]]

    monkeypatch.setattr(_rsciio, "get_file_reader", lambda ext: fake_reader)
    f = io.read(tmp_path / "tomo_02.dm4")
    assert f.shape == (4, 16, 24)
    np.testing.assert_array_equal(f.data[:, 0, 0], [1, 2, 3, 11])  # numeric order
    np.testing.assert_allclose(f.geometry.angles, [-45, -15, 15, 45])
    assert f.angle_source == "DigitalMicrograph stage tilt of each file"
    assert f.pixel_size == pytest.approx(0.5)
    assert f.metadata["series_files"][-1] == "tomo_11.dm4"
    assert any("read 4 files as one tilt series" in w for w in f.warnings)
    lazy = io.read(tmp_path / "tomo_02.dm4", lazy=True)
    np.testing.assert_array_equal(lazy.load(), f.load())


def test_dm_stack_with_degree_axis(tmp_path, monkeypatch):
    data = stack(4, (16, 16), dtype=np.float32)
    signal = _dm_signal(
        data, units="µm", scale=0.002, axis0={"scale": 20.0, "offset": -30.0, "units": "°"}
    )
    monkeypatch.setattr(_rsciio, "get_file_reader", lambda ext: lambda f, lazy=False: [signal])
    (tmp_path / "stack.dm3").write_bytes(bytes(1 << 16))  # room for the data the fake reader returns
    f = io.read(tmp_path / "stack.dm3")
    np.testing.assert_allclose(f.geometry.angles, [-30, -10, 10, 30])
    assert f.pixel_size == pytest.approx(2.0)
    assert f.angle_source == "DigitalMicrograph stack axis"


def test_ser_without_angles(tmp_path, monkeypatch):
    data = stack(3, (16, 16))
    signal = {
        "data": data,
        "axes": [
            {"name": None, "size": 3, "scale": 1.0, "offset": 0.0, "units": None},
            {"name": "y", "size": 16, "scale": 0.8, "offset": 0.0, "units": "nm"},
            {"name": "x", "size": 16, "scale": 0.8, "offset": 0.0, "units": "nm"},
        ],
        "metadata": {"General": {"original_filename": "s.ser"}, "Signal": {"signal_type": ""}},
        "original_metadata": {"ser_header_parameters": {"SeriesID": 197}},
    }
    monkeypatch.setattr(_rsciio, "get_file_reader", lambda ext: lambda f, lazy=False: [signal])
    (tmp_path / "s.ser").write_bytes(bytes(1 << 16))  # room for the data the fake reader returns
    f = io.read(tmp_path / "s.ser")
    assert f.geometry is None and f.pixel_size == pytest.approx(0.8)
    assert f.warnings[-1].startswith("no tilt angles found in s.ser")
    assert f.metadata["format"] == "TIA SER"


def test_tia_stage_tag():
    signal = {
        "original_metadata": {"ObjectInfo": {"ExperimentalDescription": {"Stage A_deg": -12.5}}}
    }
    assert _rsciio.stage_alpha(signal) == -12.5
    assert _rsciio.stage_alpha({"original_metadata": {"Stage": {"AlphaTilt": "0.5"}}}) == (
        pytest.approx(np.degrees(0.5))
    )
    assert _rsciio.stage_alpha({}) is None


def test_missing_reader_dependency(tmp_path, monkeypatch):
    real = _rsciio.importlib.import_module

    def fail(name, *args):
        if name.startswith("rsciio"):
            raise ModuleNotFoundError("No module named 'h5py'", name="h5py")
        return real(name, *args)

    monkeypatch.setattr(_rsciio.importlib, "import_module", fail)
    (tmp_path / "x.emd").write_bytes(bytes(1 << 16))  # room for the data the fake reader returns
    with pytest.raises(FormatError, match="needs the package 'h5py'"):
        io.read(tmp_path / "x.emd")


def _write_velox(path: pathlib.Path, frames: np.ndarray, tilts_deg) -> None:
    """A minimal Velox EMD file (HDF5) as rosettasciio expects it."""
    h5py = pytest.importorskip("h5py")
    texts = []
    for alpha in tilts_deg:
        meta = {
            "BinaryResult": {
                "PixelSize": {"width": "5e-10", "height": "5e-10"},
                "PixelUnitX": "m",
                "DetectorIndex": "0",
            },
            "Scan": {"FrameTime": "1"},
            "Detectors": {"Detector-0": {"DetectorName": "HAADF"}},
            "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1600000000"}},
            "Stage": {"AlphaTilt": repr(float(np.radians(alpha)))},
        }
        texts.append(json.dumps(meta).encode())
    table = np.zeros((max(map(len, texts)) + 8, len(texts)), np.uint8)
    for j, t in enumerate(texts):
        table[: len(t), j] = np.frombuffer(t, np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([b'{"format": "Velox", "version": "11"}']))
        group = f.create_group("Data/Image/6f1a")
        group.create_dataset("Data", data=np.moveaxis(frames, 0, -1), chunks=(*frames.shape[1:], 1))
        group.create_dataset("Metadata", data=table)


def test_velox_emd_stack(tmp_path):
    pytest.importorskip("rsciio.emd")
    data = stack(3, (16, 24), dtype=np.uint16)
    _write_velox(tmp_path / "v.emd", data, [-40.0, 0.0, 40.0])
    f = io.read(tmp_path / "v.emd")
    np.testing.assert_array_equal(f.data, data)
    np.testing.assert_allclose(f.geometry.angles, [-40, 0, 40])
    assert f.angle_source == "Velox stage tilt per frame"
    assert f.pixel_size == pytest.approx(0.5)


def test_velox_emd_numbered_series(tmp_path):
    pytest.importorskip("rsciio.emd")
    for k, alpha in enumerate((-20.0, 0.0, 20.0), start=1):
        _write_velox(tmp_path / f"tilt {k}.emd", stack(1, (16, 16), np.uint16, seed=k), [alpha])
    f = io.read(tmp_path / "tilt 1.emd")
    assert f.shape == (3, 16, 16)
    np.testing.assert_allclose(f.geometry.angles, [-20, 0, 20])
