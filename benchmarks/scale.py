"""Slab reconstructions on schedulers: wall time, peak memory, equality, projection.

Run from the repository root (a few minutes on 2 cores)::

    .venv/bin/python benchmarks/scale.py --out docs/benchmarks/scale.md
    .venv/bin/python benchmarks/scale.py --sim-size 256 --sim-iterations 5   # quicker

Two data sets, SIRT, on the CPU:

* the needle at full size (``needle_haadf.tif``, 77 tilts of 256 x 256, a
  256^3 volume), read with :func:`tomoprior.io.read`;
* a simulated specimen (random spheres, ``--sim-size`` cubed, 61 tilts
  ±60°), projected slab by slab and saved as a ``.npy`` file that the slab
  tasks memory-map and read slab by slab.

Each configuration runs in a fresh Python process:

``run``
    today's in-process path, ``run(..., chunk=N)`` (the reference);
``plan``
    the slab plan in process, one slab after another
    (:func:`tomoprior.slabs.assemble`);
``threads``
    the slab plan on two threads (one torch thread each);
``cluster``
    the slab plan on a two-worker ``distributed.LocalCluster`` (one
    process and one torch thread per worker).

Peak memory is the kernel's high-water mark (``VmHWM``) of the process that
runs the command, reset after the imports and the file read; for the
cluster also the largest worker's. Equality is ``|v - v_run| / |v_run|``.
The projection for ``N`` workers assumes the measured time per slab and
``ceil(slabs / N)`` rounds of slabs, with one torch thread per worker on a
core of its own, and (for 1024^3) a time per slab proportional to its
voxels times tilts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _needle() -> Path:
    """``$TOMOPRIOR_NEEDLE``, or shared/data/needle_haadf inside or next to the repository."""
    if os.environ.get("TOMOPRIOR_NEEDLE"):
        return Path(os.environ["TOMOPRIOR_NEEDLE"])
    rel = Path("shared/data/needle_haadf/needle_haadf.tif")
    for base in (ROOT, ROOT.parent):
        if (base / rel).is_file():
            return base / rel
    raise SystemExit(f"needle not found: set TOMOPRIOR_NEEDLE (looked for {rel} in {ROOT} and "
                     f"{ROOT.parent})")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _worker_peak() -> int:
    return _status("VmHWM")


# -- simulated data ------------------------------------------------------------------------------
def simulate(path: Path, size: int, n_tilts: int, seed: int = 0) -> None:
    """Random spheres in a ``size``^3 volume, projected slab by slab (horizontal axis)."""
    import numpy as np
    import torch

    from tomoprior.geometry import TiltGeometry
    from tomoprior.operators import make_projector

    rng = np.random.default_rng(seed)
    n_spheres = 60
    centres = rng.uniform(0.15, 0.85, (n_spheres, 3)) * size
    radii = rng.uniform(0.02, 0.08, n_spheres) * size
    values = rng.uniform(0.3, 1.0, n_spheres)
    angles = np.linspace(-60, 60, n_tilts)
    g = TiltGeometry(angles, tilt_axis="horizontal")
    slab = 32
    # canonical frame: (z, y along the axis, u); the horizontal axis runs along x (cols)
    canon = np.lib.format.open_memmap(str(path) + ".canon.npy", "w+", np.float32,
                                      (n_tilts, size, size))
    zz, uu = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    A = make_projector(angles, (size, slab, size), size, device="cpu")
    for y0 in range(0, size, slab):
        vol = np.zeros((size, slab, size), np.float32)
        for j in range(slab):
            y = y0 + j
            for c, r, v in zip(centres, radii, values):
                dy = y - c[1]
                if abs(dy) < r:
                    rr = r * r - dy * dy
                    vol[:, j][(zz - c[0]) ** 2 + (uu - c[2]) ** 2 < rr] += v
        canon[:, y0 : y0 + slab] = A(torch.from_numpy(vol)).numpy()
    from tomoprior.transforms import series_from_canonical

    series = series_from_canonical(np.asarray(canon), g)
    np.save(path, series.astype(np.float32))
    Path(str(path) + ".json").write_text(json.dumps({"angles": angles.tolist()}))
    del canon
    os.remove(str(path) + ".canon.npy")


# -- one configuration in this process ----------------------------------------------------------
def child(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from tomoprior import io
    from tomoprior.engine import run
    from tomoprior.geometry import TiltGeometry
    from tomoprior.slabs import assemble, plan_slabs

    if args.data == "needle":
        f = io.read(_needle())
        data, g = f.data, f.geometry
    else:
        data = np.load(args.data, mmap_mode="r")
        g = TiltGeometry(json.loads(Path(args.data + ".json").read_text())["angles"],
                         tilt_axis="horizontal")
    if args.config != "run":
        torch.set_num_threads(1 if args.config in ("threads", "cluster") else torch.get_num_threads())
    base = _status("VmRSS")
    _reset_peak()
    out: dict = {"config": args.config, "baseline": base}
    t0 = time.perf_counter()
    finished: list[float] = []
    if args.config == "run":
        last = None
        for last in run("sirt", data, g, iterations=args.iterations, every=args.iterations,
                        chunk=args.chunk, device="cpu"):
            pass
        vol = last.volume
        out["slabs"] = math.ceil(vol.shape[2] / args.chunk)
    else:
        plan = plan_slabs("sirt", data, g, chunk=args.chunk, iterations=args.iterations,
                          device="cpu")
        out["slabs"] = len(plan.slabs())
        out["task_source"] = type(plan.source).__name__ if plan.source else "window"

        def progress(done, total, task):
            finished.append(time.perf_counter() - t0)

        if args.config == "cluster":
            import distributed

            ts = time.perf_counter()
            cluster = distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=40, env={"OMP_NUM_THREADS": "1"})
            client = distributed.Client(cluster, set_as_default=False)
            client.run(lambda: __import__("tomoprior.slabs"))  # imports counted in the start
            out["start_seconds"] = time.perf_counter() - ts
            t0 = time.perf_counter()
            vol, _, _ = assemble(plan, data, scheduler=client, progress=progress)
            out["seconds"] = time.perf_counter() - t0
            out["worker_peak"] = max(client.run(_worker_peak).values())
            client.close()
            cluster.close()
        else:
            sched = {"plan": None, "threads": "threads"}[args.config]
            vol, _, _ = assemble(plan, data, scheduler=sched, workers=args.workers,
                                 progress=progress)
    out.setdefault("seconds", time.perf_counter() - t0)
    out["peak"] = _status("VmHWM")
    out["slab_finish"] = finished
    out["shape"] = list(vol.shape)
    out["volume_mb"] = vol.nbytes / 1e6
    np.save(args.save, np.asarray(vol, np.float32))
    return out


# -- the table ----------------------------------------------------------------------------------
def _machine() -> str:
    import torch

    import tomoprior

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"nproc {os.cpu_count()}; {platform.processor() or platform.machine()}; python "
            f"{platform.python_version()}; torch {torch.__version__}; tomoprior "
            f"{tomoprior.__version__}; load average at start {load}")


def measure(data: str, label: str, chunk: int, iterations: int, workers: int, tmp: Path,
            configs: list[str]) -> list[dict]:
    import numpy as np

    rows = []
    ref = None
    for config in configs:
        save = tmp / f"{label}_{config}.npy"
        cmd = [sys.executable, __file__, "--child", config, "--data", data, "--chunk", str(chunk),
               "--iterations", str(iterations), "--workers", str(workers), "--save", str(save)]
        print(f"[{label}] {config} ...", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if res.returncode:
            print(res.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{config} failed")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        vol = np.load(save)
        if ref is None:
            ref = vol
        row["rel_diff"] = float(np.linalg.norm(vol - ref) / np.linalg.norm(ref))
        row["label"] = label
        rows.append(row)
        os.remove(save)
        print(f"[{label}] {config}: {row['seconds']:.1f}s peak {row['peak'] / 1e6:.0f} MB",
              file=sys.stderr, flush=True)
    return rows


def projection(rows: list[dict], scale: float = 1.0, slabs_factor: float = 1.0) -> dict[int, float]:
    """Seconds for N workers from the in-process plan's time per slab."""
    plan = next(r for r in rows if r["config"] == "plan")
    per_slab = plan["seconds"] / plan["slabs"] * scale
    n_slabs = math.ceil(plan["slabs"] * slabs_factor)
    return {n: per_slab * math.ceil(n_slabs / n) for n in (1, 2, 4, 8, 16, 32)}


