"""User-facing messages and notifications (never a traceback dialog)."""

from __future__ import annotations

from ..errors import is_out_of_memory
from ..errors import user_message as _user_message

__all__ = ["is_out_of_memory", "notify_error", "notify_info", "notify_warning", "user_message"]


def user_message(
    exc: BaseException, *, device: str | None = None, what: str = "Reconstruction"
) -> str:
    """One line for a notification (see :func:`tomoprior.errors.user_message`)."""
    return _user_message(exc, interface="gui", device=device, what=what)


def notify_error(message: str) -> None:
    from napari.utils import notifications

    notifications.show_error(message)


def notify_warning(message: str) -> None:
    from napari.utils import notifications

    notifications.show_warning(message)


def notify_info(message: str) -> None:
    from napari.utils import notifications

    notifications.show_info(message)
