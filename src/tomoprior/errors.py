"""Exceptions users can cause, each with a message meant to be shown as is.

Every error a user can provoke (a bad file, a wrong angle count, NaN data, a
cancelled run) is raised as a subclass of :class:`TomopriorError`. The command
line prints its message on one line and exits with status 2; the napari
widgets show it as a notification.
"""

from __future__ import annotations


class TomopriorError(Exception):
    """Base class of all errors a user can cause."""


class GeometryError(TomopriorError, ValueError):
    """Tilt angles, tilt axis, shifts or volume shape are invalid."""


class DataError(TomopriorError, ValueError):
    """The tilt series itself is unusable (wrong dimensions, NaN, empty)."""


class FormatError(TomopriorError, OSError):
    """A file cannot be read or written in the requested format."""


class MethodUnavailable(TomopriorError, NotImplementedError):
    """The requested reconstruction method or device is not available."""
