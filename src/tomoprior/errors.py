"""Exceptions users can cause, each with a message meant to be shown as is.

Every error a user can provoke (a bad file, a wrong angle count, NaN data, a
parameter out of range, a run that diverges) is raised as a subclass of
:class:`TomopriorError`. Each subclass also derives from the builtin
exception it replaces, so ``except ValueError`` keeps working.

:func:`user_message` turns any exception into the one line the command line
prints (exit status 2) and the napari widgets show as a notification; it is
the only place that words advice such as what to do when memory runs out.
"""

from __future__ import annotations

import logging

__all__ = [
    "DataError",
    "DivergedError",
    "FormatError",
    "GeometryError",
    "MemoryBudgetError",
    "MethodUnavailable",
    "ModelError",
    "ParameterError",
    "TomopriorError",
    "TomopriorWarning",
    "is_out_of_memory",
    "is_user_error",
    "user_message",
    "warn",
]

logger = logging.getLogger("tomoprior")


class TomopriorError(Exception):
    """Base class of all errors a user can cause."""


class GeometryError(TomopriorError, ValueError):
    """Tilt angles, tilt axis, shifts or volume shape are invalid."""


class DataError(TomopriorError, ValueError):
    """The tilt series itself is unusable (wrong dimensions, NaN, empty)."""


class MemoryBudgetError(DataError):
    """A run or a file needs more memory than is free; found before anything is allocated."""


class FormatError(TomopriorError, OSError):
    """A file cannot be read or written in the requested format."""


class MethodUnavailable(TomopriorError, NotImplementedError):
    """The requested reconstruction method or device is not available."""


class ModelError(TomopriorError, ValueError):
    """A trained model file is missing, corrupt or does not fit this version."""


class ParameterError(TomopriorError, ValueError, TypeError):
    """A method parameter is unknown, of the wrong type or out of its range."""


class DivergedError(TomopriorError, FloatingPointError):
    """An iterative method's loss or volume stopped being finite."""


class TomopriorWarning(UserWarning):
    """Something a user did that runs, but probably not as meant (radian angles, a clipped
    slice range, a parameter the method ignores). Its message is one line, shown as is: the
    command line prints ``tomoprior: warning: ...``, the widgets show a notification."""


def warn(message: str) -> None:
    """Issue a :class:`TomopriorWarning` attributed to the caller of the public function."""
    import warnings

    warnings.warn(message, TomopriorWarning, stacklevel=3)


# Ways out of an out-of-memory error, worded for each interface (one list, one sentence).
_OOM_REMEDIES = {
    "cli": ("bin the tilt series (--bin 2)", "reconstruct a slice range (--slices A:B)",
            "stream slabs to OME-Zarr (--chunk N -o vol.ome.zarr)", "use the CPU (--device cpu)"),
    "gui": ("bin the tilt series (binning 2 or 4)", "reconstruct a slice range for a preview",
            "choose a smaller thickness", "use the CPU device"),
}


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch.OutOfMemoryError or a RuntimeError saying 'out of memory'."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def out_of_memory_message(interface: str = "cli", device: str | None = None) -> str:
    """The advice for an out-of-memory error; the CPU remedy only where it can help."""
    remedies = list(_OOM_REMEDIES[interface])
    if device is not None and str(device).startswith("cpu"):
        remedies = remedies[:-1]
    return "out of memory: " + ", ".join(remedies[:-1]) + " or " + remedies[-1]


def is_user_error(exc: BaseException) -> bool:
    """Errors whose message is shown alone, without a traceback.

    Ours, and the operating system's (a missing file, a full disk, no permission).
    """
    return isinstance(exc, (TomopriorError, OSError)) or is_out_of_memory(exc)


def user_message(exc: BaseException, *, interface: str = "cli", device: str | None = None,
                 what: str = "Reconstruction") -> str:
    """One line for the user.

    Errors a user can cause give their own first line; out-of-memory errors
    give the remedies for ``interface`` (``"cli"`` or ``"gui"``). Anything
    else is a bug: it is logged with its traceback and summarised as
    ``"<what> failed (<ExceptionType>): <first line>"``.
    """
    if is_out_of_memory(exc):
        text = out_of_memory_message(interface, device)
        return text[0].upper() + text[1:] + "." if interface == "gui" else text
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and not isinstance(exc, FormatError):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    if isinstance(exc, MemoryBudgetError):  # say what fits: the same remedies as for OOM
        return f"{first}; " + out_of_memory_message(interface, "cpu").removeprefix("out of memory: ")
    if is_user_error(exc):
        return first or type(exc).__name__
    if isinstance(exc, ValueError) and first:  # value checks in code below the parameter layer
        return first
    logger.error("%s failed", what.lower(), exc_info=exc)
    return f"{what} failed ({type(exc).__name__}): {first}".rstrip(": ")
