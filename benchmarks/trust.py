"""Where to trust a reconstruction: half-set resolution and uncertainty maps, checked on truth.

Three measurements on simulated specimens (48³ by default, ±60°, Poisson noise,
the conditions of ``benchmarks/quality.py``):

1. **Resolution.** Each method runs on the even and the odd tilts
   (``run(..., halves=True)``). The half-set FSC in cones of ±20° (x-y plane,
   z along the beam, spherical) gives the resolution at 0.143; the FSC of the
   halves' average against the ground truth gives the true one at 0.5 (the
   pair of thresholds of Rosenthal & Henderson 2003: 0.143 between half sets
   corresponds to 0.5 between the full map and a perfect reference). Reported:
   both, their ratio along z, and whether it is within 25 %. Also the cost of
   the halves against one run of the method on all the tilts.
2. **Calibration of the uncertainty map.** An ensemble (``ensemble=K``) and the
   halves' map against the true error of the result (after a least-squares
   intensity fit inside the specimen): the Spearman correlation with the
   per-voxel absolute error and with the local RMS error (the absolute error
   smoothed like the map, Gaussian sigma 1 voxel), over the whole volume and
   inside the specimen. ``ceiling`` is the Spearman correlation of the local
   RMS error itself with the per-voxel absolute error: the most any smooth map
   can reach against the per-voxel error. On the quality specimens and, with
   ``--unseen``, on specimen families the training generator never produces
   (``benchmarks/unseen_families.py``, when present).
3. **Cost** of the halves against one run on all the tilts, where runs take seconds:
   the real HAADF needle binned 2× (128 px, a slab of 64 slices), ±60°, 61 tilts;
   the better of ``--cost-repeat`` runs each, side by side. (The 48³ rows of part 1
   take fractions of a second, where fixed costs and the machine's load dominate.)
4. **Speed** of the directional FSC of a 128³ and a 256³ pair.

Usage::

    python benchmarks/trust.py --threads 1 --out docs/trust
    python benchmarks/trust.py --quick --threads 1       # a smoke run

Writes ``<out>.json`` and the tables (command, date, machine state) into
``<out>.md``: between its ``<!-- results:start -->`` and ``<!-- results:end -->``
lines when it has them (the page's text stays), else as the whole file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from scipy.stats import spearmanr

from tomoprior import __version__, metrics
from tomoprior.engine import run
from tomoprior.phantoms import Phantom, make_phantom, simulate
from tomoprior.resolution import directional_fsc

HERE = Path(__file__).resolve().parent
PARAMS = {
    "wbp": {},
    "sirt": {"iterations": 100},
    "cstv": {"iterations": 300, "lam": "auto"},
    "restore": {"iterations": 100},
    "restore_tv": {"iterations": 300, "lam": "auto"},
    "diptv_pretrained": {"method": "diptv", "init": "pretrained", "iterations": 100,
                         "every": 25, "lam": 0.02},
}
LEARNED = ("restore", "restore_tv", "diptv_pretrained")


def reconstruct(name: str, series, geom, **kw):
    """Run to the end: ``(rec, last Step, seconds)``."""
    params = dict(PARAMS[name])
    method = params.pop("method", name)
    t0 = time.perf_counter()
    rec = run(method, series, geom, device="cpu", **params, **kw)
    last = None
    for last in rec:
        pass
    return rec, last, time.perf_counter() - t0


def _res(fsc, which: str, threshold: float) -> dict:
    return {"value": round(float(fsc.resolution(which, threshold)), 3),
            "bound": fsc.at_nyquist(which, threshold)}


def resolution_rows(name: str, ph: Phantom, tr, step: float, dose: float, methods,
                    args) -> tuple[list, dict]:
    """Part 1 for one specimen, step and dose; returns the rows and the halves' maps."""
    angles = np.arange(-60.0, 60.0 + 1e-6, step)
    series, geom = simulate(ph, angles, noise="poisson", dose=dose, seed=args.seed,
                            contrast_variation=args.contrast_variation)
    rows, maps = [], {}
    for m in methods:
        _, one, one_s = reconstruct(m, series, geom)
        rec, last, halves_s = reconstruct(m, series, geom, halves=True)
        half_fsc = rec.fsc  # in the series' pixel size
        truth_fsc = directional_fsc(last.volume, tr.volume, pixel_size=half_fsc.pixel_size,
                                    pixel_unit=half_fsc.pixel_unit, tilt_axis=geom.tilt_axis)
        row = {"part": "resolution", "specimen": name, "step": step, "dose": dose,
               "n_tilts": int(angles.size),
               "method": m, "unit": half_fsc.unit, "pixel_size": half_fsc.pixel_size or 1.0,
               "seconds_one": round(one_s, 2), "seconds_halves": round(halves_s, 2),
               "cost_ratio": round(halves_s / one_s, 2),
               "ssim_one": round(metrics.compare(one.volume, tr.volume,
                                                 mask=tr.specimen_mask)["ssim"], 4),
               "ssim_halves": round(metrics.compare(last.volume, tr.volume,
                                                    mask=tr.specimen_mask)["ssim"], 4)}
        for which in ("xy", "z", "spherical"):
            row[f"half_{which}"] = _res(half_fsc, which, 0.143)
            row[f"true_{which}"] = _res(truth_fsc, which, 0.5)
        hz, tz = row["half_z"]["value"], row["true_z"]["value"]
        row["z_ratio"] = round(hz / tz, 3) if np.isfinite(hz) and np.isfinite(tz) else None
        # two bounds (both curves above their thresholds up to Nyquist) compare nothing
        both_bounds = row["half_z"]["bound"] and row["true_z"]["bound"]
        row["within_25"] = (None if both_bounds or row["z_ratio"] is None
                            else abs(row["z_ratio"] - 1) <= 0.25)
        row["polar_half"] = [None if not np.isfinite(v) else round(float(v), 3)
                             for v in half_fsc.polar_resolution(0.143)]
        row["polar_true"] = [None if not np.isfinite(v) else round(float(v), 3)
                             for v in truth_fsc.polar_resolution(0.5)]
        rows.append(row)
        maps[m] = (last.volume, last.uncertainty, halves_s)
        print(f"{name:10s} {step:4g}° {dose:5g} {m:16s} z half {hz:5.2f} true {tz:5.2f} "
              f"ratio {row['z_ratio']}  xy half {row['half_xy']['value']:.2f} "
              f"true {row['true_xy']['value']:.2f}  cost {row['cost_ratio']:.2f}x", flush=True)
    return rows, {"series": series, "geom": geom, "maps": maps}


