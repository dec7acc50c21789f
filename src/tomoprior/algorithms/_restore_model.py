"""The restoration network as a file: weights plus a model card, checked when loaded.

A model file is a ``torch.save`` of a plain dictionary (tensors, strings and
numbers only, so it loads with ``weights_only=True`` and runs no code)::

    {"format": "tomoprior-restore", "format_version": 1,
     "card": {...}, "state": {name: float16 tensor}}

The card says what the network was trained on (generator, ranges, seed,
steps), how it normalises intensities, the validation table and the package
version. :func:`load_model` checks the format, the version and every tensor's
shape and fails with one clear line (:class:`~tomoprior.errors.ModelError`).
A JSON copy of the card is written beside the weights (``MODEL.json``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cancel import checkpoint
from ._model_file import load_model_file, save_model_file
from ._unetpp import NestedUNet

__all__ = [
    "FORMAT", "FORMAT_VERSION", "RestoreModel", "load_model", "restore_volume", "save_model",
]

FORMAT = "tomoprior-restore"
FORMAT_VERSION = 1


@dataclass
class RestoreModel:
    """A loaded restoration network and its card."""

    net: NestedUNet
    card: dict
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.card.get("name") or (self.path.stem if self.path else "restore")


def save_model(path: str | os.PathLike, net: NestedUNet, card: dict) -> Path:
    """Write weights (float16) and card atomically; also ``<path>.json`` with the card."""
    card = {**card, "architecture": {"name": "NestedUNet", "channels": list(net.channels)}}
    return save_model_file(path, FORMAT, FORMAT_VERSION, net, card)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> RestoreModel:
    """Load a restoration model: a file, or a shipped one by name (default: restore_default).

    The package ships ``restore_default`` (the default) and ``restore_broad``
    (also trained on domain-randomised matter; docs/models/restore_broad.md).
    """
    from ..models import DEFAULT_RESTORE_MODEL, MODEL_DIR

    if path is None or str(path) in ("", "default"):
        path = DEFAULT_RESTORE_MODEL
    elif (MODEL_DIR / f"{path}.pt").is_file() and not Path(str(path)).suffix \
            and Path(str(path)).name == str(path):
        path = MODEL_DIR / f"{path}.pt"  # a shipped model by name
    net, card, path = load_model_file(
        path, FORMAT, FORMAT_VERSION, "restoration model", "NestedUNet",
        lambda arch: NestedUNet(tuple(int(c) for c in arch["channels"])))
    return RestoreModel(net.to(device), card, path)


@torch.inference_mode()
def restore_volume(net: torch.nn.Module, base: torch.Tensor | np.ndarray, scale: float,
                   batch: int = 8, stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """Apply the network to every y-slice ``(z, x)`` of a canonical volume ``(z, y, x)``."""
    vol = torch.as_tensor(np.asarray(base) if not torch.is_tensor(base) else base)
    p = next(net.parameters())
    z, ny, nx = vol.shape
    out = torch.empty((z, ny, nx), dtype=torch.float32)
    for i in range(0, ny, batch):
        checkpoint()
        sl = vol[:, i:i + batch].permute(1, 0, 2)[:, None].to(p.device, p.dtype) / scale
        sl = sl.contiguous(memory_format=torch.channels_last)
        out[:, i:i + batch] = (net(sl)[:, 0] * scale).permute(1, 0, 2).float().cpu()
        if stop is not None and stop():
            break
    return out
