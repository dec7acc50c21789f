"""Projector throughput and SIRT on the real needle, side by side with etspy.

Run from the repository root::

    .venv/bin/python benchmarks/projector.py                  # full (about 6-8 min on 2 cores)
    .venv/bin/python benchmarks/projector.py --quick          # smoke run (about 1 min)
    .venv/bin/python benchmarks/projector.py --out docs/benchmarks/projector.md

Part 1, projector throughput: for each backend (``sparse``, ``rotate``,
``astra`` = ASTRA's 2D CPU ``linear`` projector driven one y-slice at a time)
and each size N, a volume of N^3 voxels projected to N detector columns at
the needle's 77 tilts (-76 to +76 degrees, step 2). Forward and adjoint are
timed separately (one warm-up call, then the median of ``--repeats`` calls);
the sparse backend's one-off system-matrix build is reported on its own. The
rate is in G voxel-angle updates per second, ``N^3 * 77 / seconds / 1e9``.
Slow combinations (``rotate`` from 128 px, ``astra`` from 256 px) are timed
on ``--max-slow-slices`` (32) y-slices and scaled by ``N / slices``: every
y-slice is the same 2D problem, so the work is linear in the slice count
(checked for ``rotate`` at 128 px: 32 slices scaled and all 128 slices agree
within 5 %).

Part 2, SIRT on the needle (``needle_haadf.tif``, binned 2x2 to (77, 128,
128), all 128 slices, no alignment): ``tomoprior.engine.run_to_end("sirt",
..., bin=2)`` against etspy 1.3.0's CPU SIRT (ASTRA 2D ``SIRT`` with the
``strip`` projector, one dask task per slice, ``ncores=2``), both with
non-negativity, in the same run one after the other. etspy runs in its own
venv (``.bench-venv``, created on first use) through
``benchmarks/_etspy_sirt.py``. Its volume is mapped into this project's
``(z, y, x)`` frame by the axis permutation and flips (48 candidates) that
maximise the correlation, then compared: correlation, relative difference
after a least-squares scale fit, and each volume's relative reprojection
residual against the same binned series, computed with this project's
sparse (``linear``) projector and, as a cross-check, with ASTRA's ``strip``
system matrix (etspy's own forward model).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
NEEDLE = Path("data") / "needle_haadf" / "needle_haadf.tif"
ANCHOR_ETSPY_S = 249.0  # project issue 5: etspy CPU SIRT, 100 it, 128 px, ncores=2, this machine
GOAL_RATIO = 20.0
# slow backends are timed on --max-slow-slices y-slices (and scaled) from this size on
SLOW_FROM = {"rotate": 128, "astra": 256}
ETSPY_PACKAGES = ("torch==2.13.0", "etspy==1.3.0", "tifffile")


# -- helpers ------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def find_needle(explicit: str | None) -> Path:
    cands = [Path(explicit)] if explicit else []
    env = os.environ.get("TOMOPRIOR_NEEDLE")
    if env:
        cands.append(Path(env))
    cands += [ROOT / "shared" / NEEDLE, ROOT.parent / "shared" / NEEDLE]
    for c in cands:
        if c.is_file():
            return c
    raise SystemExit(
        "needle data not found; give --data PATH/needle_haadf.tif (tried: "
        + ", ".join(str(c) for c in cands) + ")"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def base_machine_info() -> dict[str, str]:
    """CPU, Python, torch and package versions: the part every benchmark reports."""
    try:
        from tomoprior import __version__ as tp_v
    except Exception:  # pragma: no cover
        tp_v = "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "tomoprior": tp_v,
    }


def machine_info() -> dict[str, str]:
    try:
        import astra

        astra_v = astra.__version__
    except Exception:  # pragma: no cover - astra is a dependency
        astra_v = "?"
    return {
        **base_machine_info(),
        "astra-toolbox": astra_v,
        "load average (1/5/15 min) at start": loadavg(),
    }


def report_header(title: str, script: str, argv: list[str] | None,
                  info: dict[str, str]) -> tuple[str, _dt.datetime, list[str]]:
    """The command line, the start time and the report's first lines (title, command,
    date, machine; the caller may extend the machine line)."""
    cmd = " ".join(shlex.quote(a) for a in [".venv/bin/python", script,
                                             *(sys.argv[1:] if argv is None else argv)])
    started = _dt.datetime.now().astimezone()
    lines = [
        f"# {title}",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {started.isoformat(timespec='seconds')}  ",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()),
    ]
    return cmd, started, lines


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    sync(device)
    ts = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def clear_sparse_cache() -> None:
    """Forget cached system matrices, so that a build is timed from scratch."""
    from tomoprior.operators import sparse

    cache = getattr(sparse, "_CACHE", None)
    if cache is not None:
        cache.clear()


def needle_angles(data: Path) -> np.ndarray:
    from tomoprior import io

    return np.asarray(io.read(str(data)).geometry.angles, dtype=np.float64)


# -- part 1: projector throughput ------------------------------------------------------------------
def throughput(angles, sizes, backends, repeats, max_slow_slices, device) -> list[dict]:
    from tomoprior.operators import make_projector

    rows = []
    t = int(angles.size)
    for n in sizes:
        for be in backends:
            dev = torch.device("cpu") if be == "astra" else device
            k = min(n, max_slow_slices) if n >= SLOW_FROM.get(be, 10**9) else n
            kwargs = {"use_cuda": False} if be == "astra" else {}
            clear_sparse_cache()
            t0 = time.perf_counter()
            A = make_projector(angles, (n, k, n), n, backend=be, device=dev, **kwargs)
            build = time.perf_counter() - t0
            g = torch.Generator().manual_seed(0)
            x = torch.rand((n, k, n), generator=g).to(dev)
            with torch.no_grad():
                y = A(x)
                fwd = timed(lambda A=A, x=x: A(x), dev, repeats)
                adj = timed(lambda A=A, y=y: A.T(y), dev, repeats)
            scale = n / k
            fwd, adj = fwd * scale, adj * scale
            updates = float(n) ** 3 * t
            rows.append(
                dict(backend=be, n=n, slices=k, device=str(dev), build=build, fwd=fwd, adj=adj,
                     fwd_rate=updates / fwd / 1e9, adj_rate=updates / adj / 1e9)
            )
            log(f"  {be:7s} N={n:4d} slices={k:4d} build={build:6.2f}s fwd={fwd:8.3f}s "
                f"adj={adj:8.3f}s ({updates / fwd / 1e9:.3f} / {updates / adj / 1e9:.3f} G/s)")
            del A, x, y
    ref = {r["n"]: r for r in rows if r["backend"] == "astra"}
    for r in rows:
        a = ref.get(r["n"])
        r["fwd_x"] = a["fwd"] / r["fwd"] if a else None
        r["adj_x"] = a["adj"] / r["adj"] if a else None
    return rows


def throughput_table(rows, n_tilts: int) -> str:
    out = [
        "| backend | N | device | slices timed | build s | forward s | adjoint s "
        "| forward G/s | adjoint G/s | forward × astra | adjoint × astra |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def x(v):
        return "–" if v is None else f"{v:.1f}×"

    for r in rows:
        build = f"{r['build']:.2f}" if r["backend"] == "sparse" else "–"
        sl = str(r["slices"]) if r["slices"] == r["n"] else f"{r['slices']} (scaled ×{r['n'] // r['slices']})"
        out.append(
            f"| {r['backend']} | {r['n']} | {r['device']} | {sl} | {build} | {r['fwd']:.3f} | {r['adj']:.3f} "
            f"| {r['fwd_rate']:.3f} | {r['adj_rate']:.3f} | {x(r['fwd_x'])} | {x(r['adj_x'])} |"
        )
    out.append("")
    out.append(
        f"Volume N³, N detector columns, {n_tilts} tilts (the needle's: -76° to +76°, step 2°). "
        "Times are for the whole volume (median after a warm-up); G/s = N³ × tilts / s / 10⁹. "
        "`build` is the sparse backend's one-off system matrix (ASTRA `linear` kernel, CSR), not "
        "included in forward/adjoint. `astra` is ASTRA's 2D CPU `linear` FP/BP, one y-slice at a "
        "time. Rows marked *scaled* were timed on fewer y-slices and multiplied by N / slices."
    )
    return "\n".join(out)


# -- part 2: SIRT on the needle ------------------------------------------------------------------
def bench_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_bench_venv(venv: Path, install: bool) -> Path:
    """The python of the benchmark's own venv with etspy; create and fill it if missing."""
    py = bench_python(venv)
    if py.exists() and subprocess.run([str(py), "-c", "import etspy"],
                                      capture_output=True).returncode == 0:
        return py
    if not install:
        raise RuntimeError(f"{venv} has no etspy (run without --no-install to create it)")
    base = shutil.which("python3") or sys.executable
    if not py.exists():
        log(f"creating {venv} with {base}")
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # the CPU torch first, in case anything pulls torch (etspy itself does not need it)
    log(f"installing {ETSPY_PACKAGES[0]} into {venv}")
    subprocess.run([*pip, ETSPY_PACKAGES[0]], check=True)
    log(f"installing {' '.join(ETSPY_PACKAGES[1:])} into {venv}")
    subprocess.run([*pip, *ETSPY_PACKAGES[1:]], check=True)
    return py


