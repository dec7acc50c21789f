"""Chunked runs: the slab layout, and the decisions made once for the whole volume.

A run with ``chunk=`` reconstructs slab after slab in one iterator. Two
choices must then hold for every slab: CS-TV's ``lam="auto"`` (searched on
sample slabs, combined by the median) and an INR's learned poses (learned on
the central slab, then held fixed), as :meth:`tomoprior.slabs.SlabPlan.decide`
does for slab plans.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import DataError
from ..operators import make_projector
from ..step import Step
from .inputs import _is_dask

if TYPE_CHECKING:
    from .session import Reconstruction

__all__ = ["choose_global_lambda", "chunks", "learn_global_poses"]


def chunks(n: int, chunk: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    """(inner_start, inner_stop, outer_start, outer_stop) slabs covering ``range(n)``."""
    if not chunk or chunk >= n:
        return [(0, n, 0, n)]
    out = []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        out.append((s, e, max(0, s - overlap), min(n, e + overlap)))
    return out


def learn_global_poses(rec: Reconstruction, held: np.ndarray | None, full: np.ndarray) -> Iterator[Step]:
    """The INR's ``learn_pose`` for a chunked run: poses learned once on the central slab,
    then held fixed: the canonical series is aligned with them (one more bilinear
    resampling) and every slab is fitted to it without pose learning (as
    :meth:`tomoprior.slabs.SlabPlan.decide`, which aligns the raw images instead).
    Streams the central slab's steps (``phase="pose learning"``); returns the poses."""
    from ..transforms import warp_images

    p, m = rec.prepared, rec.method
    z, ny, nu = p.volume_shape
    width = min(ny, int(rec._chunk))
    s = (ny - width) // 2
    e, os_, oe = s + width, max(0, s - rec._overlap), min(ny, s + width + rec._overlap)
    A = make_projector(p.geometry.angles, (z, oe - os_, nu), nu, backend=rec.backend,
                       device=rec.device)
    kw: dict[str, Any] = {**rec.params, "iterations": rec.iterations, "every": rec.every,
                          "seed": rec.seed}
    if held is not None:
        kw["mask"] = torch.from_numpy(~held[:, os_:oe])
    last = None
    gen = m.function(A, rec._slab_data(os_, oe), **kw)
    try:
        for last in gen:
            full[:, s:e] = last.volume[:, s - os_ : e - os_]
            yield replace(last, volume=full.copy(), phase="pose learning", chunk=None)
    finally:
        gen.close()
    if last is None or last.poses is None:
        raise DataError("the INR learned no poses on the central slab")
    poses = dict(last.poses)
    series = p.series.compute() if _is_dask(p.series) else np.asarray(p.series, np.float32)
    with torch.no_grad():
        rec._aligned = warp_images(
            torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32)),
            torch.as_tensor(np.asarray(poses["shifts"]), dtype=torch.float32),
            float(poses["axis_correction"]), padding_mode="border").numpy()
    rec.decisions["poses"] = {"slab": [s, e], "poses": poses,
                               "geometry": rec.learned_geometry(poses).to_dict(),
                               "rule": "learned on the central slab, then held fixed for "
                               "every slab"}
    full[:] = 0
    return poses

def choose_global_lambda(rec: Reconstruction, held: np.ndarray | None, full: np.ndarray) -> Iterator[Step]:
    """CS-TV's ``lam="auto"`` for a chunked run: searched once on sample slabs spread
    through the volume and combined (as :meth:`tomoprior.slabs.SlabPlan.decide`), so
    every slab uses the same λ. Streams the searches' steps; returns λ."""
    from ..slabs import combine_lambdas, sample_slabs

    p, m = rec.prepared, rec.method
    z, ny, nu = p.volume_shape
    samples = sample_slabs(ny, int(rec._chunk), rec._overlap)
    found: list[dict[str, Any]] = []
    for i, (s, e, os_, oe) in enumerate(samples):
        A = make_projector(p.geometry.angles, (z, oe - os_, nu), nu, backend=rec.backend,
                           device=rec.device)
        kw: dict[str, Any] = {**rec.params, "lam": "auto", "iterations": rec.iterations,
                              "every": 1, "seed": rec.seed}
        if held is not None:
            kw["mask"] = torch.from_numpy(~held[:, os_:oe])
        gen = m.function(A, rec._slab_data(os_, oe), **kw)
        try:
            for st in gen:
                if st.phase != "lambda search":
                    found.append({"slab": [s, e], "lam": float(st.extras["lam"]),
                                  "search": [dict(r) for r in st.search]})
                    break
                full[:, s:e] = st.volume[:, s - os_ : e - os_]
                frac = (i + float(st.extras.get("phase_fraction", 0.0))) / len(samples)
                yield replace(st, volume=full.copy(), chunk=None, resume=None,
                              extras={**st.extras, "sample_slab": i + 1,
                                      "sample_slabs": len(samples), "phase_fraction": frac})
        finally:
            gen.close()
    lam = combine_lambdas([f["lam"] for f in found])
    rec.decisions["lam"] = {"value": lam, "rule": "median of the λ chosen on sample slabs",
                             "samples": found}
    full[:] = 0
    return lam
