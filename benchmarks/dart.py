"""Discrete tomography (DART, TVR-DART) beside SIRT and CS-TV: quality, particle volume, cost.

Conditions: the quality benchmark's Pt-on-carbon specimens (``pt_haadf``,
``pt_adf``: ``benchmarks/quality.py``'s series, simulated on a 2× finer grid,
Poisson dose 5000 e⁻/px, ADF particles ±40 % from tilt to tilt) at ±60° with
2°, 10° and 20° steps; and piecewise-constant specimens the benchmarks did
not use before, from ``benchmarks/unseen_families.py`` (``core_shell``:
vacuum, shells, hollow shells and cores, four densities; ``rods``: faceted
rods of two densities in vacuum), HAADF-like contrast, at 10° and 20°.

Every method reconstructs the same series in the same process, one after
another. Per row: SSIM and PSNR inside the specimen region after a
least-squares intensity fit (``quality.py``'s ``score``), the reprojection
residual against the measured series, the particles' elongation along the
beam (Pt: median z/xy extent, 1 = round; families: relative to the truth's),
the **particle volume error** (voxels above half the particle density in the
intensity-fitted volume against the truth's, in %), seconds, and the ratio
to CS-TV's seconds on the same series. DART and TVR-DART get the number of
materials a microscopist would give (``n_levels``: 2 for HAADF, where the
carbon is faint, 3 for ADF, 4 for core-shell, 3 for rods), levels ``auto``.

Responsiveness (HAADF, 10°): seconds to the method's first picture (the
first Step, no WBP preview), and seconds from a stop request to the end of
the run, the request made in the set-up (warm start, λ search) and in the
iterations.

Usage::

    python benchmarks/dart.py --threads 1 --out docs/dart     # the table in docs/dart.md
    python benchmarks/dart.py --quick                          # a small smoke run

Writes ``<out>.md`` (command, date, machine state, tables) and ``<out>.json``.
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
import threading
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import unseen_families  # noqa: E402
from quality import score  # noqa: E402

from tomoprior import __version__, metrics  # noqa: E402
from tomoprior.cancel import stop_when  # noqa: E402
from tomoprior.engine import run  # noqa: E402
from tomoprior.phantoms import Phantom, make_phantom, simulate  # noqa: E402

METHODS = {
    "sirt": ("sirt", {"iterations": 100}),
    "cstv": ("cstv", {"iterations": 300, "lam": "auto"}),
    "dart": ("dart", {}),
    "tvr_dart": ("tvr_dart", {}),
}
DISCRETE = ("dart", "tvr_dart")
#: materials including vacuum, as a user would count them
N_LEVELS = {"pt_haadf": 2, "pt_adf": 3, "core_shell": 4, "rods": 3}
DOSE = 5e3
CONTRAST_VARIATION = 0.4


def family_phantom(name: str, size: int, seed: int) -> tuple[Phantom, float]:
    """An unseen family's specimen as a :class:`Phantom` (HAADF-like: one component), and
    the density of its least dense material (the particle threshold is half of it)."""
    spec = unseen_families.render(name, size, seed, 2)
    dens = np.unique(spec.volume)
    ph = Phantom(name=name, volume=spec.volume, specimen_mask=spec.region,
                 particles=spec.objects if len(spec.objects) else None,
                 components=[("all", spec.volume)],
                 info={"size": size, "supersample": 2, "seed": seed, "family": name})
    return ph, float(dens[dens > 0].min())


def specimen(name: str, size: int, seed: int) -> tuple[Phantom, float]:
    if name in unseen_families.FAMILIES:
        return family_phantom(name, size, seed)
    return make_phantom(name, size, seed=seed, supersample=2), 1.0  # Pt: density 1


def particle_volume_error(vol: np.ndarray, tr: Phantom, density: float) -> float:
    """Voxels above half the particle density, intensity-fitted volume against truth (%)."""
    fitted = metrics.scale_to(vol, tr.volume, tr.specimen_mask)
    t = 0.5 * density
    truth = int((tr.volume > t).sum())
    return 100.0 * (int((fitted > t).sum()) - truth) / max(truth, 1)


def elongation(vol: np.ndarray, tr: Phantom, family: bool) -> float | None:
    """Median elongation (Pt: absolute; a family: relative to the truth's own)."""
    if tr.particles is None or not len(tr.particles):
        return None
    fitted = metrics.scale_to(vol, tr.volume, tr.specimen_mask)
    el = metrics.particle_elongation(fitted, tr.particles[:, :3], tr.particles[:, 3])["values"]
    if family:
        ref = metrics.particle_elongation(tr.volume, tr.particles[:, :3],
                                          tr.particles[:, 3])["values"]
        el = el / ref
    el = el[np.isfinite(el)]
    return float(np.median(el)) if el.size else None


def reconstruct(method: str, params: dict, series, geom, device: str):
    """Run to the end: (last Step, seconds, seconds to the first Step, residual)."""
    t0 = time.perf_counter()
    rec = run(method, series, geom, device=device, **params)
    first, last = None, None
    for last in rec:
        if first is None:
            first = time.perf_counter() - t0
    secs = time.perf_counter() - t0
    return last, secs, first, rec.evaluate(last.volume)["reprojection_residual"]


def stop_latency(method: str, params: dict, series, geom, device: str, after: float) -> dict:
    """Seconds from a stop request ``after`` seconds into the run to its end, and where the
    run was (its last step's phase) when it ended."""
    event = threading.Event()
    out: dict = {}

    def work():
        with stop_when(event):
            rec = run(method, series, geom, device=device, **params)
            for st in rec:
                out["phase"], out["iteration"] = st.phase, st.iteration
        out["end"] = time.perf_counter()
        out["stopped"] = rec.stopped

    t = threading.Thread(target=work)
    t0 = time.perf_counter()
    t.start()
    time.sleep(after)
    asked = time.perf_counter()
    event.set()
    t.join()
    return {"after_s": round(asked - t0, 2), "latency_s": round(out["end"] - asked, 3),
            "phase": out.get("phase"), "iteration": out.get("iteration"),
            "stopped": bool(out.get("stopped"))}


def run_condition(name: str, step: float, args, rows: list[dict]) -> None:
    ph, density = specimen(name, args.size, args.seed)
    tr = ph.coarse()
    family = name in unseen_families.FAMILIES
    angles = np.arange(-60.0, 60.0 + 1e-6, step)
    series, geom = simulate(ph, angles, noise="poisson", dose=DOSE, seed=args.seed,
                            contrast_variation=CONTRAST_VARIATION, device=args.device)
    cstv_seconds = None
    for label in args.methods:
        method, params = METHODS[label]
        params = dict(params)
        if label in DISCRETE:
            params["n_levels"] = N_LEVELS[name]
        if args.quick:
            params["iterations"] = max(10, int(params.get("iterations", 50)) // 5)
        last, secs, first, residual = reconstruct(method, params, series, geom, args.device)
        res = score(last.volume, tr.volume, tr)
        res.pop("elongation", None)
        res.pop("support_ratio", None)
        res.update(specimen=name, step=step, n_tilts=int(angles.size), method=label,
                   params=params, seconds=round(secs, 2), first_step_s=round(first, 3),
                   residual=residual, iterations=int(last.iteration),
                   elongation=elongation(last.volume, tr, family),
                   particle_volume_error=particle_volume_error(last.volume, tr, density),
                   levels=last.extras.get("levels"), level_fit=last.extras.get("level_fit"),
                   lam=last.extras.get("lam"))
        if label == "cstv":
            cstv_seconds = secs
        res["cost_vs_cstv"] = round(secs / cstv_seconds, 2) if cstv_seconds else None
        rows.append(res)
        print(f"{name:10s} {step:4g}° {label:9s} SSIM {res['ssim']:.3f} PSNR {res['psnr']:5.1f} "
              f"res {residual:.4f} el {_f(res['elongation'], '.2f')} "
              f"pve {res['particle_volume_error']:+6.1f}% {secs:6.1f}s "
              f"levels {res['levels'] or '-'}", flush=True)


def warm_up(args) -> None:
    """One small run of every method first: the first call of a process pays for loading
    and caching, which would fall on the first row's seconds."""
    ph = make_phantom("spheres", 16, seed=0)
    series, geom = simulate(ph, np.arange(-60.0, 61.0, 30.0), seed=0, device=args.device)
    for label in args.methods:
        method, params = METHODS[label]
        reconstruct(method, {**params, "iterations": 3}, series, geom, args.device)


def responsiveness(args) -> list[dict]:
    ph, _ = specimen("pt_haadf", args.size, args.seed)
    angles = np.arange(-60.0, 60.0 + 1e-6, 10.0)
    series, geom = simulate(ph, angles, noise="poisson", dose=DOSE, seed=args.seed,
                            device=args.device)
    out = []
    for label in DISCRETE:
        method, params = METHODS[label]
        params = {**params, "n_levels": 2}
        _, secs, first, _ = reconstruct(method, params, series, geom, args.device)
        for frac in (0.1, 0.8):  # in the set-up, in the iterations
            lat = stop_latency(method, params, series, geom, args.device, frac * secs)
            out.append({"method": label, "first_step_s": round(first, 3),
                        "run_s": round(secs, 2), **lat})
            print(f"{label:9s} first picture {first:.2f}s; stop at {lat['after_s']}s "
                  f"({lat['phase']}): ended {lat['latency_s']}s later", flush=True)
    return out


def machine_state(args) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=HERE, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": "python " + shlex.join(sys.argv),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)"
                                                          if dirty else ""),
        "version": __version__, "python": platform.python_version(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg")
        else None,
        "machine": platform.machine(), "device": args.device,
    }


def _f(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def targets(rows: list[dict], resp: list[dict]) -> list[str]:
    """The issue's targets, each with the measured figures and whether it is met."""
    def row(spec, step, method):
        return next((r for r in rows if r["specimen"] == spec and r["step"] == step
                     and r["method"] == method), None)

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = []
    for step in (10.0, 20.0):
        cs = row("pt_haadf", step, "cstv")
        found = [r for r in (row("pt_haadf", step, m) for m in DISCRETE) if r is not None]
        if cs is None or not found:
            continue
        best = max(found, key=lambda r: r["ssim"])
        el = best["elongation"]
        checks = [
            (f"SSIM {best['ssim']:.3f} ≥ CS-TV {cs['ssim']:.3f}", best["ssim"] >= cs["ssim"]),
            (f"PSNR {best['psnr']:.1f} ≥ CS-TV + 1 dB ({cs['psnr'] + 1:.1f})",
             best["psnr"] >= cs["psnr"] + 1),
            (f"elongation {_f(el, '.2f')} within 0.05 of 1", el is not None and abs(el - 1) <= 0.05),
            (f"particle volume error {best['particle_volume_error']:+.1f} % within ±5 %",
             abs(best["particle_volume_error"]) <= 5),
        ]
        out.append(f"- HAADF {step:g}°, best of DART/TVR-DART = {best['method']}: "
                   + "; ".join(f"{t}: {mark(ok)}" for t, ok in checks))
    for spec in sorted({r["specimen"] for r in rows if r["specimen"] in unseen_families.FAMILIES}):
        cs = row(spec, 20.0, "cstv")
        found = [r for r in (row(spec, 20.0, m) for m in DISCRETE) if r is not None]
        if cs is None or not found:
            continue
        best = max(found, key=lambda r: r["ssim"])
        out.append(f"- {spec} 20° (a family the benchmarks did not use before): "
                   f"{best['method']} SSIM {best['ssim']:.3f} against CS-TV {cs['ssim']:.3f} "
                   f"+ 0.02: {mark(best['ssim'] >= cs['ssim'] + 0.02)}")
    for m in DISCRETE:
        costs = [r["cost_vs_cstv"] for r in rows if r["method"] == m and r.get("cost_vs_cstv")]
        if costs:
            out.append(f"- {m} cost {min(costs):.2f}-{max(costs):.2f}× CS-TV's time (≤ 3×): "
                       f"{mark(max(costs) <= 3)}")
    for m in DISCRETE:
        rs = [r for r in resp if r["method"] == m]
        if rs:
            first = max(r["first_step_s"] for r in rs)
            stop = max(r["latency_s"] for r in rs)
            out.append(f"- {m} first picture {first:.2f} s (≤ 2 s): {mark(first <= 2)}; "
                       f"stop {stop:.3f} s (≤ 1 s): {mark(stop <= 1)}")
    return out


def markdown(rows: list[dict], resp: list[dict], state: dict, args) -> str:
    lines = [
        "# Discrete tomography: DART and TVR-DART beside SIRT and CS-TV",
        "",
        f"Command: `{state['command']}`  ",
        f"Date: {state['date']}, commit {state['commit']}, napari-tomoprior {state['version']}, "
        f"torch {state['torch']}, {state['machine']}, {state['threads']} thread(s) of "
        f"{state['cores']} cores, load average at the end {state['load_average']}, "
        f"device {state['device']}.  ",
        f"Volume {args.size}³, ±60°, Poisson dose {DOSE:g} e⁻/px; SSIM/PSNR inside the specimen "
        "region after a least-squares intensity fit; elongation: Pt median z/xy extent "
        "(1 = round), families relative to the truth's; particle volume error: voxels above "
        "half the particle density against the truth's; cost: seconds over CS-TV's on the same "
        "series. Levels: those the run found (the `levels` parameter's format).",
        "",
        "| specimen | step | tilts | method | SSIM | PSNR | residual | elongation | "
        "particle vol. err. | s | cost/CS-TV | levels (fit) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lam = f" (λ={r['lam']:g})" if isinstance(r.get("lam"), float) else ""
        nl = f", {r['params']['n_levels']} levels" if "n_levels" in r["params"] else ""
        fit = f" ({r['level_fit']:.2f})" if r.get("level_fit") is not None else ""
        lines.append(
            f"| {r['specimen']} | {r['step']:g}° | {r['n_tilts']} | {r['method']}{lam}{nl} | "
            f"{r['ssim']:.3f} | {r['psnr']:.1f} | {r['residual']:.4f} | "
            f"{_f(r['elongation'], '.2f')} | {r['particle_volume_error']:+.1f} % | "
            f"{r['seconds']:.1f} | {_f(r['cost_vs_cstv'], '.2f')} | "
            f"{r['levels'] or '–'}{fit} |")
    goals = targets(rows, resp)
    if goals:
        lines += ["", "## Targets of the issue", "", *goals]
    if resp:
        lines += ["", "Responsiveness (pt_haadf, 10°, 2 levels): seconds to the method's first "
                  "picture, and from a stop request to the end of the run.", "",
                  "| method | run s | first picture s | stop asked at s | phase | ended after s |",
                  "|---|---|---|---|---|---|"]
        for r in resp:
            lines.append(f"| {r['method']} | {r['run_s']:.1f} | {r['first_step_s']:.2f} | "
                         f"{r['after_s']:.2f} | {r['phase']} | {r['latency_s']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--specimens", nargs="+", default=["pt_haadf", "pt_adf"])
    ap.add_argument("--steps", nargs="+", type=float, default=[2.0, 10.0, 20.0])
    ap.add_argument("--families", nargs="+", default=["core_shell", "rods"])
    ap.add_argument("--family-steps", nargs="+", type=float, default=[10.0, 20.0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="small sizes and iteration counts")
    ap.add_argument("--no-responsiveness", action="store_true")
    ap.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    ap.add_argument("--from-json", type=Path, metavar="JSON",
                    help="write the tables of an earlier run's JSON again, without running")
    args = ap.parse_args(argv)
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        table = markdown(doc["rows"], doc["responsiveness"], doc["state"],
                         argparse.Namespace(**{**vars(args), **doc.get("args", {})}))
        print(table)
        if args.out:
            args.out.with_suffix(".md").write_text(table)
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.steps, args.family_steps = 32, [20.0], [20.0]
    warm_up(args)
    rows: list[dict] = []
    for name in args.specimens:
        for step in args.steps:
            run_condition(name, step, args, rows)
    for name in args.families:
        for step in args.family_steps:
            run_condition(name, step, args, rows)
    resp = [] if args.no_responsiveness else responsiveness(args)
    state = machine_state(args)
    table = markdown(rows, resp, state, args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"state": state, "args": {"size": args.size}, "rows": rows,
             "responsiveness": resp}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
