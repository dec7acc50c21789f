"""Hostile files for every format the reader accepts: the fuzz and fault suite's inputs.

``make_hostile(folder)`` writes them and returns ``{case: path}``. Each case
must either open (possibly with warnings) or fail with one
:class:`~tomoprior.errors.TomopriorError` line, quickly and without
allocating more than the file could back. The generator is seeded, so a
failure names a case that can be rebuilt.

Run as a script (``python hostile_files.py FOLDER``) it reads every case in
this process and prints one JSON line per case; the test runs it under an
address-space limit to prove that no lying header makes the reader allocate.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import sys

import numpy as np

#: every extension io.read accepts gets its share of the generic cases
EXTENSIONS = (".tif", ".mrc", ".st", ".npy", ".dm3", ".dm4", ".emd", ".ser")


def _good_series(n: int = 5, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((n, size, size), dtype=np.float32)


def _mrc_header(nx: int, ny: int, nz: int, mode: int = 2, nsymbt: int = 0) -> bytes:
    head = bytearray(1024)
    struct.pack_into("<4i", head, 0, nx, ny, nz, mode)
    struct.pack_into("<3i", head, 28, nx, ny, nz)  # mx my mz
    struct.pack_into("<3i", head, 64, 1, 2, 3)  # mapc mapr maps
    struct.pack_into("<i", head, 92, nsymbt)
    head[208:212] = b"MAP "
    head[212:214] = b"\x44\x44"
    return bytes(head)


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": shape})
    text += " " * (63 - (len(text) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _tiff_claiming(width: int, height: int, pages: int = 1) -> bytes:
    """A little-endian TIFF whose one strip is far shorter than its tags claim."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 32),  # BitsPerSample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # min-is-black
        (273, 4, 1, 8 + 2 + 12 * 9 + 4),  # StripOffsets: just after the IFD
        (277, 3, 1, 1),  # SamplesPerPixel
        (279, 4, 1, 16),  # StripByteCounts: 16 bytes for a huge image
        (339, 3, 1, 3),  # float
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HHI", tag, typ, count)
        packed += struct.pack("<H2x", value) if typ == 3 else struct.pack("<I", value)
        ifd += packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(16)


def _nested(depth: int) -> str:
    return '{"tomoprior_provenance": ' + "[" * depth + "]" * depth + "}"


def make_hostile(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Write the hostile files into ``folder``; ``{case: path}``."""
    import tifffile

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261130)
    cases: dict[str, pathlib.Path] = {}

    def put(case: str, name: str, content: bytes | str) -> pathlib.Path:
        path = folder / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        cases[case] = path
        return path

    for ext in EXTENSIONS:
        tag = ext.lstrip(".")
        put(f"zero-bytes {ext}", f"zero_{tag}{ext}", b"")
        for k in range(2):
            put(f"random bytes {ext} #{k}", f"random{k}_{tag}{ext}", rng.bytes(4096))

    good = _good_series()
    tifffile.imwrite(folder / "good.tif", good, imagej=True)
    whole = (folder / "good.tif").read_bytes()
    for frac in (0.1, 0.5, 0.9):
        put(f"truncated tif {frac}", f"cut{int(frac * 100)}.tif", whole[: int(len(whole) * frac)])
    np.save(folder / "good.npy", good)
    whole = (folder / "good.npy").read_bytes()
    put("truncated npy", "cut.npy", whole[: len(whole) // 2])
    put("truncated mrc", "cut.mrc", _mrc_header(16, 16, 5) + good.tobytes()[:1000])

    put("mrc claims 1024x1024x512 floats", "liar.mrc", _mrc_header(1024, 1024, 512))
    put("mrc claims 100000^3", "huge.mrc", _mrc_header(100000, 100000, 100000))
    put("mrc negative size", "negative.mrc", _mrc_header(-16, 16, 5) + bytes(8192))
    put("mrc unknown mode", "mode.mrc", _mrc_header(16, 16, 5, mode=77) + bytes(8192))
    put("mrc huge extended header", "ext.mrc", _mrc_header(16, 16, 5, nsymbt=2**31 - 1))
    put("npy claims 10^12 floats", "liar.npy", _npy_header((10000, 10000, 10000)))
    put("npy object array", "objects.npy", _npy_header((3, 4, 4), "|O") + bytes(64))
    put("npy 2D image", "flat.npy", _npy_header((16, 16)) + bytes(1024))
    put("tif claims 100000x100000", "liar.tif", _tiff_claiming(100000, 100000))

    info = _nested(100000)
    tifffile.imwrite(folder / "nested.tif", good, imagej=True, metadata={"Info": info})
    cases["ImageJ Info nested 100000 deep"] = folder / "nested.tif"
    tifffile.imwrite(folder / "longinfo.tif", good, imagej=True,
                     metadata={"Info": "tilt_angles" + " =" * 200000 + "x"})
    cases["ImageJ Info pathological angles text"] = folder / "longinfo.tif"

    np.save(folder / "sidecars.npy", good)
    put("JSON sidecar nested", "sidecars.json", _nested(100000))
    put("rawtlt line of 100000 digits", "sidecars.rawtlt", "1" * 100000 + "\n")
    cases["npy with hostile sidecars"] = folder / "sidecars.npy"

    np.save(folder / "mdoc.npy", good)
    put("mdoc pathological line", "mdoc.npy.mdoc",
        "[" + " " * 2500 + "=" + "T" * 1200 + " Tilt axis angle =" + " " * 300 + "\n")
    cases["npy with a pathological mdoc"] = folder / "mdoc.npy"

    np.save(folder / "bigmdoc.npy", good)
    put("mdoc larger than its cap", "bigmdoc.npy.mdoc", "")
    with open(folder / "bigmdoc.npy.mdoc", "r+b") as fh:  # sparse: no disk used
        fh.truncate(65 * 1024**2)
    cases["npy with a 65 MiB mdoc"] = folder / "bigmdoc.npy"

    loop_a, loop_b = folder / "loop_a.tif", folder / "loop_b.tif"
    os.symlink(loop_b.name, loop_a)
    os.symlink(loop_a.name, loop_b)
    cases["symlink loop"] = loop_a
    os.symlink("missing.mrc", folder / "dangling.mrc")
    cases["dangling symlink"] = folder / "dangling.mrc"
    return cases


def read_all(folder: str | pathlib.Path) -> list[dict]:
    """Read every case with :func:`tomoprior.io.read`; what happened to each."""
    import resource

    from tomoprior import io
    from tomoprior.errors import TomopriorError

    out = []
    for case, path in make_hostile(folder).items():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            f = io.read(path)
            result = {"outcome": "read", "shape": list(f.data.shape), "warnings": f.warnings}
        except TomopriorError as exc:
            result = {"outcome": "error", "type": type(exc).__name__, "message": str(exc)}
        except BaseException as exc:  # what the test must never see
            result = {"outcome": "escaped", "type": type(exc).__name__, "message": str(exc)[:300]}
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        out.append({"case": case, "path": str(path), "peak_growth_kib": grew, **result})
    return out


if __name__ == "__main__":
    for row in read_all(sys.argv[1]):
        print(json.dumps(row))
