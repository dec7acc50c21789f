"""Learned interpolation: the network of :mod:`._net` predicts each virtual frame.

The measured series is brought into the network's frame (shift corrections
applied, tilt axis along the rows; :mod:`._frames`), normalised by its own
0.5th and 99.5th percentiles (as in training), padded to a multiple of the
network's size step (edge values repeated), and each virtual frame is
predicted from its two measured neighbours, the gap and its position. The
predictions are scaled back and turned into the input frame.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..cancel import checkpoint
from ..phantoms._triplets import normalisation
from ._frames import from_axis_frame, to_axis_frame
from ._model import InterpModel
from ._plan import AnglePlan

__all__ = ["TRAINED_GAPS", "learned_frames"]

TRAINED_GAPS = (2.0, 20.0)


@torch.inference_mode()
def learned_frames(series: np.ndarray, plan: AnglePlan, model: InterpModel, *,
                   tilt_axis: float = 0.0, shifts: np.ndarray | None = None,
                   virtual_shifts: np.ndarray | None = None, batch: int = 4,
                   progress: Callable[[str], None] | None = None) -> np.ndarray:
    """The virtual frames of ``plan`` (in plan order), predicted by ``model``.

    Parameters
    ----------
    series : (n_tilts, rows, cols)
        The measured frames, input order.
    plan : AnglePlan
    model : InterpModel
    tilt_axis : float
        The series' tilt-axis orientation (degrees, package convention).
    shifts : (n_tilts, 2), optional
        Shift corrections of the measured frames (applied before prediction).
    virtual_shifts : (n_virtual, 2), optional
        Shift corrections given to the virtual frames (their content is
        displaced by minus these, as a measured frame's would be).
    """
    net = model.net
    dev = next(net.parameters()).device
    need = np.unique(np.concatenate([plan.left[~plan.measured], plan.right[~plan.measured]]))
    canon = {int(i): to_axis_frame(series[i:i + 1], tilt_axis,
                                   None if shifts is None else shifts[i:i + 1])[0] for i in need}
    sample = np.stack([canon[i] for i in need[:: max(1, need.size // 64)]]) if need.size else None
    lo, scale = normalisation(sample) if sample is not None else (0.0, 1.0)
    idx = np.flatnonzero(~plan.measured)
    if idx.size == 0:
        return np.zeros((0, *series.shape[1:]), np.float32)
    h, w = next(iter(canon.values())).shape
    m = net.multiple
    ph, pw = -h % m, -w % m
    out_c = np.empty((idx.size, h, w), np.float32)

    def stack(ids) -> torch.Tensor:
        a = torch.from_numpy(np.stack([(canon[int(i)] - lo) / scale for i in ids]))[:, None]
        a = a.to(dev, torch.float32)
        return F.pad(a, (0, pw, 0, ph), mode="replicate") if ph or pw else a

    for k0 in range(0, idx.size, batch):
        checkpoint()
        sel = idx[k0:k0 + batch]
        t = torch.as_tensor(plan.t[sel], dtype=torch.float32, device=dev)
        gap = torch.as_tensor(plan.gaps[sel], dtype=torch.float32, device=dev)
        pred = net(stack(plan.left[sel]), stack(plan.right[sel]), t, gap)[:, 0, :h, :w]
        out_c[k0:k0 + len(sel)] = pred.float().cpu().numpy() * scale + lo
        if progress is not None:
            progress(f"{min(k0 + batch, idx.size)}/{idx.size} frames")
    return from_axis_frame(out_c, tilt_axis, virtual_shifts)
