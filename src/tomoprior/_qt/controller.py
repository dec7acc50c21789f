"""RunController: one background worker per widget, a typed state, throttled steps.

The widget hands the controller a list of :class:`Job` objects; one worker
thread (``napari.qt.threading.create_worker`` over a generator) runs them one
after another. Each job builds its :class:`~tomoprior.engine.Reconstruction`
*in the worker* (preparing a large series takes time) and iterates it;
everything the worker reports is a small typed event yielded to the main
thread. Steps are throttled: the controller re-emits at most one step per
``interval_ms`` and always the last one of a job, so the viewer stays fluid
whatever the rate of the algorithm. After the first picture of each job the
worker waits (at most ``HOLD_S``) until the main thread has drawn it: napari
builds a new layer in pure Python and the computation would otherwise slow
that once-per-job moment down for a head start of a fraction of a second.

Stop sets a flag that the worker checks after every step; it then closes the
reconstruction *in the worker thread* (releasing its resources) and reports
the job as stopped, keeping its last volume. Exceptions never leave the
worker: they become a :class:`RunFailed` event with a one-line message.

:meth:`RunController.close` is the quiet end for a closing viewer or a
removed dock: it stops the run, cuts the worker's link to the controller
(nothing more is reported, events already on their way are dropped) and
returns once the worker thread has finished, without processing Qt events,
so no signal reaches a widget that is going away and no thread outlives
the window.

:class:`TaskRunner` is the same idea for one plain function that reports
progress through a callback (e.g. the alignment): one worker, a typed
state, messages relayed to the main thread, Stop checked at every message.
"""

from __future__ import annotations

import atexit
import enum
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QObject, Qt, QTimer, Signal

from .._priority import lower_thread_priority
from ..cancel import StopRequested, stop_when
from ..step import Step
from .messages import user_message

__all__ = [
    "Job",
    "JobFinished",
    "JobStarted",
    "JobStep",
    "RunController",
    "RunFailed",
    "RunState",
    "TaskCancelled",
    "TaskOutcome",
    "TaskRunner",
]


_warmed = threading.Event()


def warm_up_torch() -> None:
    """Import in the background what torch imports on the first optimiser (once per process).

    ``torch.optim.Adam`` imports ``torch._dynamo`` when first built: about
    2 s of import that a run would otherwise spend after its preview,
    uninterruptible by Stop. A widget starts this when it opens, so the
    import is done before the user's first Run.
    """
    if _warmed.is_set():
        return
    _warmed.set()

    def work() -> None:
        lower_thread_priority()
        import torch

        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])

    threading.Thread(target=work, name="tomoprior-warm-up", daemon=True).start()


HOLD_S = 1.0  # the longest the worker waits for its first picture to be drawn
CLOSE_WAIT_S = 5.0  # the longest close() waits for a stopped worker thread to finish


def _hold(drawn: threading.Event, stop: threading.Event, limit: float = HOLD_S) -> None:
    """Wait (worker side) until ``drawn`` or ``stop`` is set, at most ``limit`` seconds."""
    end = time.monotonic() + limit
    while not drawn.wait(0.02):
        if stop.is_set() or time.monotonic() >= end:
            return


