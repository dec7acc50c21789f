"""The ``tomoprior`` command line.

Sub-commands, each in a module of its own: ``info`` (``_cli_info``),
``reconstruct`` (``_cli_reconstruct``), ``simulate`` (``_cli_simulate``),
``align`` (``_cli_align``), ``assess`` (``_cli_assess``), ``interpolate`` and ``train interpolate``
(``_cli_interpolate``), ``train restore`` (``_cli_train``) and ``methods``
(``_cli_methods``); what they share is in ``_cli_common``. This module
builds the parser and runs a command: errors a user can cause print one
line and exit with status 2, an interruption (Ctrl-C, SIGTERM) exits with
130 at any point, and with ``--json`` the last line of standard output is
always one JSON object, the summary or the error.

``--help``, ``info``, ``assess`` and ``methods`` never import torch: the method and
phantom names come from the generated ``_cli_catalog``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from ._cli_common import EPILOG, CliError, Interrupted, Parser, UsageError, emit_json
from .errors import is_user_error, user_message

__all__ = ["EPILOG", "build_parser", "main"]

def _description() -> str:
    from ._cli_methods import METHODS

    width = max(len(n) for n in METHODS) + 2
    rows = "\n".join(f"  {n:<{width}}{m['label']}" for n, m in METHODS.items())
    return ("Electron tomography of tilt series: inspect, simulate, align, fill in tilts and "
            "reconstruct.\n\nreconstruction methods (reconstruct --method NAME; what each does "
            f"and its parameters: tomoprior methods):\n{rows}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command (no torch import: the help stays quick)."""
    from ._cli_align import add_align_parser
    from ._cli_assess import add_assess_parser
    from ._cli_info import add_info_parser
    from ._cli_interpolate import add_interpolate_parser
    from ._cli_methods import add_methods_parser
    from ._cli_reconstruct import add_reconstruct_parser
    from ._cli_simulate import add_simulate_parser
    from ._cli_train import add_train_parsers

    ap = Parser(prog="tomoprior", description=_description(), epilog=EPILOG)
    ap.add_argument("--version", action="version", version=f"napari-tomoprior {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_info_parser(sub)
    add_reconstruct_parser(sub)
    add_simulate_parser(sub)
    add_align_parser(sub)
    add_assess_parser(sub)
    add_interpolate_parser(sub)
    add_train_parsers(sub)
    add_methods_parser(sub)
    return ap


def _terminate(signum, frame) -> None:  # SIGTERM ends like Ctrl-C: partial files are removed
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tomoprior`` with ``argv`` (default: the process's); return the exit status.

    SIGTERM is handled as Ctrl-C, and the engine's warnings are printed as
    ``tomoprior: warning:`` lines instead of Python's warning display, for
    the duration of the call.
    """
    import signal
    import threading
    import warnings

    from .errors import TomopriorWarning

    args = list(sys.argv[1:] if argv is None else argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TomopriorWarning)
            return _main(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str]) -> int:
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        if as_json:
            emit_json({"error": exc.message, "exit_status": exc.code})
        raise
    except KeyboardInterrupt:
        return _fail(Interrupted(), as_json)
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        return _fail(exc, as_json)
    except KeyboardInterrupt:
        return _fail(Interrupted(), as_json)
    except Exception as exc:
        if not (is_user_error(exc) or isinstance(exc, (ValueError, OSError))):
            if as_json:
                emit_json({"error": f"a bug in tomoprior ({type(exc).__name__}): see the "
                           "traceback on stderr", "exit_status": 1})
            raise
        device = getattr(args, "device", None)
        return _fail(CliError(user_message(exc, interface="cli", device=device)), as_json)


def _fail(exc: CliError, as_json: bool) -> int:
    """One line on stderr (and the JSON error object); the exit status."""
    text = str(exc)
    line = f"{exc.prefix}: {text}" if text else exc.prefix
    print(f"tomoprior: {line}", file=sys.stderr)
    if as_json:
        emit_json({"error": line if isinstance(exc, Interrupted) else text,
                   "exit_status": exc.code})
    return exc.code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
