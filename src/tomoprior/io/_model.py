"""The result of reading a tilt-series file."""

from __future__ import annotations

import dataclasses
import math
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GeometryError
from ..geometry import TiltGeometry, angles_from_start_step

__all__ = ["TiltSeriesFile", "is_lazy", "no_angles_message"]


def is_lazy(data: Any) -> bool:
    """True for a memory-mapped or dask array (data not yet in memory)."""
    return isinstance(data, np.memmap) or not isinstance(data, np.ndarray)


def no_angles_message(name: str) -> str:
    """The user-facing warning for a file without tilt angles."""
    return (
        f"no tilt angles found in {name}: set the tilt start and step, "
        "or load an angle file (.rawtlt, .tlt)"
    )


@dataclass(eq=False)
class TiltSeriesFile:
    """A tilt series read from a file, with what was found about it.

    Attributes
    ----------
    data : numpy.ndarray, numpy.memmap or dask.array.Array
        The images, ``(n_tilts, rows, cols)``, in the file's own dtype. Large
        files are memory-mapped or wrapped in a dask array and read on demand.
    geometry : TiltGeometry or None
        Tilt angles, tilt axis and pixel size; ``None`` when no usable tilt
        angles were found (see `warnings`).
    pixel_size : float or None
        Size of one pixel in `pixel_unit`, when the file records it.
    pixel_unit : str
        Always ``"nm"``: sizes in Å or µm are converted on reading.
    path : pathlib.Path
        The file that was opened (the first file of a numbered series).
    angle_source : str
        Where the angles came from, e.g. ``"needle.rawtlt"`` or
        ``"FEI extended header"``; ``""`` when none were found.
    metadata : dict
        Other findings: ``"tilt_axis"`` and ``"tilt_axis_source"``, the
        format, acquisition details, header values.
    warnings : list of str
        Messages meant for the user (missing angles, NaN values, ...).
    """

    data: Any
    geometry: TiltGeometry | None
    pixel_size: float | None
    pixel_unit: str
    path: pathlib.Path
    angle_source: str = ""
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_tilts, rows, cols)``."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def n_tilts(self) -> int:
        """Number of images in the stack."""
        return int(self.data.shape[0])

    @property
    def virtual_frames(self) -> dict | None:
        """Which images are virtual (filled in by ``tomoprior interpolate``), or ``None``.

        ``{"indices": [...], "method": "learned", "measured": n}`` from the
        ``.frames.json`` sidecar written beside an interpolated series.
        """
        return self.metadata.get("virtual_frames")

    @property
    def lazy(self) -> bool:
        """True when `data` is memory-mapped or a dask array."""
        return is_lazy(self.data)

    def load(self) -> np.ndarray:
        """The images as an in-memory float32 array ``(n_tilts, rows, cols)``.

        Lazy data are read from the file here; eager float32 data are
        returned without a copy.
        """
        data = self.data
        if hasattr(data, "compute") and not isinstance(data, np.ndarray):
            data = data.compute()
        if isinstance(data, np.memmap):
            return np.array(data, dtype=np.float32)
        return np.asarray(data, dtype=np.float32)

    def with_angles(self, angles: Any, *, source: str = "user") -> TiltSeriesFile:
        """A copy with the given tilt angles (degrees, one per image).

        The tilt axis and pixel size already found are kept.

        Raises
        ------
        GeometryError
            When the angles are invalid or their count differs from the
            number of images.
        """
        old = self.geometry
        geometry = TiltGeometry(
            angles=angles,
            tilt_axis=old.tilt_axis if old else self.metadata.get("tilt_axis", 0.0),
            pixel_size=self.pixel_size,
            pixel_unit=self.pixel_unit,
            angle_source=source,
        ).validate(self.n_tilts)
        kept = [w for w in self.warnings if not w.startswith("no tilt angles found")]
        return dataclasses.replace(
            self,
            geometry=geometry,
            angle_source=source,
            warnings=kept,
            metadata=dict(self.metadata),
        )

    def with_pixel_size(self, pixel_size: float, *, source: str = "user") -> TiltSeriesFile:
        """A copy whose pixel size (nm) is ``pixel_size``, in the geometry too.

        The file's own value, if any, is kept in ``metadata["file_pixel_size"]``;
        ``metadata["pixel_size_source"]`` says where the new one came from.
        """
        value = float(pixel_size)
        if not math.isfinite(value) or value <= 0:
            raise GeometryError(f"the pixel size must be a positive number of nm, got {pixel_size!r}")
        metadata = dict(self.metadata, pixel_size_source=source, file_pixel_size=self.pixel_size)
        geometry = None
        if self.geometry is not None:
            geometry = self.geometry.replace(pixel_size=value, pixel_unit="nm")
        return dataclasses.replace(self, pixel_size=value, pixel_unit="nm", geometry=geometry,
                                   metadata=metadata, warnings=list(self.warnings))

    def with_start_step(self, start: float, step: float) -> TiltSeriesFile:
        """A copy whose angles are ``start, start + step, ...`` (one per image)."""
        angles = angles_from_start_step(float(start), float(step), self.n_tilts)
        return self.with_angles(angles, source=f"start {start:g}°, step {step:g}°")

    def summary(self) -> str:
        """One line describing the stack and its geometry."""
        n, rows, cols = self.shape
        s = f"{self.path.name}: {n} × {rows} × {cols} {np.dtype(self.data.dtype).name}"
        if self.geometry is not None:
            s += f"; {self.geometry.summary()} (angles from {self.angle_source})"
        elif self.pixel_size:
            s += f"; pixel {self.pixel_size:g} {self.pixel_unit}; no tilt angles"
        return s


@dataclass
class RawRead:
    """What a format reader found, before the common checks (internal)."""

    data: Any
    angles: np.ndarray | None = None
    angle_source: str = ""
    tilt_axis: float | None = None
    tilt_axis_source: str = ""
    pixel_size: float | None = None  # nm
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sidecar_stems: list[str] = field(default_factory=list)
