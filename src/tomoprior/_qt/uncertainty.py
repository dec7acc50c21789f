"""Where to trust a result: the half-set and ensemble options, and the uncertainty layer.

:class:`TrustPanel` holds the options of a run (half sets, an ensemble of K
runs, the colour overlay); :class:`UncertaintyLayer` is the second layer a
run of that kind streams beside its result: the per-voxel standard deviation
of the members relative to the result's contrast
(:mod:`tomoprior.engine.halves`), placed like the result and updated in place.
As a colour overlay it is drawn over the result (additive, a heat map), so the
voxels the members disagree on light up; without, it is a plain grey layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QLabel, QSpinBox, QWidget

from ..engine.halves import MAX_MEMBERS

__all__ = ["OVERLAY", "TrustPanel", "UncertaintyLayer"]

#: how the map is drawn as a colour overlay, and as a layer of its own
OVERLAY = {"colormap": "inferno", "blending": "additive", "opacity": 0.55}
PLAIN = {"colormap": "gray", "blending": "translucent", "opacity": 1.0}


class TrustPanel(QGroupBox):
    """Half sets, ensemble size and the colour overlay, for one widget."""

    overlay_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Where to trust it", parent)
        self.halves = QCheckBox("Half sets: even and odd tilts apart")
        self.halves.setToolTip(
            "Reconstruct the even and the odd tilts separately (together about the time of one "
            "run): the result is their average, the resolution (x-y, z) comes from their Fourier "
            "shell correlation and an uncertainty layer from their difference")
        self.ensemble = QSpinBox()
        self.ensemble.setRange(1, MAX_MEMBERS)
        self.ensemble.setSpecialValueText("off")
        self.ensemble.setValue(1)
        self.ensemble.setToolTip(
            "K runs, each leaving out 1/K of the tilts and with its own seed: the result is "
            "their mean and the uncertainty layer their spread (K times the time of one run). "
            "With half sets: K pairs of half sets")
        self.overlay = QCheckBox("Show the uncertainty as a colour overlay")
        self.overlay.setChecked(True)
        self.overlay.setToolTip(
            "The uncertainty layer as a heat map over the result (additive blending); "
            "unticked, a grey layer of its own")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: gray;")
        form = QFormLayout(self)
        form.addRow(self.halves)
        form.addRow("Ensemble", self.ensemble)
        form.addRow(self.overlay)
        form.addRow(self.note)
        self.halves.toggled.connect(self._explain)
        self.ensemble.valueChanged.connect(self._explain)
        self.overlay.toggled.connect(self.overlay_changed.emit)
        self._explain()

    def options(self) -> dict[str, Any]:
        """The keywords of :func:`tomoprior.run`: ``halves`` and ``ensemble`` when set."""
        out: dict[str, Any] = {}
        k = self.ensemble.value()
        if self.halves.isChecked():
            out["halves"] = True
            if k > 1:
                out["ensemble"] = k
        elif k > 1:
            out["ensemble"] = k
        return out

    def _explain(self, *_: Any) -> None:
        k = self.ensemble.value()
        halves = self.halves.isChecked()
        if halves:
            runs = 2 * max(k, 1)
            text = (f"{runs} runs on half the tilts: resolution and uncertainty" if k > 1 else
                    "2 runs on half the tilts: resolution and uncertainty")
        elif k > 1:
            text = f"{k} runs, each without 1/{k} of the tilts: uncertainty"
        else:
            text = "One run: no resolution or uncertainty"
        self.note.setText(text)


class UncertaintyLayer:
    """The uncertainty layer of one run, created on the first map and updated in place."""

    def __init__(self, viewer: Any, overlay: bool = True) -> None:
        self.viewer = viewer
        self.layer: Any = None
        self.overlay = bool(overlay)
        self.updates = 0

    @property
    def alive(self) -> bool:
        return self.layer is not None and self.layer in self.viewer.layers

    def show(self, umap: np.ndarray, *, name: str, scale: Any, translate: Any,
             metadata: dict | None = None, units: Any = None) -> Any:
        """Put the map on screen (a new layer the first time); returns the layer."""
        hi = float(np.percentile(umap.ravel()[:: max(1, umap.size // 200_000)], 99.5))
        limits = (0.0, hi if hi > 0 else 1.0)
        if not self.alive:
            self.layer = self.viewer.add_image(
                umap, name=name, scale=tuple(scale), translate=tuple(translate),
                metadata=dict(metadata or {}), contrast_limits=limits, rgb=False,
                axis_labels=("z", "y", "x"), **({} if units is None else {"units": tuple(units)}),
                **(OVERLAY if self.overlay else PLAIN),
            )
        else:
            layer = self.layer
            layer.data = umap
            layer.contrast_limits_range = (0.0, max(limits[1], float(umap.max()) or 1.0))
            layer.contrast_limits = limits
            if metadata is not None:
                layer.metadata = {**layer.metadata, **metadata}
            if layer.name != name:
                layer.name = name
        self.updates += 1
        return self.layer

    def set_overlay(self, on: bool) -> None:
        """Colour overlay on the result, or a grey layer of its own."""
        self.overlay = bool(on)
        if self.alive:
            for key, value in (OVERLAY if on else PLAIN).items():
                setattr(self.layer, key, value)