def run_etspy(py: Path, data: Path, angles_file: Path, b: int, iterations: int, ncores: int,
              workdir: Path) -> tuple[np.ndarray, dict]:
    out, js = workdir / "etspy_volume.npy", workdir / "etspy.json"
    cmd = [str(py), str(ROOT / "benchmarks" / "_etspy_sirt.py"), "--data", str(data),
           "--angles", str(angles_file), "--bin", str(b), "--iterations", str(iterations),
           "--ncores", str(ncores), "--out", str(out), "--json", str(js)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"etspy helper failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    info = json.loads(js.read_text())
    info["subprocess_seconds"] = wall
    return np.load(out), info


def angles_file_for(data: Path) -> Path:
    for ext in (".rawtlt", ".tlt"):
        p = data.with_suffix(ext)
        if p.is_file():
            return p
    raise SystemExit(f"no .rawtlt/.tlt next to {data}")


def orientations(shape_from, shape_to):
    """All (perm, flips) with ``flip(transpose(a, perm), flips)`` of shape ``shape_to``."""
    for perm in itertools.permutations(range(3)):
        if tuple(shape_from[i] for i in perm) != tuple(shape_to):
            continue
        for fl in itertools.product((False, True), repeat=3):
            yield perm, tuple(i for i in range(3) if fl[i])


def apply_orientation(a: np.ndarray, perm, flips) -> np.ndarray:
    b = np.transpose(a, perm)
    return np.ascontiguousarray(np.flip(b, axis=flips) if flips else b)


def best_orientation(moving: np.ndarray, fixed: np.ndarray) -> list[tuple[float, tuple, tuple]]:
    """Candidates sorted by Pearson correlation with ``fixed`` (best first)."""
    f = fixed.astype(np.float64).ravel()
    f -= f.mean()
    f /= np.linalg.norm(f) or 1.0
    res = []
    for perm, flips in orientations(moving.shape, fixed.shape):
        m = apply_orientation(moving, perm, flips).astype(np.float64).ravel()
        m -= m.mean()
        nm = np.linalg.norm(m)
        res.append((float(m @ f / nm) if nm else 0.0, perm, flips))
    if not res:
        raise RuntimeError(f"no axis permutation maps {moving.shape} onto {fixed.shape}")
    return sorted(res, key=lambda r: -r[0])


def describe_orientation(perm, flips) -> str:
    s = f"np.transpose(v, {tuple(perm)})"
    return f"np.flip({s}, axis={tuple(flips)})" if flips else s


def strip_residual(vol_c: np.ndarray, series_c: np.ndarray, angles: np.ndarray) -> float:
    """Relative reprojection residual with ASTRA's ``strip`` system matrix (etspy's model)."""
    from tomoprior.operators.astra_ref import astra_system_matrix

    nz, ny, nx = vol_c.shape
    t, _, nu = series_c.shape
    w = astra_system_matrix(angles, nz, nx, nu, kernel="strip")
    cols = vol_c.astype(np.float64).transpose(0, 2, 1).reshape(nz * nx, ny)
    proj = (w @ cols).reshape(t, nu, ny).transpose(0, 2, 1)
    y = series_c.astype(np.float64)
    return float(np.linalg.norm(proj - y) / np.linalg.norm(y))


def sirt_benchmark(args, data: Path) -> dict:
    from tomoprior import io
    from tomoprior.engine import prepare, run_to_end
    from tomoprior.metrics import reprojection_residual
    from tomoprior.operators import make_projector
    from tomoprior.transforms import volume_to_canonical

    f = io.read(str(data))
    series, geom = f.load(), f.geometry
    b, its = args.bin, args.iterations
    res: dict = {"iterations": its, "bin": b, "data": str(data), "raw_shape": list(series.shape)}

    log(f"SIRT, this project: {its} iterations, bin {b}, device {args.device}")
    clear_sparse_cache()  # the system-matrix build counts
    t0 = time.perf_counter()
    vol, prov = run_to_end("sirt", series, geom, iterations=its, bin=b, device=args.device)
    res["tp_seconds"] = time.perf_counter() - t0
    res["tp_run_seconds"] = prov["seconds"]
    res["tp_shape"] = list(vol.shape)
    res["tp_call"] = f'tomoprior.engine.run_to_end("sirt", series, geometry, iterations={its}, bin={b})'
    log(f"  {res['tp_seconds']:.2f} s, volume {vol.shape}")

    prep = prepare(series, geom, bin=b)
    res["binned_shape"] = list(prep.series.shape)
    A = make_projector(prep.geometry.angles, prep.volume_shape, prep.volume_shape[2],
                       backend="sparse", device="cpu")
    vol_c = volume_to_canonical(vol, prep.geometry)
    res["tp_residual"] = reprojection_residual(A, vol_c, prep.series)
    res["tp_residual_strip"] = strip_residual(vol_c, prep.series, prep.geometry.angles)

    if args.skip_etspy:
        return res
    venv = Path(args.bench_venv)
    py = ensure_bench_venv(venv if venv.is_absolute() else ROOT / venv, install=not args.no_install)
    log(f"SIRT, etspy: {its} iterations, ncores {args.ncores} ({py})")
    with tempfile.TemporaryDirectory(prefix="tomoprior-bench-") as tmp:
        ev, info = run_etspy(py, data, angles_file_for(data), b, its, args.ncores, Path(tmp))
    res["etspy"] = info
    res["et_seconds"] = info["seconds"]
    res["et_shape"] = list(ev.shape)
    log(f"  {info['seconds']:.2f} s (process {info['subprocess_seconds']:.1f} s), volume {ev.shape}")

    cands = best_orientation(ev, vol)
    corr, perm, flips = cands[0]
    res["orientation"] = describe_orientation(perm, flips)
    res["orientation_corr"] = corr
    res["orientation_runner_up"] = (describe_orientation(*cands[1][1:]), cands[1][0]) if len(cands) > 1 else None
    res["orientation_candidates"] = len(cands)
    em = apply_orientation(ev, perm, flips)
    v64, e64 = vol.astype(np.float64), em.astype(np.float64)
    s = float((e64.ravel() @ v64.ravel()) / max(e64.ravel() @ e64.ravel(), 1e-300))
    res["scale"] = s
    res["rel_diff"] = float(np.linalg.norm(s * e64 - v64) / np.linalg.norm(v64))
    res["corr"] = corr
    em_c = volume_to_canonical(em, prep.geometry)
    res["et_residual"] = reprojection_residual(A, em_c, prep.series)
    res["et_residual_strip"] = strip_residual(em_c, prep.series, prep.geometry.angles)
    res["ratio"] = res["et_seconds"] / res["tp_seconds"]
    return res


def sirt_table(r: dict, ncores: int) -> str:
    its, b = r["iterations"], r["bin"]
    shp = "×".join(str(s) for s in r["binned_shape"])
    has_et = "et_seconds" in r
    out = [
        f"SIRT, {its} iterations, needle binned {b}×{b} to ({shp.replace('×', ', ')}), all slices, "
        "no alignment, non-negativity on in both.",
        "",
        "| | this project (sparse, CPU) | etspy 1.3.0 (ASTRA CPU `strip`, "
        f"ncores={ncores}) |",
        "| --- | ---: | ---: |",
    ]
    et = (lambda k, fmt: format(r[k], fmt)) if has_et else (lambda k, fmt: "not run")
    out.append(f"| seconds | {r['tp_seconds']:.2f} | {et('et_seconds', '.2f')} |")
    out.append(f"| reprojection residual (this project's `linear` projector) | "
               f"{r['tp_residual']:.4f} | {et('et_residual', '.4f')} |")
    out.append(f"| reprojection residual (ASTRA `strip`, etspy's model) | "
               f"{r['tp_residual_strip']:.4f} | {et('et_residual_strip', '.4f')} |")
    out.append("")
    if has_et:
        if its == 100 and b == 2:
            goal = f"goal ≥ {GOAL_RATIO:.0f}×: {'met' if r['ratio'] >= GOAL_RATIO else 'not met'}"
        else:
            goal = f"the goal of ≥ {GOAL_RATIO:.0f}× is set for 100 iterations at bin 2"
        out.append(f"- **speed ratio (etspy / this project): {r['ratio']:.1f}×** ({goal})")
        same = r["tp_residual"] <= r["et_residual"]
        out.append(f"- result: residual {r['tp_residual']:.4f} vs {r['et_residual']:.4f} "
                   f"({'not worse' if same else 'WORSE'} than etspy); correlation "
                   f"{r['corr']:.4f}, relative difference after a least-squares scale fit "
                   f"{r['rel_diff']:.4f} (scale {r['scale']:.4f})")
        ru = r.get("orientation_runner_up")
        out.append(f"- etspy's volume (axes x, z, y) mapped into this project's (z, y, x) by "
                   f"`{r['orientation']}` (best of {r['orientation_candidates']} "
                   f"permutations/flips, correlation {r['orientation_corr']:.4f}"
                   + (f"; runner-up `{ru[0]}` {ru[1]:.4f}" if ru else "") + ")")
        out.append(f"- etspy timed around `{r['etspy']['call']}` only; its process took "
                   f"{r['etspy']['subprocess_seconds']:.1f} s in all (imports "
                   f"{r['etspy']['import_seconds']:.1f} s). Versions: "
                   + ", ".join(f"{k} {v}" for k, v in r["etspy"]["versions"].items()))
    elif its == 100 and b == 2:
        out.append(f"- etspy not run (--skip-etspy); against the anchor of {ANCHOR_ETSPY_S:.0f} s "
                   f"measured earlier on this machine (project issue 5): "
                   f"{ANCHOR_ETSPY_S / r['tp_seconds']:.1f}× (not side by side)")
    out.append(f"- this project timed around `{r['tp_call']}` (binning, orientation, "
               f"system-matrix build and all iterations; the run itself reports "
               f"{r['tp_run_seconds']:.2f} s)")
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Projector throughput and SIRT vs etspy.")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: sizes 32 and 64, 2 repeats, 5 SIRT iterations")
    p.add_argument("--skip-etspy", action="store_true", help="do not run etspy's SIRT")
    p.add_argument("--skip-throughput", action="store_true", help="only the SIRT comparison")
    p.add_argument("--skip-sirt", action="store_true", help="only the throughput table")
    p.add_argument("--out", help="write the markdown report to this file")
    p.add_argument("--data", help="needle_haadf.tif (default: shared/data/needle_haadf/)")
    p.add_argument("--sizes", help="comma-separated N (default 64,128,256; quick 32,64)")
    p.add_argument("--backends", default="sparse,rotate,astra")
    p.add_argument("--repeats", type=int, help="timed calls per op (default 3; quick 2)")
    p.add_argument("--max-slow-slices", type=int, default=32,
                   help="y-slices timed for rotate (N>=128) and astra (N>=256), scaled up")
    p.add_argument("--iterations", type=int, help="SIRT iterations (default 100; quick 5)")
    p.add_argument("--bin", type=int, default=2)
    p.add_argument("--ncores", type=int, default=2, help="etspy's ncores")
    p.add_argument("--device", default="cpu", help="device of this project's runs (cpu, cuda)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--bench-venv", default=".bench-venv", help="venv with etspy (created if missing)")
    p.add_argument("--no-install", action="store_true", help="never create or fill the venv")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [32, 64] if args.quick else [64, 128, 256])
    repeats = args.repeats or (2 if args.quick else 3)
    if args.iterations is None:
        args.iterations = 5 if args.quick else 100
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    device = torch.device(args.device)
    data = find_needle(args.data)
    info = machine_info()
    cmd, started, parts = report_header("Projector and SIRT benchmark", "benchmarks/projector.py",
                                        argv, info)
    t_all = time.perf_counter()
    parts[-1] += "  "
    parts.append(
        f"Data: `{data.name}` ({data.parent.name}), tilt axis horizontal, 77 tilts -76°..76° step 2°"
    )
    if args.quick:
        parts += ["", "**Quick run (`--quick`): small sizes and few SIRT iterations, a smoke test, "
                  "not the reference numbers; with 5 iterations fixed costs (system-matrix build, "
                  "ASTRA's set-up per slice) dominate the SIRT times and the ratio.**"]

    if not args.skip_throughput:
        log(f"projector throughput: sizes {sizes}, backends {backends}, repeats {repeats}")
        angles = needle_angles(data)
        rows = throughput(angles, sizes, backends, repeats, args.max_slow_slices, device)
        parts += ["", "## Projector throughput", "", throughput_table(rows, angles.size)]

    if not args.skip_sirt:
        r = sirt_benchmark(args, data)
        parts += ["", "## SIRT on the needle: this project vs etspy", "", sirt_table(r, args.ncores)]

    parts += ["", f"Total benchmark time: {time.perf_counter() - t_all:.0f} s.", ""]
    text = "\n".join(parts)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
