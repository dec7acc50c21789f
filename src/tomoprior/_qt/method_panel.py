"""Method selector and the chosen method's parameters, built from the registry.

Every entry of :data:`tomoprior.algorithms.METHODS` gets one page of
parameter fields made from its :class:`Param` specs (tooltips from
``Param.help``); advanced ones are folded into a collapsible section.
Iterations and the live-update interval default to the method's
``default_iterations`` and ``default_every``. Pages are kept, so switching
methods does not lose edits.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..algorithms import METHODS, Method
from ..errors import ParameterError
from .param_widgets import ParamField
from .recommendation import RecommendationBox

__all__ = ["MethodPage", "MethodPanel"]


class MethodPage(QWidget):
    """Parameter fields of one method (and its iterations unless ``iterations=False``)."""

    def __init__(
        self,
        method: Method,
        parent: QWidget | None = None,
        *,
        iterations: bool = True,
        description: bool = True,
    ) -> None:
        super().__init__(parent)
        self.method = method
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        if description:
            desc = QLabel(method.help)
            desc.setWordWrap(True)
            desc.setStyleSheet("color: gray;")
            if method.citation:
                desc.setToolTip(method.citation)
            lay.addWidget(desc)
        basic = QFormLayout()
        lay.addLayout(basic)
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 10_000_000)
        self.iterations.setValue(method.default_iterations)
        self.iterations.setToolTip("Number of iterations of the method")
        self.every = QSpinBox()
        self.every.setRange(1, 1_000_000)
        self.every.setValue(method.default_every)
        self.every.setSuffix(" it")
        self.every.setToolTip("Show the volume every this many iterations (live view)")
        # created after iterations and every: the tab order follows the layout
        self.fields = {p.name: ParamField(p) for p in method.params}
        if method.capabilities.iterative and iterations:
            basic.addRow("Iterations", self.iterations)
            basic.addRow("Update every", self.every)
        else:
            self.iterations.hide()
            self.every.hide()
        advanced = [f for f in self.fields.values() if f.param.advanced]
        for f in self.fields.values():
            if not f.param.advanced:
                basic.addRow(f.label, f.widget.native)
        self.levels_panel = None  # grey levels on a histogram, for the discrete methods
        if "levels" in self.fields and not self.fields["levels"].param.advanced:
            self.levels_panel = self._levels_panel()
            basic.addRow(self.levels_panel)
        self.collapsible = None
        if advanced:
            self.collapsible = QCollapsible("Advanced")
            inner = QWidget()
            form = QFormLayout(inner)
            form.setContentsMargins(0, 0, 0, 0)
            for f in advanced:
                form.addRow(f.label, f.widget.native)
            reset = QPushButton("Reset to defaults")
            reset.setToolTip(f"Restore every {method.label} parameter to its default")
            reset.clicked.connect(self.reset)
            form.addRow(reset)
            self.collapsible.addWidget(inner)
            lay.addWidget(self.collapsible)

        self._run_defaults = (method.default_iterations, method.default_every)
        for name in method.defaults_when:  # e.g. DIP-TV from the trained network: 100 steps
            self.fields[name].widget.changed.connect(self._follow_defaults)

    def _follow_defaults(self, *_: Any) -> None:
        """Iterations and interval that follow a parameter (the method's declaration), unless
        the user has set them."""
        try:
            new = self.method.run_defaults(self.params())
        except ValueError:
            return
        old, self._run_defaults = self._run_defaults, new
        if self.iterations.value() == old[0]:
            self.iterations.setValue(new[0])
        if self.every.value() == old[1]:
            self.every.setValue(new[1])

    def _levels_panel(self) -> Any:
        from .histogram_picker import LevelsPanel

        levels, count = self.fields["levels"], self.fields.get("n_levels")
        panel = LevelsPanel(read=lambda: str(levels.raw()), write=levels.set,
                            count=lambda: int(count.raw()) if count is not None else 2)
        levels.widget.changed.connect(panel.field_changed)
        return panel

    def params(self) -> dict[str, Any]:
        """Parsed parameter values; raises ValueError naming the field."""
        values = {name: f.value() for name, f in self.fields.items()}
        if self.levels_panel is not None:  # a comma list is checked here, before any run
            from ..algorithms._grey_levels import parse_levels

            f = self.fields["levels"]
            try:
                parse_levels(values["levels"])
            except ParameterError as exc:
                raise ParameterError(f"{f.label}: {exc}") from None
        return values

    def reset(self) -> None:
        for f in self.fields.values():
            f.reset()
        self._run_defaults = (self.method.default_iterations, self.method.default_every)
        self.iterations.setValue(self.method.default_iterations)
        self.every.setValue(self.method.default_every)


class MethodPanel(QGroupBox):
    """Method combo + a stacked page per method."""

    changed = Signal()

    def __init__(
        self, parent: QWidget | None = None, title: str = "Method", *, iterations: bool = True
    ) -> None:
        super().__init__(title, parent)
        self.combo = QComboBox()
        self.combo.setToolTip("Reconstruction method")
        self.pages: dict[str, MethodPage] = {}
        lay = QVBoxLayout(self)
        lay.addWidget(self.combo)
        # the measured advice for the learned methods (unseen-family benchmark)
        self.advice = RecommendationBox(self)
        self.advice.apply.connect(self.apply_settings)
        lay.addWidget(self.advice)
        # one page per method; only the current one is shown (hidden pages take no room)
        for name, m in METHODS.items():
            page = MethodPage(m, iterations=iterations)
            page.hide()
            self.pages[name] = page
            lay.addWidget(page)
            self.combo.addItem(m.label, name)
        self.combo.currentIndexChanged.connect(self._on_method)
        default = "sirt" if "sirt" in METHODS else next(iter(METHODS))
        self.set_method(default)

    def _on_method(self, index: int) -> None:
        current = self.combo.itemData(index)
        for name, page in self.pages.items():
            page.setVisible(name == current)
        self.advice.show_for(current)
        self.changed.emit()

    def apply_settings(self, method: str, params: dict) -> None:
        """Select ``method`` and set the given parameters (the others keep their values)."""
        self.set_method(method)
        for key, value in params.items():
            if key in self.page.fields:
                self.page.fields[key].set(value)

    def set_method(self, name: str) -> None:
        i = self.combo.findData(name)
        if i >= 0:
            self.combo.setCurrentIndex(i)
            self._on_method(i)

    @property
    def page(self) -> MethodPage:
        return self.pages[self.combo.currentData()]

    def method(self) -> Method:
        return self.page.method

    def params(self) -> dict[str, Any]:
        return self.page.params()

    def iterations(self) -> int:
        return self.page.iterations.value() if self.method().capabilities.iterative else 1

    def every(self) -> int:
        return self.page.every.value()
