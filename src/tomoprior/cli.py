"""The ``tomoprior`` command line.

Sub-commands: ``info``, ``reconstruct``, ``simulate``, ``align``,
``interpolate``, ``train``, ``methods`` (``interpolate`` and ``train
interpolate`` live in ``_cli_interpolate.py``). Errors a user can cause print one line and exit with status 2;
``--json`` makes the last line of standard output a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._atomic import write_text
from .errors import is_user_error, user_message

__all__ = ["main"]


class _Exit(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# -- progress -------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr (plain lines every 10 % when not a terminal)."""

    def __init__(self, total: int | None, label: str, stream=None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last_decile = -1

    def update(self, done: int, loss: float | None = None, extra: str = "") -> None:
        el = time.perf_counter() - self.t0
        frac = min(1.0, done / self.total) if self.total else None
        bar = ""
        if frac is not None:
            n = int(frac * 30)
            bar = "[" + "#" * n + "." * (30 - n) + f"] {done}/{self.total}"
        else:
            bar = f"{done} it"
        eta = ""
        if frac and 0 < frac < 1:
            eta = f" eta {el / frac - el:.0f}s"
        msg = f"{self.label} {bar} {el:.1f}s{eta}"
        if loss is not None and math.isfinite(loss):
            msg += f" loss {loss:.4g}"
        if extra:
            msg += f" {extra}"
        if self.tty:
            self.stream.write("\r" + msg.ljust(100)[:120])
            self.stream.flush()
        else:
            decile = -1 if frac is None else int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(msg + "\n")
                self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- helpers ----------------------------------------------------------------------------------
def _read(args: argparse.Namespace):
    from . import io

    path = Path(args.path)
    f = io.read(path, angles=getattr(args, "angles", None),
                angles_unit=getattr(args, "angles_unit", None) or "deg")
    if getattr(args, "pixel_size", None) is not None:  # sets or overrides the file's value
        f = f.with_pixel_size(args.pixel_size, source="--pixel-size")
    start, step = getattr(args, "tilt_start", None), getattr(args, "tilt_step", None)
    if (start is None) != (step is None):
        raise _Exit("give both --tilt-start and --tilt-step")
    if start is not None:
        n = int(f.data.shape[0])
        end = start + step * (n - 1)
        if abs(end) > 90:
            raise _Exit(f"--tilt-start {start:g} --tilt-step {step:g} for {n} images ends at "
                        f"{end:g}°, beyond ±90°: check the start and step")
        f = f.with_start_step(start, step)
    return f


def _geometry(f, args: argparse.Namespace):
    if f.geometry is None:
        rejected = f.metadata.get("rejected_angle_source")
        if rejected:
            raise _Exit(
                f"the tilt angles in {rejected} do not fit {f.path.name}: "
                f"{f.metadata.get('rejected_angles_reason')}; fix the file, or give --angles FILE "
                "or --tilt-start DEG --tilt-step DEG"
            )
        raise _Exit(
            f"no tilt angles found for {f.path.name}: give --angles FILE or --tilt-start DEG --tilt-step DEG"
        )
    g = f.geometry
    if getattr(args, "tilt_axis", None) is not None:
        g = g.replace(tilt_axis=args.tilt_axis)
    return g


def _warn(f) -> None:
    """The reader's warnings (radian-looking angles, ...), once the run is known to start."""
    for message in f.warnings:
        print(f"tomoprior: warning: {message}", file=sys.stderr)


def _exclusions(text: str | None) -> list[int]:
    """``"1,5,70-77"`` (image numbers from 1) as 0-based stack indices."""
    out: list[int] = []
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        a, sep, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise _Exit(f"--exclude expects image numbers like 1,5,70-77, got {part!r}") from None
        if lo < 1 or hi < lo:
            raise _Exit(f"--exclude: {part!r} is not a range of image numbers from 1")
        out.extend(range(lo - 1, hi))
    return out


def _parse_params(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _Exit(f"--param expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _check_output(args: argparse.Namespace, allowed, what: str, companions=()) -> Path:
    """Everything about the output that can be wrong, checked before reading or computing."""
    from ._atomic import check_output

    inputs = [p for p in (getattr(args, "path", None), getattr(args, "angles", None)) if p]
    return check_output(args.output, allowed=tuple(allowed), what=what, companions=companions,
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


def _emit_json(obj: dict[str, Any]) -> None:
    plain = json.loads(json.dumps(obj, default=_json_default))  # numpy values to plain ones
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


def _is_lazy(data: Any) -> bool:
    import numpy as np

    return isinstance(data, np.memmap) or not isinstance(data, np.ndarray)


# -- sub-commands ----------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    f = _read(args)
    g = f.geometry
    info: dict[str, Any] = {
        "path": str(f.path),
        "shape": list(f.data.shape),
        "dtype": str(f.data.dtype),
        "n_tilts": int(f.data.shape[0]),
        "lazy": _is_lazy(f.data),
        "pixel_size": f.pixel_size,
        "pixel_unit": f.pixel_unit,
        "pixel_size_source": f.metadata.get("pixel_size_source") or ("file" if f.pixel_size else None),
        "angle_source": f.angle_source or None,
        "angles": None if g is None else [float(a) for a in g.angles],
        "angle_range": None if g is None else list(g.angle_range),
        "angle_step": None if g is None else g.angle_step,
        "tilt_axis": None if g is None else g.tilt_axis,
        "tilt_axis_name": None if g is None else g.tilt_axis_name,
        "tilt_axis_source": f.metadata.get("tilt_axis_source"),
        "warnings": list(f.warnings),
    }
    if args.json:
        _emit_json(info)
        return 0
    print(f"{f.path}")
    volume = bool(f.metadata.get("volume")) and g is None
    print(f"  shape      {tuple(f.data.shape)} "
          f"{'(z, y, x) volume' if volume else '(tilts, rows, cols)'}, {f.data.dtype}"
          + ("  [opened lazily]" if info["lazy"] else ""))
    if volume:
        method = (f.metadata.get("provenance") or {}).get("method")
        print(f"  made by    tomoprior {method}" if method else "  angles     none (a volume)")
    elif g is None:
        print("  angles     none found")
    else:
        lo, hi = g.angle_range
        step = f", step {g.angle_step:g}°" if g.angle_step else " (non-uniform)"
        print(f"  angles     {g.n_tilts} from {lo:g}° to {hi:g}°{step}  (from {f.angle_source})")
        src = info["tilt_axis_source"]
        note = " (not recorded in the file: assumed)" if src == "default" else (f" (from {src})" if src else "")
        print(f"  tilt axis  {g.tilt_axis_name}{note}")
    if f.pixel_size:
        given, before = f.metadata.get("pixel_size_source"), f.metadata.get("file_pixel_size")
        note = f" (from {given}" + (f"; the file says {before:g} nm)" if before else ")") if given else ""
        print(f"  pixel size {f.pixel_size:g} {f.pixel_unit}{note}")
    for w in f.warnings:
        print(f"  warning: {w}")
    return 0


def _add_common_recon_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--angles", metavar="FILE", help="tilt angles, one per line (.rawtlt/.tlt/.txt)")
    p.add_argument("--angles-unit", choices=["deg", "rad"], default="deg",
                   help="unit of the angles in the angle file or the data file (default deg)")
    p.add_argument("--tilt-start", type=_ANGLE, metavar="DEG")
    p.add_argument("--tilt-step", type=_number(float, 0.0, 180.0, low_open=True), metavar="DEG")
    p.add_argument("--tilt-axis", metavar="{horizontal,vertical,DEG}",
                   help="tilt-axis orientation (default: from the file, else horizontal)")
    p.add_argument("--pixel-size", type=_number(float, 0.0, low_open=True), metavar="NM",
                   help="pixel size in nm: sets it, or overrides the file's value")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np

    from . import io
    from .algorithms import get_method
    from .engine import run, summary

    m = get_method(args.method)
    out = Path(args.output)
    companions = [] if out.suffix.lower() in (".tif", ".tiff", ".zarr") else [out.with_suffix(".json")]
    if m.capabilities.learns_poses:
        companions += [out.with_name(out.stem + "_alignment" + s) for s in (".xf", ".tlt", ".json")]
    _check_output(args, io.VOLUME_EXTENSIONS, "volume", companions)
    f = _read(args)
    g = _geometry(f, args)
    data = f.data
    if args.tilt_range and args.tilt_range[0] >= args.tilt_range[1]:
        raise _Exit(f"--tilt-range MIN MAX needs MIN < MAX, got {args.tilt_range[0]:g} "
                    f"{args.tilt_range[1]:g}")
    width = max(int(data.shape[1]), int(data.shape[2]))
    if args.thickness and args.thickness > 4 * width:
        raise _Exit(f"--thickness {args.thickness} is more than 4 times the image width ({width} px)")
    if args.align:
        from .alignment import align_series

        # the found geometry (shifts, fine axis) is applied by run() in its single resampling
        data = f.load()
        _, g, _ = align_series(data, g, method=args.align_method)
    params = _parse_params(args.param)
    # slabs of a plan: on a scheduler, into a Zarr store as they finish, or with a choice that
    # must hold for the whole volume (CS-TV's automatic λ, the INR's learned alignment)
    whole = (m.name == "cstv" and m.resolve(params).get("lam") == "auto") or (
        m.name == "inr" and m.resolve(params).get("learn_pose"))
    if args.scheduler or (args.chunk and (out.suffix.lower() == ".zarr"
                                          or (whole and not args.heldout))):
        return _reconstruct_slabs(args, m, f, g, data, params, out)
    rec = run(
        m.name, data, g,
        iterations=args.iterations, every=args.every, device=args.device,
        tilt_range=tuple(args.tilt_range) if args.tilt_range else None,
        increment=args.tilt_increment, exclude=_exclusions(args.exclude), bin=args.bin,
        slices=args.slices,
        thickness=args.thickness, heldout=args.heldout, seed=args.seed,
        chunk=args.chunk, source=str(f.path), **params,
    )
    _warn(f)
    total = rec.start + rec.iterations if m.capabilities.iterative else 1
    bar = Progress(total, m.label)
    last = None
    interrupted = False
    try:
        for last in rec:
            extra = f"slab {last.chunk[0] + 1}/{last.chunk[1]}" if last.chunk else ""
            if last.phase != "iterate":
                extra = f"{last.phase} {extra}".strip()
            bar.update(last.iteration, last.loss, extra)
    except KeyboardInterrupt:
        interrupted = True
        rec.close()
    finally:
        bar.finish()
    if interrupted and not args.save_interrupted:
        print("tomoprior: interrupted: nothing written (--save-interrupted keeps the last "
              "iterate)", file=sys.stderr)
        return 130
    if last is None:
        raise _Exit("interrupted before the first result" if interrupted else "no result produced")
    prov = rec.provenance()
    ps = rec.prepared.geometry.pixel_size
    io.write_volume(out, np.asarray(last.volume, np.float32), pixel_size=ps,
                    pixel_unit=rec.prepared.geometry.pixel_unit, provenance=prov)
    msg = f"wrote {out} {tuple(last.volume.shape)} in {rec.seconds:.1f}s"
    print(msg + (" (interrupted: last iterate kept)" if interrupted else ""), file=sys.stderr)
    alignment = _write_learned_alignment(rec, last, out)
    if alignment:
        print(f"wrote the learned alignment: {', '.join(str(p) for p in alignment)}", file=sys.stderr)
    if args.json:
        s = dict(summary(rec))
        s["output"] = str(out)
        if alignment:
            s["alignment"] = [str(p) for p in alignment]
        _emit_json(s)
    return 130 if interrupted else 0


def _write_learned_alignment(rec, last, out: Path) -> list[Path]:
    """``OUT_alignment.xf/.tlt/.json`` when the method learned poses (INR with learn_pose).

    The learned geometry covers the kept tilts; its shifts are converted back
    to the input's pixels when the run was binned, so the files apply to the
    series as read.
    """
    from .alignment import write_transforms
    from .geometry import TiltGeometry

    learned = last.geometry
    if learned is None:
        return []
    g = TiltGeometry.from_dict(learned)
    b = int(rec.prepared.binning)
    if b > 1:
        g = g.replace(shifts=g.shifts * b,
                      pixel_size=None if g.pixel_size is None else g.pixel_size / b)
    report = {"method": rec.method.name, "iteration": int(last.iteration),
              "kept_tilts": [int(i) for i in rec.prepared.selection.indices], "binning": b,
              "shifts_unit": "pixels of the input series"}
    return write_transforms(out.with_name(out.stem + "_alignment"), g, report)


def _check_slab_memory(plan, scheduler: str | None, zarr: bool) -> None:
    """Refuse before any slab runs when this process cannot hold what the plan needs here."""
    import os

    from .engine import check_need

    local = {None: 1, "threads": os.cpu_count() or 1}.get(scheduler, 0)  # processes: their own
    hint = "" if zarr else "; write to .ome.zarr to hold one slab at a time"
    if local > 1:
        hint += "; fewer slabs at once: --scheduler processes, or no --scheduler"
    check_need(plan.memory_need(solving=local, whole_volume=not zarr), hint)


def _reconstruct_slabs(args: argparse.Namespace, m, f, g, data, params: dict, out: Path) -> int:
    """``reconstruct --chunk N`` with ``--scheduler`` or to OME-Zarr: a slab plan, each slab
    computed once, streamed into the Zarr store or into one preallocated volume."""
    import numpy as np

    from . import io
    from .slabs import check_scheduler, plan_slabs, stream_slabs

    if not args.chunk:
        raise _Exit("--scheduler hands out slabs: give --chunk N too")
    check_scheduler(args.scheduler)
    if args.heldout:
        raise _Exit("--heldout cannot be combined with slabs (--scheduler, or --chunk to .zarr)")
    plan = plan_slabs(
        m.name, data, g, chunk=args.chunk, iterations=args.iterations, device=args.device,
        tilt_range=tuple(args.tilt_range) if args.tilt_range else None,
        increment=args.tilt_increment, exclude=_exclusions(args.exclude), bin=args.bin,
        slices=args.slices, thickness=args.thickness, seed=args.seed, origin=str(f.path),
        **params,
    )
    _warn(f)
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
                        provenance=prov)
    print(f"wrote {out} {tuple(shape)} in {prov['seconds']:.1f}s "
          f"({prov['slabs']['count']} slabs, {prov['slabs']['scheduler']})", file=sys.stderr)
    alignment = []
    if "poses" in plan.decisions:
        from .alignment import write_transforms
        from .geometry import TiltGeometry

        learned = TiltGeometry.from_dict(plan.decisions["poses"]["geometry"])
        b = plan.binning
        if b > 1:
            learned = learned.replace(shifts=learned.shifts * b, pixel_size=None
                                      if learned.pixel_size is None else learned.pixel_size / b)
        report = {"method": m.name, "iteration": plan.iterations, "kept_tilts": list(plan.indices),
                  "binning": b, "shifts_unit": "pixels of the input series",
                  "learned_on_slab": plan.decisions["poses"]["slab"]}
        alignment = write_transforms(out.with_name(out.stem + "_alignment"), learned, report)
        print(f"wrote the learned alignment: {', '.join(str(p) for p in alignment)}",
              file=sys.stderr)
    if args.json:
        keys = ("method", "parameters", "kept_tilts", "kept_angles", "iterations", "seconds",
                "final_loss", "device", "volume_shape", "slabs", "global_decisions")
        s = {k: prov[k] for k in keys}
        s["output"] = str(out)
        if alignment:
            s["alignment"] = [str(p) for p in alignment]
        _emit_json(s)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from . import io, phantoms
    from .geometry import angles_from_range

    out = Path(args.output)
    truth_ext = out.suffix if out.suffix.lower() in io.VOLUME_EXTENSIONS else ".mrc"
    truth_path = out.with_name(out.stem + "_truth" + truth_ext)
    companions = [out.with_suffix(".rawtlt"), truth_path, out.with_name(out.stem + "_geometry.json")]
    if out.suffix.lower() == ".npy":
        companions.append(out.with_suffix(".json"))
    if truth_path.suffix.lower() not in (".tif", ".tiff"):
        companions.append(truth_path.with_suffix(".json"))
    lo, hi = args.tilt_range
    if lo >= hi:
        raise _Exit(f"--tilt-range MIN MAX needs MIN < MAX, got {lo:g} {hi:g}")
    if args.size * args.supersample > 1024:
        raise _Exit(f"--size x --supersample is {args.size * args.supersample}; at most 1024 "
                    "(the fine grid's volume grows with its cube)")
    _check_output(args, io.TILT_SERIES_EXTENSIONS, "tilt series", companions)
    angles = angles_from_range(lo, hi, args.tilt_step)
    ss = max(1, int(args.supersample))
    ph = phantoms.make_phantom(args.name, size=args.size, seed=args.seed, supersample=ss)
    noise = None if args.noise == "none" else args.noise
    series, geom = phantoms.simulate(
        ph, angles, tilt_axis=args.tilt_axis, noise=noise, dose=args.dose,
        shifts=args.misalign if args.misalign else None, axis_error=args.axis_error,
        supersample=ss, seed=args.seed, pixel_size=args.pixel_size,
    )
    truth = ph.binned(ss) if ss > 1 else ph
    vol_path = truth_path
    io.write_tilt_series(out, series, geom)
    io.write_volume(vol_path, truth.volume, pixel_size=args.pixel_size,
                    provenance={"phantom": args.name, "size": args.size, "seed": args.seed})
    geom_path = out.with_name(out.stem + "_geometry.json")
    true = {
        "phantom": args.name,
        "seed": args.seed,
        "noise": noise,
        "dose": args.dose,
        "misalign_px": args.misalign,
        "axis_error_deg": args.axis_error,
        "geometry": geom.to_dict(),
        "drift": (-np.asarray(geom.shifts)).tolist(),
    }
    write_text(geom_path, json.dumps(true, indent=1))
    print(f"wrote {out} {series.shape}, {vol_path.name}, {geom_path.name}", file=sys.stderr)
    if args.json:
        _emit_json({"series": str(out), "truth": str(vol_path), "geometry": str(geom_path),
                    "shape": list(series.shape), "n_tilts": int(series.shape[0])})
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    from . import io
    from .alignment import align_series, aligned_geometry, write_transforms

    out = Path(args.output)
    companions = [out.with_suffix(s) for s in (".rawtlt", ".xf", ".tlt", ".json")]
    _check_output(args, io.TILT_SERIES_EXTENSIONS, "aligned tilt series", companions)
    f = _read(args)
    g = _geometry(f, args)
    t0 = time.perf_counter()
    bar = Progress(None, "align")
    options: dict[str, Any] = {"device": args.device}
    if args.no_axis:
        options["axis"] = False
    if args.bin:
        options["binning"] = args.bin
    if args.rounds:
        options["rounds"] = args.rounds
    aligned, g2, report = align_series(
        f.load(), g, method=args.method, progress=lambda msg: bar.update(0, None, msg), **options
    )
    bar.finish()
    _warn(f)
    io.write_tilt_series(out, aligned, aligned_geometry(g2))
    paths = write_transforms(out.with_suffix(""), g2, report)
    secs = time.perf_counter() - t0
    print(f"wrote {out} and {', '.join(p.name for p in paths)} in {secs:.1f}s", file=sys.stderr)
    if args.json:
        _emit_json({"output": str(out), "transforms": [str(p) for p in paths],
                    "tilt_axis": g2.tilt_axis, "aligned_tilt_axis": aligned_geometry(g2).tilt_axis,
                    "shifts": g2.shifts.tolist(),
                    "seconds": round(secs, 2), **{k: v for k, v in report.items() if k != "steps"}})
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .algorithms import METHODS, methods_table

    if args.markdown:
        print(methods_table())
        return 0
    if args.json:
        _emit_json({n: {"label": m.label, "help": m.help, "capabilities": m.capabilities.names(),
                        "default_iterations": m.default_iterations,
                        "default_every": m.default_every,
                        "params": {p.name: {"default": p.default, "help": p.help,
                                            "min": p.min, "max": p.max,
                                            "choices": None if p.choices is None else list(p.choices),
                                            "auto": p.allow_auto, "advanced": p.advanced}
                                   for p in m.params}}
                    for n, m in METHODS.items()})
        return 0
    for name, m in METHODS.items():
        caps = ", ".join(m.capabilities.names())
        print(f"{name:6s} {m.label}: {m.help}")
        print(f"         ({caps}; {m.default_iterations} iterations by default)")
        for p in m.params:
            extra = f" choices {list(p.choices)}" if p.choices else ""
            rng = ""
            if p.min is not None or p.max is not None:
                rng = f" [{'' if p.min is None else f'{p.min:g}'}, {'' if p.max is None else f'{p.max:g}'}]"
            print(f"         --param {p.name}={p.default}  {p.help}{rng}{extra}")
    return 0


def training_output(args: argparse.Namespace) -> Path:
    """The model file of ``tomoprior train ...``, checked (with its card) before any work;
    sets ``--threads``."""
    import torch

    from ._atomic import check_output

    out = Path(args.output)
    check_output(out, allowed=(".pt",), what="model", companions=[out.with_suffix(".json")],
                 overwrite=args.overwrite or args.resume)
    if args.threads is not None:
        if args.threads < 1:
            raise _Exit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return out


def train_with_progress(args: argparse.Namespace, out: Path, label: str,
                        total: Callable[[], int], train: Callable[..., dict], **kwargs: Any) -> int:
    """Run a trainer with a progress bar (``total()`` steps) and its messages on stderr;
    ``--json`` prints the outputs, the validation table and the seconds."""
    from .device import resolve_device

    bar = Progress(total(), label)

    def on_step(step: int, loss: float) -> None:
        bar.total = total()  # with --epochs the steps are known once the data exist
        bar.update(step, loss)

    def say(msg: str) -> None:
        bar.finish()
        print(msg, file=sys.stderr, flush=True)

    card = train(out, resume=args.resume, device=resolve_device(args.device), progress=say,
                 step_callback=on_step, **kwargs)
    bar.finish()
    if args.json:
        _emit_json({"output": str(out), "card": str(out.with_suffix(".json")),
                    "validation": card["validation"],
                    "seconds": card["training"]["total_seconds"]})
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, train_restore

    out = training_output(args)
    cfg = TrainConfig(steps=args.steps, epochs=args.epochs, batch=args.batch, patch=args.size, lr=args.lr,
                      specimens=args.specimens, val_specimens=args.val_specimens, seed=args.seed,
                      base=args.base, gan_weight=args.gan_weight, gan_start=args.gan_start,
                      validate_every=args.validate_every)
    return train_with_progress(args, out, "train restore", lambda: cfg.steps, train_restore,
                               cfg=cfg, cache=args.cache)


class _MethodNames:
    """The registry's method names, read only when argparse needs them (imports torch)."""

    def _names(self) -> list[str]:
        from .algorithms import METHODS

        return list(METHODS)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


# -- parser ---------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too (and exit 2), like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"tomoprior: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, low: float | None = None, high: float | None = None, *,
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


_ANGLE = _number(float, -90.0, 90.0)
_COUNT = _number(int, 1)
_WHOLE = _number(int, 0)
def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="tomoprior",
        description="Electron tomography: WBP, SIRT, CS-TV, DIP-TV and INR reconstructions of tilt series.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"napari-tomoprior {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("info", help="describe a tilt series file")
    p.add_argument("path")
    _add_common_recon_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("reconstruct", help="reconstruct a volume from a tilt series")
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True, help="output volume (.tif, .mrc, .npy or .ome.zarr)")
    p.add_argument("--method", required=True, choices=_MethodNames(),
                   help="reconstruction method (see `tomoprior methods`)")
    _add_common_recon_args(p)
    p.add_argument("--tilt-range", nargs=2, type=_ANGLE, metavar=("MIN", "MAX"))
    p.add_argument("--tilt-increment", type=_number(float, 0.0, 180.0, low_open=True), metavar="DEG")
    p.add_argument("--exclude", metavar="LIST",
                   help="images never to use, numbered from 1 as in IMOD: 1,5,70-77")
    p.add_argument("--thickness", type=_COUNT, metavar="N", help="volume thickness in input pixels")
    p.add_argument("--bin", type=_number(int, 1, 64), default=1, metavar="N")
    p.add_argument("--slices", metavar="A:B", help="positions along the tilt axis (input pixels)")
    p.add_argument("--iterations", type=_WHOLE, metavar="N")
    p.add_argument("--every", type=_COUNT, metavar="K", help="progress/snapshot interval")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    p.add_argument("--heldout", type=_number(float, 0.0, 0.5), default=0.0, metavar="F",
                   help="fraction of detector pixels held out for validation")
    p.add_argument("--seed", type=_WHOLE, default=0)
    p.add_argument("--chunk", type=_COUNT, metavar="N", help="reconstruct in slabs of N slices")
    p.add_argument("--scheduler", metavar="{threads,processes,ADDRESS}",
                   help="with --chunk: run the slabs in threads, in processes, or on a dask "
                   "cluster (scheduler address tcp://host:8786; needs the [distributed] extra)")
    p.add_argument("--align", action="store_true", help="align the series first")
    p.add_argument("--save-interrupted", action="store_true",
                   help="on Ctrl-C or SIGTERM, write the last iterate instead of nothing")
    p.add_argument("--align-method", choices=["xcorr", "com", "pm"], default="xcorr",
                   help="alignment method with --align (default xcorr)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("simulate", help="simulate a tilt series of a phantom")
    p.add_argument("name", help="phantom: pt_haadf, pt_adf, shepp_logan, faces, blobs, spheres")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--tilt-range", nargs=2, type=_ANGLE, default=(-60.0, 60.0), metavar=("MIN", "MAX"))
    p.add_argument("--tilt-step", type=_number(float, 0.1, 90.0), default=2.0)
    p.add_argument("--tilt-axis", default="horizontal")
    p.add_argument("--size", type=_number(int, 8, 1024), default=64)
    p.add_argument("--seed", type=_WHOLE, default=0)
    p.add_argument("--noise", choices=["none", "poisson", "gaussian"], default="none")
    p.add_argument("--dose", type=_number(float, 0.0, 1e12, low_open=True), help="electrons per pixel at the brightest pixel (poisson)")
    p.add_argument("--misalign", type=_number(float, 0.0, 1000.0), default=0.0, metavar="PX", help="max random drift")
    p.add_argument("--axis-error", type=_number(float, -45.0, 45.0), default=0.0, metavar="DEG")
    p.add_argument("--supersample", type=_number(int, 1, 8), default=2)
    p.add_argument("--pixel-size", type=_number(float, 0.0, low_open=True), default=None, metavar="NM")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("align", help="align a tilt series (shifts and tilt axis)")
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True, help="aligned stack (.tif/.mrc)")
    p.add_argument("--method", choices=["xcorr", "com", "pm"], default="xcorr",
                   help="cross-correlation, centre of mass, or projection matching")
    _add_common_recon_args(p)
    p.add_argument("--no-axis", action="store_true", help="keep the tilt axis as given")
    p.add_argument("--bin", type=_number(int, 1, 64), metavar="N", help="bin images for the correlation step")
    p.add_argument("--rounds", type=_COUNT, metavar="N", help="projection-matching rounds (pm)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("train", help="train a network on the package's simulator")
    tsub = p.add_subparsers(dest="model", required=True, parser_class=_Parser)
    t = tsub.add_parser("restore", help="the missing-wedge restoration network of --method restore")
    t.add_argument("-o", "--output", required=True, help="model file (.pt); its card goes to .json")
    t.add_argument("--steps", type=_COUNT, default=6000, help="optimiser steps (default 6000)")
    t.add_argument("--epochs", type=_number(float, 0.0), default=0.0,
                   help="passes over the training slices instead of --steps")
    t.add_argument("--batch", type=_COUNT, default=16)
    t.add_argument("--size", type=_number(int, 16, 1024), default=64, metavar="PX", help="training patch size")
    t.add_argument("--lr", type=_number(float, 0.0, 1.0, low_open=True), default=1e-3)
    t.add_argument("--specimens", "--samples", type=_COUNT, default=240,
                   help="simulated training specimens (each gives its slices)")
    t.add_argument("--val-specimens", type=_COUNT, default=16)
    t.add_argument("--base", choices=["sirt", "wbp"], default="sirt")
    t.add_argument("--gan-weight", type=_number(float, 0.0), default=0.0,
                   help="weight of the RaLSGAN loss (0: L1 only)")
    t.add_argument("--gan-start", type=_WHOLE, default=0, metavar="STEP")
    t.add_argument("--validate-every", type=_COUNT, default=1000, metavar="STEPS")
    t.add_argument("--seed", type=_WHOLE, default=0)
    t.add_argument("--threads", type=_COUNT, metavar="N", help="torch threads (default: torch's)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")
    t.add_argument("--cache", metavar="DIR", help="keep the simulated specimens here and reuse "
                   "them (a rerun or resume then skips the simulation)")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)
    from ._cli_interpolate import add_interpolate_parser, add_train_parser

    add_train_parser(tsub, _number)  # train interpolate
    add_interpolate_parser(sub, _add_common_recon_args, _number)

    p = sub.add_parser("methods", help="list reconstruction methods and their parameters")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="the README's method table")
    p.set_defaults(func=cmd_methods)
    return ap


EXIT_STATUS = """exit status:
  0    success
  2    a problem with the input, the options or the run (a bad file, a wrong angle
       count, a parameter out of range, a diverged run, out of memory): one line
       on stderr saying what to change, never a traceback
  130  interrupted (Ctrl-C or SIGTERM): nothing is written, unless reconstruct
       was given --save-interrupted (then the last iterate is)
  other  a bug in tomoprior: the traceback is printed; please report it"""


def _terminate(signum, frame) -> None:  # SIGTERM ends like Ctrl-C: partial files are removed
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _dispatch(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except _Exit as exc:
        print(f"tomoprior: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("tomoprior: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not (is_user_error(exc) or isinstance(exc, (ValueError, OSError))):
            raise
        device = getattr(args, "device", None)
        print(f"tomoprior: error: {user_message(exc, interface='cli', device=device)}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
