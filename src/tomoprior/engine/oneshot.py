"""``tomoprior.reconstruct``: the whole run in one call, for scripts that want only the volume."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError, GeometryError
from ..geometry import TiltGeometry

__all__ = ["reconstruct"]


def reconstruct(
    series: Any,
    angles: Any,
    method: str = "sirt",
    *,
    tilt_axis: str | float = "horizontal",
    angles_unit: str = "deg",
    pixel_size: float | None = None,
    **params: Any,
) -> np.ndarray:
    """Reconstruct a tilt series in one call and return the volume.

    The streaming :func:`tomoprior.run` shows each step, stops on request
    and records the provenance; this function runs it to the end, for code
    that wants only the result (as ``skimage.transform.iradon`` or
    ``tomopy.recon`` do).

    Parameters
    ----------
    series : array (n_tilts, rows, cols)
        One image per tilt.
    angles : sequence of float or TiltGeometry
        Tilt angles, one per image, in degrees (or ``angles_unit="rad"``);
        or a :class:`~tomoprior.TiltGeometry`.
    method : str
        Any method of ``tomoprior methods`` (``"wbp"``, ``"sirt"``, ``"cstv"``,
        ``"diptv"``, ``"inr"``, ``"restore"``, ``"restore_tv"``), in any case.
    tilt_axis : "horizontal", "vertical" or float
        Orientation of the tilt axis in the images.
    angles_unit : {"deg", "rad"}
        Unit of ``angles``. Angles given in degrees that look like radians
        (all within ±1.6 and spanning more than 0.5) get a warning.
    pixel_size : float, optional
        Pixel size in nm (recorded in the geometry).
    **params
        Anything :func:`tomoprior.run` takes: ``iterations``, ``bin``,
        ``tilt_range``, ``device``, method parameters such as ``lam``.

    Returns
    -------
    ndarray
        The volume ``(z, y, x)``, float32, in the frame of the images.

    Examples
    --------
    >>> import numpy as np, tomoprior
    >>> series = np.random.default_rng(0).random((31, 32, 32), dtype=np.float32)
    >>> vol = tomoprior.reconstruct(series, np.linspace(-60, 60, 31), "sirt", iterations=5)
    >>> vol.shape
    (32, 32, 32)
    """
    from .entry import run

    if isinstance(angles, TiltGeometry):
        geometry = angles
    else:
        if angles_unit not in ("deg", "rad"):
            raise GeometryError(f"angles_unit must be 'deg' or 'rad', got {angles_unit!r}")
        try:
            a = np.asarray(angles, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise GeometryError("angles must be numbers, one per image") from None
        if angles_unit == "rad":
            a = np.degrees(a)
        geometry = TiltGeometry(angles=a, tilt_axis=tilt_axis, pixel_size=pixel_size)
    rec = run(method, series, geometry, **params)
    last = None
    with rec:
        for last in rec:
            pass
    if last is None:
        raise DataError("the reconstruction produced no volume")
    return np.asarray(last.volume, np.float32)
