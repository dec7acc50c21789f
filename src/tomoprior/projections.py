"""Virtual projections of a reconstructed volume at any tilt angles, in either frame.

:func:`render_projections` projects a volume from any method (the volume
:func:`tomoprior.run` returns, in the frame of the input images) at new
angles. ``frame="input"`` returns images as the microscope would record
them for the geometry's tilt axis (quarter turns and the fine axis rotation
undone, optional per-frame shift corrections undone), so they sit beside
the measured frames of the same series; ``frame="canonical"`` returns them
with the tilt axis along the rows, as the reconstruction engine sees them.
The INR's own :func:`tomoprior.algorithms.inr.render_projections` takes the
same ``frame`` option.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import GeometryError
from .geometry import TiltGeometry
from .operators import make_projector
from .transforms import canonical_turns, volume_to_canonical, warp_images

__all__ = ["canonical_to_frame", "render_projections"]


def canonical_to_frame(images: np.ndarray, tilt_axis: float,
                       shifts: np.ndarray | None = None) -> np.ndarray:
    """Canonical images (tilt axis along the rows) turned into the input frame of ``tilt_axis``,
    displaced by minus ``shifts`` (corrections, ``(n, 2)``).

    The inverse of :func:`~tomoprior.transforms.orient_images`, image by image, as
    :func:`~tomoprior.transforms.series_from_canonical` does for a whole geometry:
    quarter turns are exact, a fine axis rotation and shifts resample (bilinear).
    """
    k, residual = canonical_turns(tilt_axis)
    out = np.ascontiguousarray(np.rot90(np.asarray(images, np.float32), k, axes=(-2, -1)))
    has_shift = shifts is not None and np.any(np.asarray(shifts) != 0)
    if has_shift or abs(residual) > 1e-9:
        t = torch.from_numpy(out)
        with torch.no_grad():
            if has_shift:
                t = warp_images(t, -torch.as_tensor(np.asarray(shifts), dtype=torch.float32), None)
            if abs(residual) > 1e-9:
                t = warp_images(t, None, -float(residual))
        out = t.numpy()
    return np.ascontiguousarray(out, dtype=np.float32)


def render_projections(
    volume: np.ndarray,
    geometry: TiltGeometry,
    angles: Sequence[float] | np.ndarray,
    *,
    frame: str = "input",
    shifts: np.ndarray | None = None,
    backend: str = "sparse",
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Projections of ``volume`` at ``angles``.

    Parameters
    ----------
    volume : (z, y, x)
        A reconstruction in the frame of the input images (what
        :func:`tomoprior.run` yields for ``geometry``).
    geometry : TiltGeometry
        The geometry it was reconstructed with (its tilt axis is used).
    angles : degrees
        Any tilt angles, measured or not.
    frame : {"input", "canonical"}
        Images as recorded (the tilt axis as in ``geometry``) or with the
        tilt axis along the rows.
    shifts : (n_angles, 2), optional
        With ``frame="input"``: shift corrections the new images should
        carry (their content is displaced by minus these); default none.
    backend, device
        Projector backend and device.

    Returns
    -------
    ndarray (n_angles, rows, cols), float32, in the data's units.
    """
    if frame not in ("input", "canonical"):
        raise GeometryError(f"frame must be 'input' or 'canonical', got {frame!r}")
    ang = np.asarray(angles, dtype=np.float64).reshape(-1)
    if ang.size == 0:
        raise GeometryError("no angles to project at")
    if not np.all(np.isfinite(ang)) or np.any(np.abs(ang) > 90):
        raise GeometryError("projection angles must be finite and within ±90°")
    vc = np.ascontiguousarray(volume_to_canonical(np.asarray(volume, np.float32), geometry))
    op = make_projector(ang, vc.shape, vc.shape[2], backend=backend, device=device)
    with torch.no_grad():
        proj = op(torch.from_numpy(vc).to(op.device)).cpu().numpy().astype(np.float32)
    if frame == "canonical":
        return proj
    if shifts is not None and np.shape(shifts) != (ang.size, 2):
        raise GeometryError(f"shifts must be (n_angles, 2) = ({ang.size}, 2), got {np.shape(shifts)}")
    return canonical_to_frame(proj, geometry.tilt_axis, shifts)
