"""The interpolation network as a file: weights plus a model card, checked when loaded.

Same layout as the restoration model (``algorithms/_restore_model.py``): a
``torch.save`` of a plain dictionary that loads with ``weights_only=True``::

    {"format": "tomoprior-interpolate", "format_version": 1,
     "card": {...}, "state": {name: float16 tensor}}

:func:`load_model` checks the format, its version, the architecture and
every tensor's shape and fails with one clear line
(:class:`~tomoprior.errors.ModelError`). A JSON copy of the card is written
beside the weights (``MODEL.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..algorithms._model_file import load_model_file, save_model_file
from ._net import InterpNet

__all__ = [
    "FORMAT", "FORMAT_VERSION", "InterpModel", "default_model_path", "load_model", "save_model",
]

FORMAT = "tomoprior-interpolate"
FORMAT_VERSION = 1


@dataclass
class InterpModel:
    """A loaded interpolation network and its card."""

    net: InterpNet
    card: dict
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.card.get("name") or (self.path.stem if self.path else "interpolate")


def save_model(path: str | os.PathLike, net: InterpNet, card: dict) -> Path:
    """Write weights (float16) and card atomically; also ``<path>.json`` with the card."""
    card = {**card, "architecture": {"name": "InterpNet", "channels": list(net.channels),
                                     "fold": net.fold_size}}
    return save_model_file(path, FORMAT, FORMAT_VERSION, net, card)


def default_model_path() -> Path:
    from ..models import DEFAULT_INTERPOLATE_MODEL

    return DEFAULT_INTERPOLATE_MODEL


def load_model(path: str | os.PathLike | None = None,
               device: str | torch.device = "cpu") -> InterpModel:
    """Load an interpolation model (default: the one shipped with the package)."""
    if path is None or str(path) in ("", "default"):
        path = default_model_path()
    net, card, path = load_model_file(
        path, FORMAT, FORMAT_VERSION, "interpolation model", "InterpNet",
        lambda arch: InterpNet(tuple(int(c) for c in arch["channels"]), int(arch["fold"])))
    return InterpModel(net.to(device), card, path)
