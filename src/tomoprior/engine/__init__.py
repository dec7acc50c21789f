"""The reconstruction engine behind :func:`tomoprior.run`, split by stage.

=================  ==========================================================
``inputs``         validation, tilt selection, binning, orientation, the slab
``memory``         what a run needs, checked against the budget before it starts
``chunked``        slab layout and the whole-volume decisions of a chunked run
``session``        :class:`Reconstruction`: the iterator of Steps and its provenance
``checks``         the validation shared by the API, the command line and the widgets
``entry``          :func:`run`, :func:`run_to_end`, :func:`reconstruct_dask`
``oneshot``        :func:`reconstruct`: series and angles in, volume out
=================  ==========================================================

A series goes through them in that order. Nothing here is named ``run``
as a module, so ``tomoprior.run`` is always the function.
"""

from .entry import reconstruct_dask, run, run_to_end, summary
from .inputs import Prepared, layout, prepare
from .memory import check_memory, check_need, memory_estimate, memory_need
from .oneshot import reconstruct
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
    "reconstruct",
    "reconstruct_dask",
    "run",
    "run_to_end",
    "summary",
]
