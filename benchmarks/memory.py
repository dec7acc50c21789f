"""Peak memory (RSS) of every method on the needle, each in a fresh process.

Run from the repository root::

    .venv/bin/python benchmarks/memory.py --out docs/benchmarks/memory.md   # 8-10 min on 2 cores
    .venv/bin/python benchmarks/memory.py --methods sirt --iterations sirt=100
    .venv/bin/python benchmarks/memory.py --src /tmp/old/src    # another checkout's code

Each method runs in its own Python process (so that one method's peak cannot
hide in another's) on the needle (``needle_haadf.tif``, 77 tilts of
256 x 256 pixels, a 256^3 volume), through the public API::

    f = io.read(path)
    for step in run(method, f.data, f.geometry, iterations=n, every=n, bin=b, device="cpu"):
        last = step

The process first imports torch and tomoprior and reads the file; its
resident set size (RSS, ``VmRSS``) then is the *baseline*. The kernel's
high-water mark (``VmHWM``) is reset there (``/proc/self/clear_refs``) and read
after the run: the *peak*. ``peak - baseline`` is what the reconstruction
itself costs; ``input + output`` is the float32 tilt series as reconstructed
(after binning) plus the float32 volume. The table gives the ratio of both
the increase and the whole peak to ``input + output``.

The slow methods run on the binned needle (``cstv`` 2x, ``diptv`` and ``inr``
4x; ``--bin N`` for all three) with few iterations, so that the whole script
takes minutes. ``--src DIR`` runs the children on the package in ``DIR``
(e.g. ``git archive <commit> src | tar -x -C /tmp/old``) instead of this one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("wbp", "sirt", "cstv", "restore", "diptv", "inr")
ITERATIONS = {"wbp": 1, "sirt": 20, "cstv": 20, "restore": 20, "diptv": 20, "inr": 50}
BINNING = {"cstv": 2, "diptv": 4, "inr": 4}  # the slow methods; the others run at full size
TARGET = 3.0  # project goal: (peak - baseline) <= 3 x (input + output) for SIRT on the needle
MB = 1e6
# before the memory work (commit d731fb8: 8f943cc's projector, SIRT and driver), measured by
# this script with --src: method -> (iterations, binning, peak - baseline in MB)
BEFORE_COMMIT = "d731fb8"
BEFORE = {"wbp": (1, 1, 567), "sirt": (20, 1, 994), "cstv": (20, 2, 751),
          "restore": (20, 1, 2390), "diptv": (20, 4, 313), "inr": (50, 4, 686)}
NOTES = """
## Notes

- **The goal is on `peak − baseline`.** Importing torch alone takes about 250 MB,
  which no algorithm can shed; the baseline also holds tomoprior and the
  uint16 file. The whole peak, imports included, is the last column.
- **What SIRT holds at its peak**, the snapshot after the last iteration: the
  float32 tilt series (the input), the system matrix of one slice (float32
  values, int32 indices), the iterate (which the last step's resume state
  takes over) and the snapshot (the output). `run` hands the snapshot out as
  a view turned into the input frame (the needle's tilt axis is horizontal,
  so the canonical volume is a quarter turn of the output), not as a second
  copy. The rest is library code, thread stacks and allocator pages.
- **Where the memory went before** (same run, about 1 GB above the baseline):
  the matrix built in float64 for all tilts at once and again transposed,
  kept twice (with its transpose), SIRT's weights computed from a volume of
  ones, every product building its result twice (parts, then `torch.cat`),
  volume-sized temporaries in each update, a copy of the iterate in the
  resume state, and `run`'s copy of the snapshot turned into the input frame.
- **What changed** (`operators/sparse.py`, `algorithms/sirt.py`,
  `algorithms/_driver.py`): the matrix is built a few tilts at a time straight
  into float32/int32; on the CPU the adjoint uses scipy's CSC view of the same
  buffers instead of a transposed copy; products write into one preallocated
  result, 16 y-slices at a time; SIRT keeps its weights for one y-slice (they
  are the same for every slice without a mask), updates a few MB of y-slices
  at a time in place and drops its residual before the last snapshot; the last
  step's resume state takes SIRT's iterate instead of a copy; free heap pages
  go back to the OS (glibc `malloc_trim`) after the set-up and before each
  snapshot; and `run` turns the snapshot into the input frame as a view
  (`run.py`, `transforms.py`). The volumes are bitwise the same as before.
