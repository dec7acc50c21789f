"""The checks every run goes through, shared by the Python API, the command line and the widgets.

Each function either returns the value to use or raises one
:class:`~tomoprior.errors.TomopriorError` with a line meant for the user;
what can run but is probably not meant (radian angles, a clipped slice
range, a parameter the method ignores) is appended to ``notes`` as a
one-line warning.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import GeometryError, ParameterError
from ..geometry import check_tilt_range

__all__ = [
    "check_bin",
    "check_heldout",
    "check_increment",
    "check_tilt_range",
    "iteration_plan",
    "radian_note",
    "virtual_in_run",
    "whole",
]

#: the largest binning the command line and the widgets offer
MAX_BIN = 64
#: the largest fraction of detector pixels that may be held out of the fit
MAX_HELDOUT = 0.5


def whole(name: str, value: Any, low: int) -> int:
    """``value`` as a whole number ``>= low``, or a ParameterError naming it."""
    try:
        out = int(value)
        if out != float(value) or isinstance(value, bool):
            raise ValueError(value)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"{name} must be a whole number, got {value!r}") from None
    if out < low:
        raise ParameterError(f"{name} must be >= {low}, got {out}")
    return out


def check_bin(value: Any) -> int:
    """Binning factor: a whole number in ``1..MAX_BIN``."""
    b = whole("bin", value, 1)
    if b > MAX_BIN:
        raise ParameterError(f"bin must be <= {MAX_BIN}, got {b}")
    return b


def check_increment(value: Any) -> float | None:
    """Tilt increment in degrees: positive and finite, or None for every tilt."""
    if value is None:
        return None
    try:
        inc = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"increment must be a number of degrees, got {value!r}") from None
    if not math.isfinite(inc) or not 0 < inc <= 180:
        raise GeometryError(f"increment must be > 0 and <= 180 degrees, got {value!r}")
    return inc


def radian_note(angles: np.ndarray, notes: list[str]) -> None:
    """Warn when angles given in degrees look like radians (as the file readers do)."""
    from ..io._read import looks_like_radians

    a = np.asarray(angles, np.float64)
    if looks_like_radians(a):
        notes.append(
            f"the tilt angles span only {a.min():.3g} to {a.max():.3g}°: if they are in "
            "radians, convert them to degrees (numpy.degrees; the command line takes "
            "--angles-unit rad)"
        )


def iteration_plan(method: Any, iterations: Any, every: Any, notes: list[str],
                   params: Any = None) -> tuple[int, int]:
    """``(iterations, every)`` of a run, validated.

    The defaults are the method's declaration's for these ``params`` (DIP-TV
    from the trained network runs fewer steps); ``every`` defaults to the
    declared interval scaled with ``iterations``, so a run of any length
    yields about as many Steps as one of the declared length. A method that
    does not iterate takes neither.
    """
    if not method.capabilities.iterative:
        if iterations is not None and whole("iterations", iterations, 1) != 1:
            notes.append(f"{method.label} does not iterate: iterations={iterations} is ignored")
        return 1, 1
    its_d, every_d = method.run_defaults(params)
    its = its_d if iterations is None else whole("iterations", iterations, 1)
    if every is not None:
        return its, whole("every", every, 1)
    scaled = round(every_d * its / max(1, its_d))
    return its, max(1, min(its, scaled))


def check_heldout(value: Any, uses_mask: bool, label: str, notes: list[str]) -> float:
    """Fraction of detector pixels held out for validation, in ``[0, MAX_HELDOUT]``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"heldout must be a fraction, got {value!r}") from None
    if not 0.0 <= f <= MAX_HELDOUT:
        raise ParameterError(f"heldout must be between 0 and {MAX_HELDOUT}, got {value!r}")
    if f > 0 and not uses_mask:
        notes.append(f"{label} does not hold pixels out: heldout={f:g} is ignored")
    return f


def virtual_in_run(virtual: Any, kept: np.ndarray, n_images: int) -> dict | None:
    """The kept images that are virtual, for the provenance, or None when none are.

    ``virtual`` is a sequence of stack indices or a mapping with ``"indices"``
    (and optionally ``"method"``), as :attr:`TiltSeriesFile.virtual_frames`.
    """
    if virtual is None:
        return None
    method = None
    if isinstance(virtual, dict):
        method = virtual.get("method")
        virtual = virtual.get("indices", ())
    idx = sorted({whole("virtual frame index", i, 0) for i in virtual})
    if idx and idx[-1] >= n_images:
        raise ParameterError(f"virtual frame {idx[-1]} does not exist: the series has "
                             f"{n_images} images")
    pos = {int(i): j for j, i in enumerate(np.asarray(kept))}
    used = [i for i in idx if i in pos]
    if not used:
        return None
    return {"indices": used, "positions": [pos[i] for i in used], "count": len(used),
            "kept": int(len(pos)), "method": method}
