"""The linear (Joseph) parallel-beam system matrix, built without ASTRA.

The matrix is that of ASTRA's 2D ``linear`` projector for a ``parallel``
geometry with unit pixels and unit detector elements, centred on the
volume: rows ``t * n_det + u``, columns ``z * nx + x`` (row ``z = 0`` at the
top of ASTRA's volume window, ray direction ``(-sin a, cos a)``, detector
direction ``(cos a, sin a)``). Each ray is stepped one pixel at a time along
the axis it runs along most (rows when ``|sin a| < |cos a|``, else columns);
at each step its crossing with the pixel centre line falls between two
pixels, which share the ray's path per step, ``1 / max(|cos a|, |sin a|)``,
linearly by distance.

The crossings are computed in float64 as ``c0 + k * dc``. ASTRA forms them in
float32 by a running sum, which drifts: at 256 pixels its weights differ
from the exact ones by up to 3e-3 near the far edge of the volume, and a
crossing that lands within that drift of a pixel edge moves one entry to
the neighbouring pixel. Everything else (the stepping axis, the two
pixels, the weights) is the same, so projections agree with ASTRA's to a
few 1e-5 relative (tests/test_joseph.py).

The work is vectorised over all rays with the same stepping axis: one
numpy operation per row (or column) of the volume. Entries are gathered in
int32/float32 (12 bytes each) before the CSR matrix is formed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

__all__ = ["linear_matrix"]

_NEGLIGIBLE = 1e-7  # entries this small a share of the largest are dropped


def _entries(c0: np.ndarray, dc: np.ndarray, length: np.ndarray, ray_row: np.ndarray,
             n_steps: int, n_across: int, pixel_index) -> tuple[np.ndarray, ...]:
    """Matrix entries ``(row, col, weight)`` of rays stepped along an axis of ``n_steps`` pixels.

    ``c0`` (one per ray) is the crossing with the first pixel centre line, in
    pixel units across, ``dc`` its change per step, ``length`` the ray's path
    per step and ``ray_row`` its matrix row; ``pixel_index(step, across)``
    gives the column. Entries come out in int32/float32, 12 bytes each.
    """
    rows, cols, weights = [], [], []
    for k in range(n_steps):
        c = c0 + k * dc
        col = np.floor(c)
        inside = (col >= -1) & (col < n_across)
        if not inside.any():
            continue
        cl = col[inside]
        off = c[inside] - cl
        ci = cl.astype(np.int64)
        r, ln = ray_row[inside], length[inside]
        left, right = ci >= 0, ci + 1 < n_across
        rows += [r[left], r[right]]
        cols += [pixel_index(k, ci[left]).astype(np.int32),
                 pixel_index(k, ci[right] + 1).astype(np.int32)]
        weights += [((1.0 - off) * ln)[left].astype(np.float32),
                    (off * ln)[right].astype(np.float32)]
    return tuple(np.concatenate(x) if x else np.zeros(0, t) for x, t in
                 ((rows, np.int32), (cols, np.int32), (weights, np.float32)))


def linear_matrix(angles_deg, nz: int, nx: int, n_det: int,
                  dtype=np.float32) -> scipy.sparse.csr_matrix:
    """The system matrix (CSR, int32 indices, ``dtype``), shape ``(n_tilts * n_det, nz * nx)``.

    Weights are computed in float64 and stored in float32 (then ``dtype``);
    entries below float32 rounding noise are left out and the column indices
    of every row are sorted.
    """
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64).ravel())
    nz, nx, n_det = int(nz), int(nx), int(n_det)
    s, c = np.sin(a), np.cos(a)
    # the stepping axis as ASTRA decides it, in float32 (at 45 degrees the two tie)
    vertical = np.abs(s.astype(np.float32)) < np.abs(c.astype(np.float32))
    ex, ey = -nx / 2 + 0.5, nz / 2 - 0.5  # centre of the top-left pixel
    u = np.arange(n_det) + 0.5 - n_det / 2
    parts = []
    for vert in (True, False):
        tilts = np.flatnonzero(vertical == vert)
        if tilts.size == 0:
            continue
        st, ct = s[tilts, None], c[tilts, None]
        dx, dy = u * ct, u * st  # detector element centres
        if vert:  # step down the rows; the crossing moves across columns
            ratio = -st / ct
            c0, n_steps, n_across = dx + (ey - dy) * ratio - ex, nz, nx
            length = 1.0 / np.abs(ct)

            def index(k, across):
                return k * nx + across
        else:  # step along the columns; the crossing moves across rows
            ratio = ct / -st
            c0, n_steps, n_across = -(dy + (ex - dx) * ratio - ey), nx, nz
            length = 1.0 / np.abs(st)

            def index(k, across):
                return across * nx + k
        shape = (tilts.size, n_det)
        ray_row = (tilts[:, None] * n_det + np.arange(n_det)).astype(np.int32).ravel()
        parts.append(_entries(c0.ravel(), np.broadcast_to(-ratio, shape).ravel(),
                              np.broadcast_to(length, shape).ravel(), ray_row,
                              n_steps, n_across, index))
    r, k, w = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i in range(3))
    parts.clear()
    keep = w > _NEGLIGIBLE * w.max(initial=0.0)  # float32 rounding noise at pixel edges
    m = scipy.sparse.csr_matrix((w[keep].astype(dtype, copy=False), (r[keep], k[keep])),
                                shape=(a.size * n_det, nz * nx))
    m.sort_indices()
    return m
