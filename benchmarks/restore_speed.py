"""Seconds of the restoration network on N³ volumes (after the base reconstruction).

Usage::

    python benchmarks/restore_speed.py --sizes 64 128 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from tomoprior import __version__
from tomoprior.algorithms._restore_model import load_model, restore_volume


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    print(f"napari-tomoprior {__version__}, torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads, model {model.name} {model.card['architecture']}")
    print(f"| volume | seconds (best of {args.repeats}) | slices/s |")
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    for n in args.sizes:
        vol = torch.from_numpy(rng.random((n, n, n), dtype=np.float32))
        restore_volume(model.net, vol[:, :4], 1.0)  # warm-up
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            restore_volume(model.net, vol, 1.0)
            best = min(best, time.perf_counter() - t0)
        print(f"| {n}³ | {best:.2f} | {n / best:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
