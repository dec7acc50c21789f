"""A nested U-Net (U-Net++) for 2D slices, and a small patch discriminator.

U-Net++ (Zhou et al. 2018) replaces the plain skip connections of a U-Net
by dense nested skip pathways: node ``X[i, j]`` (depth ``i``, column ``j``)
sees every earlier node of its depth and the upsampled ``X[i+1, j-1]``, so
the decoder gets features already partly decoded at every scale. Here it
restores limited-angle reconstructions: the output is the input plus a
learned correction (residual learning), and any slice size works (the
input is padded by reflection to a multiple of ``2**(depth-1)``).

References
----------
.. [1] Z. Zhou, M. M. Rahman Siddiquee, N. Tajbakhsh, J. Liang, "UNet++: a
   nested U-Net architecture for medical image segmentation", DLMIA 2018.
.. [2] A. Jolicoeur-Martineau, "The relativistic discriminator: a key element
   missing from standard GAN", ICLR 2019 (RaLSGAN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NestedUNet", "PatchDiscriminator"]


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
        )


class NestedUNet(nn.Module):
    """U-Net++ mapping ``(n, 1, h, w)`` slices to corrected slices of the same size.

    Parameters
    ----------
    channels : sequence of int
        Feature channels per depth, e.g. ``(16, 32, 64, 128)``.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        d = len(self.channels)
        if d < 2:
            raise ValueError("a nested U-Net needs at least two depths")
        ch = self.channels
        self.nodes = nn.ModuleDict()
        for i in range(d):
            self.nodes[f"{i}_0"] = _Block(1 if i == 0 else ch[i - 1], ch[i])
        for j in range(1, d):
            for i in range(d - j):
                cin = ch[i] * j + ch[i + 1]
                self.nodes[f"{i}_{j}"] = _Block(cin, ch[i])
        self.head = nn.Conv2d(ch[0], 1, 1)
        nn.init.zeros_(self.head.weight)  # starts as the identity: output = input
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        xp = x
        if ph or pw:
            mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
            xp = F.pad(x, (0, pw, 0, ph), mode=mode)
        d = len(self.channels)
        grid: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(d):
            inp = xp if i == 0 else F.max_pool2d(grid[(i - 1, 0)], 2)
            grid[(i, 0)] = self.nodes[f"{i}_0"](inp)
        for j in range(1, d):
            for i in range(d - j):
                up = F.interpolate(grid[(i + 1, j - 1)], scale_factor=2, mode="bilinear",
                                   align_corners=False)
                feats = [grid[(i, k)] for k in range(j)] + [up]
                grid[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat(feats, 1))
        out = xp + self.head(grid[(0, d - 1)])
        return out[..., :h, :w]


class PatchDiscriminator(nn.Module):
    """A small convolutional critic giving one score per image patch (for the RaLSGAN loss)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