def table(rows: list[dict]) -> list[str]:
    out = ["| data | configuration | slabs | wall s | cluster start s | peak MB (command) | "
           "peak MB (largest worker) | baseline MB | volume MB | rel. diff. vs run |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    names = {"run": "in process, `run(chunk=N)`", "plan": "slab plan, in process",
             "threads": "slab plan, 2 threads", "cluster": "slab plan, 2-worker LocalCluster"}
    for r in rows:
        start = f"{r['start_seconds']:.1f}" if "start_seconds" in r else ""
        wp = f"{r['worker_peak'] / 1e6:.0f}" if "worker_peak" in r else ""
        out.append(f"| {r['label']} | {names[r['config']]} | {r['slabs']} | {r['seconds']:.1f} | "
                   f"{start} | {r['peak'] / 1e6:.0f} | {wp} | {r['baseline'] / 1e6:.0f} | "
                   f"{r['volume_mb']:.0f} | {r['rel_diff']:.1e} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--data")
    ap.add_argument("--save")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sim-size", type=int, default=512)
    ap.add_argument("--sim-tilts", type=int, default=61)
    ap.add_argument("--sim-iterations", type=int, default=10)
    ap.add_argument("--configs", default="run,plan,threads,cluster")
    ap.add_argument("--sim-configs", default="plan,cluster")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        args.config = args.child
        print(json.dumps(child(args)))
        return
    machine = _machine()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with tempfile.TemporaryDirectory(prefix="tomoprior-scale-") as d:
        tmp = Path(d)
        rows = measure("needle", "needle 256³", args.chunk, args.iterations, args.workers, tmp,
                       args.configs.split(","))
        sim = tmp / f"sim{args.sim_size}.npy"
        t = time.perf_counter()
        simulate(sim, args.sim_size, args.sim_tilts)
        sim_seconds = time.perf_counter() - t
        label = f"simulated {args.sim_size}³"
        sim_rows = measure(str(sim), label, args.chunk, args.sim_iterations, args.workers, tmp,
                           args.sim_configs.split(","))
    lines = ["# Slab reconstructions on schedulers (needle and a simulated volume)", "",
             f"Command: `.venv/bin/python benchmarks/scale.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {started}  ", f"Machine: {machine}  ",
             f"Method: SIRT on the CPU, slabs of {args.chunk} slices; needle {args.iterations} "
             f"iterations, simulated volume ({args.sim_tilts} tilts ±60°, random spheres, made in "
             f"{sim_seconds:.0f} s) {args.sim_iterations} iterations.", ""]
    lines += table(rows + sim_rows)
    lines += ["", "MB = 10⁶ bytes; peaks are the kernel's high-water mark (VmHWM) after the "
              "imports and the read.", ""]
    proj = {"needle 256³": projection(rows), label: projection(sim_rows)}
    factor = (1024 / args.sim_size) ** 3  # voxels (and detector width) per slab grow with size
    per_slab_1024 = (1024 / args.sim_size) ** 2
    proj[f"1024³ (from {label}, {args.sim_tilts} tilts, {args.sim_iterations} it.)"] = projection(
        sim_rows, scale=per_slab_1024, slabs_factor=1024 / args.sim_size)
    lines += ["Projected wall seconds for N workers (time per slab measured in process, "
              "`ceil(slabs / N)` rounds):", "",
              "| data | " + " | ".join(f"N={n}" for n in proj["needle 256³"]) + " |",
              "| --- |" + " ---: |" * len(proj["needle 256³"])]
    for name, p in proj.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.0f}" for v in p.values()) + " |")
    lines += ["", f"(1024³: {factor:.0f}× the voxels of {label}; each 64-slice slab "
              f"{per_slab_1024:.0f}× the work.)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows + sim_rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
