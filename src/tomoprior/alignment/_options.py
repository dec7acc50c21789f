"""Alignment options: defaults, validation and clear errors."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import MethodUnavailable, TomopriorError

__all__ = ["METHODS", "AlignOptions", "AlignmentError", "parse_options"]

METHODS = ("xcorr", "com", "pm")


class AlignmentError(TomopriorError, ValueError):
    """An alignment option is invalid, or the series cannot be aligned."""


@dataclass(frozen=True)
class AlignOptions:
    """Options of :func:`~tomoprior.alignment.align_series` (all keyword arguments).

    Attributes
    ----------
    axis : bool
        Estimate the tilt-axis angle and offset (default True).
    com : bool
        Replace the across-axis shifts of ``xcorr``/``pm`` by centre-of-mass
        alignment before the later steps (for specimens wholly in view).
    stretch : bool
        Cosine stretching in the cross-correlation chain.
    binning : int or None
        Binning of the cross-correlation / centre-of-mass step (None: 1,
        or enough to bring the larger image side to 512 pixels or less).
    axis_binning, pm_binning : int or None
        Binning of the axis search and of projection matching (None: the
        larger side at most 64 and 128 pixels).
    max_angle : float
        Half-width of the coarse axis-angle scan, degrees.
    max_offset : float or None
        Half-width of the coarse axis-offset scan, pixels.
    max_shift : float or None
        Largest shift between neighbouring tilts searched by the
        correlation, pixels (default: a quarter of the image).
    rounds : int
        Largest number of projection-matching rounds per cycle.
    tol : float
        Projection matching stops when the RMS shift change is below this (pixels).
    iterations : int
        SIRT iterations per projection-matching round.
    axis_iterations : int
        SIRT iterations per axis trial.
    slices : int
        Slices reconstructed per axis trial.
    axis_rounds : int
        Projection-matching rounds (across the axis) per trial axis angle.
    thickness : int or None
        Volume thickness (pixels) of the trial reconstructions (default:
        the geometry's, else the width across the axis).
    sigma1, radius2, sigma2 : float
        Band-pass of the correlations, cycles/pixel (IMOD's tiltxcorr
        defaults: 0.03, 0.25, 0.05).
    phase : bool
        Phase correlation instead of band-passed cross-correlation.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the trial reconstructions.
    """

    axis: bool = True
    com: bool = False
    stretch: bool = True
    binning: int | None = None
    axis_binning: int | None = None
    pm_binning: int | None = None
    max_angle: float = 4.0
    max_offset: float | None = None
    max_shift: float | None = None
    rounds: int = 6
    tol: float = 0.1
    iterations: int = 20
    axis_iterations: int = 50
    slices: int = 24
    axis_rounds: int = 4
    thickness: int | None = None
    sigma1: float = 0.03
    radius2: float = 0.25
    sigma2: float = 0.05
    phase: bool = False
    device: str = "auto"

    def register_options(self) -> dict[str, Any]:
        return {"sigma1": self.sigma1, "radius2": self.radius2, "sigma2": self.sigma2,
                "phase": self.phase}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_POSITIVE_INT = ("rounds", "iterations", "axis_iterations", "slices", "axis_rounds")
_OPTIONAL_INT = ("binning", "axis_binning", "pm_binning", "thickness")
_NONNEG_FLOAT = ("max_angle", "tol", "sigma1", "sigma2")
_OPTIONAL_FLOAT = ("max_offset", "max_shift")


def parse_options(method: str, options: dict[str, Any]) -> tuple[str, AlignOptions]:
    """Validate ``method`` and the keyword options; raise with a readable message."""
    m = str(method).strip().lower()
    if m not in METHODS:
        raise MethodUnavailable(f"unknown alignment method {method!r}: choose from {', '.join(METHODS)}")
    names = {f.name for f in dataclasses.fields(AlignOptions)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise AlignmentError(
            f"unknown alignment option(s) {', '.join(unknown)}: valid options are {', '.join(sorted(names))}"
        )
    clean: dict[str, Any] = {}
    for k, v in options.items():
        try:
            if k in _POSITIVE_INT:
                v = int(v)
                ok = v >= 1
            elif k in _OPTIONAL_INT:
                v = None if v is None else int(v)
                ok = v is None or v >= 1
            elif k in _NONNEG_FLOAT:
                v = float(v)
                ok = math.isfinite(v) and v >= 0
            elif k in _OPTIONAL_FLOAT:
                v = None if v is None else float(v)
                ok = v is None or (math.isfinite(v) and v > 0)
            elif k == "radius2":
                v = float(v)
                ok = 0 < v <= 0.5
            elif k == "device":
                v = str(v)
                ok = True
            elif isinstance(v, str):
                ok = v.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off")
                v = v.strip().lower() in ("1", "true", "yes", "on")
            else:
                v = bool(v)
                ok = True
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise AlignmentError(f"alignment option {k}={options[k]!r} is out of range")
        clean[k] = v
    return m, AlignOptions(**clean)
