"""Running a plan: schedulers, streaming finished slabs to a sink, assembling them."""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import GeometryError, MethodUnavailable, ParameterError
from ._plan import SlabPlan
from ._source import _is_dask
from ._task import SlabTask

# -- running a plan ---------------------------------------------------------------------------------
SCHEDULERS = ("threads", "processes")


def check_scheduler(scheduler: Any) -> Any:
    """``None``, ``"threads"``, ``"processes"``, a scheduler address or a distributed Client."""
    if scheduler is None or scheduler in SCHEDULERS or not isinstance(scheduler, str):
        return scheduler
    if ":" not in scheduler and "/" not in scheduler:
        raise ParameterError(f"scheduler must be threads, processes or a dask scheduler address "
                             f"such as tcp://host:8786, got {scheduler!r}")
    return scheduler


def _distributed():
    try:
        import distributed
    except ImportError:
        raise MethodUnavailable(
            "a scheduler address needs dask.distributed: pip install 'napari-tomoprior[distributed]'"
        ) from None
    return distributed


class _Runner:
    """Runs tasks on one kind of scheduler; futures come back as they finish."""

    def __init__(self, scheduler: Any = None, workers: int | None = None) -> None:
        scheduler = check_scheduler(scheduler)
        self.name = "in process" if scheduler is None else (
            scheduler if isinstance(scheduler, str) else "distributed client")
        self.client = None
        self.pool: cf.Executor | None = None
        self._own = False
        n = workers or os.cpu_count() or 1
        self.inline = scheduler is None
        if scheduler is None:
            self.workers = 1
        elif scheduler == "threads":
            self.pool, self.workers = cf.ThreadPoolExecutor(n), n
        elif scheduler == "processes":
            import multiprocessing

            # spawn: a forked child of a process that has started torch's threads can hang
            self.pool = cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
            self.workers = n
        else:
            if isinstance(scheduler, str):
                distributed = _distributed()
                try:
                    self.client = distributed.Client(scheduler, timeout=20, set_as_default=False)
                except (OSError, TimeoutError) as exc:
                    raise ParameterError(f"cannot reach the dask scheduler at {scheduler}: "
                                         f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
                self._own = True
            else:
                self.client = scheduler
            info = self.client.scheduler_info()
            self.workers = max(1, sum(int(wk.get("nthreads", 1))
                                      for wk in info.get("workers", {}).values()))
            self.name = f"distributed {self.client.scheduler.address}"

    def submit(self, task: SlabTask, arg: Any) -> Any:
        if self.client is not None:
            if _is_dask(arg):
                arg = self.client.compute(arg)  # read on the cluster, never here
            elif arg is not None:
                (arg,) = self.client.scatter([arg])
            return self.client.submit(task, arg, pure=False)
        if self.pool is not None:
            if _is_dask(arg):
                arg = arg.compute(scheduler="threads")
            return self.pool.submit(task, arg)
        f: cf.Future = cf.Future()
        try:
            f.set_result(task(arg))
        except Exception as exc:  # handed to the caller through the future
            f.set_exception(exc)
        return f

    def as_completed(self, futures: Sequence[Any]) -> Iterator[Any]:
        if self.client is not None:
            return iter(_distributed().as_completed(list(futures), loop=self.client.loop))
        return cf.as_completed(list(futures))

    def run_all(self, tasks: list[SlabTask], plan: SlabPlan, series: Any) -> list[Any]:
        futures = [self.submit(t, plan.task_input(t, series)) for t in tasks]
        return [f.result() for f in futures]

    def cancel(self, futures: Sequence[Any]) -> None:
        for f in futures:
            f.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None and self._own:
            self.client.close()


Sink = Callable[[tuple[slice, slice, slice], np.ndarray], Any]


def stream_slabs(
    plan: SlabPlan,
    series: Any,
    sink: Sink,
    *,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Callable[[int, int, SlabTask], Any] | None = None,
    inflight: int | None = None,
) -> tuple[SlabPlan, dict[str, Any]]:
    """Run ``plan`` and hand each finished slab once to ``sink(region, block)``.

    Parameters
    ----------
    plan : SlabPlan
    series : array or None
        The tilt series the plan was made for (numpy, memory map or dask);
        ``None`` when the plan reads its source file itself.
    sink : callable
        Called once per slab, in the order the slabs finish, with
        ``region`` (a tuple of three slices of the output volume, whose
        shape is ``plan.output_shape``) and ``block`` (float32, that
        region's values, in the frame of the input images). A slab along
        a vertical tilt axis is a range of output columns, not rows.
    scheduler : None, "threads", "processes", address or Client
        ``None`` runs the slabs one after another in this process; an
        address (``tcp://host:8786``) or a ``distributed.Client`` runs them
        on a dask cluster.
    workers : int, optional
        Threads or processes for ``"threads"`` / ``"processes"``
        (default: the CPU count).
    progress : callable, optional
        ``progress(done, total, task)`` after each slab.
    inflight : int, optional
        Slabs submitted ahead of those finished (default: twice the
        workers; one in process): bounds the memory held by windows and
        results.

    Returns
    -------
    (plan, provenance)
        The plan with its global decisions made, and the run's provenance.
    """
    t0 = time.perf_counter()
    runner = _Runner(scheduler, workers)
    try:
        if plan.needs_decisions:
            plan = plan.decide(lambda tasks: runner.run_all(tasks, plan, series))
        tasks = plan.tasks()
        # in process a slab is computed when submitted: hand it on before computing the next
        limit = max(1, inflight or (1 if runner.inline else 2 * runner.workers))
        pending: dict[Any, SlabTask] = {}
        queue = list(tasks)
        done = 0
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    t = queue.pop(0)
                    pending[runner.submit(t, plan.task_input(t, series))] = t
                for fut in runner.as_completed(list(pending)):
                    t = pending.pop(fut)
                    block = fut.result()
                    sink(plan.region(*t.inner), plan.to_output(block))
                    del block
                    done += 1
                    if progress is not None:
                        progress(done, len(tasks), t)
                    break  # refill the queue before waiting again
        except BaseException:
            runner.cancel(list(pending))
            raise
    finally:
        runner.close()
    return plan, plan.provenance(time.perf_counter() - t0, runner.name)


def assemble(
    plan: SlabPlan,
    series: Any,
    *,
    out: np.ndarray | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    progress: Callable[[int, int, SlabTask], Any] | None = None,
) -> tuple[np.ndarray, SlabPlan, dict[str, Any]]:
    """Run ``plan`` into one array (preallocated here, or ``out``, e.g. a memory map);
    each slab is computed once. Returns ``(volume, plan, provenance)``."""
    shape = plan.output_shape
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != tuple(shape):
        raise GeometryError(f"the output array has shape {tuple(out.shape)}, the volume {shape}")

    def put(region: tuple[slice, slice, slice], block: np.ndarray) -> None:
        out[region] = block

    plan, prov = stream_slabs(plan, series, put, scheduler=scheduler, workers=workers,
                              progress=progress)
    return out, plan, prov
