"""quantEM's INR tomography on a tilt series, timed per epoch; run inside the benchmark's venv.

This helper is started by ``benchmarks/inr.py`` with the python of
``.bench-venv`` (where quantem 0.1.10 is installed next to the CPU torch)
and must not import tomoprior. It loads a tilt series ``(n_tilts, rows,
cols)`` and its angles from ``.npy`` files and runs quantEM's "lite" INR
pipeline with its own defaults::

    tomo = TomographyLiteINR.from_dataset(tilt_series, tilt_angles, device="cpu", rng=seed)
    tomo.reconstruct(num_iter=1, obj_lr=1e-4, pose_lr=1e-2, batch_size=1024,
                     num_workers=0, learn_pose=..., scheduler_type="none")   # once per epoch

``from_dataset`` builds a ``TomographyINRDataset`` (data divided by its 95 %
quantile, the tilt nearest 0° as the pose reference) and an ``ObjectINR``
around ``HSiren(alpha=1, winner_initialization=72)``: 3 -> 256 (sinh
first layer) -> 3 x (256 -> 256, sine) -> 1, i.e. four 256-wide layers,
omega_0 = 30, positivity as a hard constraint. Each epoch visits every
detector pixel once (``n_tilts * N * N`` rays with ``N = max(series.shape)``)
in shuffled batches of 1024 rays with ``N`` samples per ray; Adam with
gradient clipping at norm 1. ``num_workers=0`` keeps the data loading in the
process (quantEM's own CPU test does the same; the default 32 spawned
workers make no sense on a 2-core machine). bfloat16 autocast is CUDA-only
and therefore off.

One ``reconstruct(num_iter=1)`` call is made per epoch, so that each epoch
is timed on its own and the volume can be snapshot at chosen epochs; the
optimiser state carries over (``TomographyLiteINR`` sets optimisers only on
the first call and continues afterwards), so this is the same computation
as one ``reconstruct(num_iter=N)`` call with the default constant learning
rate. The volume (``tomo.obj_model.obj_view[0]``, quantEM's axes, see
below) is saved to ``--out`` after the last epoch, and at the epochs listed
in ``--snapshots`` to ``<out stem>_e<epoch>.npy``; volume evaluation is not
counted in the epoch times. A JSON summary (seconds per epoch, rays per
epoch, rays/s, losses per epoch, learned poses, versions) goes to ``--json``.

Axes: quantEM evaluates its field on ``meshgrid(x, y, z, indexing="ij")``
with ``x`` along the detector columns (the tilt axis: the rays are rotated
about x), ``y`` along the detector rows and ``z`` along the beam, and
``obj_view`` transposes that to ``(x, z, y)``. The caller maps it into its
own frame (``benchmarks/inr.py`` picks the best of the 48 axis
permutations/flips by correlation with the ground truth and reports it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", required=True, help=".npy tilt series (n_tilts, rows, cols)")
    p.add_argument("--angles", required=True, help=".npy tilt angles in degrees (n_tilts,)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--obj-lr", type=float, default=1e-4)
    p.add_argument("--pose-lr", type=float, default=1e-2)
    p.add_argument("--learn-pose", action="store_true", help="quantEM's default is True")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshots", default="", help="comma-separated epochs to save volumes at")
    p.add_argument("--out", required=True, help="where to save the final volume (.npy)")
    p.add_argument("--json", required=True, help="where to write the summary")
    args = p.parse_args(argv)

    t_import = time.perf_counter()
    import numpy as np
    import quantem
    import torch
    from quantem.tomography.tomography_lite import TomographyLiteINR

    t_import = time.perf_counter() - t_import
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    series = np.ascontiguousarray(np.load(args.series), dtype=np.float32)
    angles = np.ascontiguousarray(np.load(args.angles), dtype=np.float32).reshape(-1)
    if series.ndim != 3 or series.shape[0] != angles.size:
        raise SystemExit(f"series {series.shape} and {angles.size} angles do not match")
    snaps = {int(s) for s in args.snapshots.split(",") if s.strip()}
    out = Path(args.out)

    torch.manual_seed(args.seed)  # SIREN init and the data loader's shuffling use torch's global RNG
    np.random.seed(args.seed)  # noqa: NPY002 - quantEM draws from numpy's global RNG
    chatter = io.StringIO()  # quantEM prints set-up messages and per-epoch lines: keep them out of our stdout
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(chatter):
        tomo = TomographyLiteINR.from_dataset(
            tilt_series=series, tilt_angles=angles, device="cpu", rng=args.seed
        )
        tomo.verbose = False
    setup_s = time.perf_counter() - t0

    n_rays = None
    epoch_s: list[float] = []
    losses: list[float] = []
    snapshots: dict[int, str] = {}
    for e in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(chatter):
            tomo.reconstruct(
                num_iter=1,
                obj_lr=args.obj_lr,
                pose_lr=args.pose_lr,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                learn_pose=args.learn_pose,
                scheduler_type="none",
            )
        epoch_s.append(time.perf_counter() - t0)
        losses.append(float(tomo.epoch_losses[-1]))
        if n_rays is None:
            n_rays = len(tomo.dataloader) * args.batch_size  # drop_last=True: full batches only
        print(f"epoch {e}: {epoch_s[-1]:.2f} s, loss {losses[-1]:.4e}", file=sys.stderr, flush=True)
        if e in snaps and e != args.epochs:
            path = out.with_name(f"{out.stem}_e{e}.npy")
            with contextlib.redirect_stdout(chatter):
                np.save(path, np.asarray(tomo.obj_model.obj_view[0], dtype=np.float32))
            snapshots[e] = str(path)

    with contextlib.redirect_stdout(chatter):
        vol = np.asarray(tomo.obj_model.obj_view[0], dtype=np.float32)
    np.save(out, vol)
    snapshots[args.epochs] = str(out)

    poses = None
    with torch.no_grad():
        shifts, z1, z3 = tomo.dset.forward(None)
        poses = {"shifts": shifts.cpu().double().numpy().round(4).tolist(),
                 "z1": z1.cpu().double().numpy().round(4).tolist(),
                 "z3": z3.cpu().double().numpy().round(4).tolist()}

    total = float(sum(epoch_s))
    rays_total = int(n_rays or 0) * len(epoch_s)
    summary = {
        "epochs": len(epoch_s),
        "epoch_seconds": epoch_s,
        "seconds": total,
        "setup_seconds": setup_s,
        "import_seconds": t_import,
        "rays_per_epoch": int(n_rays or 0),
        "rays_per_s": rays_total / total if total > 0 else None,
        "samples_per_ray": int(max(series.shape)),
        "losses": losses,
        "snapshots": {str(k): v for k, v in sorted(snapshots.items())},
        "volume_shape": list(vol.shape),
        "volume_axes": "quantEM obj_view[0]: (x, z, y), x along the detector columns (tilt axis)",
        "poses": poses,
        "model": (f"{type(tomo.obj_model.model).__name__}: "
                  f"{sum(p.numel() for p in tomo.obj_model.model.parameters())} parameters"),
        "call": (
            "TomographyLiteINR.from_dataset(tilt_series, tilt_angles, device='cpu', rng=seed); "
            f"reconstruct(num_iter=1, obj_lr={args.obj_lr}, pose_lr={args.pose_lr}, "
            f"batch_size={args.batch_size}, num_workers={args.num_workers}, "
            f"learn_pose={args.learn_pose}, scheduler_type='none') x {len(epoch_s)}"
        ),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": sys.version.split()[0],
            "quantem": getattr(quantem, "__version__", "?"),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
    }
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
