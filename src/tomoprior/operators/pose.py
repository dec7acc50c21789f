"""Pose-differentiable projection: per-tilt shifts, axis rotation, angle offsets.

A measured (unaligned) image is modelled as the canonical projection seen
through the inverse of the alignment correction: with a correction of shift
``s`` and in-plane rotation ``r`` (the values that would align the image,
see :mod:`tomoprior.transforms`), the raw pixel at ``q`` shows the canonical
projection at ``R(r) (q - c) + c + s``. Tilt-angle offsets change the
projection itself (they need the ``rotate`` backend, which is differentiable
in the angles). All pose values are tensors with gradients, so a
reconstruction method can refine them jointly with the volume.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import GeometryError
from ..transforms import warp_images
from .base import Projector
from .rotate import RotateProjector

__all__ = ["PoseModel", "posed_forward"]


class PoseModel(nn.Module):
    """Learnable alignment of a tilt series.

    Parameters
    ----------
    n_tilts : int
    reference : int
        Index of the tilt whose shift stays fixed at its initial value
        (usually the one nearest 0°), which removes the global-translation
        ambiguity.
    shifts, axis, angle_offsets : optional initial values
        ``(n, 2)`` shift corrections in pixels, global in-plane axis
        correction in degrees, ``(n,)`` tilt-angle offsets in degrees.
    per_tilt_axis : bool
        Also learn a per-tilt in-plane rotation on top of the global one.
    """

    def __init__(
        self,
        n_tilts: int,
        reference: int = 0,
        *,
        shifts: np.ndarray | None = None,
        axis: float = 0.0,
        angle_offsets: np.ndarray | None = None,
        per_tilt_axis: bool = False,
        learn_angles: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= reference < n_tilts:
            raise GeometryError(f"reference tilt {reference} out of range 0..{n_tilts - 1}")
        self.n_tilts = int(n_tilts)
        self.reference = int(reference)
        s0 = torch.zeros(n_tilts, 2, dtype=torch.float64)
        if shifts is not None:
            s0 = torch.as_tensor(np.asarray(shifts, dtype=np.float64)).reshape(n_tilts, 2).clone()
        self.register_buffer("shift_init", s0.float())
        self.shift_delta = nn.Parameter(torch.zeros(n_tilts, 2))
        self.axis = nn.Parameter(torch.tensor(float(axis)))
        self.axis_per_tilt = nn.Parameter(torch.zeros(n_tilts), requires_grad=per_tilt_axis)
        a0 = np.zeros(n_tilts) if angle_offsets is None else np.asarray(angle_offsets, float)
        self.angle_offsets = nn.Parameter(torch.as_tensor(a0, dtype=torch.float32).clone(),
                                          requires_grad=learn_angles)
        self.per_tilt_axis = per_tilt_axis
        self.learn_angles = learn_angles
        mask = torch.ones(n_tilts, 1)
        mask[self.reference] = 0.0
        self.register_buffer("_shift_mask", mask)

    def shifts(self) -> torch.Tensor:
        """Current ``(n, 2)`` shift corrections (reference tilt held fixed)."""
        return self.shift_init + self.shift_delta * self._shift_mask

    def rotations(self) -> torch.Tensor:
        """Current per-tilt in-plane rotation corrections in degrees."""
        rot = self.axis.expand(self.n_tilts)
        if self.per_tilt_axis:
            rot = rot + self.axis_per_tilt - self.axis_per_tilt[self.reference]
        return rot

    def offsets(self) -> torch.Tensor:
        return self.angle_offsets - self.angle_offsets[self.reference]

    def param_groups(self, lr_shift: float, lr_angle: float) -> list[dict]:
        """Optimiser groups with separate learning rates for shifts and angles."""
        groups = [{"params": [self.shift_delta], "lr": lr_shift}]
        ang = [self.axis]
        if self.per_tilt_axis:
            ang.append(self.axis_per_tilt)
        if self.learn_angles:
            ang.append(self.angle_offsets)
        groups.append({"params": ang, "lr": lr_angle})
        return groups

    def as_dict(self) -> dict:
        """Current alignment as plain numbers (JSON-ready)."""
        with torch.no_grad():
            return {
                "shifts": self.shifts().cpu().double().numpy().round(4).tolist(),
                "axis_correction": float(self.axis),
                "rotations": self.rotations().cpu().double().numpy().round(4).tolist(),
                "angle_offsets": self.offsets().cpu().double().numpy().round(4).tolist(),
                "reference": self.reference,
            }


def unwarp_images(images: torch.Tensor, shifts: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Raw-frame images from canonical ones: inverse of the alignment correction."""
    return warp_images(images, shifts, rotations, inverse=True)


def posed_forward(op: Projector, x: torch.Tensor, pose: PoseModel) -> torch.Tensor:
    """Project ``x`` and map the projections to the raw (unaligned) image frame.

    Gradients reach ``x`` and every learnable pose value.
    """
    if pose.learn_angles:
        if not isinstance(op, RotateProjector):
            raise GeometryError("learning tilt-angle offsets needs the 'rotate' projector backend")
        p = op.project(x, pose.offsets())
    else:
        p = op(x)
    batched = p.ndim == 4
    pp = p if batched else p[None]
    out = torch.stack(
        [unwarp_images(pi, pose.shifts().to(pi), pose.rotations().to(pi)) for pi in pp]
    )
    return out if batched else out[0]
