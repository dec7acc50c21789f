"""Background work yields the CPU to the user interface.

A reconstruction in napari runs in a worker thread with torch's threads, one
per core; the Qt main thread that draws the canvas then competes with them
for the same cores. Measured on 2 cores under software OpenGL: napari's
``add_image`` of a result volume held the event loop 300-330 ms with the CPU
idle and 450-570 ms beside a busy worker; with the worker's threads at nice 10,
330-430 ms. A lower priority only matters when something else wants the CPU,
so an idle interface costs the computation nothing.

Linux keeps a nice value per thread, inherited by the threads a thread
starts (torch's OpenMP team for that thread among them), so lowering the
worker thread at the start of its job lowers its whole computation. Other
systems have no per-thread nice value through ``os``: there nothing changes.

Without privileges a thread cannot raise its priority again, so a pool thread
stays lowered after the job: other work that napari's thread pool later runs
on it (another plugin's background task) runs at nice 10 as well, which only
matters when the CPU is contested.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["BACKGROUND_NICE", "lower_thread_priority"]

#: nice value of background work: the event loop wins ~90 % of a contested core
BACKGROUND_NICE = 10


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> bool:
    """Lower the calling thread's CPU priority to ``nice`` (never raises it).

    Returns whether the thread now runs at ``nice`` or lower priority. Call it
    in a worker thread before its first torch operation: torch's intra-op
    threads started later inherit it, ones it already started keep theirs.
    """
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return os.getpriority(os.PRIO_PROCESS, tid) >= nice
    except OSError:
        return False
