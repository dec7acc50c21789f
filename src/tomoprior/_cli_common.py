"""What every ``tomoprior`` sub-command shares: parser, progress, input, output and JSON.

Nothing here imports torch: ``tomoprior --help``, ``info`` and ``methods``
run on it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ANGLE",
    "COUNT",
    "DEVICES",
    "EPILOG",
    "WHOLE",
    "CliError",
    "HelpFormatter",
    "Interrupted",
    "Parser",
    "Progress",
    "UsageError",
    "add_series_args",
    "check_output",
    "emit_json",
    "engine_warnings",
    "exclusions",
    "geometry_of",
    "image_numbers",
    "number",
    "parse_params",
    "print_warnings",
    "read_series",
]

#: the end of every command's help: exit statuses, output, environment
EPILOG = """exit status:
  0    success
  2    a problem with the input, the options or the run (a bad file, a wrong angle
       count, a parameter out of range, a diverged run, out of memory): one line
       on stderr saying what to change, never a traceback
  130  interrupted (Ctrl-C or SIGTERM), at any point: nothing is written, unless
       reconstruct was given --save-interrupted (then the last iterate is)
  other  a bug in tomoprior: the traceback is printed; please report it

output:
  progress and warnings go to stderr, a warning as one line `tomoprior: warning: ...`
  (radian-looking angles, a clipped slice range, an option the method ignores).
  With --json the last line of stdout is one JSON object: the summary (its
  "warnings" list included), or {"error": "...", "exit_status": N} on failure.

environment:
  TOMOPRIOR_MEMORY_BUDGET  memory a file or a run may take: bytes, or a number
                           with K, M, G or T (2G, 512M); default 80 % of the free memory"""

#: choices of every ``--device`` option
DEVICES = ("auto", "cpu", "cuda")


class CliError(Exception):
    """A problem the user can fix: one line on stderr, exit status ``code`` (2)."""

    prefix = "error"

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(CliError):
    """Ctrl-C or SIGTERM: ``tomoprior: interrupted[: what happened]``, exit status 130."""

    prefix = "interrupted"

    def __init__(self, message: str = "") -> None:
        super().__init__(message, 130)


class UsageError(SystemExit):
    """A usage error found by argparse; still a SystemExit with status 2, as argparse's own."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


# -- parser -------------------------------------------------------------------------------------
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, when it has one; in descriptions and
    epilogs, lines that start with a space (tables) are kept as written, the others wrapped."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out: list[str] = []
        for line in text.splitlines():
            if not line or line[0].isspace():
                out.append(indent + line)
            else:
                out.append(textwrap.fill(line, width, initial_indent=indent,
                                         subsequent_indent=indent))
        return "\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (not action.option_strings or d is None or d is False or d is argparse.SUPPRESS
                or "default" in text):
            return text
        return f"{text} (default {_shown(d)})"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace("%", "%%")  # argparse %-formats the help


class Parser(argparse.ArgumentParser):
    """Usage errors are one line too (and exit 2), like every other user error; every help
    ends with :data:`EPILOG`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        text = f"{message} (see {self.prog} --help)"
        sys.stderr.write(f"tomoprior: error: {text}\n")
        raise UsageError(text)


def number(kind: type, low: float | None = None, high: float | None = None, *,
           low_open: bool = False):
    """An argparse type: a finite ``kind`` within ``[low, high]`` (``(low, high]`` if open)."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if low_open else '>='} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


ANGLE = number(float, -90.0, 90.0)
COUNT = number(int, 1)
WHOLE = number(int, 0)


def add_series_args(p: argparse.ArgumentParser) -> None:
    """The options that describe a tilt series the file leaves unsaid (angles, axis, pixel)."""
    p.add_argument("--angles", metavar="FILE",
                   help="tilt angles, one per line (.rawtlt/.tlt/.txt) (default: from the file "
                   "or the .rawtlt/.tlt/.mdoc beside it)")
    p.add_argument("--angles-unit", choices=["deg", "rad"], default="deg",
                   help="unit of the angles in the angle file or the data file")
    p.add_argument("--tilt-start", type=ANGLE, metavar="DEG",
                   help="angle of the first image, with --tilt-step: evenly spaced angles "
                   "instead of the file's")
    p.add_argument("--tilt-step", type=number(float, 0.0, 180.0, low_open=True), metavar="DEG",
                   help="angle between successive images, with --tilt-start")
    p.add_argument("--tilt-axis", metavar="{horizontal,vertical,DEG}",
                   help="tilt-axis orientation in the images (default: from the file, else "
                   "horizontal)")
    p.add_argument("--pixel-size", type=number(float, 0.0, low_open=True), metavar="NM",
                   help="pixel size in nm: sets it, or overrides the file's value (default: "
                   "the file's)")