def calibration(volume, umap, tr) -> dict:
    """Spearman of the map with the true absolute and local RMS error of ``volume``."""
    mask = tr.specimen_mask
    err = np.abs(metrics.scale_to(volume, tr.volume, mask) - tr.volume)
    rms = np.sqrt(ndi.gaussian_filter(err * err, 1.0, mode="nearest"))

    def rho(a, b, sel=None):
        a, b = (a.ravel(), b.ravel()) if sel is None else (a[sel], b[sel])
        return round(float(spearmanr(a, b)[0]), 3)

    return {"rho_abs_all": rho(umap, err), "rho_abs_specimen": rho(umap, err, mask),
            "rho_rms_all": rho(umap, rms), "rho_rms_specimen": rho(umap, rms, mask),
            "ceiling_abs_specimen": rho(rms, err, mask),
            "ssim": round(metrics.compare(volume, tr.volume, mask=mask)["ssim"], 4),
            "map_median": round(float(np.median(umap)), 5)}


def calibration_rows(name: str, tr, step: float, cache: dict, methods, args) -> list[dict]:
    rows = []
    for m in methods:
        if m in cache["maps"]:
            vol, umap, secs = cache["maps"][m]
            rows.append({"part": "calibration", "specimen": name, "step": step, "method": m,
                         "mode": "halves", "seconds": round(secs, 2), **calibration(vol, umap, tr)})
        rec, last, secs = reconstruct(m, cache["series"], cache["geom"], ensemble=args.ensemble)
        row = {"part": "calibration", "specimen": name, "step": step, "method": m,
               "mode": f"ensemble {args.ensemble}", "seconds": round(secs, 2),
               **calibration(last.volume, last.uncertainty, tr)}
        rows.append(row)
        print(f"{name:10s} {step:4g}° {m:16s} ensemble {args.ensemble}: rho abs {row['rho_abs_specimen']}"
              f" rms {row['rho_rms_specimen']} (ceiling {row['ceiling_abs_specimen']}) "
              f"{secs:.1f}s", flush=True)
    return rows


def unseen_phantom(family: str, size: int, seed: int):
    """A HAADF-like phantom of an unseen family (``benchmarks/unseen_families.py``), or None."""
    sys.path.insert(0, str(HERE))
    try:
        import unseen_families
    except ImportError:
        return None
    spec = unseen_families.render(family, size, seed, 2)
    return Phantom(name=family, volume=spec.volume, specimen_mask=spec.region,
                   components=[("all", spec.volume)],
                   info={"size": spec.size, "supersample": spec.supersample, "seed": seed})


