"""``tomoprior train restore``, and what every ``train`` command shares (output, progress)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._cli_common import COUNT, DEVICES, WHOLE, CliError, Progress, emit_json, number

__all__ = ["add_train_parsers", "cmd_train", "train_with_progress", "training_output"]


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
            raise CliError(f"--threads must be >= 1, got {args.threads}")
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
        emit_json({"output": str(out), "card": str(out.with_suffix(".json")),
                   "validation": card["validation"],
                   "seconds": card["training"]["total_seconds"]})
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``tomoprior train restore``: the restoration network of ``--method restore``."""
    from .training import TrainConfig, train_restore

    out = training_output(args)
    cfg = TrainConfig(steps=args.steps, epochs=args.epochs, batch=args.batch, patch=args.size, lr=args.lr,
                      specimens=args.specimens, val_specimens=args.val_specimens, seed=args.seed,
                      base=args.base, gan_weight=args.gan_weight, gan_start=args.gan_start,
                      validate_every=args.validate_every, init=args.init or "")
    return train_with_progress(args, out, "train restore", lambda: cfg.steps, train_restore,
                               cfg=cfg, cache=args.cache)


def add_train_parsers(sub) -> None:
    """``tomoprior train restore`` and ``train interpolate`` on the main sub-parsers."""
    from ._cli_interpolate import add_train_parser

    p = sub.add_parser("train", help="train a network on the package's simulator",
                       description="Train one of the package's networks on simulated data.")
    tsub = p.add_subparsers(dest="model", required=True, parser_class=type(p))
    t = tsub.add_parser("restore", help="the missing-wedge restoration network of "
                        "--method restore",
                        description="Train the missing-wedge restoration network of "
                        "`tomoprior reconstruct --method restore` on simulated specimens.")
    t.add_argument("-o", "--output", required=True, help="model file (.pt); its card goes to .json")
    t.add_argument("--steps", type=COUNT, default=6000, help="optimiser steps")
    t.add_argument("--epochs", type=number(float, 0.0), default=0.0,
                   help="passes over the training slices instead of --steps (0: use --steps)")
    t.add_argument("--batch", type=COUNT, default=16, help="patches per optimiser step")
    t.add_argument("--size", type=number(int, 16, 1024), default=64, metavar="PX",
                   help="training patch size")
    t.add_argument("--lr", type=number(float, 0.0, 1.0, low_open=True), default=1e-3,
                   help="Adam learning rate")
    t.add_argument("--specimens", "--samples", type=COUNT, default=240,
                   help="simulated training specimens (each gives its slices)")
    t.add_argument("--val-specimens", type=COUNT, default=16,
                   help="simulated validation specimens")
    t.add_argument("--base", choices=["sirt", "wbp"], default="sirt",
                   help="the reconstruction the network learns to restore")
    t.add_argument("--gan-weight", type=number(float, 0.0), default=0.0,
                   help="weight of the RaLSGAN loss (0: L1 only)")
    t.add_argument("--gan-start", type=WHOLE, default=0, metavar="STEP",
                   help="step at which the GAN loss starts")
    t.add_argument("--validate-every", type=COUNT, default=1000, metavar="STEPS",
                   help="validation interval")
    t.add_argument("--init", metavar="MODEL", help="start from this model file's weights "
                   "(fine-tuning; its SHA-256 goes into the card); default: random weights")
    t.add_argument("--seed", type=WHOLE, default=0, help="seed of the specimens and the network")
    t.add_argument("--threads", type=COUNT, metavar="N", help="torch threads (default: torch's)")
    t.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to train: auto takes CUDA when there is one")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT.ckpt")
    t.add_argument("--cache", metavar="DIR", help="keep the simulated specimens here and reuse "
                   "them (a rerun or resume then skips the simulation)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    t.add_argument("--json", action="store_true",
                   help="print a JSON summary as the last line of stdout")
    t.set_defaults(func=cmd_train)
    add_train_parser(tsub)  # train interpolate
