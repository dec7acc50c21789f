"""``tomoprior reconstruct``: one run streamed to a volume file, or a plan of slabs.

Every output (the volume, its JSON record, the alignment files) is checked
before anything is read; warnings from the reader and from the run are
printed once each; ``--json`` ends standard output with the run's summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._cli_align import ALIGN_METHODS, Aligned, align_first, alignment_files, write_alignment
from ._cli_common import (
    ANGLE,
    COUNT,
    DEVICES,
    WHOLE,
    CliError,
    Interrupted,
    Progress,
    add_series_args,
    check_output,
    emit_json,
    exclusions,
    geometry_of,
    number,
    parse_params,
    print_warnings,
    read_series,
)

__all__ = ["add_reconstruct_parser", "cmd_reconstruct"]


def _outputs(args: argparse.Namespace, m, out: Path) -> list[Path]:
    """The files written beside the volume: its JSON record, the alignment files, the
    uncertainty map and half sets (each with its record)."""
    def with_record(p: Path) -> list[Path]:
        return [p] if p.suffix.lower() in (".tif", ".tiff", ".zarr") else [p, p.with_suffix(".json")]

    companions = with_record(out)[1:]
    if args.align or m.capabilities.learns_poses:
        companions += alignment_files(out)
    for p in _trust_files(args, out).values():
        companions += with_record(p)
    return companions


def _beside(out: Path, suffix: str) -> Path:
    """``vol.mrc`` -> ``vol_std.mrc``; ``vol.ome.zarr`` -> ``vol_std.ome.zarr``."""
    name = out.name
    ext = ".ome.zarr" if name.lower().endswith(".ome.zarr") else out.suffix
    return out.with_name(name[: len(name) - len(ext)] + suffix + ext)


def _trust_files(args: argparse.Namespace, out: Path) -> dict[str, Path]:
    """``OUT_std`` (the uncertainty map) with --halves or --ensemble; ``OUT_half1`` and
    ``OUT_half2`` (the even and the odd tilts) with --halves."""
    if not (args.halves or args.ensemble):
        return {}
    names = {"std": "_std", **({"half1": "_half1", "half2": "_half2"} if args.halves else {})}
    return {key: _beside(out, suffix) for key, suffix in names.items()}


def _write_trust(args: argparse.Namespace, rec, out: Path, prov: dict) -> dict[str, str]:
    """Write the map and the halves beside the volume (same pixel size, the run's provenance
    with what the file holds); returns ``{"uncertainty_map": path, "halves": [paths]}``."""
    import numpy as np

    from . import io

    files = _trust_files(args, out)
    if not files:
        return {}
    geom = rec.prepared.geometry
    written: dict[str, Any] = {}

    def write(path: Path, volume, content: str) -> str:
        io.write_volume(path, np.asarray(volume, np.float32), pixel_size=geom.pixel_size,
                        pixel_unit=geom.pixel_unit, provenance={**prov, "content": content},
                        overwrite=args.overwrite)
        return str(path)

    if rec.uncertainty is not None:
        written["uncertainty_map"] = write(
            files["std"], rec.uncertainty, "uncertainty map: per-voxel standard deviation "
            f"relative to the contrast of {out.name} (see trust.uncertainty)")
    halves = rec.halves()
    if halves is not None and "half1" in files:
        written["halves"] = [write(files["half1"], halves[0], "half set 1: the even tilts"),
                             write(files["half2"], halves[1], "half set 2: the odd tilts")]
    for p in [written.get("uncertainty_map"), *written.get("halves", [])]:
        if p:
            print(f"wrote {p}", file=sys.stderr)
    if rec.fsc is not None:
        f, u = rec.fsc, rec.fsc.unit
        parts = [f"{label} {'≤' if f.at_nyquist(which) else ''}{f.resolution(which):.3g} {u}"
                 for which, label in (("spherical", "spherical"), ("xy", "x-y"), ("z", "z"))]
        print("resolution (FSC 0.143 of the half sets): " + ", ".join(parts), file=sys.stderr)
    return written


def _check_options(args: argparse.Namespace, data) -> None:
    """The options that cannot be checked before the series' size is known."""
    if args.tilt_range and args.tilt_range[0] >= args.tilt_range[1]:
        raise CliError(f"--tilt-range MIN MAX needs MIN < MAX, got {args.tilt_range[0]:g} "
                       f"{args.tilt_range[1]:g}")
    width = max(int(data.shape[1]), int(data.shape[2]))
    if args.thickness and args.thickness > 4 * width:
        raise CliError(f"--thickness {args.thickness} is more than 4 times the image width "
                       f"({width} px)")


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``run`` and ``plan_slabs`` that pick tilts, pixels and slices."""
    return {"tilt_range": tuple(args.tilt_range) if args.tilt_range else None,
            "increment": args.tilt_increment, "exclude": exclusions(args.exclude),
            "bin": args.bin, "slices": args.slices, "thickness": args.thickness}


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct; write the volume (and the alignment); ``--json``: the summary."""
    import numpy as np

    from . import io
    from .algorithms import get_method
    from .engine import run, summary

    m = get_method(args.method)
    out = Path(args.output)
    trust = {k: v for k, v in (("halves", args.halves), ("ensemble", args.ensemble)) if v}
    if trust:
        from .engine.halves import check_trust

        check_trust(args.halves, args.ensemble)
    check_output(args, io.VOLUME_EXTENSIONS, "volume", _outputs(args, m, out))
    f = read_series(args)
    g = geometry_of(f, args)
    data = f.data
    _check_options(args, data)
    params = parse_params(args.param)
    aligned = align_first(args, f, g) if args.align else None
    if aligned is not None:  # the geometry found is applied by run() in its single resampling
        data, g = aligned.data, aligned.geometry
    # slabs of a plan: on a scheduler, into a Zarr store as they finish, or with a choice that
    # must hold for the whole volume (CS-TV's automatic λ, the INR's learned alignment)
    whole = (m.name == "cstv" and m.resolve(params).get("lam") == "auto") or (
        m.name == "inr" and m.resolve(params).get("learn_pose"))
    if trust and (args.scheduler or (args.chunk and out.suffix.lower() == ".zarr")):
        raise CliError("--halves and --ensemble run in one process: leave out --scheduler, or "
                       "--chunk with an .ome.zarr output")
    if not trust and (args.scheduler or (args.chunk and (out.suffix.lower() == ".zarr"
                                                         or (whole and not args.heldout)))):
        return _reconstruct_slabs(args, m, f, g, data, params, out, aligned)
    virtual = f.metadata.get("virtual_frames")
    rec = run(
        m.name, data, g, iterations=args.iterations, every=args.every, device=args.device,
        heldout=args.heldout, seed=args.seed, chunk=args.chunk, source=str(f.path),
        **({"virtual": virtual} if virtual else {}), **_selection(args), **trust, **params,
    )
    warned = print_warnings(f.warnings)
    warned += print_warnings(rec.warnings, warned)
    total = rec.start + rec.iterations if m.capabilities.iterative else 1
    bar = Progress(total, m.label)
    last = None
    interrupted = False
    try:
        for last in rec:
            extra = f"slab {last.chunk[0] + 1}/{last.chunk[1]}" if last.chunk else ""
            if last.phase != "iterate":
                extra = f"{last.phase} {extra}".strip()
            bar.update(last.iteration, last.loss, extra, residual=last.residual)
    except KeyboardInterrupt:
        interrupted = True
        rec.close()
    finally:
        bar.finish()
    warned += print_warnings(rec.warnings, warned)  # what the method noticed while it ran
    if interrupted and (last is None or not args.save_interrupted):
        raise Interrupted("nothing written" + ("" if last is None else
                                               " (--save-interrupted keeps the last iterate)"))
    if last is None:
        raise CliError("no result produced")
    prov = rec.provenance()
    geom = rec.prepared.geometry
    io.write_volume(out, np.asarray(last.volume, np.float32), pixel_size=geom.pixel_size,
                    pixel_unit=geom.pixel_unit, provenance=prov, overwrite=args.overwrite)
    seconds = rec.seconds + (aligned.seconds if aligned else 0.0)
    msg = f"wrote {out} {tuple(last.volume.shape)} in {seconds:.1f}s"
    print(msg + (" (interrupted: last iterate kept)" if interrupted else ""), file=sys.stderr)
    trust_files = _write_trust(args, rec, out, prov) if trust else {}
    learned = _write_learned_alignment(rec, last, out)
    files = learned or _write_found_alignment(aligned, out)
    if args.json:
        s = dict(summary(rec))
        s.update(output=str(out), warnings=warned, **trust_files)
        _add_alignment(s, aligned, files)
        if interrupted:
            s.update(interrupted=True, exit_status=130)
        emit_json(s)
    return 130 if interrupted else 0


