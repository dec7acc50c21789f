"""``tomoprior interpolate`` and ``tomoprior train interpolate`` (registered by :mod:`tomoprior.cli`).

Kept apart from ``cli.py`` so the command line's main module only gains two
registration calls; the helpers (progress bar, output checks, one-line
errors) are the command line's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_interpolate_parser", "add_train_parser", "cmd_interpolate", "cmd_train_interpolate"]


def cmd_train_interpolate(args: argparse.Namespace) -> int:
    from .cli import train_with_progress, training_output
    from .interpolation.training import InterpTrainConfig, train_interpolate

    out = training_output(args)
    cfg = InterpTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, series=args.series,
                            val_series=args.val_series, seed=args.seed,
                            ssim_weight=args.ssim_weight, validate_every=args.validate_every,
                            until=args.until or 0)
    return train_with_progress(args, out, "train interpolate", lambda: cfg.last_step,
                               train_interpolate, cfg=cfg)


def cmd_interpolate(args: argparse.Namespace) -> int:
    import numpy as np

    from . import io
    from .cli import (
        Progress,
        _check_output,
        _emit_json,
        _Exit,
        _geometry,
        _parse_params,
        _read,
        _warn,
    )
    from .interpolation import interpolate, plan_angles, sidecar_path, write_sidecar

    out = Path(args.output)
    companions = [out.with_suffix(".rawtlt"), sidecar_path(out)]
    if out.suffix.lower() == ".npy":
        companions.append(out.with_suffix(".json"))
    _check_output(args, io.TILT_SERIES_EXTENSIONS, "tilt series", companions)
    if args.factor is None and args.step is None:
        args.factor = 2
    if args.method != "learned" and args.model:
        raise _Exit("--model is for --method learned")
    if args.method != "reproject" and (args.recon_method or args.param):
        raise _Exit("--recon-method and --param are for --method reproject")
    f = _read(args)
    if f.data.ndim != 3 or int(f.data.shape[0]) < 2:
        raise _Exit(f"{f.path.name} holds {int(f.data.shape[0]) if f.data.ndim == 3 else 1} "
                    "image: interpolation needs a tilt series of at least 2 images")
    g = _geometry(f, args)
    plan = plan_angles(g.angles, factor=args.factor, step=args.step)  # angle errors before reading
    model = None
    if args.method == "learned":
        from .interpolation._model import load_model

        model = load_model(args.model)  # an unknown or damaged file fails here, before any work
    params = _parse_params(args.param)
    _warn(f)
    bar = Progress(None, f"interpolate ({args.method})")
    res = interpolate(f.load(), g, plan=plan, method=args.method, model=model,
                      recon_method=args.recon_method or "cstv", device=args.device,
                      progress=lambda msg: bar.update(0, None, msg), **params)
    bar.finish()
    for w in res.warnings:
        print(f"tomoprior: warning: {w}", file=sys.stderr)
    io.write_tilt_series(out, np.asarray(res.series, np.float32), res.geometry)
    side = write_sidecar(out, res, source=str(f.path))
    n_virtual = int((~res.measured).sum())
    print(f"wrote {out} {tuple(res.series.shape)} ({int(res.measured.sum())} measured, {n_virtual} "
          f"virtual frames, {res.method}) in {res.seconds:.1f}s; {side.name} marks the virtual "
          "frames", file=sys.stderr)
    if args.json:
        _emit_json({"output": str(out), "rawtlt": str(out.with_suffix(".rawtlt")),
                    "sidecar": str(side), "method": res.method, "shape": list(res.series.shape),
                    "measured_angles": [float(a) for a in res.geometry.angles[res.measured]],
                    "virtual_angles": [float(a) for a in res.geometry.angles[~res.measured]],
                    "seconds": round(res.seconds, 3)})
    return 0


def add_interpolate_parser(sub, common, number) -> None:
    """``tomoprior interpolate`` on the main sub-parsers."""
    from . import cli

    p = sub.add_parser("interpolate", help="fill in tilts: a denser series with virtual frames "
                       "between the measured ones")
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True,
                   help="denser series (.tif, .mrc, .npy); angles go to .rawtlt, and "
                   "OUT.frames.json lists which frames are measured and which virtual")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--factor", type=number(int, 2, 64), metavar="N",
                     help="N times as many frames: N-1 virtual frames in every gap (default 2)")
    how.add_argument("--step", type=number(float, 0.0, 90.0, low_open=True), metavar="DEG",
                     help="split every gap into equal parts of at most DEG degrees")
    p.add_argument("--method", choices=["learned", "linear", "reproject"], default="learned",
                   help="learned network (default), linear blend of the neighbours, or "
                   "projections of a reconstruction")
    p.add_argument("--model", metavar="FILE", help="interpolation model (.pt; default: shipped)")
    p.add_argument("--recon-method", choices=cli._MethodNames(), metavar="METHOD",
                   help="reconstruction for --method reproject (default cstv)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="parameter of the reconstruction method (repeatable)")
    common(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_interpolate)


def add_train_parser(tsub, number) -> None:
    """``tomoprior train interpolate`` on the ``train`` sub-parsers."""
    t = tsub.add_parser("interpolate", help="the tilt-frame interpolation network of "
                        "`tomoprior interpolate --method learned`")
    t.add_argument("-o", "--output", required=True, help="model file (.pt); its card goes to .json")
    t.add_argument("--steps", type=number(int, 1), default=6000, help="optimiser steps")
    t.add_argument("--batch", type=number(int, 1), default=24)
    t.add_argument("--lr", type=number(float, 0.0, 1.0, low_open=True), default=2e-3)
    t.add_argument("--series", type=number(int, 1), default=120,
                   help="simulated training series (each ±90° at 1°)")
    t.add_argument("--val-series", type=number(int, 1), default=12)
    t.add_argument("--ssim-weight", type=number(float, 0.0), default=0.5,
                   help="weight of 1 - SSIM added to the L1 loss")
    t.add_argument("--validate-every", type=number(int, 1), default=1000, metavar="STEPS")
    t.add_argument("--until", type=number(int, 1), metavar="STEP",
                   help="stop after this step of the --steps schedule and write the model "
                   "(with --resume from a checkpoint at or past it: write it at once)")
    t.add_argument("--seed", type=number(int, 0), default=0)
    t.add_argument("--threads", type=number(int, 1), metavar="N", help="torch threads")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train_interpolate)
