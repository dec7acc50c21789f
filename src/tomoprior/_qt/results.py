"""Names, scale, placement and metadata of result layers (shared by both widgets)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._napari._layers import volume_metadata
from ..step import Step

__all__ = ["layer_name", "placement", "result_metadata"]


def layer_name(
    label: str, step: Step | None, series: str, state: str = "running", iterative: bool = True
) -> str:
    """E.g. ``"SIRT [it 40/100] needle_haadf"``; one-shot methods have no count."""
    if step is not None and step.phase == "preview":
        core = f"{label} [preview: WBP]"
    elif step is None or not iterative:
        core = label
    elif state == "stopped":
        total = f"/{step.total}" if step.total else ""
        core = f"{label} [stopped at it {step.iteration}{total}]"
    elif step.total:
        core = f"{label} [it {step.iteration}/{step.total}]"
    else:
        core = f"{label} [it {step.iteration}]"
    if state == "failed":
        core += " (failed)"
    return f"{core} {series}"


def placement(
    rec: Any,
) -> tuple[tuple[float, float, float], tuple[float, float, float], float | None, str]:
    """``(scale, translate, pixel_size, unit)`` of a run's volume layer.

    The scale is the binned pixel size (the binning factor in pixels when
    the series has no pixel size); a slab of slices is placed where it
    belongs in the full volume (``slab_translate() × scale``).
    """
    p = rec.prepared
    ps = p.geometry.pixel_size
    unit = p.geometry.pixel_unit if ps else "px"
    s = float(ps) if ps else float(p.binning)
    scale = (s, s, s)
    translate = (
        tuple(float(t) * s for t in p.slab_translate())
        if p.slab != (0, p.full_y)
        else (0.0, 0.0, 0.0)
    )
    return scale, translate, (float(ps) if ps else None), unit


def _jsonable(value: Any) -> Any:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def result_metadata(
    rec: Any, source: str, *, final: bool, step: Step | None = None, **extra: Any
) -> dict[str, Any]:
    """Metadata of a result layer; a finished run adds ``provenance`` (and ``poses``)."""
    _, _, ps, unit = placement(rec)
    md = volume_metadata(
        pixel_size=ps,
        pixel_unit=unit,
        source=source,
        run_state=("finished" if final else "running"),
        **extra,
    )
    if final:
        prov = rec.provenance()
        poses = None if step is None else step.poses
        if poses is not None:
            poses = _jsonable(poses)
            md["poses"] = poses
            prov.setdefault("result", {})["poses"] = poses
        md["provenance"] = prov
    return md
