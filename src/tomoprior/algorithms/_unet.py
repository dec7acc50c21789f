"""The encoder-decoder with skip connections used as a Deep Image Prior.

A compact U-Net in the spirit of Ulyanov et al. and Baguer et al.: each
level has two 3x3 convolutions with group normalisation and leaky ReLU,
strided convolutions go down, bilinear (trilinear) upsampling comes back up,
and thin 1x1 skip branches join the levels. The same code builds a 2D
network (slices as the batch) or a 3D one (the volume as one sample).
Group (not batch) normalisation makes every slice's output independent of
which other slices share its batch, so slabs of slices can be processed in
any grouping.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SkipNet"]


def _norm(channels: int) -> nn.Module:
    return nn.GroupNorm(min(4, channels), channels)


def _layers(dims: int):
    if dims == 2:
        return nn.Conv2d, _norm, "bilinear"
    if dims == 3:
        return nn.Conv3d, _norm, "trilinear"
    raise ValueError("dims must be 2 or 3")


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, dims: int, stride: int = 1) -> None:
        super().__init__()
        conv, bn, _ = _layers(dims)
        self.body = nn.Sequential(
            conv(cin, cout, 3, stride=stride, padding=1, bias=False),
            bn(cout),
            nn.LeakyReLU(0.2, inplace=True),
            conv(cout, cout, 3, padding=1, bias=False),
            bn(cout),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SkipNet(nn.Module):
    """U-Net style DIP generator.

    Parameters
    ----------
    in_channels : int
        Channels of the fixed random input.
    channels : sequence of int
        Feature channels per level, e.g. ``(16, 32, 64)``.
    skip_channels : int
        Channels of each skip branch (at least 1).
    dims : 2 or 3
    """

    def __init__(
        self,
        in_channels: int = 8,
        channels: Sequence[int] = (16, 32, 64),
        skip_channels: int = 4,
        dims: int = 2,
    ) -> None:
        super().__init__()
        if skip_channels < 1:
            raise ValueError("skip_channels must be at least 1")
        conv, bn, self.mode = _layers(dims)
        self.dims = dims
        chs = list(channels)
        self.depth = len(chs)
        self.down = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.up = nn.ModuleList()
        cin = in_channels
        for c in chs:
            self.skips.append(
                nn.Sequential(conv(cin, skip_channels, 1, bias=False), bn(skip_channels),
                              nn.LeakyReLU(0.2, inplace=True))
            )
            self.down.append(_Block(cin, c, dims, stride=2))
            cin = c
        for i in reversed(range(self.depth)):
            c_below = chs[i]
            c_out = chs[i - 1] if i > 0 else chs[0]
            self.up.append(_Block(c_below + skip_channels, c_out, dims))
        self.head = conv(chs[0], 1, 1)

    @staticmethod
    def max_depth(shape: Sequence[int]) -> int:
        """Deepest network whose coarsest level keeps at least 2 pixels per axis."""
        d = 0
        while min(shape) // 2 ** (d + 1) >= 2:
            d += 1
        return d

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        skips = []
        h = z
        for skip, down in zip(self.skips, self.down):
            skips.append(skip(h))
            h = down(h)
        for up, s in zip(self.up, reversed(skips)):
            h = F.interpolate(h, size=s.shape[2:], mode=self.mode, align_corners=False)
            h = up(torch.cat([h, s], dim=1))
        return self.head(h)
