"""Difference maps: a method's volume minus a reference, after an intensity fit."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._napari._layers import volume_metadata
from ..errors import GeometryError

__all__ = ["DIVERGING", "add_difference_layer", "fitted_difference"]

DIVERGING = "tomoprior blue-black-red"


def fitted_difference(volume: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``a · volume + b − reference`` with ``a, b`` fitted by least squares.

    Different methods give densities on different scales (WBP, SIRT, a
    network output); the fit removes that before the voxels are compared.
    """
    v = np.asarray(volume, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    if v.shape != r.shape:
        raise GeometryError(
            f"cannot subtract volumes of shapes {v.shape} and {r.shape}: use the same tilt "
            "selection, binning, thickness and slice range"
        )
    x = v.ravel().astype(np.float64)
    y = r.ravel().astype(np.float64)
    xm, ym = x.mean(), y.mean()
    var = float(((x - xm) ** 2).sum())
    a = float(((x - xm) * (y - ym)).sum()) / var if var > 0 else 1.0
    b = ym - a * xm
    return (a * v + b - r).astype(np.float32)


def _colormap() -> Any:
    from napari.utils.colormaps import Colormap

    return Colormap(
        colors=[[0.25, 0.55, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.35, 0.2, 1.0]],
        name=DIVERGING,
        display_name="blue-black-red",
    )


def add_difference_layer(viewer: Any, layer: Any, reference: Any, label: str = "") -> Any:
    """Add ``layer − reference`` (fitted) as a new layer with a symmetric diverging colormap."""
    diff = fitted_difference(layer.data, reference.data)
    lim = float(np.percentile(np.abs(diff[:: max(1, diff.size // 400_000)]), 99.5)) or 1.0
    name = label or f"{layer.name} − {reference.name}"
    md = volume_metadata(
        pixel_size=layer.metadata.get("pixel_size"),
        pixel_unit=layer.metadata.get("pixel_unit") or "nm",
        source=layer.metadata.get("source", ""),
        difference_of=[layer.name, reference.name],
    )
    return viewer.add_image(
        diff,
        name=name,
        scale=tuple(layer.scale),
        translate=tuple(layer.translate),
        units=tuple(str(u) for u in layer.units),
        axis_labels=tuple(layer.axis_labels),
        colormap=_colormap(),
        contrast_limits=(-lim, lim),
        metadata=md,
        rgb=False,
    )
