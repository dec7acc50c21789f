"""How much memory a reconstruction needs, checked against the budget before it starts."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import MemoryBudgetError
from .inputs import Prepared

__all__ = ["check_memory", "check_need", "memory_estimate", "memory_need"]


def memory_estimate(prepared: Prepared, chunk: int | None = None, backend: str = "sparse") -> dict:
    """A lower bound of the memory a run needs, in bytes, by what needs it.

    The output volume, the tilt series, and for each slab being solved a few
    volume-sized buffers (iterate, residual, update) and the system matrix of
    one slice (about 1.65 entries per voxel per tilt, index and value).
    """
    z, ny, nu = prepared.volume_shape
    return memory_need(int(prepared.series.shape[0]), (z, ny, nu), chunk, backend)


def memory_need(n_tilts: int, volume_shape: tuple[int, int, int], chunk: int | None = None,
                backend: str = "sparse", *, streamed: bool = False, overlap: int = 0) -> dict:
    """:func:`memory_estimate` from the shapes alone (the widgets show it before Run).

    ``streamed``: the slabs are read from a file and written out as they
    finish (``--chunk N -o vol.ome.zarr``), so only one slab (plus
    ``overlap`` halo slices each side) of the series and of the volume is
    held, whatever the volume's depth; the system matrix does not depend on
    the depth either.
    """
    n = int(n_tilts)
    z, ny, nu = (int(s) for s in volume_shape)
    slab = min(ny, chunk or ny)
    held = min(ny, slab + 2 * int(overlap)) if streamed else ny
    parts = {
        "volume": 4 * z * held * nu,
        "tilt series": 4 * n * held * nu,
        "solver buffers": 3 * 4 * z * slab * nu,
        # about 1.65 entries per voxel and tilt (float32 value, int32 index): 13 bytes each
        "system matrix": 13 * n * nu * z if backend == "sparse" else 0,
    }
    parts["total"] = sum(parts.values())
    return parts


def check_memory(prepared: Prepared, chunk: int | None = None, backend: str = "sparse") -> None:
    """Refuse a run whose lower-bound memory need exceeds what is free, before it starts."""
    check_need(memory_estimate(prepared, chunk, backend))


def check_need(need: Mapping[str, int], hint: str = "") -> None:
    """Raise :class:`MemoryBudgetError` when ``need["total"]`` exceeds the memory budget."""
    from ..io._budget import human_bytes, memory_budget

    budget = memory_budget()
    if need["total"] <= budget:
        return
    big = ", ".join(f"{k} {human_bytes(v)}" for k, v in need.items() if k != "total" and v)
    raise MemoryBudgetError(
        f"this reconstruction needs at least {human_bytes(need['total'])} of memory ({big}) "
        f"but about {human_bytes(budget)} is free{hint}"
    )
