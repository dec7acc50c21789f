"""The reconstruction engine behind :func:`tomoprior.run`, split by stage.

=================  ==========================================================
``inputs``         validation, tilt selection, binning, orientation, the slab
``memory``         what a run needs, checked against the budget before it starts
``chunked``        slab layout and the whole-volume decisions of a chunked run
``session``        :class:`Reconstruction`: the iterator of Steps and its provenance
``entry``          :func:`run`, :func:`run_to_end`, :func:`reconstruct_dask`
=================  ==========================================================

A series goes through them in that order. Nothing here is named ``run``
as a module, so ``tomoprior.run`` is always the function.
"""

from .entry import reconstruct_dask, run, run_to_end, summary
from .inputs import Prepared, layout, prepare
from .memory import check_memory, check_need, memory_estimate, memory_need
from .session import Reconstruction

__all__ = [
    "Prepared",
    "Reconstruction",
    "check_memory",
    "check_need",
    "layout",
    "memory_estimate",
    "memory_need",
    "prepare",
    "reconstruct_dask",
    "run",
    "run_to_end",
    "summary",
]
