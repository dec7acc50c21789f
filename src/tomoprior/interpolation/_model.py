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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._atomic import replacing
from ..errors import ModelError
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
    path = Path(path)
    card = {**card, "architecture": {"name": "InterpNet", "channels": list(net.channels),
                                     "fold": net.fold_size}}
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "card": json.loads(json.dumps(card)),
            "state": {k: v.detach().to("cpu", torch.float16).clone()
                      for k, v in net.state_dict().items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        torch.save(blob, f)
    with replacing(path.with_suffix(".json")) as tmp, open(tmp, "wb") as f:
        f.write(json.dumps(blob["card"], indent=1).encode() + b"\n")
    return path


def default_model_path() -> Path:
    from ..models import DEFAULT_INTERPOLATE_MODEL

    return DEFAULT_INTERPOLATE_MODEL


def load_model(path: str | os.PathLike | None = None,
               device: str | torch.device = "cpu") -> InterpModel:
    """Load an interpolation model (default: the one shipped with the package)."""
    if path is None or str(path) in ("", "default"):
        path = default_model_path()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip or torch errors: all mean "not a model file"
        raise ModelError(f"{path.name} is not a readable tomoprior model file") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path.name} is not a tomoprior interpolation model")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path.name} has model format version {blob.get('format_version')}; "
                         f"this tomoprior reads version {FORMAT_VERSION}")
    card = blob.get("card") or {}
    arch = card.get("architecture") or {}
    if arch.get("name") != "InterpNet":
        raise ModelError(f"{path.name}: unknown architecture {arch.get('name')!r}")
    try:
        net = InterpNet(tuple(int(c) for c in arch["channels"]), int(arch["fold"]))
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
    return InterpModel(net.to(device).eval(), card, path)
