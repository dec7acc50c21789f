"""A trained network as a file: float16 weights plus a model card, checked when loaded.

A model file is a ``torch.save`` of a plain dictionary (tensors, strings and
numbers only, so it loads with ``weights_only=True`` and runs no code)::

    {"format": FORMAT, "format_version": N, "card": {...}, "state": {name: float16 tensor}}

:func:`load_model_file` checks the format, its version, the architecture the
card names and every tensor's shape and values, and fails with one clear
line (:class:`~tomoprior.errors.ModelError`). :func:`save_model_file` writes
the file and a JSON copy of the card beside it (``MODEL.json``), atomically.
Each kind of model (restoration, interpolation) names its format and how
to build its network from the card's ``architecture``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._atomic import replacing
from ..errors import ModelError

__all__ = ["load_model_file", "save_model_file"]


def _atomic(path: Path, write: Callable[[Any], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)


def save_model_file(path: str | os.PathLike, fmt: str, version: int, net: torch.nn.Module,
                    card: dict) -> Path:
    """Write ``net``'s weights (float16) and ``card``; also ``<path>.json`` with the card."""
    path = Path(path)
    blob = {"format": fmt, "format_version": version, "card": json.loads(json.dumps(card)),
            "state": {k: v.detach().to("cpu", torch.float16).clone()
                      for k, v in net.state_dict().items()}}
    _atomic(path, lambda f: torch.save(blob, f))
    _atomic(path.with_suffix(".json"),
            lambda f: f.write(json.dumps(blob["card"], indent=1).encode() + b"\n"))
    return path


def load_model_file(path: str | os.PathLike, fmt: str, version: int, what: str,
                    architecture: str, build: Callable[[dict], torch.nn.Module]
                    ) -> tuple[torch.nn.Module, dict, Path]:
    """The network (float32, eval mode, on the CPU), its card and the path.

    ``what`` names the kind of model in messages ("restoration model");
    ``build(arch)`` makes the untrained network from the card's
    ``architecture`` entry, whose ``name`` must be ``architecture``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip or torch errors: all mean "not a model file"
        raise ModelError(f"{path.name} is not a readable tomoprior model file") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ModelError(f"{path.name} is not a tomoprior {what}")
    if blob.get("format_version") != version:
        raise ModelError(f"{path.name} has model format version {blob.get('format_version')}; "
                         f"this tomoprior reads version {version}")
    card = blob.get("card") or {}
    arch = card.get("architecture") or {}
    if arch.get("name") != architecture:
        raise ModelError(f"{path.name}: unknown architecture {arch.get('name')!r}")
    try:
        net = build(arch)
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
    return net.eval(), card, path
