"""``tomoprior interpolate`` and ``tomoprior train interpolate`` (registered by :mod:`tomoprior.cli`).

The helpers (progress, output checks, one-line errors) are the command
line's own, from :mod:`tomoprior._cli_common`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._cli_common import (
    DEVICES,
    CliError,
    Progress,
    add_series_args,
    check_output,
    emit_json,
    engine_warnings,
    geometry_of,
    number,
    parse_params,
    print_warnings,
    read_series,
)

__all__ = ["add_interpolate_parser", "add_train_parser", "cmd_interpolate", "cmd_train_interpolate"]


def cmd_train_interpolate(args: argparse.Namespace) -> int:
    """``tomoprior train interpolate``: the network of ``interpolate --method learned``."""
    from ._cli_train import train_with_progress, training_output
    from .interpolation.training import InterpTrainConfig, train_interpolate

    out = training_output(args)
    cfg = InterpTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, series=args.series,
                            val_series=args.val_series, seed=args.seed,
                            ssim_weight=args.ssim_weight, validate_every=args.validate_every,
                            until=args.until or 0)
    return train_with_progress(args, out, "train interpolate", lambda: cfg.last_step,
                               train_interpolate, cfg=cfg)


def cmd_interpolate(args: argparse.Namespace) -> int:
    """Fill in tilts; write the denser series, its angles and the frames sidecar."""
    import numpy as np

    from . import io
    from .interpolation import interpolate, plan_angles, sidecar_path, write_sidecar

    out = Path(args.output)
    companions = [out.with_suffix(".rawtlt"), sidecar_path(out)]
    if out.suffix.lower() == ".npy":
        companions.append(out.with_suffix(".json"))
    check_output(args, io.TILT_SERIES_EXTENSIONS, "tilt series", companions)
    if args.factor is None and args.step is None:
        args.factor = 2
    if args.method != "learned" and args.model:
        raise CliError("--model is for --method learned")
    if args.method != "reproject" and (args.recon_method or args.param):
        raise CliError("--recon-method and --param are for --method reproject")
    if args.method != "reproject" and args.iterations:
        raise CliError("--iterations counts the reconstruction's iterations: it is for "
                       "--method reproject")
    if args.method != "reproject" and args.bin != 1:
        raise CliError("--bin bins the series for the reconstruction: it is for --method "
                       "reproject (measured frames keep their size)")
    f = read_series(args)
    if f.data.ndim != 3 or int(f.data.shape[0]) < 2:
        raise CliError(f"{f.path.name} holds {int(f.data.shape[0]) if f.data.ndim == 3 else 1} "
                       "image: interpolation needs a tilt series of at least 2 images")
    g = geometry_of(f, args)
    plan = plan_angles(g.angles, factor=args.factor, step=args.step)  # angle errors before reading
    model = None
    if args.method == "learned":
        from .interpolation._model import load_model

        model = load_model(args.model)  # an unknown or damaged file fails here, before any work
    params: dict = parse_params(args.param)
    if args.iterations:
        params["iterations"] = args.iterations
    if args.bin != 1:
        params["bin"] = args.bin
    warned = print_warnings(f.warnings)
    label = args.method if args.method != "reproject" else f"reproject, {args.recon_method or 'cstv'}"
    bar = Progress(None, f"interpolate ({label})")
    try:
        with engine_warnings() as notes:  # the reprojection's reconstruction warns too
            res = interpolate(f.load(), g, plan=plan, method=args.method, model=model,
                              recon_method=args.recon_method or "cstv", device=args.device,
                              progress=bar.say, **params)
    finally:
        bar.finish()
    warned += print_warnings([*notes, *res.warnings], warned)
    io.write_tilt_series(out, np.asarray(res.series, np.float32), res.geometry,
                         overwrite=args.overwrite)
    side = write_sidecar(out, res, source=str(f.path))
    n_virtual = int((~res.measured).sum())
    print(f"wrote {out} {tuple(res.series.shape)} ({int(res.measured.sum())} measured, {n_virtual} "
          f"virtual frames, {res.method}) in {res.seconds:.1f}s; {side.name} marks the virtual "
          "frames", file=sys.stderr)
    if args.json:
        emit_json({"output": str(out), "rawtlt": str(out.with_suffix(".rawtlt")),
                   "sidecar": str(side), "method": res.method, "shape": list(res.series.shape),
                   "measured_angles": [float(a) for a in res.geometry.angles[res.measured]],
                   "virtual_angles": [float(a) for a in res.geometry.angles[~res.measured]],
                   "warnings": warned, "seconds": round(res.seconds, 3)})
    return 0


def add_interpolate_parser(sub) -> None:
    """``tomoprior interpolate`` on the main sub-parsers."""
    from . import io
    from ._cli_methods import METHODS, method_list, method_name

    p = sub.add_parser(
        "interpolate", help="fill in tilts: a denser series with virtual frames between the "
        "measured ones",
        description="Fill in tilts: a denser series with virtual frames between the measured "
        "ones, made by a trained network, a linear blend, or projections of a reconstruction. "
        "OUT.frames.json marks which frames are virtual (`tomoprior info` lists them).")
    p.add_argument("path", help="the measured tilt series")
    p.add_argument("-o", "--output", required=True,
                   help="denser series: " + " ".join(io.TILT_SERIES_EXTENSIONS) + "; angles go "
                   "to .rawtlt, and OUT.frames.json lists which frames are measured and which "
                   "virtual")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--factor", type=number(int, 2, 64), metavar="N",
                     help="N times as many frames: N-1 virtual frames in every gap (default 2)")
    how.add_argument("--step", type=number(float, 0.0, 90.0, low_open=True), metavar="DEG",
                     help="split every gap into equal parts of at most DEG degrees")
    p.add_argument("--method", choices=["learned", "linear", "reproject"], default="learned",
                   help="learned: the trained network; linear: a blend of the neighbours; "
                   "reproject: projections of a reconstruction")
    p.add_argument("--model", metavar="FILE",
                   help="interpolation model for --method learned (.pt; default: the shipped one)")
    p.add_argument("--recon-method", type=method_name, choices=list(METHODS), metavar="METHOD",
                   help="reconstruction for --method reproject, in any case: " + method_list()
                   + " (default cstv)")
    p.add_argument("--iterations", type=number(int, 1), metavar="N",
                   help="iterations of the reconstruction, with --method reproject (default: "
                   "the method's, see `tomoprior methods`)")
    p.add_argument("--bin", type=number(int, 1, 64), default=1, metavar="N",
                   help="with --method reproject: reconstruct from the series binned N×N (about "
                   "N³ faster); the virtual frames are projected from that volume and "
                   "interpolated back to the input's size (default: %(default)s)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="parameter of the reconstruction method, repeatable")
    add_series_args(p)
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to compute: auto takes CUDA when there is one")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (or the error) as the last line of stdout")
    p.set_defaults(func=cmd_interpolate)


def add_train_parser(tsub) -> None:
    """``tomoprior train interpolate`` on the ``train`` sub-parsers."""
    t = tsub.add_parser("interpolate", help="the tilt-frame interpolation network of "
                        "`tomoprior interpolate --method learned`",
                        description="Train the tilt-frame interpolation network of `tomoprior "
                        "interpolate --method learned` on simulated tilt series.")
    t.add_argument("-o", "--output", required=True, help="model file (.pt); its card goes to .json")
    t.add_argument("--steps", type=number(int, 1), default=6000, help="optimiser steps")
    t.add_argument("--batch", type=number(int, 1), default=24, help="frame triplets per step")
    t.add_argument("--lr", type=number(float, 0.0, 1.0, low_open=True), default=2e-3,
                   help="Adam learning rate")
    t.add_argument("--series", type=number(int, 1), default=120,
                   help="simulated training series (each ±90° at 1°)")
    t.add_argument("--val-series", type=number(int, 1), default=12,
                   help="simulated validation series")
    t.add_argument("--ssim-weight", type=number(float, 0.0), default=0.5,
                   help="weight of 1 - SSIM added to the L1 loss")
    t.add_argument("--validate-every", type=number(int, 1), default=1000, metavar="STEPS",
                   help="validation interval")
    t.add_argument("--until", type=number(int, 1), metavar="STEP",
                   help="stop after this step of the --steps schedule and write the model "
                   "(with --resume from a checkpoint at or past it: write it at once)")
    t.add_argument("--seed", type=number(int, 0), default=0,
                   help="seed of the simulated series and the network")
    t.add_argument("--threads", type=number(int, 1), metavar="N",
                   help="torch threads (default: torch's)")
    t.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to train: auto takes CUDA when there is one")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    t.add_argument("--json", action="store_true",
                   help="print a JSON summary as the last line of stdout")
    t.set_defaults(func=cmd_train_interpolate)
