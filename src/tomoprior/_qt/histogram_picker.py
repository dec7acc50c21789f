"""Grey levels on a volume's histogram, draggable: the method panel's picker for DART and TVR-DART.

:class:`HistogramPicker` draws the histogram of a volume (log counts, with
QPainter) and the grey levels as vertical lines, the thresholds half-way
between them dashed; a level dragged with the mouse stays between its
neighbours and is announced by ``levels_changed``.

:class:`LevelsPanel` puts it under a method's ``levels`` field: the histogram
is that of an image layer of the viewer (a SIRT or CS-TV result, or a DART
run's own), chosen in a combo box; "Find levels" fits the method's number of
levels to it (:func:`~tomoprior.algorithms._grey_levels.find_levels`) and
writes them into the field; dragging a line writes the field too, and typed
levels move the lines. A layer made by DART or TVR-DART shows the levels the
run found, and a line says how well they fit (a poor fit is one warning line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..algorithms._grey_levels import (
    POOR_FIT,
    find_levels,
    format_levels,
    histogram,
    parse_levels,
)
from ..errors import ParameterError, logger

__all__ = ["HistogramPicker", "LevelsPanel", "levels_of_layer", "sample"]

BAR_COLOR = QColor(120, 120, 120)
LEVEL_COLOR = QColor(80, 170, 255)
ACTIVE_COLOR = QColor(255, 160, 60)
GRAB_PX = 6  # how close to a line the mouse must be to take it
MARGIN = 4
SAMPLE = 2_000_000  # voxels of a layer the histogram is computed from at most


class HistogramPicker(QWidget):
    """A volume's histogram with draggable grey levels.

    ``set_volume(volume)`` computes the histogram, ``set_levels(levels)`` places the
    lines; ``levels_changed`` (a tuple of floats) follows every drag, once the mouse
    is released.
    """

    levels_changed = Signal(tuple)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.counts = np.zeros(0)
        self.edges = np.zeros(0)
        self._levels: list[float] = []
        self.active: int | None = None  # the line being dragged
        self.setMinimumHeight(70)
        self.setFixedHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setMouseTracking(True)
        self.setToolTip("Histogram of the volume (log counts) with the grey levels (solid) and "
                        "the thresholds between them (dashed): drag a level to move it")

    # -- data ------------------------------------------------------------------------------
    def set_volume(self, volume: Any) -> None:
        """Histogram of ``volume`` (None clears it)."""
        if volume is None:
            self.counts, self.edges = np.zeros(0), np.zeros(0)
        else:
            self.counts, self.edges = histogram(np.asarray(volume, np.float32))
        self.update()

    def set_levels(self, levels: Sequence[float]) -> None:
        self._levels = [float(v) for v in levels]
        self.active = None
        self.update()

    def levels(self) -> tuple[float, ...]:
        return tuple(self._levels)

    def value_range(self) -> tuple[float, float]:
        """The value axis: the histogram's range, widened to show every level."""
        vals = list(self._levels)
        if self.edges.size:
            vals += [float(self.edges[0]), float(self.edges[-1])]
        if not vals:
            return 0.0, 1.0
        lo, hi = min(vals), max(vals)
        pad = 0.03 * (hi - lo) if hi > lo else 0.5
        return lo - pad, hi + pad

    # -- geometry ----------------------------------------------------------------------------
    def _plot(self) -> QRectF:
        return QRectF(MARGIN, MARGIN, max(1, self.width() - 2 * MARGIN),
                      max(1, self.height() - 2 * MARGIN - 12))

    def x_of(self, value: float) -> float:
        r = self._plot()
        lo, hi = self.value_range()
        return r.left() + (value - lo) / (hi - lo) * r.width()

    def value_at(self, x: float) -> float:
        r = self._plot()
        lo, hi = self.value_range()
        return lo + (x - r.left()) / r.width() * (hi - lo)

    def nearest(self, x: float) -> int | None:
        """The level whose line is within ``GRAB_PX`` of ``x``, if any."""
        best, dist = None, GRAB_PX + 1.0
        for i, v in enumerate(self._levels):
            d = abs(self.x_of(v) - x)
            if d < dist:
                best, dist = i, d
        return best if dist <= GRAB_PX else None

    # -- mouse -------------------------------------------------------------------------------
    def mousePressEvent(self, event: Any) -> None:
        self.active = self.nearest(event.position().x() if hasattr(event, "position")
                                   else event.x())
        self.update()

    def mouseMoveEvent(self, event: Any) -> None:
        x = event.position().x() if hasattr(event, "position") else event.x()
        if self.active is None:
            self.setCursor(Qt.SizeHorCursor if self.nearest(x) is not None else Qt.ArrowCursor)
            return
        self._move(self.active, self.value_at(x))

    def mouseReleaseEvent(self, event: Any) -> None:
        if self.active is not None:
            self.active = None
            self.update()
            self.levels_changed.emit(self.levels())

    def _move(self, i: int, value: float) -> None:
        """Level ``i`` to ``value``, kept strictly between its neighbours."""
        lo, hi = self.value_range()
        gap = 1e-3 * (hi - lo)
        if i > 0:
            value = max(value, self._levels[i - 1] + gap)
        if i + 1 < len(self._levels):
            value = min(value, self._levels[i + 1] - gap)
        self._levels[i] = float(value)
        self.update()

    # -- painting ----------------------------------------------------------------------------
    def paintEvent(self, event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        r = self._plot()
        p.setPen(QPen(QColor(90, 90, 90)))
        p.drawRect(r)
        if self.counts.size:
            logc = np.log1p(self.counts)
            top = float(logc.max()) or 1.0
            path = QPainterPath(QPointF(self.x_of(float(self.edges[0])), r.bottom()))
            for c, a, b in zip(logc, self.edges[:-1], self.edges[1:]):
                y = r.bottom() - float(c) / top * r.height()
                path.lineTo(QPointF(self.x_of(float(a)), y))
                path.lineTo(QPointF(self.x_of(float(b)), y))
            path.lineTo(QPointF(self.x_of(float(self.edges[-1])), r.bottom()))
            p.fillPath(path, BAR_COLOR)
        dashed = QPen(LEVEL_COLOR, 1, Qt.DashLine)
        for a, b in zip(self._levels, self._levels[1:]):
            x = self.x_of(0.5 * (a + b))
            p.setPen(dashed)
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        font = QFont(self.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        for i, v in enumerate(self._levels):
            x = self.x_of(v)
            p.setPen(QPen(ACTIVE_COLOR if i == self.active else LEVEL_COLOR, 2))
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            p.drawText(QPointF(x + 2, r.bottom() + 11), f"{v:.3g}")
        p.end()


def sample(data: Any, voxels: int = SAMPLE) -> np.ndarray:
    """At most about ``voxels`` voxels of a (possibly lazy) volume, on a regular stride."""
    shape = tuple(int(n) for n in data.shape)
    step = max(1, math.ceil((math.prod(shape) / voxels) ** (1 / 3)))
    part = data[::step, ::step, ::step]
    return np.ascontiguousarray(np.asarray(part, np.float32))


def levels_of_layer(layer: Any) -> tuple[tuple[float, ...] | None, float | None]:
    """``(levels, level_fit)`` a DART or TVR-DART run recorded in a layer's metadata."""
    levels, fit, _ = _recorded(layer)
    return levels, fit


def _recorded(layer: Any) -> tuple[tuple[float, ...] | None, float | None, float]:
    """Levels, level fit and the fit below which the run's method calls it poor."""
    limit = POOR_FIT
    prov = (getattr(layer, "metadata", None) or {}).get("provenance") or {}
    result = prov.get("result") or {}
    text = result.get("levels")
    if prov.get("method") == "dart":
        from ..algorithms.dart import POOR_RESIDUAL_FIT

        limit = POOR_RESIDUAL_FIT
    if not isinstance(text, str):
        return None, None, limit
    try:
        levels = parse_levels(text)
    except ParameterError:
        return None, None, limit
    fit = result.get("level_fit")
    return ((None if levels == "auto" else levels), (float(fit) if fit is not None else None),
            limit)


class LevelsPanel(QWidget):
    """The picker tied to a method's ``levels`` field (see module notes).

    ``read()`` returns the field's text and ``write(text)`` sets it; ``count()`` the
    number of levels "Find levels" fits. ``viewer`` is napari's (the current one when
    not given; without one the panel only shows the typed levels).
    """

    def __init__(self, read: Callable[[], str], write: Callable[[str], None],
                 count: Callable[[], int], viewer: Any = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._read, self._write, self._count = read, write, count
        self._viewer = viewer
        self._watched: Any = None  # the layer whose data events are connected
        self._stale = True  # the histogram waits until the panel is shown
        self.picker = HistogramPicker()
        self.source = QComboBox()
        self.source.setToolTip("The volume whose histogram is shown (a SIRT or CS-TV result "
                               "shows the materials' peaks)")
        self.find_button = QPushButton("Find levels")
        self.find_button.setToolTip("Fit the number of levels to this histogram and use them")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: gray;")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Histogram of"))
        row.addWidget(self.source, 1)
        row.addWidget(self.find_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.picker)
        lay.addWidget(self.status)
        self.picker.levels_changed.connect(self._dragged)
        self.source.currentIndexChanged.connect(lambda _: self.refresh())
        self.find_button.clicked.connect(self.find)
        self._connect_viewer()
        self.refresh_sources()

    # -- the viewer ----------------------------------------------------------------------------
    def viewer(self) -> Any:
        if self._viewer is None:
            try:
                import napari

                self._viewer = napari.current_viewer()
            except Exception as exc:  # napari missing or without a window
                logger.debug("no napari viewer for the levels picker: %s", exc)
        return self._viewer

    def _connect_viewer(self) -> None:
        v = self.viewer()
        if v is None:
            return
        v.layers.events.inserted.connect(self._on_layers)
        v.layers.events.removed.connect(self._on_layers)
        self.destroyed.connect(lambda *_: _disconnect(v, self._on_layers))

    def _on_layers(self, event: Any = None) -> None:
        """A layer came or went: list the volumes again; a new volume is shown."""
        new = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        try:
            self.refresh_sources(prefer=getattr(new, "name", None))
        except RuntimeError:  # the panel was deleted: stop listening
            _disconnect(self._viewer, self._on_layers)

    def volumes(self) -> list[Any]:
        """The viewer's 3D image layers."""
        v = self.viewer()
        if v is None:
            return []
        return [lay for lay in v.layers
                if getattr(lay, "ndim", 0) == 3 and type(lay).__name__ == "Image"
                and not getattr(lay, "rgb", False)]

    def refresh_sources(self, prefer: str | None = None) -> None:
        """List the viewer's volumes; show ``prefer`` (a new layer) if it is one, else keep
        the chosen one, else take the newest."""
        layers = self.volumes()
        ids = [id(lay) for lay in layers]
        names = [lay.name for lay in layers]
        chosen = self.source.currentData()
        if prefer in names:
            index = names.index(prefer)
        elif chosen in ids:
            index = ids.index(chosen)
        else:
            index = len(layers) - 1
        self.source.blockSignals(True)
        self.source.clear()
        for lay in layers:
            self.source.addItem(lay.name, id(lay))
        self.source.setCurrentIndex(index)
        self.source.blockSignals(False)
        self.source.setEnabled(bool(layers))
        self.find_button.setEnabled(bool(layers))
        self.refresh()

    def layer(self) -> Any:
        """The chosen layer (found by identity: a running result is renamed as it goes)."""
        chosen = self.source.currentData()
        for lay in self.volumes():
            if id(lay) == chosen:
                return lay
        return None

    # -- showing -------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Histogram of the chosen layer; the levels of the field, or those its run found.

        A hidden panel (another method's page is shown) leaves the histogram for when it
        is shown.
        """
        lay = self.layer()
        self._watch(lay)
        if self.isVisible():
            self._stale = False
            self.picker.set_volume(None if lay is None else sample(lay.data))
        else:
            self._stale = True
        found, fit, limit = (None, None, POOR_FIT) if lay is None else _recorded(lay)
        typed = self.typed_levels()
        self.picker.set_levels(typed or found or ())
        if found is not None:
            poor = fit is not None and fit < limit
            line = f"{lay.name}: levels {format_levels(found)}"
            if fit is not None:
                line += f", level fit {fit:.2f}"
            if poor:
                line += " – poor: the specimen may not be made of a few densities"
            self.set_status(line, warn=poor)
        elif typed is None:
            self.set_status("levels='auto': the run finds them; 'Find levels' shows them here")
        else:
            self.set_status("")

    def set_status(self, text: str, warn: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: rgb(255, 160, 60);" if warn else "color: gray;")

    def _watch(self, layer: Any) -> None:
        """Follow the chosen layer's data (a running result updates in place)."""
        if layer is self._watched:
            return
        if self._watched is not None:
            for ev, slot in ((self._watched.events.data, self._on_data),
                             (self._watched.events.name, self._on_name)):
                try:
                    ev.disconnect(slot)
                except (TypeError, ValueError, RuntimeError):
                    pass
        self._watched = layer
        if layer is not None:
            layer.events.data.connect(self._on_data)
            layer.events.name.connect(self._on_name)

    def _on_data(self, *_: Any) -> None:
        try:
            if self.isVisible():
                self.refresh()
        except RuntimeError:  # the panel was deleted
            pass

    def _on_name(self, *_: Any) -> None:
        """The chosen layer was renamed (a running result counts its iterations)."""
        try:
            lay, i = self._watched, self.source.currentIndex()
            if lay is not None and i >= 0:
                self.source.setItemText(i, lay.name)
        except RuntimeError:  # the panel was deleted
            pass

    def typed_levels(self) -> tuple[float, ...] | None:
        """The field's levels, or None for 'auto' or text that is not (yet) valid."""
        try:
            levels = parse_levels(self._read())
        except ParameterError:
            return None
        return None if levels == "auto" else levels

    def field_changed(self, *_: Any) -> None:
        """The user typed in the levels field: move the lines."""
        typed = self.typed_levels()
        if typed is not None and typed != self.picker.levels():
            self.picker.set_levels(typed)

    # -- actions -------------------------------------------------------------------------------
    def _dragged(self, levels: tuple) -> None:
        self._write(format_levels(levels))

    def find(self) -> None:
        """Fit the method's number of levels to the chosen layer's histogram; use them."""
        lay = self.layer()
        if lay is None:
            return
        n = max(2, int(self._count()))
        found = find_levels(sample(lay.data), n)
        if not all(math.isfinite(v) for v in found.levels):
            return
        self.picker.set_levels(found.levels)
        self._write(format_levels(found.levels))
        self.set_status(f"{n} levels found on the histogram of {lay.name}")


def _disconnect(viewer: Any, slot: Callable) -> None:
    if viewer is None:
        return
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
        try:
            ev.disconnect(slot)
        except (TypeError, ValueError, RuntimeError):
            pass