def _add_alignment(s: dict[str, Any], aligned: Aligned | None, files: list[Path]) -> None:
    """The alignment's files and seconds in a summary; ``seconds`` counts both stages."""
    if files:
        s["alignment"] = [str(p) for p in files]
    if aligned is not None:
        s["reconstruct_seconds"] = s["seconds"]
        s["align_seconds"] = round(aligned.seconds, 3)
        s["seconds"] = round(float(s["seconds"]) + aligned.seconds, 3)


def _write_found_alignment(aligned: Aligned | None, out: Path) -> list[Path]:
    """``OUT_alignment.*`` for what ``--align`` found (when no method learned a later one)."""
    if aligned is None:
        return []
    paths = write_alignment(out, aligned.geometry, aligned.report)
    print(f"wrote the alignment: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return paths


def _write_learned_alignment(rec, last, out: Path) -> list[Path]:
    """``OUT_alignment.xf/.tlt/.json`` when the method learned poses (INR with learn_pose).

    The learned geometry covers the kept tilts; its shifts are converted back
    to the input's pixels when the run was binned, so the files apply to the
    series as read.
    """
    from .geometry import TiltGeometry

    if last.geometry is None:
        return []
    g = TiltGeometry.from_dict(last.geometry)
    b = int(rec.prepared.binning)
    if b > 1:
        g = g.replace(shifts=g.shifts * b,
                      pixel_size=None if g.pixel_size is None else g.pixel_size / b)
    report = {"method": rec.method.name, "iteration": int(last.iteration),
              "kept_tilts": [int(i) for i in rec.prepared.selection.indices], "binning": b,
              "shifts_unit": "pixels of the input series"}
    paths = write_alignment(out, g, report)
    print(f"wrote the learned alignment: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return paths


def _check_slab_memory(plan, scheduler: str | None, zarr: bool) -> None:
    """Refuse before any slab runs when this process cannot hold what the plan needs here."""
    import os

    from .engine import check_need

    local = {None: 1, "threads": os.cpu_count() or 1}.get(scheduler, 0)  # processes: their own
    hint = "" if zarr else "; write to .ome.zarr to hold one slab at a time"
    if local > 1:
        hint += "; fewer slabs at once: --scheduler processes, or no --scheduler"
    check_need(plan.memory_need(solving=local, whole_volume=not zarr), hint)


def _reconstruct_slabs(args: argparse.Namespace, m, f, g, data, params: dict, out: Path,
                       aligned: Aligned | None) -> int:
    """``reconstruct --chunk N`` with ``--scheduler`` or to OME-Zarr: a slab plan, each slab
    computed once, streamed into the Zarr store or into one preallocated volume."""
    import numpy as np

    from . import io
    from .slabs import check_scheduler, plan_slabs, stream_slabs

    if not args.chunk:
        raise CliError("--scheduler hands out slabs: give --chunk N too")
    check_scheduler(args.scheduler)
    if args.heldout:
        raise CliError("--heldout cannot be combined with slabs (--scheduler, or --chunk to .zarr)")
    plan = plan_slabs(m.name, data, g, chunk=args.chunk, iterations=args.iterations,
                      device=args.device, seed=args.seed, origin=str(f.path), **_selection(args),
                      **params)
    warned = print_warnings(f.warnings)
    warned += print_warnings(plan.warnings, warned)
    shape, geom = plan.output_shape, plan.geometry
    _check_slab_memory(plan, args.scheduler, zarr=out.suffix.lower() == ".zarr")
    if out.suffix.lower() == ".zarr":
        writer = io.ZarrVolumeWriter(out, shape, np.float32,
                                     io.slab_chunks(shape, io.slab_axis(geom.tilt_axis), args.chunk),
                                     pixel_size=geom.pixel_size, overwrite=args.overwrite)
        sink = writer.write
    else:
        writer, volume = None, np.empty(shape, np.float32)  # the file formats write whole volumes

        def sink(region, block) -> None:
            volume[region] = block

    if plan.needs_decisions:
        what = ("choosing λ on sample slabs" if m.name == "cstv"
                else "learning the alignment on the central slab")
        print(f"tomoprior: {m.label}: {what}, then fixed for every slab", file=sys.stderr)
    bar = Progress(len(plan.slabs()), f"{m.label} slabs")
    try:
        plan, prov = stream_slabs(plan, data, sink, scheduler=args.scheduler,
                                  progress=lambda done, n, t: bar.update(done, None,
                                                                         f"slab {done}/{n}"))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.finish()
    if writer is not None:
        writer.close(provenance=prov)
    else:
        io.write_volume(out, volume, pixel_size=geom.pixel_size, pixel_unit=geom.pixel_unit,
                        provenance=prov, overwrite=args.overwrite)
    seconds = prov["seconds"] + (aligned.seconds if aligned else 0.0)
    print(f"wrote {out} {tuple(shape)} in {seconds:.1f}s "
          f"({prov['slabs']['count']} slabs, {prov['slabs']['scheduler']})", file=sys.stderr)
    files = _write_plan_alignment(plan, m, out) or _write_found_alignment(aligned, out)
    if args.json:
        keys = ("method", "parameters", "kept_tilts", "kept_angles", "iterations", "seconds",
                "final_residual", "final_objective", "device", "volume_shape", "binning",
                "pixel_size", "pixel_unit", "result", "slabs", "global_decisions")
        s = {k: prov.get(k) for k in keys}
        s.update(output=str(out), warnings=warned)
        _add_alignment(s, aligned, files)
        emit_json(s)
    return 0


def _write_plan_alignment(plan, m, out: Path) -> list[Path]:
    """The INR's alignment learned on the central slab, in the input's pixels."""
    from .geometry import TiltGeometry

    if "poses" not in plan.decisions:
        return []
    learned = TiltGeometry.from_dict(plan.decisions["poses"]["geometry"])
    b = plan.binning
    if b > 1:
        learned = learned.replace(shifts=learned.shifts * b, pixel_size=None
                                  if learned.pixel_size is None else learned.pixel_size / b)
    report = {"method": m.name, "iteration": plan.iterations, "kept_tilts": list(plan.indices),
              "binning": b, "shifts_unit": "pixels of the input series",
              "learned_on_slab": plan.decisions["poses"]["slab"]}
    paths = write_alignment(out, learned, report)
    print(f"wrote the learned alignment: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return paths


def add_reconstruct_parser(sub) -> None:
    """``tomoprior reconstruct`` on the main sub-parsers."""
    from . import io
    from ._cli_methods import METHODS, method_list, method_name

    p = sub.add_parser(
        "reconstruct", help="reconstruct a volume from a tilt series",
        description="Reconstruct a volume from a tilt series with " + method_list() + " (see "
        "`tomoprior methods` for what each does and its --param options). Progress goes to "
        "stderr; warnings (a clipped slice range, an option the method ignores) as "
        "`tomoprior: warning: ...` lines.")
    p.add_argument("path", help="tilt series; angles from the file, a .rawtlt/.tlt/.mdoc beside "
                   "it, --angles or --tilt-start/--tilt-step")
    p.add_argument("-o", "--output", required=True,
                   help="output volume: " + " ".join(io.VOLUME_EXTENSIONS) + "; its record goes "
                   "into the file or OUT.json")
    p.add_argument("--method", required=True, type=method_name, choices=list(METHODS),
                   metavar="METHOD",
                   help="reconstruction method, in any case: " + method_list())
    add_series_args(p)
    p.add_argument("--tilt-range", nargs=2, type=ANGLE, metavar=("MIN", "MAX"),
                   help="use only the tilts within MIN..MAX degrees (default: all)")
    p.add_argument("--tilt-increment", type=number(float, 0.0, 180.0, low_open=True),
                   metavar="DEG", help="use only the tilts nearest to every DEG degrees "
                   "(default: all)")
    p.add_argument("--exclude", metavar="LIST",
                   help="images never to use, numbered from 1 as in IMOD: 1,5,70-77")
    p.add_argument("--thickness", type=COUNT, metavar="N",
                   help="volume thickness in input pixels (default: the width across the axis)")
    p.add_argument("--bin", type=number(int, 1, 64), default=1, metavar="N",
                   help="average N x N pixels first (with --align: align on the binned "
                   "series too)")
    p.add_argument("--slices", metavar="A:B",
                   help="reconstruct only positions A..B along the tilt axis, input pixels "
                   "(default: all)")
    p.add_argument("--iterations", type=COUNT, metavar="N",
                   help="iterations of an iterative method (default: the method's, see "
                   "`tomoprior methods`); CS-TV and restore_tv stop sooner once converged "
                   "(--param tol=0 runs them all)")
    p.add_argument("--every", type=COUNT, metavar="K",
                   help="progress and snapshot interval, iterations (default: the method's, "
                   "scaled with --iterations)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to compute: auto takes CUDA when there is one")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="method parameter, repeatable (see `tomoprior methods`)")
    p.add_argument("--heldout", type=number(float, 0.0, 0.5), default=0.0, metavar="F",
                   help="fraction of detector pixels held out for validation")
    p.add_argument("--seed", type=WHOLE, default=0,
                   help="seed of the randomised methods and of the held-out pixels")
    p.add_argument("--chunk", type=COUNT, metavar="N",
                   help="reconstruct in slabs of N slices (default: the whole volume at once)")
    p.add_argument("--halves", action="store_true",
                   help="reconstruct the even and the odd tilts separately: OUT is their "
                   "average, OUT_half1/OUT_half2 the halves, OUT_std the uncertainty map; the "
                   "resolution (FSC 0.143 and ½-bit, spherical, x-y, z) goes to stderr and --json")
    p.add_argument("--ensemble", type=number(int, 1, 32), metavar="K",
                   help="K runs, each leaving out 1/K of the tilts (seeds SEED+k): OUT is their "
                   "mean, OUT_std the per-voxel standard deviation relative to the contrast; "
                   "with --halves, K pairs of half sets (the first even/odd)")
    p.add_argument("--scheduler", metavar="{threads,processes,ADDRESS}",
                   help="with --chunk: run the slabs in threads, in processes, or on a dask "
                   "cluster (scheduler address tcp://host:8786; needs the [distributed] extra)")
    p.add_argument("--align", action="store_true",
                   help="align the series first (binned by --bin); the alignment goes to "
                   "OUT_alignment.xf/.tlt/.json")
    p.add_argument("--align-method", choices=list(ALIGN_METHODS), default="xcorr",
                   help="alignment method with --align: "
                   + "; ".join(f"{k}: {v}" for k, v in ALIGN_METHODS.items()))
    p.add_argument("--save-interrupted", action="store_true",
                   help="on Ctrl-C or SIGTERM, write the last iterate instead of nothing")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true",
                   help="print the run's summary (or the error) as JSON on the last line of stdout")
    p.set_defaults(func=cmd_reconstruct)
