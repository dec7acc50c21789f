"""Slab plans: one reconstruction cut into independent, picklable slab tasks.

A :class:`SlabPlan` describes a whole reconstruction (method, resolved
parameters, geometry of the kept tilts, binning, volume shape, slab size and
halo) as plain data. Its :class:`SlabTask` objects each read only the part
of the tilt series their slab needs (its canonical y-slices plus the halo,
and for a fine axis rotation or shift corrections the few pixels the
resampling reaches), bring it into the canonical frame exactly as
:func:`tomoprior.engine.prepare` does for the whole series, run the method to
completion and return the inner part of the slab. Nothing in a task is a
closure or a live generator: a task pickles to its slab's data (or, when the
plan reads from a file, to a few kilobytes) and runs unchanged in a thread,
in another process, or on a ``dask.distributed`` worker.

Decisions that must be the same for the whole volume are made once, before
any slab runs (:meth:`SlabPlan.decide`):

* CS-TV with ``lam="auto"``: λ is searched on a few sample slabs spread
  through the volume (three by default) and their choices are combined by
  the (low) median, which stays on the search grid; every slab then uses
  that λ.
* INR with ``learn_pose``: the poses are learned on the central slab,
  folded into the geometry (:func:`~tomoprior.transforms.compose_corrections`)
  and held fixed; every slab (the central one included) is then
  reconstructed from the series aligned with them, without pose learning.

Both are recorded in ``plan.decisions`` and in the provenance.

:func:`stream_slabs` runs a plan on a scheduler (in process, ``"threads"``,
``"processes"`` or a ``dask.distributed`` scheduler address or client) and
hands every finished slab exactly once to a sink, in the frame of the input
images; :func:`assemble` collects them into one array (or a memory map);
:meth:`SlabPlan.to_dask` builds the lazy dask array behind
:func:`tomoprior.engine.reconstruct_dask`.
"""

from ._plan import LAMBDA_SAMPLES, SlabPlan, combine_lambdas, plan_slabs, sample_slabs
from ._source import FileSource, MemmapSource, Window, read_window
from ._stream import SCHEDULERS, assemble, check_scheduler, stream_slabs
from ._task import SlabTask

__all__ = [
    "LAMBDA_SAMPLES",
    "SCHEDULERS",
    "FileSource",
    "MemmapSource",
    "SlabPlan",
    "SlabTask",
    "Window",
    "assemble",
    "check_scheduler",
    "combine_lambdas",
    "plan_slabs",
    "read_window",
    "sample_slabs",
    "stream_slabs",
]