def cost_rows(methods, repeat: int) -> list[dict]:
    """Halves against one run on the needle (binned 2x, a slab of 64 slices, ±60°)."""
    from tomoprior import io

    f = io.read(HERE.parent / "src" / "tomoprior" / "sample_data" / "needle_haadf" /
                "needle_haadf.tif")
    data = f.load()
    kw = {"bin": 2, "slices": "64:192", "tilt_range": (-60.0, 60.0)}
    rows = []
    for m in methods:
        best = {}
        for _ in range(repeat):
            for mode, extra in (("one", {}), ("halves", {"halves": True})):
                _, _, secs = reconstruct(m, data, f.geometry, **kw, **extra)
                best[mode] = min(best.get(mode, np.inf), secs)
        rows.append({"part": "cost", "method": m, "seconds_one": round(best["one"], 2),
                     "seconds_halves": round(best["halves"], 2),
                     "ratio": round(best["halves"] / best["one"], 2)})
        print(f"needle cost {m:16s} one {best['one']:.1f}s halves {best['halves']:.1f}s "
              f"{best['halves'] / best['one']:.2f}x", flush=True)
    return rows


def fsc_speed() -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for n in (128, 256):
        a = rng.standard_normal((n, n, n), dtype=np.float32)
        b = rng.standard_normal((n, n, n), dtype=np.float32)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            directional_fsc(a, b, pixel_size=1.0)
            times.append(time.perf_counter() - t0)
        rows.append({"part": "fsc_speed", "size": n, "best_s": round(min(times), 3),
                     "median_s": round(float(np.median(times)), 3)})
        print(f"FSC {n}³ pair: best {min(times):.2f} s", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--phantoms", nargs="+", default=["pt_haadf", "pt_adf"])
    ap.add_argument("--steps", nargs="+", type=float, default=[2.0, 10.0, 20.0])
    ap.add_argument("--methods", nargs="+", default=["sirt", "cstv", "restore"],
                    help="methods of the resolution part (halves)")
    ap.add_argument("--calibrate", nargs="*", default=["sirt", "cstv", *LEARNED],
                    help="methods of the calibration part (their ensemble, and their halves' "
                    "map when they are in --methods)")
    ap.add_argument("--calibration-step", type=float, default=10.0)
    ap.add_argument("--ensemble", type=int, default=4)
    ap.add_argument("--unseen", nargs="*", default=["foam", "core_shell"],
                    help="unseen families for the calibration (benchmarks/unseen_families.py)")
    ap.add_argument("--unseen-methods", nargs="*", default=list(LEARNED[:2]))
    ap.add_argument("--doses", nargs="+", type=float, default=[5e3, 500.0],
                    help="Poisson doses (electrons per pixel at the brightest): the resolution "
                    "part at each, the calibration at the first")
    ap.add_argument("--contrast-variation", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cost-methods", nargs="*", default=["sirt", "cstv", "restore"])
    ap.add_argument("--cost-repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="32³, one phantom, 10° only")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.phantoms, args.steps = 32, args.phantoms[:1], [10.0]
        args.calibrate, args.unseen, args.ensemble = ["sirt", "restore"], [], 3
        args.doses, args.cost_methods = args.doses[:1], args.cost_methods[:1]
    t_start = time.perf_counter()
    load = os.getloadavg()
    rows: list[dict] = []
    for name in args.phantoms:
        ph = make_phantom(name, args.size, seed=args.seed, supersample=2)
        tr = ph.coarse()
        for dose in args.doses:
            for step in args.steps:
                res, cache = resolution_rows(name, ph, tr, step, dose, args.methods, args)
                rows += res
                if step == args.calibration_step and dose == args.doses[0]:
                    rows += calibration_rows(name, tr, step, cache, args.calibrate, args)
    for family in args.unseen:
        ph = unseen_phantom(family, args.size, args.seed)
        if ph is None:
            print("benchmarks/unseen_families.py not found: no unseen families", flush=True)
            break
        tr = ph.coarse()
        angles = np.arange(-60.0, 60.0 + 1e-6, args.calibration_step)
        series, geom = simulate(ph, angles, noise="poisson", dose=args.doses[0], seed=args.seed)
        cache = {"series": series, "geom": geom, "maps": {}}
        rows += calibration_rows(family, tr, args.calibration_step, cache, args.unseen_methods, args)
    rows += cost_rows(args.cost_methods, args.cost_repeat)
    rows += fsc_speed()
    meta = {"command": "python " + shlex.join(sys.argv), "date": dt.date.today().isoformat(),
            "version": __version__, "torch": torch.__version__, "threads": args.threads,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_at_start": [round(v, 2) for v in load], "minutes": None,
            "commit": _commit()}
    meta["minutes"] = round((time.perf_counter() - t_start) / 60, 1)
    text = markdown(rows, meta, args)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                            indent=1))
        page = args.out.with_suffix(".md")
        old = page.read_text(encoding="utf-8") if page.exists() else ""
        start, end = "<!-- results:start -->", "<!-- results:end -->"
        if start in old and end in old:
            head, rest = old.split(start, 1)
            text = f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}"
        page.write_text(text, encoding="utf-8")
    return 0


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=HERE, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _unit(rows: list[dict]) -> str:
    return next((r["unit"] for r in rows if r["part"] == "resolution"), "px")


