"""DIP-TV's network when it starts from the trained restoration model.

Baguer, Leuschner and Schmidt (2020) start a Deep Image Prior from a trained
reconstruction network instead of random weights: the network's first output
is already the learned reconstruction, and fitting it to the measured
projections (with TV and held-out stopping) makes it consistent with the data.
Here the network is the restoration U-Net++ and its fixed input the base
reconstruction's slices across the tilt axis, normalised as in training.
"""

from __future__ import annotations

import torch

from ._restore_model import RestoreModel

__all__ = ["PretrainedGenerator"]


class PretrainedGenerator:
    """The restoration network on fixed base slices; maps to a canonical ``(z, y, x)`` volume.

    ``base`` is the base reconstruction in DIP-TV's units (data divided by
    its scale); ``base_scale`` its normalisation for the network (the
    99.5th percentile, as in training), in the same units.
    """

    mode = "2d"

    def __init__(self, base: torch.Tensor, model: RestoreModel, base_scale: float,
                 device: torch.device) -> None:
        self.net = model.net.to(device).train()
        for p in self.net.parameters():
            p.requires_grad_(True)
        self.scale = float(base_scale)
        # (y, 1, z, x): slices across the tilt axis are the batch
        z = (base.float() / self.scale).permute(1, 0, 2)[:, None]
        self.z = z.to(device).contiguous(memory_format=torch.channels_last)

    def __call__(self, sl: slice | None = None) -> torch.Tensor:
        z = self.z if sl is None else self.z[sl]
        return (self.net(z)[:, 0] * self.scale).permute(1, 0, 2)

    @torch.no_grad()
    def full(self, chunk: int = 64) -> torch.Tensor:
        ny = self.z.shape[0]
        return torch.cat([self(slice(i, min(ny, i + chunk))) for i in range(0, ny, chunk)], dim=1)