- Glibc keeps freed temporaries of a few MB in its heaps; the figures depend on
  the allocator (other platforms will differ) and vary by a few MB between runs.
- Each snapshot a consumer keeps costs one output volume; with `every` below the
  iterations the previous step is still referenced (the loop variable,
  `Reconstruction.last`) while the next one is made.
- Since the first run of this table the system matrix is the package's own
  (`operators/joseph.py`, float64 crossings stored as float32/int32; ASTRA is
  optional and no longer imported here), `restore` takes 8 slices per network
  call instead of 32 (its activations were most of its 2.2 GB), and INR takes its
  optimiser steps in parts of 2^17 ray samples. Against the run at 12:46 UTC the same
  day: restore 2232 → 854 MB, INR 656 → 278 MB; WBP 365 → 414 MB and CS-TV 650 →
  736 MB, the float64 crossings of the native matrix's build (a few tilts at a time).
- Only SIRT was worked on; the other methods gain from the shared projector,
  driver and `run` alone. At bin 4 the fixed costs (networks, autograd
  buffers, set-up phases) dominate, so those ratios are not comparable with
  the full-size ones.
- Seconds are indicative only: the machine was shared (see the load average).
"""


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _matrix_bytes() -> int:
    """Bytes of the sparse projector's cached matrices (values and indices, shared once)."""
    from tomoprior.operators import sparse

    seen, total = set(), 0
    for entry in getattr(sparse, "_CACHE", {}).values():
        mats = entry if isinstance(entry, tuple) else (entry.w,)  # older code: (W, W^T)
        for m in mats:
            for t in (m.values(), m.col_indices(), m.crow_indices()):
                if t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.numel() * t.element_size()
    return total


def child(method: str, data: str, iterations: int, binning: int, threads: int) -> dict:
    """Measure one run in this (fresh) process; returns the figures."""
    import torch

    from tomoprior import io
    from tomoprior.engine import run
    from tomoprior.transforms import canonical_turns

    if threads:
        torch.set_num_threads(threads)
    f = io.read(data)
    baseline = _status("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    rec = run(method, f.data, f.geometry, iterations=iterations, every=iterations,
              bin=binning, device="cpu")
    last, steps = None, 0
    for step in rec:
        last, steps = step, steps + 1
    seconds = time.perf_counter() - t0
    if reset:
        peak = _status("VmHWM")
    else:  # the lifetime maximum, imports included (ru_maxrss is in KiB on Linux)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "method": method, "iterations": iterations, "bin": binning, "steps": steps,
        "seconds": seconds, "baseline": baseline,
        "peak": peak, "peak_reset": reset, "input": rec.prepared.series.nbytes,
        "output": last.volume.nbytes, "output_shape": list(last.volume.shape),
        "matrix": _matrix_bytes(),
        # run turned the canonical snapshot into the input frame with a copy (older code)
        "turned_copy": bool(canonical_turns(f.geometry.tilt_axis)[0]) and last.volume.base is None,
        "package": str(Path(io.__file__).parents[1]),
    }


