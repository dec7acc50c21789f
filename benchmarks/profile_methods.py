"""Where each method's time goes: phases, projector, TV, network, snapshots.

Every method runs with its command-line defaults on the real HAADF needle
binned to 128 px (``--bin 2``), tilts within ±50° at 2° (51 tilts), as
``tomoprior reconstruct needle.tif --bin 2 --tilt-range -50 50 --method M``
does. For each run the table gives the wall time, the time per phase (the
time up to each Step, attributed to that Step's ``phase``), and the time
inside the projector (``A`` and ``Aᵀ``: the floor no solver can go under),
the TV gradient and divergence, network forward/backward passes and
snapshots, from a deterministic profile of the run (its overhead is a few
per cent on these torch-bound loops; the wall column is measured without it,
in a second run). Ratios to SIRT are side by side in one run on one machine.

Usage::

    python benchmarks/profile_methods.py --threads 2 --out docs/benchmarks/methods_speed.json
    python benchmarks/profile_methods.py --methods sirt cstv --no-profile   # wall times only
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from tomoprior import __version__, io

try:
    from tomoprior.engine import run
except ImportError:  # a checkout from before the engine's rename (PYTHONPATH=old/src: "before")
    from tomoprior.run import run

ROOT = Path(__file__).resolve().parents[1]
NEEDLE = [ROOT.parent / "shared" / "data" / "needle_haadf" / "needle_haadf.tif",
          ROOT / "sample_data" / "needle_haadf" / "needle_haadf.tif"]

#: label -> (method, parameters): the command line's defaults unless stated
RUNS = {
    "sirt": ("sirt", {}),
    "cstv": ("cstv", {}),
    "restore_tv": ("restore_tv", {}),
    "diptv (warm)": ("diptv", {}),
    "diptv (pretrained)": ("diptv", {"init": "pretrained"}),
    "inr": ("inr", {}),
}

#: profile buckets: (label, module path fragment, function names)
BUCKETS = (
    ("projector", "operators", {"forward", "adjoint"}),
    ("TV grad/div", "_tv", {"grad3", "div3"}),
    ("network fwd", "torch/nn/modules/module", {"_call_impl"}),
    ("network bwd", "torch/_tensor", {"backward"}),
    ("snapshots", "algorithms/_common", {"snapshot"}),
)


def _buckets(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds in each bucket, counting only the outermost call of each function
    (a projector called inside a network forward counts under the projector, not twice)."""
    stats = pstats.Stats(profile)
    out: dict[str, float] = defaultdict(float)
    for (path, _, name), (_, _, _, cum, callers) in stats.stats.items():  # type: ignore[attr-defined]
        for label, frag, names in BUCKETS:
            if frag in path.replace("\\", "/") and name in names:
                # outermost calls only: skip time reached from another function of the bucket
                inner = sum(c[3] for (cp, _, cn), c in callers.items()
                            if frag in cp.replace("\\", "/") and cn in names)
                out[label] += cum - inner
    return dict(out)


def _one(method: str, params: dict, data: np.ndarray, geom, args, profile: bool) -> dict:
    rec = run(method, data, geom, bin=args.bin, tilt_range=(-args.limit, args.limit),
              device=args.device, **params)
    phases: dict[str, float] = defaultdict(float)
    prof = cProfile.Profile() if profile else None
    t0 = t_prev = time.perf_counter()
    last = None
    if prof is not None:
        prof.enable()
    try:
        for last in rec:
            now = time.perf_counter()
            phases[last.phase] += now - t_prev
            t_prev = now
    finally:
        if prof is not None:
            prof.disable()
    wall = time.perf_counter() - t0
    row = {"wall": round(wall, 2), "phases": {k: round(v, 2) for k, v in phases.items()},
           "iterations": None if last is None else int(last.iteration),
           "residual": None if last is None else getattr(last, "residual", None),
           "chosen": {k: v for k, v in rec.provenance()["result"].items()
                      if k in ("lam", "mu", "lr")}}
    if prof is not None:
        row["buckets"] = {k: round(v, 2) for k, v in _buckets(prof).items()}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", choices=list(RUNS), default=list(RUNS))
    ap.add_argument("--bin", type=int, default=2)
    ap.add_argument("--limit", type=float, default=50.0, help="kept tilt range ±LIMIT degrees")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-profile", action="store_true", help="wall times only")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    ap.add_argument("--needle", type=Path, help="the needle series (default: the shared or "
                    "bundled copy)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.needle or next(p for p in NEEDLE if p.is_file())
    f = io.read(path)
    data = f.load().astype(np.float32)
    rows = {}
    labels = ["sirt", *[m for m in args.methods if m != "sirt"]]  # SIRT first: the unit
    for label in labels:
        method, params = RUNS[label]
        row = _one(method, params, data, f.geometry, args, profile=False)
        if not args.no_profile:
            row["profiled"] = _one(method, params, data, f.geometry, args, profile=True)
        rows[label] = row
        print(f"{label:20s} {row['wall']:8.1f} s  {row['wall'] / rows['sirt']['wall']:5.1f}× SIRT"
              f"  phases {row['phases']}", flush=True)
    print()
    print("| method | seconds | × SIRT | phases (s) | projector | TV | net fwd | net bwd | "
          "snapshots | iterations | residual |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, row in rows.items():
        b = row.get("profiled", {}).get("buckets", {})
        cells = [f"{b[k]:.1f}" if k in b else "–" for k, _, _ in BUCKETS]
        ph = ", ".join(f"{k} {v:.1f}" for k, v in row["phases"].items())
        res = "–" if row["residual"] is None else f"{row['residual']:.4f}"
        print(f"| {label} | {row['wall']:.1f} | {row['wall'] / rows['sirt']['wall']:.2f} | {ph} | "
              + " | ".join(cells) + f" | {row['iterations']} | {res} |")
    meta = {"version": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor(), "argv": sys.argv[1:], "bin": args.bin,
            "limit": args.limit, "device": args.device}
    print("\n" + json.dumps(meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
