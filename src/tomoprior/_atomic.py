"""Writing files without ever leaving a fragment, and checking outputs before any work.

Every file the package writes goes through :func:`replacing`: the content is
written to a hidden temporary file in the target folder, flushed to disk,
and renamed over the target in one step. An interrupted write (an error,
Ctrl-C, a full disk) leaves either the previous file or the complete new
one, never a fragment.

:func:`check_output` is called by the command line before reading or
computing anything: it refuses a wrong extension, a missing or read-only
folder, an existing file (unless overwriting is allowed), and an output that
is the same file as an input or as one of the input's sidecars, compared by
identity (``os.path.samefile``), so hard links and symbolic links are caught.
An output Zarr store (a ``.zarr`` folder) may replace an existing store only;
any other folder is refused.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterable, Iterator

from .errors import FormatError

__all__ = [
    "check_output", "fresh_partial_prefix", "input_sidecars", "partial_prefix",
    "remove_stale_partials", "replacing",
    "same_file", "write_bytes", "write_text",
]

# files that describe an input series and must never be replaced by an output
SIDECAR_SUFFIXES = (".json", ".rawtlt", ".tlt", ".mdoc", ".xf", ".txt")


def _resolve(path: pathlib.Path) -> pathlib.Path:
    try:
        return path.expanduser().resolve()
    except RuntimeError:  # Python < 3.13 reports a loop of links this way
        raise FormatError(f"cannot use {path}: it is a loop of symbolic links") from None
    except OSError as exc:  # a loop (3.13+) or an unreadable link
        raise FormatError(f"cannot use {path}: {exc.strerror or 'an unreadable link'}") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (hard links and symlinks included)."""
    pa, pb = pathlib.Path(a), pathlib.Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return _resolve(pa) == _resolve(pb)


def input_sidecars(path: str | os.PathLike) -> list[pathlib.Path]:
    """The input itself and the files beside it that describe it (angles, metadata)."""
    p = pathlib.Path(path)
    out = [p, *(p.with_suffix(s) for s in SIDECAR_SUFFIXES), p.with_name(p.name + ".mdoc")]
    return [q for q in out if q.exists()]


def check_output(
    path: str | os.PathLike,
    *,
    allowed: tuple[str, ...] | None = None,
    what: str = "output",
    companions: Iterable[str | os.PathLike] = (),
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
) -> pathlib.Path:
    """Validate an output path (and the ``companions`` written beside it) before any work.

    Raises :class:`~tomoprior.errors.FormatError` with one line saying what
    to change.
    """
    p = pathlib.Path(path).expanduser()
    if allowed is not None and p.suffix.lower() not in allowed:
        raise FormatError(f"cannot write the {what} as {p.suffix or 'a file without extension'}: "
                          f"use one of {' '.join(allowed)}")
    if p.name in ("", ".", ".."):
        raise FormatError(f"{path} is not a file name")
    folder = _resolve(p.parent)
    if not folder.is_dir():
        raise FormatError(f"cannot write {p.name}: the folder {p.parent} does not exist")
    if p.is_dir() and not _is_store(p):
        if p.suffix.lower() != ".zarr":
            raise FormatError(f"{p} is a folder, not a file name")
        what = "a symbolic link" if p.is_symlink() else "a folder that is not a Zarr store"
        raise FormatError(f"{p} is {what}: it is never replaced, choose another name")
    try:  # a real probe: permissions, read-only file systems and quotas all show here
        fd, probe = tempfile.mkstemp(prefix=".tomoprior-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise FormatError(f"cannot write in {p.parent}: {exc.strerror or exc}") from None
    targets = [p, *(pathlib.Path(c) for c in companions)]
    sources = [pathlib.Path(i) for i in inputs]
    protected = [s for i in sources for s in input_sidecars(i)]
    for t in targets:
        for s in protected:
            if same_file(t, s):
                which = "the input" if any(same_file(s, i) for i in sources) else f"the input's {s.name}"
                raise FormatError(f"{t.name} would overwrite {which}: choose another output name")
    if not overwrite:
        for t in targets:
            if t.exists() or t.is_symlink():
                raise FormatError(f"{t} exists: choose another name or give --overwrite")
    return p


def _is_store(path: pathlib.Path) -> bool:
    """A Zarr store (a ``.zarr`` folder), which an output may replace."""
    from .io._zarr import is_zarr_store

    return path.suffix.lower() == ".zarr" and not path.is_symlink() and is_zarr_store(path)


def partial_prefix(name: str) -> str:
    """Prefix of a temporary file or folder written beside the output ``name``.

    It names the writing process and host (``.NAME.partial-PID@HOST-``), so
    that a later write of the same output can tell what a killed process left
    behind from a write still in progress (:func:`remove_stale_partials`).
    """
    return f".{name}.partial-{os.getpid()}@{_host()}-"


def fresh_partial_prefix(folder: str | os.PathLike, name: str) -> str:
    """:func:`partial_prefix` of ``name``, after removing the stale temporaries of ``name``
    in ``folder`` (:func:`remove_stale_partials`): what every write calls before it starts."""
    remove_stale_partials(folder, name)
    return partial_prefix(name)


def _host() -> str:
    import socket

    return "".join(c for c in socket.gethostname() if c.isalnum() or c in "._") or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike, name: str) -> list[pathlib.Path]:
    """Remove the temporaries of ``name`` in ``folder`` left by dead processes of this host.

    A write that was killed (SIGKILL, a power cut) cannot clean up after
    itself: its hidden ``.NAME.partial-*`` file or Zarr folder stays, and
    can be as large as the volume. Only temporaries whose writer is known to
    be gone are removed: this host's, with a process id that no longer
    exists. On Windows nothing is removed (a process cannot be probed
    there without signalling it). Returns what was removed.
    """
    if os.name != "posix":
        return []
    import glob
    import shutil

    removed = []
    host = _host()
    for p in pathlib.Path(folder).glob(glob.escape(f".{name}.partial-") + "*"):
        owner = p.name[len(f".{name}.partial-"):].rsplit("-", 1)[0]
        pid, _, where = owner.partition("@")
        if where != host or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    if removed:
        from .errors import logger

        logger.info("removed %d partial file(s) of %s left by an interrupted write",
                    len(removed), name)
    return removed


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary path beside ``path`` that becomes ``path`` when the block succeeds.

    The temporary file keeps the target's extension (writers choose the
    format by it) and is removed if the block fails or is interrupted.
    """
    target = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=fresh_partial_prefix(target.parent, target.stem),
                               suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _mode_for(target))  # mkstemp makes 0600 files
        os.replace(tmp_path, target)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _mode_for(target: pathlib.Path) -> int:
    """The permissions a plain write would give: the replaced file's, or 0666 less the umask."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _write(path: str | os.PathLike, fill: Callable[[pathlib.Path], None]) -> pathlib.Path:
    target = pathlib.Path(path)
    try:
        with replacing(target) as tmp:
            fill(tmp)
    except OSError as exc:
        raise FormatError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write text (UTF-8) atomically."""
    return _write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write bytes atomically."""
    return _write(path, lambda tmp: tmp.write_bytes(data))
