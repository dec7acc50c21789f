"""Helpers shared by the readers and writers: units, JSON, the ``<stem>.json`` sidecar."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np

#: key of the provenance block in TIFF metadata and JSON sidecars
PROVENANCE_KEY = "tomoprior_provenance"

# factor that turns one unit into nanometres
_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "å": 0.1,
    "a": 0.1,
    "ang": 0.1,
    "angstrom": 0.1,
    "ångström": 0.1,
    "\\u00c5": 0.1,  # how ImageJ escapes Å in some files
    "pm": 1e-3,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # Greek mu U+03BC
    "um": 1e3,
    "\\u00b5m": 1e3,  # how ImageJ escapes µm
    "micron": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
}


def unit_factor_to_nm(unit: str | None) -> float | None:
    """How many nanometres one ``unit`` is, or ``None`` for an unknown unit.

    Accepts the spellings found in microscope files (``"nm"``, ``"Å"``,
    ``"angstrom"``, ``"µm"``, ``"micron"``, ``"m"`` ...), singular or plural.
    """
    if unit is None:
        return None
    key = str(unit).strip().lower()
    if key not in _TO_NM and key.endswith("s"):
        key = key[:-1]
    return _TO_NM.get(key)


def to_nm(value: Any, unit: str | None) -> float | None:
    """``value`` in ``unit`` expressed in nm; ``None`` when unknown or not positive."""
    factor = unit_factor_to_nm(unit)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if factor is None or not math.isfinite(v) or v <= 0:
        return None
    return v * factor


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def dumps(obj: Any, indent: int | None = 1) -> str:
    """JSON text of ``obj``; numpy values, paths and unknown objects are converted."""
    return json.dumps(obj, default=_json_default, indent=indent, ensure_ascii=False)


def json_sidecar(path: pathlib.Path) -> pathlib.Path:
    """``<stem>.json`` next to ``path``."""
    return path.with_suffix(".json")


def read_json_sidecar(path: pathlib.Path) -> dict | None:
    """The JSON object in ``<stem>.json``, or ``None`` when absent or not JSON."""
    from ._budget import read_capped_text

    side = json_sidecar(path)
    if not side.is_file():
        return None
    try:
        value = json.loads(read_capped_text(side, 16 * 1024**2, "JSON sidecar"))
    except (OSError, ValueError, RecursionError):  # unreadable, too large, not JSON, too deep
        return None
    return value if isinstance(value, dict) else None


def write_json_sidecar(path: pathlib.Path, content: dict) -> pathlib.Path:
    """Write ``content`` as JSON to ``<stem>.json``."""
    from .._atomic import write_text

    return write_text(json_sidecar(path), dumps(content) + "\n")
