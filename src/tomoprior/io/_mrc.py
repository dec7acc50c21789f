"""MRC family (.mrc .st .ali .rec .preali .mrcs) with mrcfile.

Angles stored in the file come from an FEI1/FEI2 extended header
(``Alpha tilt``, degrees) or from an IMOD/SerialEM ``SERI`` extended header
(tilt angle × 100 as a 16-bit integer per section).
"""

from __future__ import annotations

import pathlib
import re
import warnings
from typing import Any

import mrcfile
import numpy as np

from ..errors import FormatError, TomopriorError
from ._budget import check_claim, unreadable
from ._common import PROVENANCE_KEY, read_json_sidecar, to_nm
from ._model import RawRead

__all__ = ["mrc_label_axis", "read_mrc", "write_mrc"]

_IMOD_STAMP = 1146047817
# bytes per section used by each SERI flag bit (IMOD extended header)
_SERI_BYTES = {1: 2, 2: 6, 4: 4, 8: 2, 16: 2, 32: 4}
_AXIS_LABEL = re.compile(r"tomoprior tilt_axis=([-+0-9.eE]+)")


def _imod_fields(header: Any) -> dict[str, int]:
    """``nint``, ``nreal``, ``imodStamp`` and ``imodFlags`` from the header's extra bytes."""
    order = _byte_order(header)
    extra = header.extra2.tobytes()
    short = np.frombuffer(extra[16:20], dtype=order + "i2")
    word = np.frombuffer(extra[40:48], dtype=order + "i4")
    return {
        "nint": int(short[0]),
        "nreal": int(short[1]),
        "stamp": int(word[0]),
        "flags": int(word[1]),
    }


def _byte_order(header: Any) -> str:
    order = header.mode.dtype.byteorder
    if order in ("=", "|"):
        return "<" if np.little_endian else ">"
    return order


