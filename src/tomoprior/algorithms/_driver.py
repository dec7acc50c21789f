"""One iteration driver for every iterative method.

A method implements a :class:`Solver`: its set-up (which may stream steps of
its own, such as a warm start or a parameter search), one update, a report
of the current iterate, and its state for resuming. :func:`iterate` owns
everything else, the same way for every method:

* snapshots every ``every`` iterations and always at the last one;
* the tilt series and mask as checked tensors on the projector's device
  (:class:`Problem`);
* pictures between two snapshots for a solver that sets ``pace``: at least
  every ``pace`` seconds of computing (and never more time in pictures than
  in iterations), through its cheaper :meth:`Solver.picture`;
* the figures every step carries: ``residual``, the relative data residual
  ``||W (A x - y)|| / ||W y||`` of the step's volume over the pixels the
  method fits (:meth:`Solver.fitted`), the same for every method and phase,
  set-up steps included (the solver's own when it has it at no cost, else
  one forward projection); and ``objective_name``, what ``loss`` is;
* divergence: a non-finite loss or volume raises
  :class:`~tomoprior.errors.DivergedError` with the method's advice;
* stopping: closing the generator ends the run at the next yield, and the
  device memory is released in ``finally`` whatever ends it. A stop request
  (:mod:`tomoprior.cancel`) seen in the iterations yields one more step, the
  iterate reached (its iteration number, and the resume state of a
  resumable method), unless that one was just yielded, then lets
  :class:`~tomoprior.cancel.StopRequested` end the run;
* resume: the last step carries a :class:`~tomoprior.step.ResumeState`;
  given back as ``resume=``, the run continues exactly (30 iterations equal
  10 + 10 + 10), after a check that it belongs to this method and shape;
* memory: the snapshot is the driver's only copy of the volume; after the
  set-up and before each snapshot a CPU run gives the C heap's free pages
  back, and a solver whose state is its own hands it to the last step's
  resume state instead of a copy.

The design follows CIL's ``Algorithm`` (set-up, update, objective) with the
loop turned into a generator of :class:`~tomoprior.step.Step`.
"""

from __future__ import annotations

import ctypes
import functools
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..cancel import StopRequested, checkpoint, shielded
from ..errors import DivergedError, ParameterError
from ..operators.base import Projector
from ..step import SCALAR_TYPES, ResumeState, Step
from ._common import (
    as_tensor,
    init_volume,
    relative_residual,
    release,
    snapshot,
    validation_split,
)

__all__ = ["Problem", "Report", "Solver", "iterate"]

_now = time.perf_counter  # the clock of the paced pictures