def _nyquist(rows: list[dict]) -> str:
    r = next((r for r in rows if r["part"] == "resolution"), None)
    return "–" if r is None else f"{2 * r['pixel_size']:g} {r['unit']}"


def _within(value) -> str:
    return "– (two bounds)" if value is None else ("yes" if value else "no")


def _v(r: dict) -> str:
    return ("≤" if r["bound"] else "") + f"{r['value']:.2f}"


def markdown(rows: list[dict], meta: dict, args) -> str:
    lines = [
        "## Measured (benchmarks/trust.py)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}, napari-tomoprior {meta['version']} (commit {meta['commit']}), "
        f"torch {meta['torch']}, {meta['machine']}, {meta['threads']} thread(s), load average at "
        f"start {meta['load_at_start']} (a machine shared with other jobs: seconds are inflated, "
        f"ratios measured side by side), {meta['minutes']} min in all.  ",
        f"Specimens {args.size}³, ±60°, Poisson doses {', '.join(f'{d:g}' for d in args.doses)}"
        f" (the calibration at {args.doses[0]:g}); resolutions in "
        f"{_unit(rows)} (Nyquist: 2 pixels = {_nyquist(rows)}); ≤: the curve stays above its "
        "threshold up to Nyquist, a bound, not a measurement.",
        "",
        "### Half-set resolution against the truth",
        "",
        "| specimen | dose | step | tilts | method | z half (0.143) | z true (0.5) | z ratio "
        "| within 25 % "
        "| x-y half | x-y true | spherical half | spherical true | halves / one run | SSIM one "
        "| SSIM halves |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["part"] == "resolution"):
        lines.append(
            f"| {r['specimen']} | {r['dose']:g} | {r['step']:g}° | {r['n_tilts']} | "
            f"{r['method']} | {_v(r['half_z'])} | {_v(r['true_z'])} | {r['z_ratio']} | "
            f"{_within(r['within_25'])} | {_v(r['half_xy'])} | {_v(r['true_xy'])} | "
            f"{_v(r['half_spherical'])} | {_v(r['true_spherical'])} | {r['cost_ratio']:.2f}× | "
            f"{r['ssim_one']:.3f} | {r['ssim_halves']:.3f} |")
    lines += ["", "Along z, rows where at least one curve crosses its threshold (two bounds "
              "compare nothing), within 25 %:", ""]
    for m in dict.fromkeys(r["method"] for r in rows if r["part"] == "resolution"):
        told = [r for r in rows if r["part"] == "resolution" and r["method"] == m
                and r["within_25"] is not None]
        ratios = [r["z_ratio"] for r in told]
        lines.append(f"- {m}: {sum(r['within_25'] for r in told)} of {len(told)}"
                     + (f" (z ratio half / true from {min(ratios):.2f} to {max(ratios):.2f})"
                        if ratios else ""))
    costs = [r["cost_ratio"] for r in rows if r["part"] == "resolution"]
    if costs:
        lines.append(f"- halves / one run at this size (runs of a fraction of a second to "
                     f"seconds; see the cost table for runs of seconds): {min(costs):.2f}× to "
                     f"{max(costs):.2f}×")
    lines += [
        "",
        "### Uncertainty map against the true error (Spearman)",
        "",
        "| specimen | step | method | map | abs error, specimen | abs error, all | local RMS "
        "error, specimen | local RMS error, all | ceiling | SSIM of the mean | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["part"] == "calibration"):
        lines.append(
            f"| {r['specimen']} | {r['step']:g}° | {r['method']} | {r['mode']} | "
            f"{r['rho_abs_specimen']:.2f} | {r['rho_abs_all']:.2f} | {r['rho_rms_specimen']:.2f} | "
            f"{r['rho_rms_all']:.2f} | {r['ceiling_abs_specimen']:.2f} | {r['ssim']:.3f} | "
            f"{r['seconds']:.1f} |")
    lines += ["", "### Cost of the halves (the needle, 128 px, 64 slices, ±60°, 61 tilts)", "",
              "| method | one run (s) | halves (s) | halves / one |", "|---|---|---|---|"]
    for r in (r for r in rows if r["part"] == "cost"):
        lines.append(f"| {r['method']} | {r['seconds_one']:.1f} | {r['seconds_halves']:.1f} | "
                     f"{r['ratio']:.2f}× |")
    lines += ["", "### Directional FSC speed (one pair, spherical + x-y + z + 18 tilt-plane "
              "cones)", "", "| size | best of 3 (s) | median (s) |", "|---|---|---|"]
    for r in (r for r in rows if r["part"] == "fsc_speed"):
        lines.append(f"| {r['size']}³ | {r['best_s']:.2f} | {r['median_s']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
