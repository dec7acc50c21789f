"""Tilt-series geometry: angles, tilt axis, per-tilt shifts, volume shape.

Conventions (fixed for the whole package):

* A tilt series is a ``(n_tilts, rows, cols)`` array, one image per tilt.
* Angles are in degrees, one per image, in any order and spacing.
* The tilt axis lies in the image plane. Its orientation ``tilt_axis`` is an
  angle in degrees measured in array coordinates from the ``+x`` (column)
  direction towards ``+y`` (row) direction: ``0`` is ``"horizontal"``
  (parallel to the columns, i.e. along x), ``90`` is ``"vertical"`` (parallel
  to the rows, i.e. along y). On screen, where rows grow downwards, positive
  angles turn clockwise.
* Shifts are per-tilt ``(dy, dx)`` in pixels and are *corrections*: shifting
  image ``i`` by ``shifts[i]`` aligns it.
* The volume is ``(z, y, x)``: ``y, x`` are the image plane at 0° tilt and
  ``z`` is the beam direction. Its thickness ``z`` defaults to the width of
  the images across the tilt axis.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GeometryError

__all__ = [
    "Selection",
    "TiltGeometry",
    "angles_from_range",
    "angles_from_start_step",
    "check_tilt_range",
    "parse_tilt_axis",
]

_AXIS_NAMES = {"horizontal": 0.0, "h": 0.0, "x": 0.0, "vertical": 90.0, "v": 90.0, "y": 90.0}


def parse_tilt_axis(value: str | float | int | None) -> float:
    """Return the tilt-axis orientation in degrees.

    Accepts ``"horizontal"`` (0°), ``"vertical"`` (90°), a number, or a
    string holding a number (``"-3.2"``). The result lies in ``(-180, 180]``.
    """
    if value is None:
        return 0.0
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _AXIS_NAMES:
            return _AXIS_NAMES[key]
        try:
            value = float(key)
        except ValueError:
            raise GeometryError(
                f"tilt axis {value!r} not understood: use 'horizontal', 'vertical' "
                "or an angle in degrees"
            ) from None
    deg = float(value)
    if not math.isfinite(deg):
        raise GeometryError(f"tilt axis must be a finite angle, got {value!r}")
    deg = math.remainder(deg, 360.0)
    return 180.0 if deg == -180.0 else deg


def check_tilt_range(value: Any) -> tuple[float, float] | None:
    """``(min, max)`` in degrees, finite and increasing, or None for all tilts."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray) or len(value) != 2:
        raise GeometryError(
            f"tilt_range must be (min, max) in degrees, got {value!r}; to keep images by "
            "their index use exclude= or TiltGeometry.subset([...])"
        )
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise GeometryError(f"tilt_range must be two numbers in degrees, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise GeometryError(f"tilt_range must be finite, got {value!r}")
    if lo > hi:
        raise GeometryError(f"tilt_range ({lo:g}, {hi:g}) is reversed: give (min, max), "
                            f"e.g. ({hi:g}, {lo:g})")
    if lo < -90 or hi > 90:
        raise GeometryError(f"tilt_range ({lo:g}, {hi:g}) must lie within ±90°")
    return lo, hi


def describe_tilt_axis(deg: float) -> str:
    """Human-readable name of a tilt-axis orientation."""
    if deg == 0.0:
        return "horizontal"
    if deg == 90.0:
        return "vertical"
    return f"{deg:g}°"


def angles_from_start_step(start: float, step: float, n: int) -> np.ndarray:
    """``n`` angles ``start, start + step, ...`` in degrees."""
    if n < 1:
        raise GeometryError("the number of tilts must be at least 1")
    if not (math.isfinite(start) and math.isfinite(step)) or step == 0:
        raise GeometryError(f"tilt start {start} and step {step} must be finite, step non-zero")
    return start + step * np.arange(int(n), dtype=np.float64)


def angles_from_range(lo: float, hi: float, step: float) -> np.ndarray:
    """Angles from ``lo`` to ``hi`` inclusive every ``step`` degrees."""
    if step <= 0 or not math.isfinite(step):
        raise GeometryError(f"tilt step must be positive, got {step}")
    if hi < lo:
        raise GeometryError(f"tilt range {lo}..{hi} is empty")
    n = int(math.floor((hi - lo) / step + 1e-6)) + 1
    return lo + step * np.arange(n, dtype=np.float64)


def _as_float_array(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be numbers") from None
    return arr


@dataclass(frozen=True, eq=False)
class TiltGeometry:
    """Geometry of a single-axis parallel-beam tilt series.

    Parameters
    ----------
    angles : array of float
        Tilt angle of each image in degrees.
    tilt_axis : float or str
        Orientation of the tilt axis in the image plane, see module notes.
    shifts : array (n_tilts, 2), optional
        Per-tilt ``(dy, dx)`` corrections in pixels (zeros when omitted).
    thickness : int, optional
        Number of voxels along z; ``None`` uses the width across the axis.
    pixel_size : float, optional
        Physical size of one pixel, in ``pixel_unit``.
    pixel_unit : str
        Unit of ``pixel_size`` (``"nm"`` or ``"Å"``).
    angle_source : str
        Where the angles came from (a file name, ``"start/step"``, ...).
    """

    angles: np.ndarray
    tilt_axis: float = 0.0
    shifts: np.ndarray | None = None
    thickness: int | None = None
    pixel_size: float | None = None
    pixel_unit: str = "nm"
    angle_source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        angles = _as_float_array(self.angles, "tilt angles").reshape(-1)
        object.__setattr__(self, "angles", angles)
        object.__setattr__(self, "tilt_axis", parse_tilt_axis(self.tilt_axis))
        n = angles.size
        if self.shifts is None:
            shifts = np.zeros((n, 2))
        else:
            shifts = _as_float_array(self.shifts, "shifts")
            if shifts.shape != (n, 2):
                raise GeometryError(
                    f"shifts must have shape ({n}, 2) = one (dy, dx) per tilt, got {shifts.shape}"
                )
            if not np.all(np.isfinite(shifts)):
                raise GeometryError("shifts contain NaN or infinite values")
        object.__setattr__(self, "shifts", shifts)
        if self.thickness is not None:
            t = int(self.thickness)
            if t < 1 or t != self.thickness:
                raise GeometryError(f"thickness must be a positive integer, got {self.thickness}")
            object.__setattr__(self, "thickness", t)
        if self.pixel_size is not None:
            ps = float(self.pixel_size)
            if not (math.isfinite(ps) and ps > 0):
                raise GeometryError(f"pixel size must be positive, got {self.pixel_size}")
            object.__setattr__(self, "pixel_size", ps)
        self._check_angles()

    # -- validation -----------------------------------------------------------
    def _check_angles(self) -> None:
        a = self.angles
        if a.size < 2:
            raise GeometryError(f"a tilt series needs at least 2 tilts, got {a.size}")
        if not np.all(np.isfinite(a)):
            bad = np.flatnonzero(~np.isfinite(a))[:5].tolist()
            raise GeometryError(f"tilt angles contain NaN or infinite values (images {bad})")
        if np.any(np.abs(a) > 90.0):
            worst = float(a[np.argmax(np.abs(a))])
            raise GeometryError(f"tilt angles must lie within ±90°, found {worst:g}°")
        rounded = np.round(a, 6)
        uniq, counts = np.unique(rounded, return_counts=True)
        if np.any(counts > 1):
            parts = []
            for value in uniq[counts > 1][:3]:
                where = np.flatnonzero(rounded == value)
                shown = ", ".join(str(int(i) + 1) for i in where[:4])
                parts.append(f"{value:g}° appears {where.size} times (at positions {shown})")
            more = int(np.count_nonzero(counts > 1)) - len(parts)
            raise GeometryError(
                f"duplicate tilt angles: {'; '.join(parts)}" + (f"; and {more} more" if more > 0 else "")
                + f" — {a.size} angles, {uniq.size} distinct"
            )

    def validate(self, n_images: int) -> TiltGeometry:
        """Check that the geometry fits a series of ``n_images`` images."""
        if self.n_tilts != n_images:
            raise GeometryError(
                f"{self.n_tilts} tilt angles for {n_images} images: the angle count must "
                "equal the number of images"
            )
        return self

    # -- properties -------------------------------------------------------------
    @property
    def n_tilts(self) -> int:
        return int(self.angles.size)

    @property
    def angle_range(self) -> tuple[float, float]:
        return float(self.angles.min()), float(self.angles.max())

    @property
    def angle_step(self) -> float | None:
        """The tilt increment when the angles are evenly spaced, else ``None``."""
        d = np.diff(np.sort(self.angles))
        if d.size and np.allclose(d, d.mean(), atol=0.05):
            return float(round(d.mean(), 4))
        return None

    @property
    def tilt_axis_name(self) -> str:
        return describe_tilt_axis(self.tilt_axis)

    @property
    def axis_is_horizontal_like(self) -> bool:
        """True when the axis is nearer to the x direction than to y."""
        return abs(math.remainder(self.tilt_axis, 180.0)) <= 45.0

    def width_across_axis(self, image_shape: Sequence[int]) -> int:
        rows, cols = int(image_shape[-2]), int(image_shape[-1])
        return rows if self.axis_is_horizontal_like else cols

    def volume_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        """``(z, y, x)`` shape of the volume reconstructed from images of ``image_shape``."""
        rows, cols = int(image_shape[-2]), int(image_shape[-1])
        z = self.thickness or self.width_across_axis(image_shape)
        return (z, rows, cols)

    # -- derived geometries -------------------------------------------------------
    def replace(self, **changes: Any) -> TiltGeometry:
        return dataclasses.replace(self, **changes)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TiltGeometry:
        """Geometry of the tilts ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=int)
        return self.replace(angles=self.angles[idx], shifts=self.shifts[idx])

    def binned(self, factor: int) -> TiltGeometry:
        """Geometry after binning the images by ``factor`` in both directions."""
        factor = int(factor)
        if factor < 1:
            raise GeometryError(f"binning factor must be >= 1, got {factor}")
        if factor == 1:
            return self
        return self.replace(
            shifts=self.shifts / factor,
            thickness=None if self.thickness is None else max(1, self.thickness // factor),
            pixel_size=None if self.pixel_size is None else self.pixel_size * factor,
        )

    def select(
        self,
        range: tuple[float, float] | None = None,
        increment: float | None = None,
        exclude: Sequence[int] = (),
    ) -> Selection:
        """Pick the measured tilts nearest to a sub-range and increment.

        ``range`` is ``(min, max)`` in degrees (a reversed range or one of
        another length is an error: images are chosen by index with
        :meth:`subset` or ``exclude``). Emulates a limited or sparse acquisition from a dense series: with
        ``range=(-60, 60), increment=10`` the tilts nearest to -60, -50, ...,
        60° are kept. Targets are multiples of ``increment`` (anchored at 0°
        when the range contains 0°, else at the range minimum). A target with
        no measured tilt within half an increment is skipped.

        ``exclude`` lists images (0-based stack indices) never to use, such
        as frames ruined by a drift or a grid bar: with an increment, the
        nearest usable tilt within half an increment stands in for them.

        Returns
        -------
        Selection
            The kept indices (in stack order), their angles and the geometry
            of the subset.
        """
        a = self.angles
        bad = {int(i) for i in exclude}
        if any(not 0 <= i < a.size for i in bad):
            raise GeometryError(
                f"excluded images {sorted(i for i in bad if not 0 <= i < a.size)} do not exist: "
                f"the series has {a.size} images"
            )
        rng = check_tilt_range(range)
        lo, hi = (-np.inf, np.inf) if rng is None else rng
        d = np.diff(np.sort(a))
        tol = 0.25 * float(np.median(d)) if d.size else 0.0
        in_range = np.flatnonzero((a >= lo - tol) & (a <= hi + tol))
        in_range = np.array([i for i in in_range if int(i) not in bad], dtype=int)
        if increment is None or increment <= 0:
            kept = in_range
        else:
            inc = float(increment)
            lo_t = lo if math.isfinite(lo) else float(a.min())
            hi_t = hi if math.isfinite(hi) else float(a.max())
            anchor = 0.0 if lo_t - tol <= 0.0 <= hi_t + tol else lo_t
            k0 = math.ceil((lo_t - tol - anchor) / inc - 1e-9)
            k1 = math.floor((hi_t + tol - anchor) / inc + 1e-9)
            chosen: list[int] = []
            for k in np.arange(k0, k1 + 1):
                target = anchor + k * inc
                if in_range.size == 0:
                    break
                j = in_range[np.argmin(np.abs(a[in_range] - target))]
                if abs(a[j] - target) <= inc / 2 and j not in chosen:
                    chosen.append(int(j))
            kept = np.array(sorted(chosen), dtype=int)
        if kept.size < 2:
            raise GeometryError(
                f"the tilt selection (range {range}, increment {increment}"
                + (f", {len(bad)} excluded" if bad else "")
                + f") keeps {kept.size} tilt(s); at least 2 are needed"
            )
        return Selection(indices=kept, angles=a[kept].copy(), geometry=self.subset(kept))

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "angles": [float(v) for v in self.angles],
            "tilt_axis": float(self.tilt_axis),
            "shifts": [[float(dy), float(dx)] for dy, dx in self.shifts],
            "thickness": self.thickness,
            "pixel_size": self.pixel_size,
            "pixel_unit": self.pixel_unit,
            "angle_source": self.angle_source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TiltGeometry:
        keys = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in keys})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TiltGeometry):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def summary(self) -> str:
        lo, hi = self.angle_range
        step = self.angle_step
        s = f"{self.n_tilts} tilts, {lo:g}° to {hi:g}°"
        if step is not None:
            s += f" step {step:g}°"
        s += f", axis {self.tilt_axis_name}"
        if self.pixel_size:
            s += f", pixel {self.pixel_size:g} {self.pixel_unit}"
        return s


@dataclass(frozen=True, eq=False)
class Selection:
    """Result of :meth:`TiltGeometry.select`."""

    indices: np.ndarray
    angles: np.ndarray
    geometry: TiltGeometry

    @property
    def count(self) -> int:
        return int(self.indices.size)

    def apply(self, tilt_series: Any) -> Any:
        """The kept images of ``tilt_series`` (numpy or dask)."""
        return tilt_series[self.indices]

    def describe(self) -> str:
        a = self.angles
        return f"kept {self.count} tilts from {a.min():g}° to {a.max():g}°"