def measure(method: str, data: Path, iterations: int, binning: int, threads: int,
            src: str | None) -> dict:
    """Run :func:`child` for ``method`` in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--data", str(data),
           "--iterations", f"{method}={iterations}", "--bin", str(binning),
           "--threads", str(threads)]
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _plan(method: str, bin_override: int | None) -> tuple[int, int]:
    """Iterations and binning of ``method``."""
    if method not in BINNING:
        return ITERATIONS[method], 1
    return ITERATIONS[method], bin_override or BINNING[method]


def row(r: dict) -> str:
    base, peak = r["baseline"] / MB, r["peak"] / MB
    io_mb = (r["input"] + r["output"]) / MB
    size = "×".join(str(s) for s in r["output_shape"])
    binned = f", bin {r['bin']}" if r["bin"] > 1 else ""
    its, b, increase = BEFORE.get(r["method"], (0, 0, 0))
    before = f"{increase}" if (its, b) == (r["iterations"], r["bin"]) else "–"
    return (f"| {r['method']} | {size}{binned} | {r['iterations']} | {r['seconds']:.1f} "
            f"| {base:.0f} | {peak:.0f} | **{peak - base:.0f}** | {r['input'] / MB:.1f} + "
            f"{r['output'] / MB:.1f} = {io_mb:.1f} | **{(peak - base) / io_mb:.2f}×** "
            f"| {peak / io_mb:.2f}× | {before} |")


def report(results: list[dict], lines: list[str]) -> list[str]:
    """The table and the figures after ``lines`` (the header)."""
    lines += [
        "",
        "| method | volume | iterations | seconds | baseline MB | peak MB | peak − baseline MB "
        "| input + output MB | (peak − baseline) / (in + out) | peak / (in + out) "
        f"| before ({BEFORE_COMMIT}): peak − baseline MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        *(row(r) for r in results),
        "",
        "MB = 10⁶ bytes. Baseline: RSS after importing torch and tomoprior and reading "
        "the file; peak: the kernel's RSS high-water mark (`VmHWM`, reset at the baseline) "
        "after the run. Input: the float32 tilt series as reconstructed (after binning); "
        "output: the float32 volume. Each method ran in a fresh process, with "
        "`every = iterations` (one snapshot), on the CPU.",
    ]
    if not all(r["peak_reset"] for r in results):
        lines.append("**The high-water mark could not be reset here: peaks are lifetime maxima "
                     "(`ru_maxrss`), imports included.**")
    for r in results:
        if r["method"] == "sirt" and r["bin"] == 1:
            io_mb = (r["input"] + r["output"]) / MB
            ratio = (r["peak"] - r["baseline"]) / MB / io_mb
            verdict = "met" if ratio <= TARGET else "not met"
            lines += ["", f"**SIRT, full needle: (peak − baseline) / (input + output) = "
                          f"{ratio:.2f}× (goal ≤ {TARGET:g}×: {verdict})**; the whole peak, "
                          f"imports included, is {r['peak'] / MB / io_mb:.2f}× (input + output)."]
            parts = {"tilt series": r["input"], "system matrix": r["matrix"],
                     "iterate": r["output"], "snapshot": r["output"]}
            if r["turned_copy"]:
                parts["turned copy"] = r["output"]
            held = ", ".join(f"{k} {v / MB:.0f}" for k, v in parts.items())
            rest = (r["peak"] - r["baseline"] - sum(parts.values())) / MB
            lines.append(f"Its peak, in MB: {held}; the rest {rest:.0f} (see the notes).")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="needle_haadf.tif (default: shared/data/needle_haadf/)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    p.add_argument("--iterations", nargs="*", default=[], metavar="METHOD=N",
                   help=f"override the iterations (default {ITERATIONS})")
    p.add_argument("--bin", type=int, help=f"binning of the slow methods (default {BINNING})")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    p.add_argument("--src", help="run the children on the package in this folder")
    p.add_argument("--out", help="also write the report (markdown) to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for item in args.iterations:
        name, _, n = item.partition("=")
        ITERATIONS[name] = int(n)
    if args.child:
        r = child(args.child, args.data, ITERATIONS[args.child], args.bin or 1, args.threads)
        print(json.dumps(r))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from projector import find_needle, log, machine_info, report_header

    data = find_needle(args.data)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    info = {**machine_info(), "memory": f"{ram:.0f} GB"}
    _, started, lines = report_header("Peak memory per method", "benchmarks/memory.py", argv, info)
    lines.append(f"Data: `{data.name}` (77 tilts of 256 × 256, uint16), device cpu")
    results = []
    for m in methods:
        its, b = _plan(m, args.bin)
        log(f"{m}: {its} iterations, bin {b} ...")
        results.append(measure(m, data, its, b, args.threads, args.src))
        log(row(results[-1]))
    if args.src:
        lines.append(f"Package: `{results[0]['package']}` (`--src`)")
    lines = report(results, lines)
    lines += NOTES.splitlines()
    lines.append(f"\nTotal benchmark time: {time.time() - started.timestamp():.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