def _wait_idle(owner: Any, timeout: float) -> bool:
    """Process Qt events until ``owner.busy`` is false or ``timeout`` seconds pass."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while owner.busy and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)
    return not owner.busy


#: ``(stop, ended)`` events of every worker thread still running, for the exit below
_RUNNING: set[tuple[threading.Event, threading.Event]] = set()


@atexit.register
def _end_at_exit(timeout: float = CLOSE_WAIT_S) -> None:
    """At interpreter exit: stop the worker threads still running and wait for them.

    A script may end (or napari's window close) while a run goes on; Python
    must not tear down the objects a worker still uses. Only plain events
    are touched here, never a Qt object.
    """
    running = list(_RUNNING)
    for stop, _ in running:
        stop.set()
    end = time.monotonic() + timeout
    for _, ended in running:
        ended.wait(max(0.0, end - time.monotonic()))


class _Link(QObject):
    """Carries one worker's signals (and a task's messages) to its owner until :meth:`cut`.

    A child of the owner: when the owner is deleted the link goes with it,
    Qt drops its connections and the events still queued for it, and the
    worker is told to ``stop``. ``ended`` is set in the worker thread as the
    worker finishes, so the main thread can wait for it without running the
    event loop.
    """

    message = Signal(str)  # emitted in the worker thread by a task's progress callback

    def __init__(
        self, owner: QObject, worker: Any, stop: threading.Event, **slots: Callable[..., None]
    ) -> None:
        super().__init__(owner)
        self.ended = ended = threading.Event()
        self._slots: dict[str, Callable[..., None]] = slots
        entry = (stop, ended)
        _RUNNING.add(entry)

        def finished() -> None:  # in the worker thread
            ended.set()
            _RUNNING.discard(entry)

        worker.finished.connect(finished, Qt.ConnectionType.DirectConnection)
        for name in slots:
            source = self.message if name == "message" else getattr(worker, name)
            source.connect(getattr(self, f"on_{name}"))
        self.destroyed.connect(stop.set)

    def cut(self) -> None:
        """Nothing more reaches the owner (events already queued included)."""
        self._slots = {}

    def _relay(self, name: str, *args: Any) -> None:
        slot = self._slots.get(name)
        if slot is not None:
            slot(*args)

    def on_yielded(self, value: Any) -> None:
        self._relay("yielded", value)

    def on_returned(self, value: Any) -> None:
        self._relay("returned", value)

    def on_message(self, text: str) -> None:
        self._relay("message", text)

    def on_warned(self, args: tuple) -> None:
        self._relay("warned", args)

    def on_finished(self) -> None:
        self._relay("finished")
        self.deleteLater()


def _close_link(link: _Link | None, cancel: threading.Event, timeout: float) -> bool:
    """Set ``cancel``, cut ``link`` and wait (events not processed) until its worker ended."""
    cancel.set()
    if link is None:
        return True
    link.cut()
    ended = link.ended.wait(timeout)
    if ended:
        link.deleteLater()
    return ended


class RunState(str, enum.Enum):
    """Life cycle of a run; ``IDLE`` before the first one."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def busy(self) -> bool:
        return self in (RunState.RUNNING, RunState.STOPPING)


@dataclass
class Job:
    """One reconstruction of a run.

    ``make`` builds the Reconstruction (called in the worker thread);
    ``evaluate``, when given, computes result figures from the finished (or
    stopped) Reconstruction, also in the worker thread.
    """

    label: str
    make: Callable[[], Any]
    evaluate: Callable[[Any], dict] | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobStarted:
    index: int
    job: Job
    rec: Any


@dataclass(frozen=True)
class JobStep:
    index: int
    step: Step
    elapsed: float  # seconds since this job started (wall clock, worker side)


@dataclass(frozen=True)
class JobFinished:
    index: int
    job: Job
    rec: Any
    stopped: bool
    results: dict
    error: str = ""  # a failed evaluation (the volume itself is fine)


@dataclass(frozen=True)
class RunFailed:
    index: int
    job: Job | None
    rec: Any
    message: str
    error: BaseException


def _phase(ev: JobStep) -> tuple:
    step = ev.step
    return (ev.index, getattr(step, "phase", None), getattr(step, "chunk", None))


