"""A dock's background work ends with the viewer's window, or with the dock.

napari does not call a dock widget's ``closeEvent`` when its window closes
or when the dock is removed (its close button): it unparents the widget and
deletes the dock later. A run still going would then report to widgets
being deleted, or outlive the window and fail as Python shuts down.
:class:`WorkGuard` ends a widget's work quietly (its ``end`` function, which
calls :meth:`~.controller.RunController.close`) at both moments, watching
only Qt events:

* the dock: the widget leaves its dock (napari sets its parent to None);
* the window: the main window the widget is docked in gets a close event.
  A programmatic close (``viewer.close()``) is never refused, so the work
  ends at once, before any widget is deleted. A close asked for by the user
  may be refused (napari asks first while something runs): the work ends
  when the window is then hidden by the close, not if it stays.

What is left running at interpreter exit is stopped and waited for by
:mod:`.controller`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMainWindow, QWidget

__all__ = ["WorkGuard"]


class WorkGuard(QObject):
    """Calls ``end`` when the widget's main window closes or the widget leaves its dock.

    Parameters
    ----------
    widget : QWidget
        The dock widget (the guard is its child).
    end : callable
        Ends the widget's work quietly; returns whether every worker thread
        has finished.

    Attributes
    ----------
    ended : int
        How many times the window or the dock ended the work.
    """

    def __init__(self, widget: QWidget, end: Callable[[], bool]) -> None:
        super().__init__(widget)
        self._widget = widget
        self._end = end
        self._docked = widget.parent() is not None
        self._watched: list[weakref.ref] = []  # the widget's ancestors, up to its window
        self._asked = False  # the user asked the window to close: it may say no
        self.ended = 0
        widget.installEventFilter(self)
        self._watch_ancestors()

    def end(self) -> bool:
        """End the widget's work now; whether every worker thread has finished."""
        self.ended += 1
        return bool(self._end())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.ParentChange:
            if obj is self._widget:
                if obj.parent() is not None:
                    self._docked = True
                elif self._docked:  # taken out of its dock: the dock is being removed
                    self._docked = False
                    self.end()
            self._watch_ancestors()
        elif isinstance(obj, QMainWindow):
            if kind == QEvent.Type.Close:
                if event.spontaneous():  # the user's: napari may ask, and the user say no
                    self._asked = True
                else:
                    self.end()
            elif kind == QEvent.Type.Hide and self._asked and not event.spontaneous():
                # hidden by the close itself (a minimised window is hidden by the system)
                self._asked = False
                self.end()
            elif kind == QEvent.Type.Show:
                self._asked = False
        return False

    def _watch_ancestors(self) -> None:
        """Filter the events of every ancestor (its own reparenting, the window's close)."""
        for ref in self._watched:
            obj = ref()
            if obj is not None:
                try:
                    obj.removeEventFilter(self)
                except RuntimeError:  # deleted
                    pass
        self._watched = []
        parent = self._widget.parentWidget()
        while parent is not None:
            parent.installEventFilter(self)
            self._watched.append(weakref.ref(parent))
            parent = parent.parentWidget()
