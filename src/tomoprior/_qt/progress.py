"""Progress of a run: bar, iteration, residual, elapsed and remaining time, live plot.

The number shown and plotted for a step is its relative data residual
(``Step.residual``), the same measure for every method. The method's own
objective (``Step.loss``) appears only under its ``objective_name``: in the
status line's tooltip and the plot's hover text, or as the plotted curve,
so named, when a step has no residual.
"""

from __future__ import annotations

import time

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..step import Step
from .controller import RunState
from .loss_plot import RESIDUAL, LossPlot
from .progress_bar import ProgressBar
from .search_plot import SearchPlot

__all__ = ["RunProgress", "format_seconds", "objective_text", "plotted", "slab_progress"]


def format_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class RunProgress(QWidget):
    """Shows where a run is; fed by the widget from the controller's signals."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = ProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        self.bar.setFormat("idle")
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.loss = LossPlot()
        self.search = SearchPlot()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(self.loss)
        lay.addWidget(self.search)
        self._t0 = time.monotonic()
        self._n_jobs = 1
        self._index = 0
        self._label = ""
        self._last: Step | None = None
        self._job_elapsed = 0.0
        self._phase: object = None
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._refresh)

    def begin(self, n_jobs: int = 1) -> None:
        self._t0 = time.monotonic()
        self._n_jobs = max(1, int(n_jobs))
        self._index, self._label, self._last = 0, "", None
        self.bar.setValue(0)
        self.bar.setFormat("preparing…")
        self.status.setText("Preparing the tilt series…")
        self.loss.clear()
        self._clock.start()

    def job_started(self, index: int, label: str) -> None:
        self._index, self._label, self._last = index, label, None
        self._job_elapsed = 0.0
        self._phase = None
        self.loss.clear()
        self.search.set_search(())
        self._refresh()

    def show_step(self, index: int, step: Step, job_elapsed: float) -> None:
        self._index, self._last, self._job_elapsed = index, step, job_elapsed
        phase = (step.phase, step.chunk)
        if phase != self._phase:  # a new phase (a warm start, the fit, the next slab): new curve
            self._phase = phase
            self._phase_t0 = job_elapsed
            self.loss.clear()
        value, label, note = plotted(step)
        if label is not None and label != self.loss.label:
            if self.loss.train:  # another measure than the curve's: a new curve
                self.loss.clear()
            self.loss.set_label(label)
        self.loss.add(step.iteration, value, step.heldout, note)
        if step.search:
            self.search.set_search(step.search)
        self._refresh()

    def end(self, state: RunState, message: str = "") -> None:
        self._clock.stop()
        elapsed = format_seconds(time.monotonic() - self._t0)
        if state == RunState.DONE:
            self.bar.setValue(1000)
            self.bar.setFormat("done")
            text = f"Done in {elapsed}."
        elif state == RunState.STOPPED:
            self.bar.setFormat("stopped at %p%")
            text = f"Stopped after {elapsed}; the last volume is kept."
        else:
            self.bar.setFormat("failed")
            text = f"Failed after {elapsed}."
        last = self._last
        if self._n_jobs == 1 and last is not None and last.residual is not None \
                and state != RunState.FAILED:
            text += f" Final {RESIDUAL} {last.residual:.4g}."
        self.status.setText(f"{text} {message}".strip())

    def stopping(self) -> None:
        self.status.setText("Stopping…")

    # -- text ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        elapsed = time.monotonic() - self._t0
        st = self._last
        frac = None if st is None else slab_progress(st)
        total = (self._index + (frac or 0.0)) / self._n_jobs
        self.bar.setValue(int(round(1000 * total)))
        self.bar.setFormat("%p%")
        parts = []
        if self._n_jobs > 1:
            parts.append(f"method {self._index + 1} of {self._n_jobs}")
        if self._label:
            parts.append(self._label)
        if st is not None and st.chunk is not None:
            parts.append(f"slab {st.chunk[0] + 1}/{st.chunk[1]}")
        # restore's base and network count iterations; restore_tv's are set-up phases
        counted = st is not None and st.phase in ("base", "restore") and bool(st.total)
        if st is not None and st.phase != "iterate" and not counted:
            parts.append(phase_text(st))
            f = st.extras.get("phase_fraction")
            spent = self._job_elapsed - getattr(self, "_phase_t0", 0.0)
            if isinstance(f, float) and 0 < f < 1 and spent > 0:
                parts.append(f"about {format_seconds(spent * (1 - f) / f)} left in this phase")
        elif st is not None:
            it = f"iteration {st.iteration}"
            if st.total:
                it += f" / {st.total}"
            parts.append(it)
            if st.phase != "iterate":
                parts.append(st.phase)
        elif self._label:
            parts.append("starting")
        if st is not None and st.residual is not None:
            parts.append(f"{RESIDUAL} {st.residual:.4g}")
        self.status.setToolTip("" if st is None else objective_text(st))
        parts.append(f"{format_seconds(elapsed)} elapsed")
        if frac and 0 < frac < 1 and self._job_elapsed > 0:
            left = self._job_elapsed * (1 - frac) / frac
            what = "left" if self._n_jobs == 1 else f"left for {self._label}"
            parts.append(f"about {format_seconds(left)} {what}")
        self.status.setText(" · ".join(parts))


def objective_text(step: Step) -> str:
    """``"0.5||Ax-y||^2 + lam TV(x) = 12.3"``: the method's own objective, under its name."""
    if step.loss is None:
        return ""
    name = step.objective_name or "the method's objective"
    return f"{name} = {step.loss:.4g}"


def plotted(step: Step) -> tuple[float | None, str | None, str]:
    """What the plot draws for ``step``: ``(value, curve name, hover note)``.

    The residual when the step has one (the objective as the note), else
    the objective under its name; ``(None, None, "")`` for a step with
    neither (a preview).
    """
    if step.residual is not None:
        same = step.loss is not None and step.loss == step.residual
        return step.residual, RESIDUAL, "" if same else objective_text(step)
    if step.loss is not None:
        return step.loss, step.objective_name or "the method's objective", ""
    return None, None, ""


def slab_progress(step: Step) -> float | None:
    """Fraction of the whole run done: of the step's slab when the volume is chunked."""
    frac = step.progress
    if step.chunk is None:
        return frac
    index, count = step.chunk
    return (index + (frac or 0.0)) / max(1, count)


def phase_text(step: Step) -> str:
    """``"preview (WBP) while the method sets up"``, ``"λ search 3/7"``, ``"warm start: SIRT"``."""
    if step.phase == "preview":
        return "preview (WBP) while the method sets up"
    text = {"base": "base reconstruction", "restore": "restoration network"}.get(step.phase,
                                                                                step.phase)
    c, n = step.extras.get("candidate"), step.extras.get("candidates")
    if step.phase == "lambda search" and c and n:
        text = f"λ search {c}/{n}"
    if step.phase == "adapt" and step.extras.get("adapt_steps"):
        text = (f"adapting the network to this series "
                f"{step.extras.get('adapt_step')}/{step.extras['adapt_steps']}")
    if step.phase == "adapt base" and step.extras.get("half"):
        text = f"adaptation: SIRT of the {step.extras['half']} tilts"
    part = step.extras.get("warm_part")
    if step.phase == "warm start" and part:
        text = f"warm start: {part}" + (f" {c}/{n}" if part == "λ search" and c and n else "")
    return text
