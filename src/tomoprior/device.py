"""Choice of compute device: ``"auto"`` picks CUDA when torch sees one."""

from __future__ import annotations

import torch

from .errors import MethodUnavailable

__all__ = ["available_devices", "describe_device", "resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a torch device.

    ``"auto"`` (or ``None``) picks the first CUDA device when torch sees one,
    else the CPU. Asking for CUDA on a machine without it raises
    :class:`~tomoprior.errors.MethodUnavailable` with a clear message.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise MethodUnavailable(
                f"device {device!r} not understood: use auto, cpu or cuda"
            ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MethodUnavailable(
            "CUDA was requested but torch sees no GPU (a CPU build of torch, or no driver); "
            "use device 'auto' or 'cpu'"
        )
    if dev.type not in ("cpu", "cuda"):
        raise MethodUnavailable(f"device type {dev.type!r} is not supported: use cpu or cuda")
    return dev


def available_devices() -> list[str]:
    """Names a user can pick: ``auto``, ``cpu`` and one entry per CUDA device."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(1, torch.cuda.device_count())]
    return names


def describe_device(device: str | torch.device | None = "auto") -> str:
    """A one-line description, e.g. ``"cuda (NVIDIA H100, 80 GB)"`` or ``"cpu (2 threads)"``."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        idx = dev.index or 0
        props = torch.cuda.get_device_properties(idx)
        return f"cuda:{idx} ({props.name}, {props.total_memory / 2**30:.0f} GB)"
    return f"cpu ({torch.get_num_threads()} threads)"
