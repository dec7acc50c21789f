"""How much a file may claim: its own size, and the memory this machine can give.

Every reader checks the size a header claims before it allocates anything,
so a 1 KB file whose header claims a terabyte of pixels fails at once with
one line instead of exhausting the machine. Text files next to the data
(angle lists, ``.mdoc``, JSON sidecars) are read only up to a size cap.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import FormatError, MemoryBudgetError, ParameterError, logger

__all__ = [
    "available_memory",
    "check_claim",
    "human_bytes",
    "memory_budget",
    "read_capped_text",
    "unreadable",
]

#: environment variable that sets the memory budget in bytes (``2G``, ``512M`` also work)
BUDGET_ENV = "TOMOPRIOR_MEMORY_BUDGET"
#: a compressed file is not believed to expand by more than this factor
MAX_COMPRESSION = 1000
#: metadata text longer than this (ImageJ Info, OME XML, JSON) is not searched for angles
MAX_METADATA_CHARS = 4 * 1024**2
_SUFFIX = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def unreadable(name: str, fmt: str, exc: BaseException) -> FormatError:
    """The one line for a file a library could not read; its own words go to the log.

    The operating system's reasons (no permission, an I/O error) are told
    as they are; a parser's complaint (``unpack requires a buffer of 4
    bytes``) means nothing to a microscopist and is replaced.
    """
    if isinstance(exc, OSError) and getattr(exc, "strerror", None):
        return FormatError(f"cannot read {name}: {exc.strerror}")
    logger.debug("reading %s as %s failed", name, fmt, exc_info=exc)
    what = f"{'an' if fmt[0] in 'AEIOU' else 'a'} {fmt} file" if fmt else "a file tomoprior reads"
    return FormatError(f"cannot read {name}{' as ' + fmt if fmt else ''}: it is damaged or not {what}")


def _parse_size(text: str) -> int | None:
    """``"2G"``, ``"512MiB"``, ``"1e9"`` in bytes; ``None`` for anything else or a size <= 0."""
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = _SUFFIX.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _SUFFIX else text
    try:
        value = float(number) * factor
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


def available_memory() -> int:
    """Bytes this process can still allocate: free memory, and its own address-space limit."""
    free = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        free = None
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            free = 8 * 1024**3  # unknown platform: assume a modest desktop
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY and limit > 0:
            used = _address_space()
            free = min(free, max(0, limit - used))
    except (ImportError, OSError, ValueError):
        pass
    return int(free)


def _address_space() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory_budget() -> int:
    """Bytes one array may take: ``TOMOPRIOR_MEMORY_BUDGET`` if set, else 80 % of what is free.

    Raises
    ------
    ParameterError
        The variable is set to something that is not a positive size
        (``lots``, ``-1``): one line naming the variable and the form it takes.
    """
    env = os.environ.get(BUDGET_ENV)
    if env is None or not env.strip():
        return int(0.8 * available_memory())
    value = _parse_size(env)
    if value is None:
        raise ParameterError(
            f"{BUDGET_ENV}={env.strip()!r} is not a memory size: give a positive number of "
            "bytes, or one with K, M, G or T (e.g. 2G, 512M), or unset it")
    return value


def claimed_bytes(shape: Sequence[Any], dtype: Any) -> int:
    """Exact size of an array of ``shape`` and ``dtype``, in Python integers (no overflow)."""
    return math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize


def check_claim(
    name: str,
    shape: Sequence[Any],
    dtype: Any,
    *,
    file_bytes: int | None,
    offset: int = 0,
    compressed: bool = False,
    in_memory: bool = True,
) -> int:
    """Refuse a header's claim that the file or the machine cannot back.

    Parameters
    ----------
    name : str
        The file's name, for the message.
    shape, dtype
        What the header says the data is.
    file_bytes : int or None
        The file's size (``None``: do not compare).
    offset : int
        Bytes before the data (headers).
    compressed : bool
        The data are compressed: they may be larger than the file, up to
        :data:`MAX_COMPRESSION` times.
    in_memory : bool
        The data will be read into memory (not memory-mapped): they must
        fit the :func:`memory_budget`.

    Returns
    -------
    int
        The claimed size in bytes.
    """
    dims = [int(s) for s in shape]
    if any(s < 0 for s in dims):
        raise FormatError(f"{name} has a damaged header: it gives the negative size {tuple(dims)}")
    need = claimed_bytes(dims, dtype)
    what = f"{' × '.join(map(str, dims))} {np.dtype(dtype)} ({human_bytes(need)})"
    if file_bytes is not None:
        room = max(0, int(file_bytes) - int(offset))
        if not compressed and need > room:
            raise FormatError(
                f"{name} is truncated or its header is wrong: the header claims {what} "
                f"but the file holds {human_bytes(room)} of data"
            )
        if compressed and need > MAX_COMPRESSION * max(room, 1):
            raise FormatError(
                f"{name} has an implausible header: it claims {what} "
                f"from a {human_bytes(file_bytes)} file"
            )
    if in_memory:
        budget = memory_budget()
        if need > budget:
            raise MemoryBudgetError(
                f"{name} needs {human_bytes(need)} of memory but about {human_bytes(budget)} is "
                "free to read it whole"
            )
    return need


def read_capped_text(path: pathlib.Path, limit: int, what: str) -> str:
    """The text of ``path`` (UTF-8, bad bytes replaced) if it is at most ``limit`` bytes."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise FormatError(
                f"{path.name} is {human_bytes(size)}: too large for {what} "
                f"(at most {human_bytes(limit)})"
            )
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise FormatError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return raw[:limit].decode("utf-8", errors="replace")
