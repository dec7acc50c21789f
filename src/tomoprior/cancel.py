"""Cooperative stop: a request that reaches the inner loops of every method.

A reconstruction yields a picture every few iterations, but one iteration of
a λ search, a warm start or an INR epoch can take many seconds. A stop
requested between two pictures must not wait for the next one: the thread
that runs the work installs the request with :func:`stop_when`, and every
inner loop calls :func:`checkpoint`, which raises :class:`StopRequested` once
the request is set. The check is one attribute lookup and one
``Event.is_set``; code running without :func:`stop_when` never stops.

:class:`~tomoprior.engine.Reconstruction` turns :class:`StopRequested` into the
end of its iteration (marked ``stopped``, the last volume kept), so callers
see a stopped run, never the exception. An iterative method's driver first
yields the iterate it had reached (one last report, computed inside
:func:`shielded`), then lets :class:`StopRequested` end the run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["StopRequested", "checkpoint", "shielded", "stop_requested", "stop_when"]

_local = threading.local()


class StopRequested(Exception):
    """The user asked the work running in this thread to stop."""


@contextlib.contextmanager
def stop_when(event: threading.Event) -> Iterator[threading.Event]:
    """Within this block, :func:`checkpoint` in this thread raises once ``event`` is set."""
    previous = getattr(_local, "event", None)
    _local.event = event
    try:
        yield event
    finally:
        _local.event = previous


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Within this block :func:`checkpoint` in this thread never raises.

    For the short work that must finish once a stop was seen: the report of
    the last iterate of a stopped run.
    """
    previous = getattr(_local, "event", None)
    _local.event = None
    try:
        yield
    finally:
        _local.event = previous


def checkpoint() -> None:
    """Raise :class:`StopRequested` if a stop was requested for this thread."""
    event = getattr(_local, "event", None)
    if event is not None and event.is_set():
        raise StopRequested


def stop_requested() -> bool:
    """Whether a stop was requested for this thread (for loops that end on their own)."""
    event = getattr(_local, "event", None)
    return event is not None and event.is_set()
