"""Tilt angles from text files next to the data: .rawtlt/.tlt/.txt/.csv and SerialEM .mdoc."""

from __future__ import annotations

import math
import pathlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FormatError
from ._budget import MAX_METADATA_CHARS, read_capped_text
from ._common import to_nm

__all__ = ["MdocInfo", "find_mdoc", "find_sidecar", "read_angles", "read_mdoc", "write_angles"]

SIDECAR_EXTENSIONS = (".rawtlt", ".tlt", ".txt")
# one way to match each number, and bounded white space: every pattern here runs in linear time
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
#: size caps of the text files read beside the data
MAX_ANGLE_FILE = 1024**2
MAX_MDOC_FILE = 64 * 1024**2
MAX_LINE = 4096


def _lines(path: pathlib.Path, limit: int, what: str) -> list[str]:
    """The lines of a capped text file; a line longer than :data:`MAX_LINE` is refused."""
    lines = read_capped_text(path, limit, what).splitlines()
    for lineno, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE:
            raise FormatError(
                f"line {lineno} of {path.name} is {len(line)} characters long: "
                f"not {'an' if what[0] in 'aeiou' else 'a'} {what}"
            )
    return lines


def read_angles(path: str | pathlib.Path) -> np.ndarray:
    """Read tilt angles (degrees) from a text file with one number per line.

    Works for IMOD ``.rawtlt`` / ``.tlt`` files and plain ``.txt`` / ``.csv``
    lists. Blank lines and ``#`` comments are ignored.

    Parameters
    ----------
    path : str or pathlib.Path
        The angle file.

    Returns
    -------
    numpy.ndarray
        float64 angles in file order.

    Raises
    ------
    FormatError
        When the file is missing, empty, or a line does not hold exactly one
        number.
    """
    path = pathlib.Path(path)
    values: list[float] = []
    for lineno, raw in enumerate(_lines(path, MAX_ANGLE_FILE, "angle file"), start=1):
        line = raw.split("#", 1)[0].strip().rstrip(",;").strip()
        if not line:
            continue
        fields = [f for f in re.split(r"[\s,;]+", line) if f]
        if len(fields) != 1:
            raise FormatError(
                f"line {lineno} of {path.name} holds {len(fields)} values ({line!r}): "
                "an angle file needs one tilt angle per line"
            )
        try:
            value = float(fields[0])
        except ValueError:
            raise FormatError(f"line {lineno} of {path.name} is not a number: {line!r}") from None
        if not math.isfinite(value):
            raise FormatError(f"line {lineno} of {path.name} is not a finite angle: {line!r}")
        values.append(value)
    if not values:
        raise FormatError(f"no tilt angles in {path.name}: the file holds no numbers")
    return np.asarray(values, dtype=np.float64)


def write_angles(path: pathlib.Path, angles: Sequence[float]) -> pathlib.Path:
    """Write one angle per line (the IMOD ``.rawtlt`` layout)."""
    from .._atomic import write_text

    return write_text(path, "".join(f"{float(a):.5f}\n" for a in angles))


def find_sidecar(
    path: pathlib.Path,
    extensions: Sequence[str] = SIDECAR_EXTENSIONS,
    stems: Sequence[str] = (),
) -> pathlib.Path | None:
    """The first existing angle file next to ``path``.

    For each extension in priority order, ``<stem><ext>`` is tried, then
    ``<name><ext>`` (``tilts.st.rawtlt``), then ``<s><ext>`` for the extra
    ``stems``.
    """
    for ext in extensions:
        names = [path.stem + ext, path.name + ext, *(s + ext for s in stems)]
        for name in dict.fromkeys(names):
            candidate = path.with_name(name)
            if candidate.is_file():
                return candidate
    return None


@dataclass
class MdocInfo:
    """What a SerialEM ``.mdoc`` file says about a tilt series.

    Attributes
    ----------
    angles : numpy.ndarray or None
        ``TiltAngle`` of each ``[ZValue = k]`` section, in ``k`` order.
    pixel_size : float or None
        ``PixelSpacing`` converted from Å to nm.
    tilt_axis_imod : float or None
        IMOD/SerialEM tilt-axis angle β (from the image Y axis,
        counter-clockwise), from the ``Tilt axis angle`` title line, else
        ``RotationAngle - 90``.
    tilt_axis_note : str
        Which of the two gave `tilt_axis_imod`.
    values : dict
        The global ``key = value`` pairs.
    """

    angles: np.ndarray | None
    pixel_size: float | None
    tilt_axis_imod: float | None
    tilt_axis_note: str = ""
    values: dict[str, str] = field(default_factory=dict)


