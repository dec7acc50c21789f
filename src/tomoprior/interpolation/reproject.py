"""Virtual frames by reprojection: reconstruct from the measured frames, project at the new angles.

The measured series is reconstructed with any method of the registry (CS-TV
by default) through :func:`tomoprior.engine.run_to_end`, and the volume is
projected at the virtual angles by :func:`tomoprior.projections.render_projections`
in the input's own frame (tilt axis and fine rotation as recorded, each
virtual frame displaced by the blend of its neighbours' shift corrections).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..geometry import TiltGeometry
from ._plan import AnglePlan

__all__ = ["reproject_frames"]


def reproject_frames(series: np.ndarray, geometry: TiltGeometry, plan: AnglePlan, *,
                     method: str = "cstv", virtual_shifts: np.ndarray | None = None,
                     device: str = "auto", progress: Callable[[str], None] | None = None,
                     **params: Any) -> tuple[np.ndarray, dict]:
    """The virtual frames of ``plan`` (plan order) and the reconstruction's provenance."""
    from ..engine import run
    from ..projections import render_projections

    rec = run(method, series, geometry, device=device, **params)
    last = None
    with rec:
        for last in rec:
            if progress is not None:
                progress(f"{rec.method.label} {last.phase} {last.iteration}")
    assert last is not None
    prov = rec.provenance()
    virtual = plan.angles[~plan.measured]
    if virtual.size == 0:
        return np.zeros((0, *series.shape[1:]), np.float32), prov
    frames = render_projections(last.volume, rec.prepared.geometry, virtual, frame="input",
                                shifts=virtual_shifts, device=rec.device)
    return frames, prov
