"""Small layout and dialog helpers shared by the dock widgets."""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QMessageBox, QScrollArea, QVBoxLayout, QWidget

__all__ = ["ScrollHost", "ask_stop_and_restart"]


class ScrollHost(QWidget):
    """A dock widget whose content sits in a vertical scroll area.

    Docks can be short, so the content scrolls vertically; its width is never
    cut: the minimum width follows the content's (themes change it after
    construction, hence computed on demand).
    """

    def set_content(self, content: QWidget) -> None:
        self._content = content
        self._scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        content = getattr(self, "_content", None)
        if content is None:
            return hint
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        width = content.minimumSizeHint().width() + bar + 2 * self._scroll.frameWidth() + 2
        return QSize(max(hint.width(), width), hint.height())


def ask_stop_and_restart(parent: QWidget, what: str = "A reconstruction") -> bool:
    """Ask whether to stop the current run and start the new one."""
    answer = QMessageBox.question(
        parent,
        "Run in progress",
        f"{what} is running.\n\nStop it and start the new one?",
        QMessageBox.Yes | QMessageBox.Cancel,
        QMessageBox.Cancel,
    )
    return answer == QMessageBox.Yes