def _fei_angles(mrc: Any, n: int) -> tuple[np.ndarray | None, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ext = mrc.indexed_extended_header
    if ext is None or len(ext) < n:
        return None, {}
    angles = np.asarray(ext["Alpha tilt"][:n], dtype=np.float64)
    info = {"fei_tilt_axis_angle": float(ext["Tilt axis angle"][0])}
    size = float(ext["Pixel size X"][0])
    if size > 0:
        info["fei_pixel_size_nm"] = size * 1e9  # stored in metres
    if not np.all(np.isfinite(angles)) or np.all(angles == 0):
        return None, info
    return angles, info


def _seri_angles(mrc: Any, fields: dict, n: int) -> np.ndarray | None:
    nint, nreal = fields["nint"], fields["nreal"]
    if not (nreal & 1) or nint <= 0:
        return None
    if nint != sum(b for bit, b in _SERI_BYTES.items() if nreal & bit):
        return None  # not the SerialEM layout
    raw = mrc.extended_header.tobytes()
    if len(raw) < n * nint:
        return None
    order = _byte_order(mrc.header)
    rows = np.frombuffer(raw[: n * nint], dtype=np.uint8).reshape(n, nint)
    return rows[:, :2].copy().view(order + "i2").ravel() / 100.0


# the pixel type of each MRC mode (mode 3: two int16; mode 101: two 4-bit pixels per byte)
_MODE_DTYPE = {0: "i1", 1: "i2", 2: "f4", 3: "i4", 4: "c8", 6: "u2", 12: "f2", 101: "u1"}


def _check_header(path: pathlib.Path, lazy: bool) -> None:
    """Compare the size the 1024-byte header claims with the file before mrcfile reads it."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        raise FormatError(
            f"cannot read {path.name} as MRC: {len(head)} bytes, shorter than an MRC header"
        )
    orders = (">i4", "<i4") if head[212:214] == b"\x11\x11" else ("<i4", ">i4")
    for order in orders:  # old files may not say their byte order: take the one that parses
        words = np.frombuffer(head[:96], dtype=order)
        nx, ny, nz, mode, nsymbt = (int(words[i]) for i in (0, 1, 2, 3, 23))
        if mode in _MODE_DTYPE:
            break
    if mode not in _MODE_DTYPE:
        raise FormatError(f"cannot read {path.name} as MRC: it is damaged or not an MRC file (data mode {mode})")
    if min(nx, ny, nz) < 1 or nsymbt < 0:
        raise FormatError(f"cannot read {path.name} as MRC: damaged header (size {nx} × {ny} × {nz})")
    row = (nx + 1) // 2 if mode == 101 else nx  # 4-bit rows are padded to whole bytes
    check_claim(path.name, (nz, ny, row), _MODE_DTYPE[mode], file_bytes=size,
                offset=1024 + nsymbt, in_memory=not lazy)


def read_mrc(path: pathlib.Path, lazy: bool) -> RawRead:
    """Read an MRC stack, its voxel size (Å → nm) and any angles in its header."""
    try:
        _check_header(path, lazy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            opener = mrcfile.mmap if lazy else mrcfile.open
            with opener(path, mode="r", permissive=True) as mrc:
                if mrc.data is None:
                    raise FormatError(f"{path.name} is not a readable MRC file (no image data)")
                header, data = mrc.header, mrc.data
                fields = _imod_fields(header)
                if lazy:
                    data = np.memmap(
                        path, dtype=data.dtype, mode="r", offset=data.offset, shape=data.shape
                    )
                else:
                    data = np.array(data)
                if header.mode == 0 and fields["stamp"] == _IMOD_STAMP and not fields["flags"] & 1:
                    data = data.view(np.uint8)  # IMOD: mode 0 is unsigned unless flagged
                n = int(data.shape[0]) if data.ndim == 3 else 0
                exttyp = bytes(header.exttyp).strip(b"\0 ")
                angles, source, info = None, "", {}
                if exttyp in (b"FEI1", b"FEI2") and n:
                    angles, info = _fei_angles(mrc, n)
                    source = "FEI extended header"
                elif n and (fields["stamp"] == _IMOD_STAMP or exttyp == b"SERI"):
                    angles, source = _seri_angles(mrc, fields, n), "SerialEM extended header"
                voxel = float(mrc.voxel_size.x)
                labels = list(mrc.get_labels())
                ispg = int(header.ispg)
    except TomopriorError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise unreadable(path.name, "MRC", exc) from None
    if not data.dtype.isnative and not lazy:
        data = data.astype(data.dtype.newbyteorder("="))
    pixel = to_nm(voxel, "Å") or info.get("fei_pixel_size_nm")
    raw = RawRead(data=data, pixel_size=pixel)
    if angles is not None:
        raw.angles, raw.angle_source = angles, source
    axis = mrc_label_axis(labels)
    if axis is not None:
        raw.tilt_axis, raw.tilt_axis_source = axis, "MRC label"
    raw.metadata.update(
        format="MRC",
        mrc_labels=labels,
        mrc_exttyp=exttyp.decode("ascii", "replace"),
        mrc_space_group=ispg,
        # a stack with tilt angles is a tilt series whatever its space group says
        # (mrcfile marks every 3D array as a volume); read() rechecks with the files beside
        volume=path.suffix.lower() == ".rec" or (ispg == 1 and angles is None),
        mrc_volume_flag=ispg == 1,
        **info,
    )
    provenance = (read_json_sidecar(path) or {}).get(PROVENANCE_KEY)
    if isinstance(provenance, dict):
        raw.metadata["provenance"] = provenance
    return raw


def mrc_label_axis(labels: list[str]) -> float | None:
    """The tilt axis recorded by :func:`write_mrc` in a label, if any."""
    for label in labels:
        m = _AXIS_LABEL.search(label)
        if m:
            return float(m.group(1))
    return None


def _mrc_dtype(dtype: np.dtype) -> np.dtype:
    if dtype in (np.int8, np.int16, np.uint16, np.float32, np.float16, np.uint8):
        return np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    return np.dtype(np.float32)


def write_mrc(
    path: pathlib.Path,
    data: Any,
    *,
    pixel_size_nm: float | None = None,
    volume: bool = False,
    labels: tuple[str, ...] = (),
) -> None:
    """Write ``data`` slice by slice; voxel size in Å; ``uint8`` is stored as ``uint16``."""
    dtype = _mrc_dtype(np.dtype(data.dtype))
    store = np.dtype(np.uint16) if dtype == np.uint8 else dtype
    try:
        with mrcfile.new_mmap(
            path, shape=tuple(data.shape), mrc_mode=_mode(store), overwrite=True
        ) as mrc:
            for i in range(int(data.shape[0])):
                mrc.data[i] = np.asarray(data[i], dtype=store)
            if volume:
                mrc.set_volume()
            else:
                mrc.set_image_stack()
            if pixel_size_nm:
                mrc.voxel_size = pixel_size_nm * 10.0  # nm -> Å
            mrc.update_header_stats()
            for label in labels:  # MRC labels are 80 printable ASCII characters
                text = "".join(c if " " <= c <= "~" else "?" for c in label)
                mrc.add_label(text[:80])
    except (ValueError, OSError) as exc:
        raise FormatError(f"cannot write {path}: {exc}") from None


def _mode(dtype: np.dtype) -> int:
    return int(mrcfile.utils.mode_from_dtype(dtype))
