"""Out of core: SIRT volumes larger than the process's memory, streamed slab by slab to OME-Zarr.

For each depth D (the length along the tilt axis) a simulated series of
``n_tilts`` images, ``width`` pixels across the tilt axis and D along it, is
written as a ``.npy`` file; then

    tomoprior reconstruct S.npy -o V.ome.zarr --method sirt --iterations K --chunk C

runs in a fresh process whose address space is capped (``prlimit --as``,
default 4 GiB), and ``/usr/bin/time`` reports its peak resident memory. The
volume is ``width`` (z) x ``width`` (across) x D float32: at D = 1024 and
width 1024 it is 4.3 GB, more than the cap. The series is a sum of Gaussian
blobs projected analytically (each blob projects to a 2D Gaussian), so making
it costs seconds. The last slab of the volume is compared with an in-memory
SIRT of the same slab.

    python benchmarks/out_of_core.py --depths 64,256,1024 --out docs/benchmarks/out_of_core.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOMOPRIOR = str(Path(sys.executable).with_name("tomoprior"))


def simulate(path: Path, width: int, depth: int, n_tilts: int, seed: int = 0) -> None:
    """Gaussian blobs in a ``width x width x depth`` volume; horizontal tilt axis (along cols)."""
    rng = np.random.default_rng(seed)
    n = max(50, depth // 2)
    z0 = rng.uniform(-0.3, 0.3, n) * width  # beam direction, about the centre
    y0 = rng.uniform(-0.4, 0.4, n) * width  # across the tilt axis
    x0 = rng.uniform(0.05, 0.95, n) * depth  # along the tilt axis
    s = rng.uniform(3.0, 12.0, n)
    a = rng.uniform(0.3, 1.0, n)
    angles = np.linspace(-60.0, 60.0, n_tilts)
    out = np.lib.format.open_memmap(str(path), "w+", np.float32, (n_tilts, width, depth))
    rows, cols = np.arange(width) + 0.5 - width / 2, np.arange(depth) + 0.5
    for t, th in enumerate(np.deg2rad(angles)):
        img = np.zeros((width, depth), np.float32)
        r0 = y0 * np.cos(th) + z0 * np.sin(th)  # where each blob lands across the axis
        for k in range(n):
            lo_r, hi_r = np.searchsorted(rows, (r0[k] - 4 * s[k], r0[k] + 4 * s[k]))
            lo_c, hi_c = np.searchsorted(cols, (x0[k] - 4 * s[k], x0[k] + 4 * s[k]))
            gr = np.exp(-((rows[lo_r:hi_r] - r0[k]) ** 2) / (2 * s[k] ** 2))
            gc = np.exp(-((cols[lo_c:hi_c] - x0[k]) ** 2) / (2 * s[k] ** 2))
            img[lo_r:hi_r, lo_c:hi_c] += (a[k] * np.sqrt(2 * np.pi) * s[k]) * np.outer(gr, gc)
        out[t] = img
    out.flush()
    del out
    path.with_suffix(".rawtlt").write_text("".join(f"{a:.4f}\n" for a in angles))


def run_one(series: Path, out: Path, iterations: int, chunk: int, limit: int) -> dict:
    cmd = ["prlimit", f"--as={limit}", "/usr/bin/time", "-f", "TIME %M %e", TOMOPRIOR,
           "reconstruct", str(series), "-o", str(out), "--method", "sirt",
           "--iterations", str(iterations), "--chunk", str(chunk), "--json"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    tail = [ln for ln in res.stderr.splitlines() if ln.startswith("TIME ")]
    if res.returncode != 0 or not tail:
        raise SystemExit(f"failed ({res.returncode}): {res.stderr[-2000:]}")
    kib, seconds = tail[-1].split()[1:]
    return {"peak_mb": int(kib) * 1024 / 1e6, "seconds": float(seconds), "wall": wall}


def check_last_slab(series: Path, out: Path, iterations: int, chunk: int) -> float:
    """Relative difference of the store's last slab and SIRT of that slab in memory."""
    from tomoprior import io
    from tomoprior.engine import run_to_end

    f = io.read(str(series))
    depth = f.data.shape[2]
    start = (depth - 1) // chunk * chunk
    vol, _ = run_to_end("sirt", f.data, f.geometry, iterations=iterations, device="cpu",
                         slices=f"{start}:{depth}")
    stored = np.asarray(io.read(str(out)).data[:, :, start:depth])
    return float(np.linalg.norm(stored - vol) / np.linalg.norm(vol))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="64,256,1024")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--tilts", type=int, default=61)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--limit-gib", type=float, default=4.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    limit = int(args.limit_gib * 2**30)
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        for depth in (int(d) for d in args.depths.split(",")):
            series, out = Path(tmp) / f"s{depth}.npy", Path(tmp) / f"v{depth}.ome.zarr"
            t0 = time.perf_counter()
            simulate(series, args.width, depth, args.tilts)
            made = time.perf_counter() - t0
            r = run_one(series, out, args.iterations, args.chunk, limit)
            r.update(depth=depth, slabs=-(-depth // args.chunk), made=made,
                     volume_gb=args.width * args.width * depth * 4 / 1e9,
                     series_gb=os.path.getsize(series) / 1e9,
                     rel=check_last_slab(series, out, args.iterations, args.chunk))
            rows.append(r)
            print(json.dumps(r), flush=True)
            for p in (series, series.with_suffix(".rawtlt"), out):
                subprocess.run(["rm", "-rf", str(p)], check=False)
    lines = [
        "# Out of core: SIRT streamed slab by slab to OME-Zarr under a memory cap",
        "",
        f"Command: `python benchmarks/out_of_core.py --depths {args.depths} --width {args.width} "
        f"--tilts {args.tilts} --iterations {args.iterations} --chunk {args.chunk} "
        f"--limit-gib {args.limit_gib:g}`  ",
        f"Date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}  ",
        f"Machine: nproc {os.cpu_count()}; {platform.machine()}; python {platform.python_version()}; "
        f"load average at the end {os.getloadavg()[0]:.1f}",
        "",
        f"Each run: `tomoprior reconstruct S.npy -o V.ome.zarr --method sirt --iterations "
        f"{args.iterations} --chunk {args.chunk}` in a fresh process under `prlimit "
        f"--as={limit}` ({args.limit_gib:g} GiB of address space); peak = `/usr/bin/time` "
        "maximum resident set size. Volume: width (z) × width × depth float32.",
        "",
        "| depth | slabs | series GB | volume GB | wall s | peak RSS MB | last slab vs in-memory SIRT |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['depth']} | {r['slabs']} | {r['series_gb']:.2f} | {r['volume_gb']:.2f} "
                     f"| {r['seconds']:.0f} | {r['peak_mb']:.0f} | {r['rel']:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
