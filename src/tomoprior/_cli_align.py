"""``tomoprior align``, and the alignment ``reconstruct --align`` does before reconstructing.

Both write the alignment as IMOD-style ``.xf`` and ``.tlt`` files with a
JSON record, their shifts in pixels of the series as read.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._cli_common import (
    COUNT,
    DEVICES,
    Progress,
    add_series_args,
    check_output,
    emit_json,
    geometry_of,
    number,
    print_warnings,
    read_series,
)

__all__ = ["ALIGN_METHODS", "Aligned", "add_align_parser", "align_first", "alignment_files",
           "cmd_align", "write_alignment"]

#: the methods of :func:`tomoprior.alignment.align_series`, and what each does
ALIGN_METHODS = {"xcorr": "cross-correlation of neighbouring tilts",
                 "com": "centre of mass (specimen wholly in view)",
                 "pm": "cross-correlation refined by projection matching"}


@dataclass
class Aligned:
    """The series and the geometry ``reconstruct --align`` found for it (shifts in input pixels)."""

    data: Any
    geometry: Any
    report: dict
    seconds: float


def alignment_files(out: Path) -> list[Path]:
    """``OUT_alignment.xf/.tlt/.json``: where a reconstruction's alignment is written."""
    return [out.with_name(out.stem + "_alignment" + s) for s in (".xf", ".tlt", ".json")]


def write_alignment(out: Path, geometry, report: dict) -> list[Path]:
    """Write ``OUT_alignment.xf/.tlt/.json`` for ``geometry`` (shifts in input pixels)."""
    from .alignment import write_transforms

    return write_transforms(out.with_name(out.stem + "_alignment"), geometry, report)


def align_first(args: argparse.Namespace, f, g) -> Aligned:
    """``reconstruct --align``: align on the series binned by ``--bin``, shifts scaled back.

    The alignment's progress goes to stderr; the geometry found applies to
    the series as read (``run`` resamples it once, with the binning).
    """
    from .alignment import align_series
    from .transforms import bin_images

    t0 = time.perf_counter()
    data = f.load()
    b = int(args.bin or 1)
    small, gs = (bin_images(data, b), g.binned(b)) if b > 1 else (data, g)
    bar = Progress(None, f"align ({args.align_method}" + (f", bin {b})" if b > 1 else ")"))
    try:
        _, found, report = align_series(small, gs, method=args.align_method, device=args.device,
                                        progress=bar.say)
    finally:
        bar.finish()
    if b > 1:
        found = found.replace(shifts=found.shifts * b, pixel_size=g.pixel_size,
                              thickness=g.thickness)
    report = {**report, "input_binning": b, "shifts_unit": "pixels of the input series"}
    return Aligned(data, found, report, time.perf_counter() - t0)


def cmd_align(args: argparse.Namespace) -> int:
    """Align a tilt series; write the aligned stack and its ``.xf/.tlt/.json``."""
    from . import io
    from .alignment import align_series, aligned_geometry, write_transforms

    out = Path(args.output)
    companions = [out.with_suffix(s) for s in (".rawtlt", ".xf", ".tlt", ".json")]
    check_output(args, io.TILT_SERIES_EXTENSIONS, "aligned tilt series", companions)
    f = read_series(args)
    g = geometry_of(f, args)
    t0 = time.perf_counter()
    bar = Progress(None, f"align ({args.method})")
    options: dict[str, Any] = {"device": args.device}
    if args.no_axis:
        options["axis"] = False
    if args.bin:
        options["binning"] = args.bin
    if args.rounds:
        options["rounds"] = args.rounds
    try:
        aligned, g2, report = align_series(f.load(), g, method=args.method, progress=bar.say,
                                           **options)
    finally:
        bar.finish()
    warned = print_warnings(f.warnings)
    io.write_tilt_series(out, aligned, aligned_geometry(g2), overwrite=args.overwrite)
    paths = write_transforms(out.with_suffix(""), g2, report)
    secs = time.perf_counter() - t0
    print(f"wrote {out} and {', '.join(p.name for p in paths)} in {secs:.1f}s", file=sys.stderr)
    if args.json:
        emit_json({"output": str(out), "transforms": [str(p) for p in paths],
                   "tilt_axis": g2.tilt_axis, "aligned_tilt_axis": aligned_geometry(g2).tilt_axis,
                   "shifts": g2.shifts.tolist(), "warnings": warned,
                   "seconds": round(secs, 2), **{k: v for k, v in report.items() if k != "steps"}})
    return 0


def add_align_parser(sub) -> None:
    """``tomoprior align`` on the main sub-parsers."""
    from . import io

    p = sub.add_parser(
        "align", help="align a tilt series (shifts and tilt axis)",
        description="Find the per-tilt shifts and the tilt axis of a tilt series; write the "
        "series resampled with them (its tilt axis exactly horizontal or vertical) and the "
        "corrections as OUT.xf (IMOD), OUT.tlt and OUT.json.")
    p.add_argument("path", help="the raw (unaligned) tilt series")
    p.add_argument("-o", "--output", required=True,
                   help="aligned stack: " + " ".join(io.TILT_SERIES_EXTENSIONS))
    p.add_argument("--method", choices=list(ALIGN_METHODS), default="xcorr",
                   help="; ".join(f"{k}: {v}" for k, v in ALIGN_METHODS.items()))
    add_series_args(p)
    p.add_argument("--no-axis", action="store_true",
                   help="keep the tilt axis as given: find the shifts only")
    p.add_argument("--bin", type=number(int, 1, 64), metavar="N",
                   help="bin the images by N for the correlation step (default: enough to "
                   "bring the larger side to 512 pixels or less)")
    p.add_argument("--rounds", type=COUNT, metavar="N",
                   help="largest number of projection-matching rounds, with --method pm "
                   "(default 6)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where the trial reconstructions run: auto takes CUDA when there is one")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary as the last line of stdout")
    p.set_defaults(func=cmd_align)
