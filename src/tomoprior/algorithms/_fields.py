"""Coordinate networks ``f(x, y, z) -> density >= 0`` for the INR method.

Coordinates are normalised to ``[-1, 1]`` over the volume box (voxel centres
at the ends), in ``(x, y, z)`` order, shaped ``(..., 3)``.

``GridField``
    Multiresolution dense feature grids (coarse to fine) read by trilinear
    interpolation and decoded by a small MLP (as Instant-NGP, without
    hashing since tomograms are small enough). Fine levels are switched on
    progressively, so the field fits coarse structure first. Fast on a CPU.
``SirenField``
    A sine-activated MLP (SIREN), the network of the INR tomography study.
``FourierField``
    Random Fourier features followed by a ReLU MLP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError

__all__ = ["FIELDS", "FourierField", "GridField", "SirenField", "make_field"]


class GridField(nn.Module):
    """Multiresolution feature grids + MLP decoder."""

    def __init__(self, shape: Sequence[int], levels: int = 5, features: int = 4,
                 coarsest: int = 8, hidden: int = 32) -> None:
        super().__init__()
        shape = tuple(int(s) for s in shape)  # (z, y, x)
        finest = max(shape)
        levels = max(1, min(levels, int(math.log2(max(finest / coarsest, 1))) + 1))
        self.grids = nn.ParameterList()
        for i in range(levels):
            r = coarsest * (finest / coarsest) ** (i / max(levels - 1, 1)) if levels > 1 else finest
            dims = [max(2, math.ceil(s * r / finest)) for s in shape]
            self.grids.append(nn.Parameter(1e-2 * (torch.rand(1, features, *dims) * 2 - 1)))
        self.levels = levels
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(levels * features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 1))
        self.register_buffer("level_weights", torch.ones(levels))

    def set_progress(self, t: float) -> None:
        """Coarse-to-fine: levels fade in over ``t`` in [0, 1] (all on at ``t >= 1``)."""
        n = self.levels
        w = torch.clamp(t * n - torch.arange(n, dtype=torch.float32) + 1.0, 0.0, 1.0)
        w[0] = 1.0
        self.level_weights.copy_(w.to(self.level_weights))

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        lead = pts.shape[:-1]
        g = pts.reshape(1, -1, 1, 1, 3)
        feats = []
        for i, grid in enumerate(self.grids):
            f = F.grid_sample(grid, g, mode="bilinear", padding_mode="border", align_corners=True)
            feats.append(f.reshape(self.features, -1) * self.level_weights[i])
        h = torch.cat(feats, 0).t()
        out = F.softplus(self.mlp(h)).reshape(lead)
        return out * (pts.abs() <= 1.0).all(-1)


class _Sine(nn.Module):
    def __init__(self, cin: int, cout: int, w0: float, first: bool) -> None:
        super().__init__()
        self.w0 = w0
        self.lin = nn.Linear(cin, cout)
        bound = 1 / cin if first else math.sqrt(6 / cin) / w0
        nn.init.uniform_(self.lin.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.lin(x))


class SirenField(nn.Module):
    """SIREN (Sitzmann et al. 2020) with a softplus output."""

    def __init__(self, shape: Sequence[int], width: int = 128, depth: int = 3, w0: float = 30.0,
                 **_: object) -> None:
        super().__init__()
        layers = [_Sine(3, width, w0, True)] + [_Sine(width, width, 1.0 * w0, False)
                                                 for _ in range(depth - 1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        nn.init.uniform_(self.head.weight, -math.sqrt(6 / width) / w0, math.sqrt(6 / width) / w0)

    def set_progress(self, t: float) -> None:  # no schedule
        pass

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        out = F.softplus(self.head(self.body(pts)))[..., 0]
        inside = (pts.abs() <= 1.0).all(-1)
        return out * inside


class FourierField(nn.Module):
    """Gaussian random Fourier features (Tancik et al. 2020) + ReLU MLP."""

    def __init__(self, shape: Sequence[int], width: int = 64, depth: int = 2, n_features: int = 64,
                 sigma: float = 6.0, **_: object) -> None:
        super().__init__()
        self.register_buffer("B", torch.randn(3, n_features) * sigma)
        layers: list[nn.Module] = [nn.Linear(2 * n_features, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def set_progress(self, t: float) -> None:
        pass

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * pts @ self.B
        out = F.softplus(self.mlp(torch.cat([torch.sin(proj), torch.cos(proj)], -1)))[..., 0]
        return out * (pts.abs() <= 1.0).all(-1)


FIELDS = {"grid": GridField, "siren": SirenField, "fourier": FourierField}


def make_field(kind: str, shape: Sequence[int], **kwargs) -> nn.Module:
    try:
        cls = FIELDS[kind]
    except KeyError:
        raise ParameterError(f"unknown field {kind!r}: choose from {', '.join(FIELDS)}") from None
    return cls(shape, **kwargs)
