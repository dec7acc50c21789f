"""The one result layer a run updates in place, with robust automatic contrast."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._napari._layers import robust_limits

__all__ = ["LiveLayer", "robust_limits"]


class LiveLayer:
    """Creates its image layer on the first volume and updates it in place after.

    The contrast follows the volume (robust percentiles) until the user
    changes the contrast limits of the layer by hand.
    """

    def __init__(self, viewer: Any, layer: Any = None) -> None:
        self.viewer = viewer
        self.layer = layer
        self.updates = 0
        self.auto_contrast = True
        self._contrast_at = -math.inf
        self._contrast_of: Any = None  # the volume the contrast was last computed for
        self._units: tuple | None = None
        self._updating = False
        if layer is not None:
            self._connect(layer)

    @property
    def alive(self) -> bool:
        return self.layer is not None and self.layer in self.viewer.layers

    def _connect(self, layer: Any) -> None:
        layer.events.contrast_limits.connect(self._on_contrast)

    def _on_contrast(self, event: Any = None) -> None:
        if not self._updating:
            self.auto_contrast = False

    def show(
        self,
        volume: np.ndarray,
        *,
        name: str,
        scale: Sequence[float],
        translate: Sequence[float] = (0.0, 0.0, 0.0),
        metadata: dict | None = None,
        axis_labels: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        final: bool = False,
    ) -> Any:
        """Put ``volume`` on screen; returns the layer.

        ``axis_labels`` default to ``("z", "y", "x")`` for 3D data; ``units`` (per
        axis, e.g. ``("nm",) * 3``) default to napari's pixels. The automatic
        contrast follows the volume at most once a second (and on the ``final`` one).
        """
        if axis_labels is None and np.ndim(volume) == 3:
            axis_labels = ("z", "y", "x")
        self._updating = True
        try:
            if not self.alive:
                self.layer = self.viewer.add_image(
                    volume,
                    name=name,
                    scale=tuple(scale),
                    translate=tuple(translate),
                    metadata=dict(metadata or {}),
                    colormap="gray",
                    rgb=False,  # a slab 3 or 4 slices thick is not a colour image
                    **({} if axis_labels is None else {"axis_labels": tuple(axis_labels)}),
                    **({} if units is None else {"units": tuple(units)}),
                )
                self._connect(self.layer)
            else:
                layer = self.layer
                if layer.data is not volume:  # a run's final picture is its last step's
                    layer.data = volume  # the data update and its redraw: ~70-80 ms here
                if tuple(layer.scale) != tuple(scale):
                    layer.scale = tuple(scale)
                if tuple(layer.translate) != tuple(translate):
                    layer.translate = tuple(translate)
                if units is not None and tuple(units) != self._units:
                    layer.units = tuple(units)
                if metadata is not None and any(  # setting metadata costs an event round
                    k not in layer.metadata or _differs(layer.metadata[k], v)
                    for k, v in metadata.items()
                ):
                    layer.metadata = {**layer.metadata, **metadata}
                if layer.name != name:
                    layer.name = name
            now = time.monotonic()
            due = now - self._contrast_at >= CONTRAST_EVERY_S
            if self.auto_contrast and (due or final) and volume is not self._contrast_of:
                self._contrast_at, self._contrast_of = now, volume
                self.set_contrast(*robust_limits(volume, n=_CONTRAST_SAMPLES),
                                  full=_data_range(volume))
        finally:
            self._updating = False
        if units is not None:
            self._units = tuple(units)  # what the layer has now: no unit lookups per step
        self.updates += 1
        return self.layer

    def set_contrast(self, lo: float, hi: float, full: tuple[float, float] | None = None) -> None:
        """Contrast limits ``(lo, hi)``; the slider's range becomes ``full`` (data min, max)."""
        layer = self.layer
        if layer is None:
            return
        updating, self._updating = self._updating, True
        try:
            a, b = full if full is not None else (lo, hi)
            a, b = min(a, lo), max(b, hi)
            # each assignment redraws the canvas (~70 ms under software OpenGL): skip the
            # ones nobody could see, a change under 0.5 % of the range
            if np.isfinite(a) and np.isfinite(b) and b > a \
                    and not _close((a, b), layer.contrast_limits_range):
                layer.contrast_limits_range = (a, b)
            if not _close((lo, hi), layer.contrast_limits):
                layer.contrast_limits = (lo, hi)
        finally:
            self._updating = updating

    def rename(self, name: str) -> None:
        if self.alive and self.layer.name != name:
            self.layer.name = name


CONTRAST_EVERY_S = 1.0  # the automatic contrast between two shown steps at most this often
_CONTRAST_SAMPLES = 100_000  # percentiles of 1e5 voxels: ~4 ms on the GUI thread


def _data_range(volume: np.ndarray) -> tuple[float, float]:
    """(min, max) of a volume, NaNs ignored; plain min/max first (no NaN mask copy)."""
    v = np.asarray(volume)
    lo, hi = float(v.min()), float(v.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        finite = v[np.isfinite(v)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return lo, hi


def _close(new: Sequence[float], old: Sequence[float], tol: float = 0.005) -> bool:
    """Whether two (low, high) pairs differ by less than ``tol`` of the larger span."""
    span = max(abs(float(new[1]) - float(new[0])), abs(float(old[1]) - float(old[0])), 1e-30)
    return abs(float(new[0]) - float(old[0])) <= tol * span \
        and abs(float(new[1]) - float(old[1])) <= tol * span


def shared_limits(volumes: Sequence[np.ndarray], n: int = 400_000) -> list[tuple[float, float]]:
    """Contrast limits that show every volume on the scale of the first one.

    Each volume is fitted to the first by a least-squares scale ``a``; the
    limits are the union of the robust percentiles of the scaled volumes,
    divided back by each ``a``. Volumes of another shape than the first (or
    with a non-positive fit) keep their own robust limits.
    """
    if not volumes:
        return []
    first = np.asarray(volumes[0])
    k = max(1, first.size // n)
    r = first.ravel()[::k].astype(np.float64)
    scales: list[float | None] = []
    lows, highs = [], []
    for v in volumes:
        v = np.asarray(v)
        a = None
        if v.shape == first.shape:
            x = v.ravel()[::k].astype(np.float64)
            xx = float(x @ x)
            a = float(x @ r) / xx if xx > 0 else None
            if a is not None and not (np.isfinite(a) and a > 0):
                a = None
        scales.append(a)
        if a is not None:
            lo, hi = robust_limits(a * v.ravel()[::k], n=n)
            lows.append(lo)
            highs.append(hi)
    lo, hi = (min(lows), max(highs)) if lows else (0.0, 1.0)
    return [
        (lo / a, hi / a) if a is not None else robust_limits(v, n=n)
        for a, v in zip(scales, volumes)
    ]


def _differs(a: Any, b: Any) -> bool:
    """Whether two metadata values differ (arrays compared by content)."""
    if a is b:
        return False
    try:
        return bool(np.any(np.asarray(a, dtype=object) != np.asarray(b, dtype=object))) \
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else bool(a != b)
    except (TypeError, ValueError):
        return True
