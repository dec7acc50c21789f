"""Alignment transforms as files (IMOD ``.xf``, ``.tlt``, JSON) and their reapplication.

The ``.xf`` convention
----------------------
One line per tilt, ``A11 A12 A21 A22 DX DY``, as written by IMOD's
*tiltxcorr*/*xftoxg* and read by *newstack -xform*: the image content at
``(X, Y)`` moves to ``A (X - Xc, Y - Yc) + (DX, DY) + (Xc, Yc)``, about the
image centre. Coordinates are array indices: ``X`` is the column, ``Y`` the
row *as stored* (for an MRC file read by :mod:`tomoprior.io`, whose rows
are kept in file order, this is IMOD's own pixel frame, where the first
stored row is the bottom one and ``Y`` points up on screen). The centre is
``((cols - 1) / 2, (rows - 1) / 2)`` in pixel-centre indices, which is
IMOD's ``(NX / 2, NY / 2)`` in its coordinates with pixel centres at
half-integers. With ``r`` the fine axis rotation of
:func:`tomoprior.transforms.canonical_turns` and ``(dy, dx)`` the
geometry's shift corrections of a tilt::

    A11 = cos r   A12 = -sin r   A21 = sin r   A22 = cos r   DX = dx   DY = dy

(a rotation by ``r`` from ``+X`` towards ``+Y``: counter-clockwise as IMOD
displays it, clockwise in napari, where rows grow downwards). Applying
these transforms gives exactly the aligned series of
:func:`~tomoprior.alignment.align_series`, whose tilt axis lies at the
nominal quarter-turn orientation (a horizontal axis stays horizontal; IMOD
itself would also turn the images so the axis is vertical). The ``.xf``
alone does not know that orientation: the JSON file does, and
:func:`read_transforms` takes it from there, or from ``nominal_axis``
(default horizontal).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._atomic import write_text
from ..errors import DataError, FormatError, GeometryError
from ..frames import nominal_axis
from ..geometry import TiltGeometry, parse_tilt_axis
from ..transforms import canonical_turns, orient_images

__all__ = ["apply_transforms", "read_transforms", "write_transforms", "xf_lines"]


def _sibling(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def xf_lines(geometry: TiltGeometry) -> list[str]:
    """The ``.xf`` lines of a geometry (see the module notes)."""
    _, r = canonical_turns(geometry.tilt_axis)
    c, s = math.cos(math.radians(r)), math.sin(math.radians(r))
    return [
        f"{c:12.7f}{-s:12.7f}{s:12.7f}{c:12.7f}{dx:12.4f}{dy:12.4f}"
        for dy, dx in geometry.shifts
    ]


def write_transforms(base: str | Path, geometry: TiltGeometry, report: dict | None = None) -> list[Path]:
    """Write ``base.xf``, ``base.tlt`` and ``base.json``; return their paths.

    Parameters
    ----------
    base : path
        Path without the suffixes (``out/aligned`` gives ``out/aligned.xf`` ...).
    geometry : TiltGeometry
        The found geometry of the raw series (from ``align_series``).
    report : dict, optional
        The alignment report, stored in the JSON file.
    """
    base = Path(base)
    paths = [_sibling(base, ".xf"), _sibling(base, ".tlt"), _sibling(base, ".json")]
    doc = {
        "software": "napari-tomoprior",
        "version": __version__,
        "kind": "tilt-series alignment",
        "geometry": geometry.to_dict(),
        "aligned_tilt_axis": nominal_axis(geometry.tilt_axis),
        "xf_convention": "IMOD A11 A12 A21 A22 DX DY per tilt; X = column, Y = row as stored; "
                         "rotation about ((cols-1)/2, (rows-1)/2); DX, DY = shift corrections dx, dy",
        "report": report or {},
    }
    try:
        write_text(paths[0], "\n".join(xf_lines(geometry)) + "\n")
        write_text(paths[1], "\n".join(f"{a:9.3f}" for a in geometry.angles) + "\n")
        write_text(paths[2], json.dumps(doc, indent=1, default=_json_default))
    except OSError as exc:
        raise FormatError(f"cannot write the alignment files next to {base}: {exc}") from None
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _text(path: Path) -> str:
    from ..io._budget import read_capped_text

    return read_capped_text(path, 64 * 1024**2, "alignment file")


def _read_xf(path: Path) -> np.ndarray:
    try:
        rows = [line.split() for line in _text(path).splitlines() if line.strip()]
        xf = np.array(rows, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise FormatError(f"cannot read {path} as an IMOD .xf file: {exc}") from None
    if xf.ndim != 2 or xf.shape[1] != 6:
        raise FormatError(f"{path}: an .xf file has 6 numbers per line (A11 A12 A21 A22 DX DY)")
    return xf


def _read_tlt(path: Path) -> np.ndarray:
    try:
        return np.array([float(v) for v in _text(path).split()])
    except (OSError, ValueError) as exc:
        raise FormatError(f"cannot read the tilt angles in {path}: {exc}") from None


def read_transforms(path: str | Path, *, nominal_axis: str | float | None = None) -> dict[str, Any]:
    """Read alignment transforms written by :func:`write_transforms` (or IMOD).

    Parameters
    ----------
    path : path
        A ``.json`` file (everything), an ``.xf`` file (its ``.tlt`` and
        ``.json`` siblings are used when present), or the base path.
    nominal_axis : str or float, optional
        Orientation of the tilt axis in the *aligned* images, needed for an
        ``.xf`` without its JSON (default ``"horizontal"``).

    Returns
    -------
    dict
        ``angles`` (or ``None`` when unknown), ``tilt_axis``, ``shifts``
        (``(n, 2)`` ``(dy, dx)`` corrections), ``rotations`` (per-tilt
        ``r`` of the ``.xf``, degrees) and, from JSON, the rest of the
        geometry and ``report``. ``TiltGeometry.from_dict(d)`` builds the
        geometry when the angles are known.
    """
    p = Path(path)
    if p.suffix not in (".json", ".xf", ".tlt"):
        p = _sibling(p, ".json") if _sibling(p, ".json").exists() else _sibling(p, ".xf")
    base = p.with_suffix("")
    if not p.exists():
        raise FormatError(f"alignment file {p} not found")
    js = p if p.suffix == ".json" else _sibling(base, ".json")
    if js.exists() and (p.suffix == ".json" or nominal_axis is None):
        try:
            doc = json.loads(_text(js))
            g = dict(doc["geometry"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise FormatError(f"cannot read the alignment JSON {js}: {exc}") from None
        g["shifts"] = np.asarray(g["shifts"], dtype=np.float64).reshape(-1, 2)
        g["angles"] = np.asarray(g["angles"], dtype=np.float64)
        _, r = canonical_turns(float(g["tilt_axis"]))
        g["rotations"] = np.full(len(g["angles"]), r)
        g["report"] = doc.get("report", {})
        return g
    xf = _read_xf(p if p.suffix == ".xf" else _sibling(base, ".xf"))
    rot = np.degrees(np.arctan2(xf[:, 2], xf[:, 0]))
    nominal = parse_tilt_axis("horizontal" if nominal_axis is None else nominal_axis)
    tlt = _sibling(base, ".tlt")
    angles = _read_tlt(tlt) if tlt.exists() else None
    if angles is not None and angles.size != xf.shape[0]:
        raise FormatError(f"{tlt} has {angles.size} angles for {xf.shape[0]} transforms")
    return {
        "angles": angles,
        "tilt_axis": float(nominal - np.mean(rot)),
        "shifts": xf[:, [5, 4]].copy(),
        "rotations": rot,
    }


def apply_transforms(series: np.ndarray, transforms: TiltGeometry | dict | str | Path,
                     binning: int = 1) -> np.ndarray:
    """Apply alignment transforms to a series, e.g. at full resolution.

    Parameters
    ----------
    series : array (n_tilts, rows, cols)
    transforms : TiltGeometry, dict or path
        A found geometry, the dict of :func:`read_transforms`, or a file.
    binning : int
        How many times finer ``series`` is than the series the transforms
        were found on (shifts are multiplied by it; the rotation centre,
        the image centre, is the same point for a binned image).

    Returns
    -------
    ndarray float32 (n_tilts, rows, cols)
        Resampled once; the tilt axis lies at the nominal quarter-turn
        orientation, as in ``align_series``.
    """
    if isinstance(transforms, (str, Path)):
        transforms = read_transforms(transforms)
    if isinstance(transforms, TiltGeometry):
        axis, shifts = transforms.tilt_axis, transforms.shifts
        rots = None
    else:
        axis = float(transforms["tilt_axis"])
        shifts = np.asarray(transforms["shifts"], np.float64).reshape(-1, 2)
        rots = transforms.get("rotations")
    a = np.asarray(series, dtype=np.float32)
    if a.ndim != 3:
        raise DataError(f"a tilt series must be (n_tilts, rows, cols); got shape {a.shape}")
    if shifts.shape[0] != a.shape[0]:
        raise GeometryError(f"{shifts.shape[0]} transforms for {a.shape[0]} images")
    b = int(binning)
    if b < 1:
        raise GeometryError(f"binning must be a positive integer, got {binning}")
    k, r = canonical_turns(axis)
    if rots is not None and np.ptp(np.asarray(rots, np.float64)) > 1e-6:
        # per-tilt rotations (an IMOD .xf): align image by image
        nominal = 90.0 - 90.0 * k
        return np.stack([
            np.rot90(orient_images(a[i : i + 1], nominal - rots[i], shifts[i : i + 1] * b), k, axes=(1, 2))[0]
            for i in range(a.shape[0])
        ]).astype(np.float32)
    out = orient_images(a, axis, shifts * b)
    return np.ascontiguousarray(np.rot90(out, k, axes=(1, 2)))
