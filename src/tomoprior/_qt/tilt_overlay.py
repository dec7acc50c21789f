"""The tilt angle of the image in view, written on the canvas.

napari's slider counts images (0 … n−1); a microscopist thinks in degrees.
While a tilt series is the panel's layer and is visible, the viewer's text
overlay says which tilt is shown: ``"needle: tilt 39/77 at 0°"``. In a
filled-in series (``metadata["virtual_frames"]``, see :mod:`.fill_tilts`) a
virtual frame is marked, in orange: ``"needle filled ×4 (learned): tilt
2/305 at -75.5° · VIRTUAL (learned)"``.
"""

from __future__ import annotations

from typing import Any

from .._napari._layers import is_stack, stack_data
from .fill_tilts import virtual_frames

__all__ = ["VIRTUAL_COLOR", "TiltAngleOverlay"]

VIRTUAL_COLOR = "orange"


class TiltAngleOverlay:
    """Keeps ``viewer.text_overlay`` in step with the slider over a tilt-series layer."""

    def __init__(self, viewer: Any, layer_getter: Any) -> None:
        self.viewer = viewer
        self.layer = layer_getter
        self._owned = False
        viewer.dims.events.current_step.connect(self.refresh)
        viewer.dims.events.ndisplay.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)

    def text(self) -> str:
        """What the overlay says now ('' when no tilt image of the layer is in view)."""
        layer = self.layer()
        if layer is None or not is_stack(layer) or not layer.visible:
            return ""
        dims = self.viewer.dims
        if dims.ndisplay != 2 or 0 in dims.displayed[-2:]:
            return ""
        angles = list(layer.metadata.get("angles") or [])
        index = int(round(layer.world_to_data(dims.point)[0])) if hasattr(layer, "world_to_data") \
            else int(dims.current_step[0])
        n = int(stack_data(layer).shape[0])
        if not 0 <= index < n:
            return ""
        where = f"tilt {index + 1}/{n}"
        if len(angles) == n:
            where += f" at {float(angles[index]):g}°"
        virtual = virtual_frames(layer.metadata)
        if virtual is not None and index in virtual["indices"]:
            where += f" · VIRTUAL ({virtual['method']})"
        return f"{layer.name}: {where}"

    def refresh(self, *_: Any) -> None:
        text = self.text()
        # napari 0.9 moved it (viewer.text_overlay warns, as a toast over the canvas)
        overlays = getattr(getattr(self.viewer, "canvas", None), "overlays", None)
        overlay = getattr(overlays, "text", None) or self.viewer.text_overlay
        if text:
            overlay.color = VIRTUAL_COLOR if "· VIRTUAL" in text else "white"
            overlay.text = text
            overlay.position = "top_left"
            overlay.visible = True
            self._owned = True
        elif self._owned:  # only hide what this overlay showed
            overlay.visible = False
            overlay.text = ""
            self._owned = False
