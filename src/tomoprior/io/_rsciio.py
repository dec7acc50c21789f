"""Gatan DM3/DM4, Velox EMD and TIA SER through rosettasciio (read only).

rosettasciio's ``file_reader`` returns a list of dictionaries with ``data``,
``axes`` (``scale``, ``offset``, ``units``, ``index_in_array``),
``metadata`` and ``original_metadata`` (the file's own tag tree). The tilt
of an image is read from the tags: ``Stage Alpha`` (DM, degrees),
``Stage.AlphaTilt`` (Velox, radians) or ``Stage A_deg`` (TIA, degrees).
"""

from __future__ import annotations

import importlib
import json
import pathlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import FormatError, TomopriorError
from ._angles import angles_from_text
from ._budget import check_claim, unreadable
from ._common import to_nm
from ._model import RawRead

__all__ = ["find_numbered_series", "get_file_reader", "read_rsciio", "stage_alpha"]

_MODULES = {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd", ".ser": "tia"}
_FORMAT = {
    ".dm3": "DigitalMicrograph",
    ".dm4": "DigitalMicrograph",
    ".emd": "EMD",
    ".ser": "TIA SER",
}
SERIES_EXTENSIONS = (".dm3", ".dm4", ".emd")
_DEGREES = {"°", "deg", "degree", "degrees"}


def get_file_reader(ext: str) -> Callable[..., list[dict]]:
    """rosettasciio's ``file_reader`` for extension ``ext``."""
    try:
        return importlib.import_module(f"rsciio.{_MODULES[ext]}").file_reader
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "rosettasciio"
        package = "rosettasciio" if missing.startswith("rsciio") else missing
        raise FormatError(
            f"reading {ext} files needs the package {package!r}: pip install {package}"
        ) from None


def find_numbered_series(path: str | pathlib.Path) -> list[pathlib.Path]:
    """All files next to ``path`` whose names differ from it only by one number.

    ``scan_001.dm4, scan_002.dm4, ..., scan_010.dm4`` form a series; they are
    returned in numeric order (not text order). The last number in the name
    that varies is used; the extension must match (case-insensitive).

    Parameters
    ----------
    path : str or pathlib.Path
        One file of the series.

    Returns
    -------
    list of pathlib.Path
        The files of the series in numeric order, or ``[path]`` when no
        other file differs from it by one number.
    """
    path = pathlib.Path(path)
    parts = re.split(r"(\d+)", path.stem)
    ext = path.suffix.lower()
    try:
        siblings = [p for p in path.parent.iterdir() if p.suffix.lower() == ext and p.is_file()]
    except OSError:
        return [path]
    for i in range(len(parts) - 2, 0, -2):  # digit runs sit at odd positions, last first
        pattern = "".join(r"(\d+)" if j == i else re.escape(t) for j, t in enumerate(parts))
        numbers = {}
        for p in siblings:
            m = re.fullmatch(pattern, p.stem)
            if m:
                numbers[p] = int(m.group(1))
        if len(numbers) >= 2:
            return sorted(numbers, key=lambda p: (numbers[p], p.name))
    return [path]


def _find_key(tree: Any, key: str) -> Any:
    """The first value stored under ``key`` anywhere in a nested dict."""
    if not isinstance(tree, dict):
        return None
    if key in tree:
        return tree[key]
    for value in tree.values():
        found = _find_key(value, key)
        if found is not None:
            return found
    return None


def stage_alpha(signal: dict) -> float | None:
    """The stage alpha tilt (degrees) recorded with one image, if any."""
    md, om = signal.get("metadata") or {}, signal.get("original_metadata") or {}
    stage = md.get("Acquisition_instrument", {}).get("TEM", {}).get("Stage", {})
    candidates = [(stage.get("tilt_alpha"), 1.0)]
    candidates += [(_find_key(om, k), 1.0) for k in ("Stage Alpha", "Stage A_deg", "Stage_A_deg")]
    candidates.append((_find_key(om, "AlphaTilt"), 180.0 / np.pi))  # Velox: radians
    for value, factor in candidates:
        try:
            return float(value) * factor
        except (TypeError, ValueError):
            continue
    return None


def _angle_list(tree: Any, n: int) -> np.ndarray | None:
    """A list of ``n`` tilt angles stored under a ``tilt angles``-like key."""
    if not isinstance(tree, dict):
        return None
    for key, value in tree.items():
        if re.fullmatch(r"tilt[ _]?angles?", str(key), re.I):
            try:
                found = angles_from_text(value, n, keyed=False)
            except ValueError:
                found = None
            if found is not None:
                return found
        found = _angle_list(value, n)
        if found is not None:
            return found
    return None


def _frame_tilt(column: np.ndarray) -> float:
    meta = json.loads(column.tobytes().decode("utf-8").rstrip("\0"))
    return float(meta["Stage"]["AlphaTilt"])


def _velox_frame_tilts(path: pathlib.Path, n: int) -> np.ndarray | None:
    """Per-frame ``Stage.AlphaTilt`` of a Velox image stack (needs h5py)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            images = f.get("Data/Image")
            for key in images or ():
                meta = images[key].get("Metadata")
                if meta is None or meta.ndim != 2 or meta.shape[1] != n:
                    continue
                columns = np.asarray(meta).T  # one JSON text per frame
                return np.degrees([_frame_tilt(c) for c in columns])
    except Exception:  # no h5py, not Velox, or metadata without a stage tilt
        return None
    return None


def _pick_image(signals: list[dict], path: pathlib.Path) -> dict:
    images = [
        s
        for s in signals
        if getattr(s.get("data"), "ndim", 0) >= 2
        and not any(str(a.get("units", "")).lower() in ("ev", "kev") for a in s.get("axes", []))
    ]
    if not images:
        raise FormatError(f"{path.name} holds no images (spectra only?): nothing to reconstruct")
    for s in images:
        title = str((s.get("metadata") or {}).get("General", {}).get("title", ""))
        if "haadf" in title.lower():
            return s
    return max(images, key=lambda s: s["data"].ndim)


def _axis(signal: dict, index: int) -> dict:
    axes = signal.get("axes") or []
    for pos, axis in enumerate(axes):
        if axis.get("index_in_array", pos) == index:
            return axis
    return {}


def _read_one(reader: Callable, path: pathlib.Path, lazy: bool) -> dict:
    """The image signal of one file, read lazily first so its size is checked before loading."""
    fmt = _FORMAT.get(path.suffix.lower(), "")
    try:
        signal = _pick_image(list(reader(str(path), lazy=True) or []), path)
        data = signal["data"]
        check_claim(path.name, data.shape, data.dtype, file_bytes=path.stat().st_size,
                    compressed=path.suffix.lower() == ".emd", in_memory=not lazy)
        if not lazy:
            signal["data"] = np.asarray(data)
    except TomopriorError:
        raise
    except Exception as exc:  # readers raise many kinds on a bad file
        raise unreadable(path.name, fmt, exc) from None
    return signal


def read_rsciio(path: pathlib.Path, lazy: bool) -> RawRead:
    """Read a DM/EMD/SER image stack, or a numbered series of single images."""
    ext = path.suffix.lower()
    reader = get_file_reader(ext)
    signal = _read_one(reader, path, lazy)
    data = signal["data"]
    files = [path]
    if data.ndim == 2 and ext in SERIES_EXTENSIONS:
        files = find_numbered_series(path)
    if len(files) > 1:
        return _read_series(reader, files, lazy)
    last = _axis(signal, data.ndim - 1)
    raw = RawRead(data=data, pixel_size=to_nm(last.get("scale"), last.get("units")))
    raw.metadata.update(format=_FORMAT[ext], title=_title(signal))
    if data.ndim == 3:
        first = _axis(signal, 0)
        if str(first.get("units", "")).strip().lower() in _DEGREES:
            n, start, step = data.shape[0], float(first.get("offset", 0)), float(first["scale"])
            raw.angles, raw.angle_source = start + step * np.arange(n), f"{_FORMAT[ext]} stack axis"
        else:
            found = _angle_list(signal.get("original_metadata"), data.shape[0])
            source = f"{_FORMAT[ext]} metadata"
            if found is None and ext == ".emd":
                found, source = (
                    _velox_frame_tilts(path, data.shape[0]),
                    "Velox stage tilt per frame",
                )
            if found is not None:
                raw.angles, raw.angle_source = found, source
    alpha = stage_alpha(signal)
    if alpha is not None:
        raw.metadata["stage_alpha"] = alpha
    return raw


def _title(signal: dict) -> str:
    return str((signal.get("metadata") or {}).get("General", {}).get("title", ""))


def _read_series(reader: Callable, files: list[pathlib.Path], lazy: bool) -> RawRead:
    signals = [_read_one(reader, p, True) for p in files]
    shape = signals[0]["data"].shape
    for p, s in zip(files, signals):
        if s["data"].shape != shape:
            raise FormatError(
                f"{p.name} has shape {s['data'].shape}, unlike {files[0].name} {shape}: "
                "the images of a numbered series must all have the same size"
            )
    import dask.array as da

    data = da.stack([da.asarray(s["data"]) for s in signals])
    if not lazy:
        check_claim(f"the series {files[0].name} …", data.shape, data.dtype, file_bytes=None)
        data = np.asarray(data)
    last = _axis(signals[0], len(shape) - 1)
    ext = files[0].suffix.lower()
    raw = RawRead(data=data, pixel_size=to_nm(last.get("scale"), last.get("units")))
    alphas = [stage_alpha(s) for s in signals]
    missing = [p.name for p, a in zip(files, alphas) if a is None]
    if not missing:
        raw.angles, raw.angle_source = np.asarray(alphas), f"{_FORMAT[ext]} stage tilt of each file"
    elif len(missing) < len(files):
        raw.warnings.append(f"no stage tilt in the tags of {', '.join(missing[:5])}")
    raw.warnings.append(
        f"read {len(files)} files as one tilt series: {files[0].name} … {files[-1].name}"
    )
    raw.metadata.update(format=_FORMAT[ext], series_files=[p.name for p in files])
    prefix = re.sub(r"[\s_.-]*\d+[\s_.-]*$", "", files[0].stem)
    raw.sidecar_stems = [prefix] if prefix else []
    return raw