def read_mdoc(path: str | pathlib.Path) -> MdocInfo:
    """Parse a SerialEM ``.mdoc`` autodoc file.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.mdoc`` file (``tilts.st.mdoc`` or ``tilts.mdoc``).

    Returns
    -------
    MdocInfo
        Angles in ``ZValue`` order, pixel size in nm, IMOD tilt-axis angle.

    Raises
    ------
    FormatError
        When the file cannot be read.

    Notes
    -----
    SerialEM writes ``[T = Tilt axis angle = 84.9, binning = 1 ...]`` title
    lines, global values (``PixelSpacing`` in Å, ``ImageFile``) and one
    ``[ZValue = k]`` section per image holding ``TiltAngle``. Its
    ``RotationAngle`` is the image rotation, which exceeds the tilt-axis
    angle by 90°.
    """
    path = pathlib.Path(path)
    values: dict[str, str] = {}
    sections: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = values
    axis: float | None = None
    note = ""
    for raw in _lines(path, MAX_MDOC_FILE, "SerialEM .mdoc file"):
        line = raw.strip()
        head = _section(line)
        if head:
            kind, value = head
            current = None
            if kind == "ZValue":
                try:
                    current = sections.setdefault(int(float(value)), {})
                except ValueError:
                    current = None
            m = _AXIS_TITLE.search(value)
            if m and axis is None:
                axis, note = float(m.group(1)), "mdoc 'Tilt axis angle'"
            continue
        if "=" in line and current is not None:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    angles = None
    if sections and all("TiltAngle" in sections[k] for k in sections):
        try:
            angles = np.array([float(sections[k]["TiltAngle"]) for k in sorted(sections)])
        except ValueError:
            angles = None
    first = sections[min(sections)] if sections else {}
    spacing = values.get("PixelSpacing", first.get("PixelSpacing"))
    if axis is None and "RotationAngle" in first:
        try:
            axis, note = float(first["RotationAngle"]) - 90.0, "mdoc 'RotationAngle' - 90°"
        except ValueError:
            pass
    return MdocInfo(angles, to_nm(spacing, "Å"), axis, note, values)


_AXIS_TITLE = re.compile(r"Tilt\s{0,4}axis\s{0,4}angle\s{0,8}=\s{0,8}(" + _NUMBER + ")", re.I)


def _section(line: str) -> tuple[str, str] | None:
    """``("ZValue", "3")`` for a section header ``[ZValue = 3]``; ``None`` for other lines."""
    if not (line.startswith("[") and line.endswith("]")):
        return None
    kind, sep, value = line[1:-1].partition("=")
    kind = kind.strip()
    if not sep or not kind.replace("_", "").isalnum():
        return None
    return kind, value.strip()


def find_mdoc(path: pathlib.Path) -> pathlib.Path | None:
    """``<name>.mdoc`` (``tilts.st.mdoc``) or ``<stem>.mdoc`` next to ``path``."""
    for name in (path.name + ".mdoc", path.stem + ".mdoc"):
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


_LABEL = re.compile(
    r"(?:tilt(?:\s{0,4}angle)?\s{0,4}[:=]?\s{0,4})?(" + _NUMBER + r")\s{0,4}(°|deg|degrees?)?", re.I
)


def angles_from_labels(labels: Any, n: int) -> np.ndarray | None:
    """Tilt angles from slice labels such as ``"tilt -60°"`` or ``"-60.0"``.

    Bare whole numbers that merely count the slices (``1, 2, 3 ...``) are
    not taken for angles.
    """
    if not isinstance(labels, (list, tuple)) or len(labels) != n or n < 2:
        return None
    found, marked = [], False
    for label in labels:
        text = str(label).strip()
        m = _LABEL.fullmatch(text) if len(text) <= 64 else None
        if not m:
            return None
        found.append(float(m.group(1)))
        marked = marked or bool(m.group(2)) or "tilt" in text.lower()
    values = np.asarray(found)
    counting = np.all(values == np.round(values)) and np.all(np.diff(values) == 1)
    if not marked and counting:
        return None
    return values


_KEYED = re.compile(r"tilt[_ ]?angles\W{0,8}[=:]\s{0,8}\[?([^\]\n]*)", re.I)


def angles_from_text(text: Any, n: int, *, keyed: bool = True) -> np.ndarray | None:
    """``n`` angles from a list, or from text.

    With ``keyed`` the text must name them (``tilt_angles = a, b, c`` or
    ``"tilt_angles": [...]``); otherwise every number in the text is taken.
    """
    if isinstance(text, (list, tuple, np.ndarray)):
        values = np.asarray(text, dtype=float).ravel()
        return values if values.size == n else None
    text = str(text)
    if len(text) > MAX_METADATA_CHARS:
        return None
    if keyed:
        m = _KEYED.search(text)
        if not m:
            return None
        text = m.group(1)
    values = np.asarray([float(v) for v in re.findall(_NUMBER, text)])
    return values if values.size == n else None