class RunController(QObject):
    """Owns at most one worker; Run, Stop and the events of the run.

    Signals
    -------
    state_changed(RunState)
    job_started(JobStarted)
    step(JobStep)           throttled; the last step of a job is always emitted
    job_finished(JobFinished)
    failed(RunFailed)
    run_ended(RunState)     after the worker thread has finished
    warning(str)            a one-line warning about the run, each text once per run:
                            the Reconstruction's ``warnings`` and what the worker warned
    """

    state_changed = Signal(object)
    job_started = Signal(object)
    step = Signal(object)
    job_finished = Signal(object)
    failed = Signal(object)
    run_ended = Signal(object)
    warning = Signal(str)

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = 200) -> None:
        super().__init__(parent)
        self.state = RunState.IDLE
        self.interval_ms = int(interval_ms)
        self.steps_received = 0
        self.steps_shown = 0
        self._worker: Any = None
        self._link: _Link | None = None
        self._gen: Iterator | None = None
        self._stop = threading.Event()
        self._closing = threading.Event()  # set by close(): skip the figures, report nothing
        self._pending: JobStep | None = None
        self._drawn = threading.Event()  # the first picture of the current job is on screen
        self._released = -1  # the job whose first picture released the worker
        self._outcome = RunState.DONE
        self._warned: set[str] = set()  # the warnings shown in this run
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._flush)
        warm_up_torch()

    # -- public API ---------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def start(self, jobs: Sequence[Job]) -> None:
        """Start a run of ``jobs`` in one worker; raises RuntimeError while busy."""
        if self.busy:
            raise RuntimeError("a run is in progress: stop it first")
        from napari.qt.threading import create_worker

        stop = self._stop = threading.Event()
        closing = self._closing = threading.Event()
        self._pending = None
        self._drawn, self._released = threading.Event(), -1
        self._outcome = RunState.DONE
        self._warned = set()
        self.steps_received = self.steps_shown = 0
        gen = self._gen = self._work(list(jobs), stop, self._drawn, closing)
        worker = create_worker(lambda: (yield from gen), _start_thread=False)
        # napari shows every warning of a worker as it comes: the run's are shown once
        # here instead, whichever of its jobs warns
        try:
            worker.warned.disconnect()
        except TypeError:  # nothing connected
            pass
        self._link = _Link(self, worker, stop, yielded=self._on_event, warned=self._on_warned,
                           finished=self._on_worker_finished)
        self._worker = worker
        self._set_state(RunState.RUNNING)
        worker.start()

    def stop(self) -> None:
        """Ask the run to stop after the current step; the last volume is kept."""
        if self.busy and not self._stop.is_set():
            self._stop.set()
            self._set_state(RunState.STOPPING)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block (processing Qt events) until the run has ended; for scripts and tests."""
        return _wait_idle(self, timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop and wait, reporting the end of the run as usual; for scripts and tests."""
        self.stop()
        self.wait(timeout)

    def close(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """End the run quietly: for a closing viewer or a removed dock.

        Stops the run and reports nothing more about it than ``state_changed``
        (STOPPED, at once): no step, result or end, not even for the events
        already queued. Then waits up to ``timeout`` seconds, without
        processing Qt events, until the worker thread has finished. Returns
        whether it has (True when nothing was running); a worker still
        running then ends by itself, unheard. The controller can start a new
        run afterwards.
        """
        link, worker, gen = self._link, self._worker, self._gen
        self._timer.stop()
        self._pending = None
        if worker is None:
            return True
        self._closing.set()
        self._link = self._worker = self._gen = None
        self._set_state(RunState.STOPPED)
        ended = _close_link(link, self._stop, timeout)
        if ended and gen is not None:
            gen.close()  # only does work when napari aborted the worker between two steps
        return ended

    # -- worker side ----------------------------------------------------------------
    @staticmethod
    def _work(
        jobs: list[Job], stop: threading.Event, drawn: threading.Event, closing: threading.Event
    ) -> Iterator[Any]:
        lower_thread_priority()  # the canvas draws first when both want a core
        for i, job in enumerate(jobs):
            if stop.is_set():
                return
            rec = None
            try:
                with stop_when(stop):  # inner loops check it: Stop acts within a second
                    rec = job.make()
                    t0 = time.perf_counter()
                    yield JobStarted(i, job, rec)
                    first = True
                    for st in rec:
                        if first:
                            drawn.clear()
                        yield JobStep(i, st, time.perf_counter() - t0)
                        if first:  # the main thread creates the job's layer: let it draw
                            first = False
                            _hold(drawn, stop)
                        if stop.is_set():
                            break
                stopped = not rec.finished
                rec.close()
                results, error = {}, ""
                shown = rec.last is not None and rec.last.phase != "preview"
                # a preview is not the method's result; a closing widget shows nothing
                if job.evaluate is not None and shown and not closing.is_set():
                    try:
                        results = job.evaluate(rec)
                    except Exception as exc:
                        error = user_message(exc)
                yield JobFinished(i, job, rec, stopped, results, error)
            except Exception as exc:
                device = getattr(rec, "device", None) or job.info.get("device")
                yield RunFailed(i, job, rec, user_message(exc, device=device), exc)
                return
            finally:
                if rec is not None:
                    rec.close()
            if stopped:
                return

    # -- main thread ------------------------------------------------------------------
    def _set_state(self, state: RunState) -> None:
        self.state = state
        self.state_changed.emit(state)

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, JobStep):
            self.steps_received += 1
            pending = self._pending
            if pending is not None and _phase(pending) != _phase(ev):
                self._flush()  # the last picture of a phase (a base, a slab) is always shown
            self._pending = ev
            if not self._timer.isActive():
                self._flush()
        elif isinstance(ev, JobStarted):
            self._pending = None
            self.job_started.emit(ev)
            for text in getattr(ev.rec, "warnings", None) or ():
                self._warn(str(text))
        elif isinstance(ev, JobFinished):
            self._flush()
            if ev.stopped:
                self._outcome = RunState.STOPPED
            self.job_finished.emit(ev)
        elif isinstance(ev, RunFailed):
            self._flush()
            self._outcome = RunState.FAILED
            self.failed.emit(ev)

    def _on_warned(self, args: tuple) -> None:
        """A warning issued in the worker (``warnings.showwarning``'s arguments)."""
        self._warn(str(args[0]) if args else "")

    def _warn(self, text: str) -> None:
        if text and text not in self._warned:
            self._warned.add(text)
            self.warning.emit(text)

    def _flush(self) -> None:
        ev, self._pending = self._pending, None
        if ev is None:
            return
        self.steps_shown += 1
        self.step.emit(ev)
        if ev.index != self._released:  # release the worker once this picture is drawn:
            self._released = ev.index  # the repaint is posted now, the second timer after it
            drawn = self._drawn
            QTimer.singleShot(0, lambda: QTimer.singleShot(0, drawn.set))
        self._timer.start(self.interval_ms)

    def _on_worker_finished(self) -> None:
        self._flush()
        self._timer.stop()
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()  # only does work when the worker was aborted from outside
        self._worker = self._link = None
        outcome = self._outcome
        if outcome == RunState.DONE and self._stop.is_set():
            outcome = RunState.STOPPED
        self._set_state(outcome)
        self.run_ended.emit(outcome)


