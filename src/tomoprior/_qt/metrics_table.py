"""The comparison's table: one row per method, quality figures, resolution and time."""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

__all__ = ["COLUMNS", "MetricsTable"]

#: (result key, header, tooltip, format)
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("method", "Method", "Reconstruction method and iterations done", "{}"),
    (
        "reprojection_residual",
        "Residual",
        "Relative reprojection residual ‖A x − y‖ / ‖y‖ over the kept tilts (lower fits the data "
        "more closely, noise included)",
        "{:.4f}",
    ),
    (
        "heldout_error",
        "Held-out",
        "Mean squared error on 5 % of the detector pixels held out of every fit (the same pixels "
        "for every method; lower predicts unseen data better). WBP fits no pixels, so it has none.",
        "{:.4g}",
    ),
    (
        "ssim",
        "SSIM",
        "Structural similarity to the reference volume, after a least-squares "
        "intensity fit (1 is identical)",
        "{:.3f}",
    ),
    (
        "psnr",
        "PSNR dB",
        "Peak signal-to-noise ratio against the reference volume, after a "
        "least-squares intensity fit",
        "{:.2f}",
    ),
    (
        "resolution",
        "Resolution xy / z",
        "Resolution in the x-y plane and along the beam (z) where the Fourier shell correlation "
        "of the even- and odd-tilt half sets falls below 0.143 (cones of ±20°; ≤: still above "
        "it at Nyquist). Tick \"Half sets\" to compute it. Both halves lack the same missing "
        "wedge: along z it says how reproducible the filling is, not that it is right",
        "{}",
    ),
    ("seconds", "Time (s)", "Compute time of the method", "{:.1f}"),
)

#: which way is better for each figure: the best value of a column is shown in bold
BETTER = {"reprojection_residual": "lower", "heldout_error": "lower", "ssim": "higher",
          "psnr": "higher", "seconds": "lower"}
_ARROW = {"lower": " ↓", "higher": " ↑"}


class MetricsTable(QTableWidget):
    """``results[row]`` holds the numbers shown in ``row``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        for col, (key, header, tip, _) in enumerate(COLUMNS):
            better = BETTER.get(key)
            item = QTableWidgetItem(header + _ARROW.get(better, ""))
            item.setToolTip(tip + (f". {better.capitalize()} is better; the best value is "
                                   "in bold." if better else ""))
            self.setHorizontalHeaderItem(col, item)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        hh = self.horizontalHeader()
        # the figures keep their full headers; the method's name takes the rest of the dock's
        # width and is elided when the dock is narrow (its tooltip has it whole)
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(0, QHeaderView.Stretch)
        self.setTextElideMode(Qt.ElideMiddle)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setSizeAdjustPolicy(QAbstractScrollArea.AdjustToContents)  # as tall as its rows
        self.setMinimumHeight(80)
        self.results: list[dict[str, Any]] = []

    def start_rows(self, labels: list[str]) -> None:
        self.clearContents()
        self.setRowCount(len(labels))
        self.results = [{"method": label} for label in labels]
        for row in range(len(labels)):
            self.set_status(row, "queued")
        self.resizeRowsToContents()

    def set_status(self, row: int, text: str) -> None:
        """The method cell: ``"SIRT (running)"``, ``"SIRT · 100 it"`` ..."""
        label = self.results[row]["method"]
        self._set(row, 0, f"{label} ({text})" if text else label)

    def set_results(self, row: int, results: dict[str, Any], note: str = "") -> None:
        """Show ``results`` (keys of :data:`COLUMNS`; ``"objective"``: the method's own, as text)."""
        r = self.results[row]
        r.update(results)
        its = r.get("iterations")
        text = r["method"] if its is None else f"{r['method']} · {its} it"
        if r.get("stopped"):
            text += " (stopped)"
        objective = r.get("objective")  # the method's own, under its name: not a column
        self._set(row, 0, text, COLUMNS[0][2] + (
            f". Its own objective at the end: {objective} (not comparable between methods)"
            if objective else ""))
        for col, (key, _, tip, fmt) in enumerate(COLUMNS):
            if col == 0:
                continue
            value = r.get(key)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                text = "—"
            else:
                text = fmt.format(value)
            self._set(row, col, text, note if note and key in ("ssim", "psnr") else tip)
        self._mark_best()

    def best_rows(self, key: str) -> list[int]:
        """Rows holding the best value of ``key`` (ties included); none for a lone value."""
        better = BETTER.get(key)
        values = [(row, r.get(key)) for row, r in enumerate(self.results)]
        values = [(row, float(v)) for row, v in values
                  if isinstance(v, (int, float)) and math.isfinite(v)]
        if better is None or len(values) < 2:
            return []
        pick = min if better == "lower" else max
        best = pick(v for _, v in values)
        return [row for row, v in values if v == best]

    def _mark_best(self) -> None:
        for col, (key, *_rest) in enumerate(COLUMNS):
            if key not in BETTER:
                continue
            best = set(self.best_rows(key))
            for row in range(self.rowCount()):
                item = self.item(row, col)
                if item is not None:
                    font = item.font()
                    font.setBold(row in best)
                    item.setFont(font)

    def value(self, row: int, key: str) -> Any:
        return self.results[row].get(key)

    def _set(self, row: int, col: int, text: str, tip: str = "") -> None:
        item = QTableWidgetItem(str(text))
        align = Qt.AlignLeft if col == 0 else Qt.AlignRight
        item.setTextAlignment(int(align | Qt.AlignVCenter))
        tip = tip or COLUMNS[col][2]
        if col == 0:  # the name may be elided in a narrow dock: the tooltip has it whole
            tip = f"{text}\n{tip}"
        item.setToolTip(tip)
        self.setItem(row, col, item)
