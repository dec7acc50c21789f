"""The measured advice beside a learned method: which setting held on unseen specimens.

Shown by the method panel while a learned method (``restore``,
``restore_tv``, DIP-TV) is chosen: the best learned setting of the
unseen-family benchmark against CS-TV (:mod:`tomoprior.recommend`), and a
button that selects that method with those parameters.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from ..recommend import LEARNED, Recommendation, recommendation

__all__ = ["RecommendationBox"]


class RecommendationBox(QWidget):
    """Advice text plus "Use these settings"; hidden for methods that learned nothing."""

    #: (method name, parameters) of the recommended setting
    apply = Signal(str, dict)

    def __init__(self, parent: QWidget | None = None,
                 advice: Recommendation | None = None) -> None:
        super().__init__(parent)
        self.advice = advice if advice is not None else recommendation()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: #c8a15a;")
        self.button = QPushButton("Use these settings")
        self.button.clicked.connect(self._apply)
        lay.addWidget(self.label)
        lay.addWidget(self.button)
        if self.advice is not None:
            self.label.setText(self.advice.text())
            self.label.setToolTip(f"From {self.advice.source}: every learned row, "
                                  "mean SSIM over the families the network never saw")
            self.button.setToolTip(f"Select {self.advice.method} with "
                                   + ", ".join(f"{k}={v}" for k, v in self.advice.params.items()))
        self.hide()

    def show_for(self, method: str) -> None:
        """Visible only for the learned methods, and only when the package has the table."""
        self.setVisible(self.advice is not None and method in LEARNED)

    def _apply(self, *_: Any) -> None:
        if self.advice is not None:
            self.apply.emit(self.advice.method, dict(self.advice.params))
