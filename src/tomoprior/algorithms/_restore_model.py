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

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import replacing
from ..cancel import checkpoint
from ..errors import ModelError
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
    path = Path(path)
    card = {**card, "architecture": {"name": "NestedUNet", "channels": list(net.channels)}}
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "card": json.loads(json.dumps(card)),
            "state": {k: v.detach().to("cpu", torch.float16).clone() for k, v in net.state_dict().items()}}
    _atomic(path, lambda f: torch.save(blob, f))
    _atomic(path.with_suffix(".json"),
            lambda f: f.write(json.dumps(blob["card"], indent=1).encode() + b"\n"))
    return path


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> RestoreModel:
    """Load a restoration model (default: the one shipped with the package)."""
    if path is None or str(path) in ("", "default"):
        from ..models import DEFAULT_RESTORE_MODEL

        path = DEFAULT_RESTORE_MODEL
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip or torch errors: all mean "not a model file"
        raise ModelError(f"{path.name} is not a readable tomoprior model file") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path.name} is not a tomoprior restoration model")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path.name} has model format version {blob.get('format_version')}; "
                         f"this tomoprior reads version {FORMAT_VERSION}")
    card = blob.get("card") or {}
    arch = card.get("architecture") or {}
    if arch.get("name") != "NestedUNet":
        raise ModelError(f"{path.name}: unknown architecture {arch.get('name')!r}")
    try:
        net = NestedUNet(tuple(int(c) for c in arch["channels"]))
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{path.name}: the card's architecture is incomplete") from None
    state = blob.get("state")
    expected = net.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise ModelError(f"{path.name}: the weights do not match the card's architecture")
    for k, v in expected.items():
        if not torch.is_tensor(state[k]) or tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(f"{path.name}: weight {k} has shape "
                             f"{tuple(getattr(state[k], 'shape', ()))}, expected {tuple(v.shape)}")
        if not bool(torch.isfinite(state[k]).all()):
            raise ModelError(f"{path.name}: weight {k} holds NaN or infinite values")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return RestoreModel(net.to(device).eval(), card, path)


@torch.inference_mode()
def restore_volume(net: torch.nn.Module, base: torch.Tensor | np.ndarray, scale: float,
                   batch: int = 32, stop: Callable[[], bool] | None = None) -> torch.Tensor:
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