class TaskCancelled(Exception):
    """Raised by a :class:`TaskRunner`'s progress callback once Stop was asked for."""


@dataclass(frozen=True)
class TaskOutcome:
    state: RunState  # DONE, STOPPED or FAILED
    result: Any = None
    message: str = ""


class TaskRunner(QObject):
    """Runs one function ``fn(progress) -> result`` at a time in a napari worker thread.

    ``progress(msg)`` relays ``msg`` to the main thread (signal ``message``)
    and raises :class:`TaskCancelled` once :meth:`stop` was called, so a
    stop takes effect at the next message; a result that arrives after a
    stop is discarded. Exceptions never leave the worker: they end the task
    as FAILED with a one-line message (``what`` names the task in it).

    Signals
    -------
    state_changed(RunState)
    message(str)
    finished(TaskOutcome)   after the worker thread has finished
    """

    message = Signal(str)
    state_changed = Signal(object)
    finished = Signal(object)

    def __init__(self, parent: QObject | None = None, what: str = "Task") -> None:
        super().__init__(parent)
        self.what = what
        self.state = RunState.IDLE
        self._worker: Any = None
        self._link: _Link | None = None
        self._outcome: TaskOutcome | None = None
        self._cancel = threading.Event()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def start(self, fn: Callable[[Callable[[str], None]], Any], device: str | None = None) -> None:
        """Run ``fn`` in the background; raises RuntimeError while busy."""
        if self.busy:
            raise RuntimeError(f"{self.what} in progress: stop it first")
        from napari.qt.threading import create_worker

        cancel = self._cancel = threading.Event()
        what = self.what
        link: _Link | None = None  # set before the worker starts

        def progress(msg: str) -> None:
            if cancel.is_set():
                raise TaskCancelled(what)
            link.message.emit(str(msg))

        def work() -> TaskOutcome:
            lower_thread_priority()
            try:
                with stop_when(cancel):
                    result = fn(progress)
            except (TaskCancelled, StopRequested):
                return TaskOutcome(RunState.STOPPED)
            except Exception as exc:
                msg = user_message(exc, device=device, what=what)
                return TaskOutcome(RunState.FAILED, message=msg)
            return TaskOutcome(RunState.STOPPED if cancel.is_set() else RunState.DONE, result)

        self._outcome = None
        worker = create_worker(work, _start_thread=False)
        link = self._link = _Link(self, worker, cancel, returned=self._on_returned,
                                  message=self.message.emit, finished=self._on_finished)
        self._worker = worker
        self._set_state(RunState.RUNNING)
        worker.start()

    def stop(self) -> None:
        """Ask the task to stop at its next progress message; its result is discarded."""
        if self.busy and not self._cancel.is_set():
            self._cancel.set()
            self._set_state(RunState.STOPPING)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block (processing Qt events) until the task has ended; for scripts and tests."""
        return _wait_idle(self, timeout)

    def close(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """End the task quietly: ``state_changed`` (STOPPED) and nothing more, no ``finished``.

        As :meth:`RunController.close`; returns whether its thread has ended.
        """
        link, worker = self._link, self._worker
        if worker is None:
            return True
        self._worker = self._link = self._outcome = None
        self._set_state(RunState.STOPPED)
        return _close_link(link, self._cancel, timeout)

    def _set_state(self, state: RunState) -> None:
        self.state = state
        self.state_changed.emit(state)

    def _on_returned(self, outcome: TaskOutcome) -> None:
        self._outcome = outcome

    def _on_finished(self) -> None:
        self._worker = self._link = None
        outcome = self._outcome or TaskOutcome(RunState.FAILED, message=f"{self.what} failed")
        self._set_state(outcome.state)
        self.finished.emit(outcome)
