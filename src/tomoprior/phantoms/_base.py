"""The :class:`Phantom` container shared by every synthetic specimen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from ._render import downsample_mask, downsample_volume

__all__ = ["Phantom", "check_size", "check_supersample"]


def check_size(size: int, name: str = "size", minimum: int = 4) -> int:
    n = int(size)
    if n != size or n < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {size!r}")
    return n


def check_supersample(supersample: int) -> int:
    s = int(supersample)
    if s != supersample or s < 1:
        raise DataError(f"supersample must be a positive integer, got {supersample!r}")
    return s


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic specimen: its volume, masks, and the pieces it is made of.

    Attributes
    ----------
    name : str
        Registry name (``"pt_haadf"``, ``"blobs"``, ...).
    volume : ndarray, float32 (z, y, x)
        Non-negative density, at ``info["supersample"]`` times the nominal size.
    specimen_mask : ndarray of bool
        Where the specimen is, dilated by about 1.5 (coarse) voxels: the
        region for masked metrics.
    particle_mask, support_mask : ndarray of bool or None
        Dense particles and their support, where the phantom has them
        (disjoint; each true where at least half of a voxel is covered).
    particles : ndarray (n, 4) or None
        One row ``(z, y, x, radius)`` per particle, in voxels of ``volume``
        (fractional indices of the centre).
    components : list of (str, ndarray)
        ``(kind, volume)`` pieces that sum to ``volume``. :func:`simulate`
        uses them for per-tilt particle contrast (kinds ``"support"`` and
        ``"particles_<k>"``); a single ``("all", volume)`` by default.
    info : dict
        Provenance and parameters: at least ``size``, ``supersample`` and
        ``seed``; pixel size and contrast for the Pt specimens.

    Notes
    -----
    ``volume`` has ``supersample`` fine voxels per nominal voxel. Use
    :meth:`coarse` (or :meth:`binned`) for the ground truth at the nominal
    size, which is what a reconstruction from :func:`simulate`'s tilt series
    should be compared against.
    """

    name: str
    volume: np.ndarray
    specimen_mask: np.ndarray
    particle_mask: np.ndarray | None = None
    support_mask: np.ndarray | None = None
    particles: np.ndarray | None = None
    components: list[tuple[str, np.ndarray]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        vol = np.asarray(self.volume, dtype=np.float32)
        if vol.ndim != 3:
            raise DataError(f"a phantom volume must be (z, y, x), got shape {vol.shape}")
        object.__setattr__(self, "volume", vol)
        if not self.components:
            object.__setattr__(self, "components", [("all", vol)])
        for name in ("specimen_mask", "particle_mask", "support_mask"):
            m = getattr(self, name)
            if m is not None and m.shape != vol.shape:
                raise DataError(f"{name} has shape {m.shape}, the volume {vol.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.volume.shape)  # type: ignore[return-value]

    @property
    def supersample(self) -> int:
        """Fine voxels per nominal voxel along each axis (1: nominal size)."""
        return int(self.info.get("supersample", 1))

    def binned(self, factor: int) -> Phantom:
        """The phantom with ``factor``-cubed voxel blocks averaged.

        Volume and components are block means (:func:`downsample_volume`),
        masks are true where at least half a block is, particle coordinates
        and radii are converted to the coarse voxels.
        """
        factor = int(factor)
        if factor == 1:
            return self
        if factor < 1:
            raise DataError(f"binning factor must be >= 1, got {factor}")
        vol = downsample_volume(self.volume, factor)
        comps = [
            (kind, vol if c is self.volume else downsample_volume(c, factor))
            for kind, c in self.components
        ]
        parts = None
        if self.particles is not None:
            parts = np.array(self.particles, dtype=np.float64, copy=True)
            parts[:, :3] = (parts[:, :3] + 0.5) / factor - 0.5
            parts[:, 3] /= factor
        pmask = None if self.particle_mask is None else downsample_mask(self.particle_mask, factor)
        smask = None if self.support_mask is None else downsample_mask(self.support_mask, factor)
        if pmask is not None and smask is not None:
            smask &= ~pmask  # keep the two disjoint where a block is split half and half
        info = dict(self.info)
        s = self.supersample
        if s % factor == 0:
            info["supersample"] = s // factor
        else:  # binned past the nominal size: the binned grid becomes the nominal one
            info["supersample"] = 1
            info["size"] = vol.shape[1]
            if info.get("pixel_size") is not None:
                info["pixel_size"] = info["pixel_size"] * factor / s
        return dataclasses.replace(
            self,
            volume=vol,
            specimen_mask=downsample_mask(self.specimen_mask, factor),
            particle_mask=pmask,
            support_mask=smask,
            particles=parts,
            components=comps,
            info=info,
        )

    def coarse(self) -> Phantom:
        """The ground truth at the nominal size (binned by ``supersample``)."""
        return self.binned(self.supersample)

    def __repr__(self) -> str:
        n = 0 if self.particles is None else len(self.particles)
        return (
            f"Phantom({self.name!r}, shape={self.shape}, supersample={self.supersample}, "
            f"particles={n}, components={[k for k, _ in self.components]})"
        )
