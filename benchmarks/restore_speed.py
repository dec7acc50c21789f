"""Seconds and peak memory of the restoration network on N³ volumes (after the base).

Usage::

    python benchmarks/restore_speed.py --sizes 64 128 256 --batches 8 32 --threads 2

Each (size, batch) runs in a fresh process so that its peak resident memory
(the network's activations on one batch of slices) is its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from tomoprior import __version__
from tomoprior.algorithms._restore_model import load_model, restore_volume


def one(n: int, batch: int, repeats: int, threads: int, model_path: str | None) -> dict:
    """Best-of seconds and peak resident MB of one size and batch (in this process)."""
    if threads:
        torch.set_num_threads(threads)
    model = load_model(model_path)
    vol = torch.from_numpy(np.random.default_rng(0).random((n, n, n), dtype=np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    restore_volume(model.net, vol[:, :batch], 1.0, batch=batch)  # warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        restore_volume(model.net, vol, 1.0, batch=batch)
        best = min(best, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": best, "peak_mb": peak, "before_mb": before}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--batches", nargs="+", type=int, default=[8])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # size batch: child run
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(*args.one, args.repeats, args.threads, args.model)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    print(f"napari-tomoprior {__version__}, torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads, model {model.name} {model.card['architecture']}")
    print(f"| volume | batch | seconds (best of {args.repeats}) | slices/s | peak MB (process) |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        for b in args.batches:
            cmd = [sys.executable, __file__, "--one", str(n), str(b), "--repeats",
                   str(args.repeats), "--threads", str(args.threads)]
            if args.model:
                cmd += ["--model", args.model]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                          text=True).stdout.strip().splitlines()[-1])
            print(f"| {n}³ | {b} | {r['seconds']:.2f} | {n / r['seconds']:.0f} | "
                  f"{r['peak_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
