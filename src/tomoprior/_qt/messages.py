"""User-facing messages and notifications (never a traceback dialog)."""

from __future__ import annotations

import logging

from ..errors import TomopriorError

__all__ = ["is_out_of_memory", "notify_error", "notify_info", "notify_warning", "user_message"]

logger = logging.getLogger("tomoprior")

OOM_MESSAGE = (
    "Out of memory: bin the tilt series (binning 2 or 4), reconstruct a slice range "
    "for a preview, or choose a smaller thickness"
)


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch.OutOfMemoryError or a RuntimeError saying 'out of memory'."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def user_message(
    exc: BaseException, *, device: str | None = None, what: str = "Reconstruction"
) -> str:
    """One line for the user; unexpected errors are also logged with their traceback.

    ``what`` names the task in the message of an unexpected error
    (``"Reconstruction failed (KeyError): ..."``).
    """
    if is_out_of_memory(exc):
        gpu = device is None or not str(device).startswith("cpu")
        return OOM_MESSAGE + (", or use the CPU device" if gpu else "") + "."
    text = str(exc).strip()
    if isinstance(exc, TomopriorError):
        return text or type(exc).__name__
    if isinstance(exc, ValueError) and text:  # parameter parsing and range checks
        return text.splitlines()[0]
    logger.error("%s failed", what.lower(), exc_info=exc)
    first = text.splitlines()[0] if text else ""
    return f"{what} failed ({type(exc).__name__}): {first}".rstrip(": ")


def notify_error(message: str) -> None:
    from napari.utils import notifications

    notifications.show_error(message)


def notify_warning(message: str) -> None:
    from napari.utils import notifications

    notifications.show_warning(message)


def notify_info(message: str) -> None:
    from napari.utils import notifications

    notifications.show_info(message)