@dataclass
class Problem:
    """The data of a run, checked and on the projector's device."""

    A: Projector
    y: torch.Tensor
    mask: torch.Tensor | None = None  # detector pixels to fit (1) and held out (0)
    seed: int = 0

    @classmethod
    def build(cls, A: Projector, y: Any, mask: Any = None, seed: int = 0) -> Problem:
        yt = as_tensor(y, A)
        m = None if mask is None else as_tensor(mask, A, "mask")
        return cls(A, yt, m, int(seed))

    @property
    def device(self) -> torch.device:
        return self.A.device

    def split(self, fraction: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(train, validation)`` pixel weights: the caller's mask, or ``fraction`` held out."""
        return validation_split(tuple(self.y.shape), self.mask, fraction, self.seed, self.y)

    def start_volume(self, x0: Any) -> torch.Tensor:
        """A copy of the warm start ``x0`` (checked), or zeros."""
        return init_volume(self.A, x0)


@dataclass
class Report:
    """What a solver says about its current iterate (volume in data units).

    ``residual`` is the relative data residual of ``volume`` where the solver
    has it at no cost (SIRT's loss, CS-TV's data term); left None, the
    driver computes it.
    """

    volume: torch.Tensor
    loss: float | None = None
    residual: float | None = None
    heldout: float | None = None
    poses: Mapping[str, Any] | None = None
    search: tuple[Mapping[str, float], ...] = ()
    model: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


class Solver:
    """One method's iterations; :func:`iterate` drives it.

    Subclasses set ``label`` (used in messages) and ``hint`` (what to do
    when the run diverges), and implement :meth:`update` and :meth:`report`;
    :meth:`setup`, :meth:`state` and :meth:`restore` as needed.
    """

    label = "method"
    hint = "check the data and parameters"
    #: what the solver's ``loss`` is (the Step's ``objective_name``)
    objective = ""
    #: True when :meth:`state` returns tensors that only the solver holds: after the last
    #: update nothing changes them, so the last step's resume state takes them uncopied.
    hands_over_state = False
    phase = "iterate"
    #: seconds of computing after which a picture is due although ``every`` is not reached
    #: (None: snapshots at multiples of ``every`` only)
    pace: float | None = None

    def fitted(self, problem: Problem) -> torch.Tensor | None:
        """Weights of the detector pixels the method fits, for the residual (None: all).

        The caller's mask; a method that holds pixels out itself returns its
        training pixels.
        """
        return problem.mask

    def setup(self, problem: Problem, x0: Any, start: int) -> Iterator[Step]:
        """Prepare the first iterate; may yield steps of a set-up phase."""
        return iter(())

    def update(self, k: int) -> float | None:
        """One iteration (``k`` counts from 1 in this call); returns a loss to watch or None."""
        raise NotImplementedError

    def report(self, iteration: int, last: bool) -> Report:
        """The current iterate and its figures at ``iteration`` (counting ``start``)."""
        raise NotImplementedError

    def converged(self) -> bool:
        """True once further iterations would not change the volume noticeably: the run
        ends early with this iterate as its last step (``iterations`` is then a maximum)."""
        return False

    def picture(self, iteration: int) -> Report:
        """The current iterate between two snapshots (``pace``); the report by default."""
        return self.report(iteration, False)

    def stopped(self, iteration: int) -> Report:
        """The iterate reached when a stop ends the run early: the last step's report."""
        return self.report(iteration, True)

    def state(self) -> dict[str, Any]:
        """Everything :meth:`restore` needs to continue exactly (CPU tensors)."""
        raise NotImplementedError

    def restore(self, problem: Problem, state: Mapping[str, Any], start: int) -> None:
        raise NotImplementedError


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def _trim_heap(device: torch.device) -> None:
    """Give the C heap's free pages back to the OS (glibc; CPU runs only).

    Temporaries of a few MB come from malloc's heap, which keeps their pages
    when they are freed; trimmed, the run's peak is its live data plus the
    snapshot, not the free lists as well.
    """
    trim = _malloc_trim() if device.type == "cpu" else None
    if trim is not None:
        trim(0)


def _check_extras(label: str, extras: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extras.items():
        if not isinstance(value, SCALAR_TYPES):
            raise TypeError(f"{label}: extras[{key!r}] is {type(value).__name__}, not a scalar")
    return dict(extras)


def _check_resume(resume: Any, name: str, label: str, shape: tuple[int, ...]) -> Mapping[str, Any]:
    if not isinstance(resume, ResumeState):
        raise ParameterError(f"resume expects the resume state of an earlier {label} run's last step")
    if resume.method != name:
        raise ParameterError(f"the resume state is from a {resume.method} run, not {label}")
    if tuple(resume.shape) != tuple(shape):
        raise ParameterError(
            f"the resume state is for a volume {tuple(resume.shape)}, this run's is {tuple(shape)}")
    return resume.data


def cpu_state(obj: Any, copy: bool = True) -> Any:
    """A deep copy of a (nested) state with every tensor detached onto the CPU.

    With ``copy=False`` CPU tensors are taken as they are (the containers are still new).
    """
    if torch.is_tensor(obj):
        t = obj.detach().cpu()
        return t.clone() if copy else t
    if isinstance(obj, dict):
        return {k: cpu_state(v, copy) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_state(v, copy) for v in obj)
    return obj


def _with_residual(step: Step, solver: Solver, problem: Problem) -> Step:
    """A set-up step with its residual (computed here when the step has none)."""
    if step.residual is not None:
        return step
    return replace(step, residual=relative_residual(problem.A, step.volume, problem.y,
                                                    solver.fitted(problem)))


def iterate(
    solver: Solver,
    problem: Problem,
    *,
    name: str,
    iterations: int,
    every: int = 1,
    start: int = 0,
    x0: Any = None,
    resume: ResumeState | None = None,
) -> Iterator[Step]:
    """Drive ``solver`` for ``iterations`` iterations, yielding Steps (see module notes)."""
    every = max(1, int(every))
    if resume is not None and start == 0:  # numbering continues where the state was taken
        start = int(resume.iteration)
    total = start + iterations
    resumable = type(solver).state is not Solver.state

    def step(iteration: int, kind: str) -> Step:
        """The Step of the current iterate: ``kind`` "snapshot", "last", "picture" or "stop"."""
        last = kind in ("last", "stop")
        if kind == "picture":
            r = solver.picture(iteration)
        elif kind == "stop":
            r = solver.stopped(iteration)
        else:
            r = solver.report(iteration, last)
        _trim_heap(problem.device)
        residual = r.residual
        if residual is None:
            residual = relative_residual(problem.A, r.volume, problem.y, solver.fitted(problem))
        vol = snapshot(r.volume)
        # float32 values add up to a finite float64 unless one is not finite: no mask
        # the size of the volume on top of the snapshot
        if not math.isfinite(vol.sum(dtype=np.float64)):
            raise DivergedError(
                f"{solver.label} diverged at iteration {iteration} (the volume is not "
                f"finite): {solver.hint}")
        state = None
        if last and resumable:
            state = ResumeState(name, iteration, tuple(problem.A.domain_shape),
                                cpu_state(solver.state(), copy=not solver.hands_over_state))
        return Step(
            iteration=iteration, volume=vol, loss=r.loss, residual=residual,
            objective_name=solver.objective or None, total=total, phase=solver.phase,
            heldout=r.heldout, poses=r.poses, search=tuple(r.search), model=r.model,
            extras=_check_extras(solver.label, r.extras), resume=state,
        )

    try:
        if resume is not None:
            data = _check_resume(resume, name, solver.label, tuple(problem.A.domain_shape))
            # a deep copy: the caller's state must survive the run (optimisers update in place)
            solver.restore(problem, cpu_state(data), start)
        else:
            for st in solver.setup(problem, x0, start):
                yield _with_residual(st, solver, problem)
        _trim_heap(problem.device)  # the set-up's temporaries
        ks = range(1, iterations + 1) if iterations > 0 else (0,)
        done = shown = start  # iterations completed; the iteration of the last step yielded
        took = 0.0  # seconds the last picture or snapshot took
        since = _now()  # when the iterations went on after the last step
        try:
            for k in ks:
                checkpoint()
                if k > 0:
                    value = solver.update(k)
                    done = start + k
                    if value is not None and not math.isfinite(value):
                        raise DivergedError(
                            f"{solver.label} diverged at iteration {start + k} (the loss is "
                            f"not finite): {solver.hint}")
                final = k == ks[-1] or (k > 0 and solver.converged())
                kind = "last" if final else "snapshot"
                if kind == "snapshot" and (start + k) % every:  # snapshots at multiples of every
                    if solver.pace is None or _now() - since < max(solver.pace, took):
                        continue
                    kind = "picture"
                t0 = _now()
                st = step(start + k, kind)
                took, shown = _now() - t0, start + k
                yield st
                if final:
                    break
                since = _now()
        except StopRequested:
            if done > shown:  # the iterate reached was not shown: it is the run's result
                with shielded():
                    st = step(done, "stop")
                yield st
            raise
    finally:
        release(problem.device)