# -- progress -------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr (plain lines every 10 % when not a terminal).

    Work without a count shows its messages instead (:meth:`say`): on a
    terminal in the bar's line, elsewhere one line per new message.
    """

    def __init__(self, total: int | None, label: str, stream=None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last_decile = -1
        self._last_message = ""
        self._open = False

    def update(self, done: int, loss: float | None = None, extra: str = "",
               residual: float | None = None) -> None:
        """``done`` of ``total`` steps; the data residual (else the loss) and ``extra`` after."""
        el = time.perf_counter() - self.t0
        frac = min(1.0, done / self.total) if self.total else None
        if frac is not None:
            n = int(frac * 30)
            bar = "[" + "#" * n + "." * (30 - n) + f"] {done}/{self.total}"
        else:
            bar = f"{done} it"
        eta = f" eta {el / frac - el:.0f}s" if frac and 0 < frac < 1 else ""
        msg = f"{self.label} {bar} {el:.1f}s{eta}"
        if residual is not None and math.isfinite(residual):
            msg += f" residual {residual:.4g}"
        elif loss is not None and math.isfinite(loss):
            msg += f" loss {loss:.4g}"
        if extra:
            msg += f" {extra}"
        decile = -1 if frac is None else int(frac * 10)
        if self.tty:
            self._line(msg)
        elif decile != self._last_decile:
            self._last_decile = decile
            self._write(msg + "\n")

    def say(self, message: str) -> None:
        """A step of work that has no count (an alignment stage, a reconstruction's iteration)."""
        if message == self._last_message:
            return
        self._last_message = message
        msg = f"{self.label}: {message} ({time.perf_counter() - self.t0:.1f}s)"
        if self.tty:
            self._line(msg)
        else:
            self._write(msg + "\n")

    def finish(self) -> None:
        """End the bar's line (on a terminal)."""
        if self.tty and self._open:
            self._write("\n")
            self._open = False

    def _line(self, msg: str) -> None:
        self._open = True
        self._write("\r" + msg.ljust(100)[:120])

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# -- input ----------------------------------------------------------------------------------------
def read_series(args: argparse.Namespace):
    """The file of ``args.path``, with the angles, pixel size and start/step options applied."""
    from . import io

    path = Path(args.path)
    f = io.read(path, angles=getattr(args, "angles", None),
                angles_unit=getattr(args, "angles_unit", None) or "deg")
    if getattr(args, "pixel_size", None) is not None:  # sets or overrides the file's value
        f = f.with_pixel_size(args.pixel_size, source="--pixel-size")
    start, step = getattr(args, "tilt_start", None), getattr(args, "tilt_step", None)
    if (start is None) != (step is None):
        raise CliError("give both --tilt-start and --tilt-step")
    if start is not None:
        n = int(f.data.shape[0])
        end = start + step * (n - 1)
        if abs(end) > 90:
            raise CliError(f"--tilt-start {start:g} --tilt-step {step:g} for {n} images ends at "
                           f"{end:g}°, beyond ±90°: check the start and step")
        f = f.with_start_step(start, step)
    return f


def geometry_of(f, args: argparse.Namespace):
    """The series' geometry with ``--tilt-axis`` applied; one line when it has no angles."""
    if f.geometry is None:
        rejected = f.metadata.get("rejected_angle_source")
        if rejected:
            raise CliError(
                f"the tilt angles in {rejected} do not fit {f.path.name}: "
                f"{f.metadata.get('rejected_angles_reason')}; fix the file, or give --angles FILE "
                "or --tilt-start DEG --tilt-step DEG"
            )
        raise CliError(f"no tilt angles found for {f.path.name}: give --angles FILE or "
                       "--tilt-start DEG --tilt-step DEG")
    g = f.geometry
    if getattr(args, "tilt_axis", None) is not None:
        g = g.replace(tilt_axis=args.tilt_axis)
    return g


def print_warnings(messages: Iterable[str], shown: Sequence[str] = ()) -> list[str]:
    """Print each message as ``tomoprior: warning: ...``; return those printed.

    A message already in ``shown`` is skipped, and so is a second one about
    radian-looking angles (the reader and the engine both notice them).
    """
    printed: list[str] = []
    seen = list(shown)
    for message in messages:
        radians = "radian" in message.lower()
        if message in seen or (radians and any("radian" in s.lower() for s in seen)):
            continue
        print(f"tomoprior: warning: {message}", file=sys.stderr)
        printed.append(message)
        seen.append(message)
    return printed


@contextlib.contextmanager
def engine_warnings() -> Iterator[list[str]]:
    """The messages of the TomopriorWarnings issued inside the block, for :func:`print_warnings`.

    For library calls that run a reconstruction of their own (the reprojection
    of ``interpolate``): their warnings reach the user as ``tomoprior:
    warning:`` lines too. Other warnings are shown as Python shows them.
    """
    import warnings

    from .errors import TomopriorWarning

    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TomopriorWarning)
        yield messages
    for w in caught:
        if issubclass(w.category, TomopriorWarning):
            messages.append(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def exclusions(text: str | None) -> list[int]:
    """``"1,5,70-77"`` (image numbers from 1) as 0-based stack indices."""
    out: list[int] = []
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        a, sep, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise CliError(f"--exclude expects image numbers like 1,5,70-77, got {part!r}") from None
        if lo < 1 or hi < lo:
            raise CliError(f"--exclude: {part!r} is not a range of image numbers from 1")
        out.extend(range(lo - 1, hi))
    return out


def image_numbers(indices: Iterable[int]) -> str:
    """0-based indices as image numbers from 1, in the form ``--exclude`` takes: ``2,4-6``."""
    runs: list[list[int]] = []
    for i in sorted(int(i) + 1 for i in indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def parse_params(items: Sequence[str] | None) -> dict[str, str]:
    """``--param KEY=VALUE`` options as a dictionary (the method parses the values)."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--param expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


# -- output ---------------------------------------------------------------------------------------
def check_output(args: argparse.Namespace, allowed, what: str, companions=()) -> Path:
    """Everything about the output that can be wrong, checked before reading or computing."""
    from ._atomic import check_output as check

    inputs = [p for p in (getattr(args, "path", None), getattr(args, "angles", None)) if p]
    return check(args.output, allowed=tuple(allowed), what=what, companions=companions,
                 inputs=inputs, overwrite=bool(getattr(args, "overwrite", False)))


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: the summary is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def emit_json(obj: dict[str, Any]) -> None:
    """``obj`` as one line of strict JSON on stdout (numpy values and paths made plain)."""
    plain = json.loads(json.dumps(obj, default=_json_default))
    sys.stdout.write(json.dumps(_finite(plain), allow_nan=False) + "\n")
    sys.stdout.flush()


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
