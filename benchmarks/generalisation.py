"""Generalisation benchmark: every method on specimen families the training generator never makes.

The learned methods (``restore``, ``restore_tv``, DIP-TV from the trained
network, and their test-time adaptation) are trained on the package's own
simulator. Here they reconstruct specimens of six other families
(``benchmarks/unseen_families.py``: Shepp-Logan, open-cell foam, core-shell
particles, faceted rods, a device cross-section, graded textured blobs),
and the real HAADF needle, beside SIRT and CS-TV.

Conditions: each family at ±60° with 10° and 20° steps, with linear
(HAADF-like) contrast and with per-tilt diffraction contrast of its
crystalline pieces (ADF-like), under Poisson noise. The design is balanced
rather than crossed, to fit the run on two cores: each (family, contrast)
is one specimen seed and one of two doses, the dose alternating so that
every family and every contrast meets both doses; 10° and 20° are run on
the same specimen and series realisation of noise (paired). The needle is
reconstructed from its tilts within ±50° at 2° and scored against the SIRT
of all its tilts (±76°), as ``benchmarks/needle_restore.py`` does.

Each row is a method and its parameters (:data:`ROWS`; more with
``--rows``); a row whose parameters its method does not declare (an
adaptation not built yet) is skipped and listed. Per condition and row:
SSIM and PSNR inside the specimen region after a least-squares intensity
fit (``benchmarks/quality.py``'s ``score``), the reprojection residual
against the measured series, the elongation of compact objects relative to
the truth's, and seconds. Summaries: per step, the mean over families, the
worst family and the difference to CS-TV.

Usage::

    python benchmarks/generalisation.py --threads 2 --out docs/generalisation   # full table
    python benchmarks/generalisation.py --quick --threads 1                      # development subset
    python benchmarks/generalisation.py --rows "restore_a=restore:adapt=100,adapt_loss=wedge"

Writes ``<out>.md`` (command, date, commit, machine state, tables),
``<out>.json`` (every number) and ``<out>.png`` (central z-y slices).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import unseen_families  # noqa: E402
from quality import score  # noqa: E402

from tomoprior import __version__, metrics  # noqa: E402
from tomoprior.algorithms import get_method  # noqa: E402
from tomoprior.algorithms._declare import RUN_KEYWORDS  # noqa: E402
from tomoprior.engine import run  # noqa: E402
from tomoprior.errors import TomopriorError  # noqa: E402
from tomoprior.phantoms import Phantom, simulate  # noqa: E402

ADAPT_STEPS = 200
ADAPT_LOSSES = ("wedge", "projection", "halves")

#: label -> (method, parameters). Each method's declared defaults otherwise, as a user gets them.
ROWS: dict[str, tuple[str, dict]] = {
    "sirt": ("sirt", {}),
    "cstv": ("cstv", {}),
    "restore": ("restore", {}),
    "restore_tv": ("restore_tv", {}),
    "diptv": ("diptv", {}),
    "diptv_pretrained": ("diptv", {"init": "pretrained"}),
    **{f"restore_adapt_{loss}": ("restore", {"adapt": ADAPT_STEPS, "adapt_loss": loss})
       for loss in ADAPT_LOSSES},
    **{f"restore_tv_adapt_{loss}": ("restore_tv", {"adapt": ADAPT_STEPS, "adapt_loss": loss})
       for loss in ADAPT_LOSSES},
    "diptv_pretrained_adapt": ("diptv", {"init": "pretrained", "adapt": ADAPT_STEPS}),
}
BASELINE = "cstv"
ENGINE_KEYWORDS = {"device", "backend", "heldout", "bin", "thickness", "tilt_range"}

STEPS = (10.0, 20.0)
CONTRASTS = ("haadf", "adf")
DOSES = (1e3, 1e4)
TILT_LIMIT = 60.0
CONTRAST_VARIATION = 0.4
NEEDLE_LIMIT = 50.0


@dataclass(frozen=True)
class Condition:
    family: str
    seed: int
    contrast: str
    dose: float
    step: float

    @property
    def key(self) -> str:
        return f"{self.family} {self.contrast} {self.dose:g} {self.step:g}°"


def conditions(families, steps, contrasts, doses, seed0: int, crossed: bool) -> list[Condition]:
    """The benchmark's conditions, grouped so that one specimen's series are consecutive.

    Balanced (default): family ``i``, contrast ``j`` -> seed ``seed0 + 2 i + j`` and dose
    ``doses[(i + j) % len(doses)]``; every step on that series. Crossed: every dose too.
    """
    out = []
    for i, fam in enumerate(families):
        for j, con in enumerate(contrasts):
            seed = seed0 + len(contrasts) * i + j
            chosen = doses if crossed else (doses[(i + j) % len(doses)],)
            for dose in chosen:
                out.extend(Condition(fam, seed, con, float(dose), float(s)) for s in steps)
    return out


def parse_rows(items: list[str]) -> dict[str, tuple[str, dict]]:
    """``["label=method:key=value,key=value", ...]`` -> rows (values parsed by the declaration)."""
    rows = {}
    for item in items:
        label, eq, rest = item.partition("=")
        method, _, plist = rest.partition(":")
        if not eq or not label.strip() or not method.strip():
            raise SystemExit(f"--rows expects LABEL=METHOD[:KEY=VALUE,...], got {item!r}")
        params = {}
        for kv in filter(None, (p.strip() for p in plist.split(","))):
            k, eq2, v = kv.partition("=")
            if not eq2:
                raise SystemExit(f"--rows: {kv!r} in {item!r} is not KEY=VALUE")
            params[k.strip()] = v.strip()
        rows[label.strip()] = (method.strip(), params)
    return rows


def usable(method: str, params: dict) -> str | None:
    """``None`` when ``method`` declares every parameter and accepts the values; else why not."""
    try:
        m = get_method(method)
    except TomopriorError as exc:
        return str(exc)
    declared = {p.name for p in m.params}
    missing = [k for k in params if k not in declared and k not in RUN_KEYWORDS
               and k not in ENGINE_KEYWORDS]
    if missing:
        return f"{m.name} does not declare {', '.join(missing)} (yet)"
    try:
        m.resolve({k: v for k, v in params.items() if k in declared})
    except TomopriorError as exc:
        return str(exc)
    return None


def phantom_of(spec: unseen_families.Specimen, contrast: str) -> Phantom:
    """A :class:`Phantom` of an unseen specimen for :func:`simulate` (its projection physics)."""
    vol = spec.volume
    comps: list[tuple[str, np.ndarray]] = [("all", vol)]
    if contrast == "adf":
        labels = [int(k) for k in np.unique(spec.groups) if k > 0]
        comps = [("support", np.where(spec.groups == 0, vol, 0).astype(np.float32))]
        comps += [(f"particles_{k}", np.where(spec.groups == k, vol, 0).astype(np.float32))
                  for k in labels]
    return Phantom(
        name=spec.name, volume=vol, specimen_mask=spec.region,
        particles=spec.objects if len(spec.objects) else None, components=comps,
        info={"size": spec.size, "supersample": spec.supersample, "seed": spec.seed,
              "contrast": contrast, "family": spec.name},
    )


def reconstruct(method: str, params: dict, series, geom, **run_kw):
    """Run to the end: (last Step, wall seconds, CPU seconds, reprojection residual).

    CPU seconds are this process's, all threads together: on a shared machine they say
    what the row would take alone (with one thread, about its wall time on an idle core).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    rec = run(method, series, geom, **params, **run_kw)
    last = None
    for last in rec:
        pass
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return last, secs, cpu, rec.evaluate(last.volume)["reprojection_residual"]


def scores(vol, tr: Phantom, truth_elong) -> dict:
    """SSIM, PSNR (quality.py's score), and the objects' elongation relative to the truth's."""
    out = score(vol, tr.volume, tr)
    out.pop("elongation", None)
    if truth_elong is not None:
        fitted = metrics.scale_to(vol, tr.volume, tr.specimen_mask)
        el = metrics.particle_elongation(fitted, tr.particles[:, :3], tr.particles[:, 3])["values"]
        ratio = el / truth_elong
        ratio = ratio[np.isfinite(ratio)]
        out["elongation"] = float(np.median(ratio)) if ratio.size else None
    return out


def run_condition(cond: Condition, rows, args, spec_cache: dict, slices: dict) -> list[dict]:
    key = (cond.family, cond.seed)
    if key not in spec_cache:
        spec_cache.clear()
        spec_cache[key] = unseen_families.render(cond.family, args.size, cond.seed, args.supersample)
    spec = spec_cache[key]
    ph = phantom_of(spec, cond.contrast)
    tr = ph.coarse()
    angles = np.arange(-TILT_LIMIT, TILT_LIMIT + 1e-6, cond.step)
    series, geom = simulate(ph, angles, noise="poisson", dose=cond.dose, seed=cond.seed,
                            contrast_variation=CONTRAST_VARIATION, device=args.device)
    truth_elong = None
    if tr.particles is not None:
        truth_elong = metrics.particle_elongation(tr.volume, tr.particles[:, :3],
                                                  tr.particles[:, 3])["values"]
    meta = {"family": cond.family, "seed": cond.seed, "contrast": cond.contrast,
            "dose": cond.dose, "step": cond.step, "n_tilts": int(angles.size)}
    out = []
    # the tilt axis is along x: the slice at the central x shows the missing wedge
    slices[(cond.key, "truth")] = tr.volume[:, :, tr.volume.shape[2] // 2]
    for label, (method, params) in rows.items():
        last, secs, cpu, residual = reconstruct(method, params, series, geom,
                                                device=args.device)
        res = scores(last.volume, tr, truth_elong)
        res.update(meta, row=label, method=method, params=params, seconds=round(secs, 2),
                   cpu_seconds=round(cpu, 2), residual=residual, iterations=int(last.iteration))
        if last.extras.get("lam") is not None:
            res["lam"] = last.extras.get("lam")
        out.append(res)
        v = metrics.scale_to(last.volume, tr.volume, tr.specimen_mask)
        slices[(cond.key, label)] = v[:, :, v.shape[2] // 2]
        print(f"{cond.key:28s} {label:26s} SSIM {res['ssim']:.3f} PSNR {res['psnr']:5.1f} "
              f"residual {residual:.4f} elong {_f(res.get('elongation'), '.2f')} {secs:7.1f}s",
              flush=True)
    return out


def run_needle(rows, args, slices: dict) -> list[dict]:
    """Every row on the real needle, ±50° at 2°, scored against the ±76° SIRT reference."""
    from needle_restore import needle_reference

    t0 = time.perf_counter()
    data, geom, ref, mask = needle_reference(args.needle_bin)
    print(f"needle: aligned and reference in {time.perf_counter() - t0:.0f}s, volume {ref.shape}",
          flush=True)
    slices[("needle", "truth")] = ref[:, :, ref.shape[2] // 2]
    out = []
    for label, (method, params) in rows.items():
        last, secs, cpu, residual = reconstruct(method, params, data, geom, device=args.device,
                                                bin=args.needle_bin,
                                                tilt_range=(-NEEDLE_LIMIT, NEEDLE_LIMIT))
        res = metrics.compare(last.volume, ref, mask=mask, fit=True)
        res.update(family="needle", contrast="haadf (real)", dose=None, step=2.0, seed=None,
                   row=label, method=method, params=params, seconds=round(secs, 2),
                   cpu_seconds=round(cpu, 2), residual=residual, iterations=int(last.iteration),
                   elongation=None)
        out.append(res)
        v = metrics.scale_to(last.volume, ref, mask)
        slices[("needle", label)] = v[:, :, v.shape[2] // 2]
        print(f"{'needle ±50°/2°':28s} {label:26s} SSIM {res['ssim']:.3f} PSNR "
              f"{res['psnr']:5.1f} residual {residual:.4f} {secs:7.1f}s", flush=True)
    return out


# -- summaries -------------------------------------------------------------------------------------
def summarise(rows: list[dict], labels: list[str]) -> list[dict]:
    """Per step (and all steps): each row's mean over families, worst family, difference to CS-TV.

    A family's value is the mean over its conditions (contrasts, doses) at that step;
    the needle is not part of these means.
    """
    sim = [r for r in rows if r["family"] != "needle"]
    steps = sorted({r["step"] for r in sim})
    out = []
    for step in [*steps, None]:
        sel = [r for r in sim if step is None or r["step"] == step]
        fams = sorted({r["family"] for r in sel})
        base = {}
        for r in sel:
            if r["row"] == BASELINE:
                base[(r["family"], r["contrast"], r["dose"], r["step"], r["seed"])] = r["ssim"]
        for label in labels:
            mine = [r for r in sel if r["row"] == label]
            if not mine:
                continue
            per_fam, delta_fam = {}, {}
            for fam in fams:
                fr = [r for r in mine if r["family"] == fam]
                if not fr:
                    continue
                per_fam[fam] = float(np.mean([r["ssim"] for r in fr]))
                d = [r["ssim"] - base[k] for r in fr
                     if (k := (r["family"], r["contrast"], r["dose"], r["step"], r["seed"])) in base]
                if d:
                    delta_fam[fam] = float(np.mean(d))
            worst = min(delta_fam, key=delta_fam.get) if delta_fam else min(per_fam, key=per_fam.get)
            out.append({
                "step": step, "row": label, "families": len(per_fam),
                "ssim": float(np.mean(list(per_fam.values()))),
                "psnr": float(np.mean([r["psnr"] for r in mine])),
                "residual": float(np.mean([r["residual"] for r in mine])),
                "elongation": _mean([r.get("elongation") for r in mine]),
                "seconds": float(np.mean([r["seconds"] for r in mine])),
                "cpu_seconds": _mean([r.get("cpu_seconds") for r in mine]),
                "delta": float(np.mean(list(delta_fam.values()))) if delta_fam else None,
                "worst_family": worst,
                "worst_ssim": per_fam[worst],
                "worst_delta": delta_fam.get(worst),
                "per_family": per_fam,
                "delta_per_family": delta_fam,
            })
    return out


def targets(summary: list[dict], rows: list[dict]) -> list[str]:
    """The issue's targets, checked on this run's numbers (a line per adaptive row)."""
    lines = []
    by = {(s["step"], s["row"]): s for s in summary}
    needle = {r["row"]: r["ssim"] for r in rows if r["family"] == "needle"}
    for label in dict.fromkeys(s["row"] for s in summary):
        if "adapt" not in label:
            continue
        per_step = [by[(st, label)] for st in sorted({s["step"] for s in summary if s["step"]})
                    if (st, label) in by]
        if not per_step or any(s["delta"] is None for s in per_step):
            continue
        worst = min(min(s["delta_per_family"].values()) for s in per_step)
        mean = min(s["delta"] for s in per_step)
        checks = [f"every family ≥ CS-TV − 0.005: {'yes' if worst >= -0.005 else 'no'} "
                  f"(worst {worst:+.3f})",
                  f"mean ≥ CS-TV + 0.02: {'yes' if mean >= 0.02 else 'no'} (lowest step {mean:+.3f})"]
        plain = "restore" if label.startswith("restore_adapt") else None
        if plain and all((s["step"], plain) in by for s in per_step):
            gain = min(s["ssim"] - by[(s["step"], plain)]["ssim"] for s in per_step)
            checks.append(f"≥ restore + 0.05: {'yes' if gain >= 0.05 else 'no'} ({gain:+.3f})")
        if label in needle and BASELINE in needle:
            d = needle[label] - needle[BASELINE]
            checks.append(f"needle ≥ CS-TV: {'yes' if d >= 0 else 'no'} ({d:+.4f})")
        lines.append(f"- `{label}`: " + "; ".join(checks))
    return lines


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def _f(value, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else format(value, spec)


# -- report ----------------------------------------------------------------------------------------
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
        "commit": git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else ""),
        "version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "device": args.device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def markdown(rows, summary, skipped, state, args, rowspec, elapsed) -> str:
    labels = [lb for lb in rowspec if any(r["row"] == lb for r in rows)]
    lines = [
        "# Generalisation: specimen families the learned methods never saw",
        "",
        f"Command: `{state['command']}`  ",
        f"Date: {state['date']}, commit {state['commit']}, napari-tomoprior {state['version']}, "
        f"Python {state['python']}, torch {state['torch']}, {state['cores']} cores, "
        f"{state['threads']} torch threads, device {state['device']}"
        + (f" ({state['cuda']})" if state["cuda"] else "")
        + f", load average at start {state['load_average']}; total {elapsed / 60:.1f} min.  ",
        f"Specimens {args.size}³ (rendered {args.supersample}× finer and projected by ray sampling: "
        f"no inverse crime), tilts ±{TILT_LIMIT:g}°, Poisson noise; ADF: crystalline pieces "
        f"scaled per tilt by diffraction factors in 1 ± {CONTRAST_VARIATION:g}. SSIM/PSNR inside "
        "the specimen region after a least-squares intensity fit; residual = ||A x − y|| / ||y|| "
        "against the measured series; elongation = median over compact objects of the "
        "reconstruction's z/xy extent divided by the truth's (1 = as the truth; – where a family "
        "has none); s = wall seconds, CPU s = the process's CPU seconds (all threads; on a shared "
        "machine, what the row takes alone). Needle: ±50°/2° against the SIRT of its ±76° series.",
        "",
        "Rows: " + "; ".join(f"`{lb}` = {m}" + (f"({_params(p)})" if p else "")
                             for lb, (m, p) in rowspec.items() if lb in labels) + ".",
        "",
    ]
    if skipped:
        lines += ["Skipped rows: " + "; ".join(f"`{lb}` ({why})" for lb, why in skipped.items())
                  + ".", ""]
    steps = sorted({s["step"] for s in summary if s["step"] is not None})
    for step in [*steps, None] if len(steps) > 1 else steps:
        part = [s for s in summary if s["step"] == step]
        if not part:
            continue
        title = f"{step:g}° steps" if step is not None else "all steps"
        lines += [f"## Mean over families, {title}", "",
                  "| row | SSIM | Δ CS-TV | worst family (SSIM, Δ) | PSNR | residual | elongation "
                  "| s (CPU s) |", "|---|---|---|---|---|---|---|---|"]
        for s in part:
            lines.append(
                f"| {s['row']} | {s['ssim']:.3f} | {_f(s['delta'], '+.3f')} | {s['worst_family']} "
                f"({s['worst_ssim']:.3f}, {_f(s['worst_delta'], '+.3f')}) | {s['psnr']:.1f} | "
                f"{s['residual']:.4f} | {_f(s['elongation'], '.2f')} | {s['seconds']:.1f} "
                f"({_f(s['cpu_seconds'], '.1f')}) |")
        lines.append("")
    fams = list(dict.fromkeys(r["family"] for r in rows))
    for step in sorted({s["step"] for s in summary if s["step"] is not None}):
        part = {s["row"]: s for s in summary if s["step"] == step}
        sim = [f for f in fams if f != "needle" and any(f in s["per_family"] for s in part.values())]
        if not sim:
            continue
        lines += [f"### SSIM per family, {step:g}° (mean over contrasts and doses)", "",
                  "| row | " + " | ".join(sim) + " |", "|---|" + "---|" * len(sim)]
        for lb in labels:
            if lb in part:
                lines.append(f"| {lb} | " + " | ".join(_f(part[lb]["per_family"].get(f), ".3f")
                                                      for f in sim) + " |")
        lines.append("")
    needle = [r for r in rows if r["family"] == "needle"]
    if needle:
        base = next((r["ssim"] for r in needle if r["row"] == BASELINE), None)
        lines += [f"## Real needle, ±{NEEDLE_LIMIT:g}°/2° against its ±76° SIRT (binned "
                  f"{args.needle_bin}×)", "",
                  "| row | SSIM | Δ CS-TV | PSNR | residual | s (CPU s) |",
                  "|---|---|---|---|---|---|"]
        for r in needle:
            d = None if base is None else r["ssim"] - base
            lines.append(f"| {r['row']} | {r['ssim']:.3f} | {_f(d, '+.3f')} | {r['psnr']:.1f} | "
                         f"{r['residual']:.4f} | {r['seconds']:.1f} "
                         f"({_f(r.get('cpu_seconds'), '.1f')}) |")
        lines.append("")
    targ = targets(summary, rows)
    if targ:
        lines += ["## The issue's targets on this run", "", *targ, ""]
    lines += ["## Every condition", "",
              "| family | contrast | dose | step | tilts | row | SSIM | PSNR | residual | "
              "elongation | s (CPU s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lam = f" (λ={r['lam']:.3g})" if isinstance(r.get("lam"), float) else ""
        lines.append(
            f"| {r['family']} | {r['contrast']} | {_f(r['dose'], 'g')} | {r['step']:g}° | "
            f"{r.get('n_tilts', '–')} | {r['row']}{lam} | {r['ssim']:.3f} | {r['psnr']:.1f} | "
            f"{r['residual']:.4f} | {_f(r.get('elongation'), '.2f')} | {r['seconds']:.1f} "
            f"({_f(r.get('cpu_seconds'), '.1f')}) |")
    return "\n".join(lines) + "\n"


def _params(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def figure(slices: dict, labels: list[str], path: Path) -> None:
    """Central z-y slices: one row per condition shown, truth first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(dict.fromkeys(c for c, _ in slices))
    cols = ["truth", *labels]
    fig, axes = plt.subplots(len(conds), len(cols), figsize=(1.3 * len(cols), 1.4 * len(conds)),
                             squeeze=False)
    for i, cond in enumerate(conds):
        truth = slices[(cond, "truth")]
        lo, hi = np.percentile(truth, [0.5, 99.8])
        for j, lb in enumerate(cols):
            ax = axes[i, j]
            ax.axis("off")
            v = slices.get((cond, lb))
            if v is None:
                continue
            ax.imshow(v, cmap="gray", vmin=lo, vmax=hi)
            if i == 0:
                ax.set_title(lb.replace("_", " "), fontsize=6)
            if j == 0:
                ax.text(-2, v.shape[0] / 2, cond, fontsize=5, ha="right", va="center", rotation=90)
    fig.suptitle("central z-y slice, across the tilt axis (z vertical: the missing-wedge "
                 "direction)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="*", default=list(unseen_families.FAMILIES),
                    choices=list(unseen_families.FAMILIES),
                    help="simulated families (none: only the needle)")
    ap.add_argument("--methods", nargs="+", metavar="ROW",
                    help=f"rows to run, by label (default: all of {', '.join(ROWS)} and --rows)")
    ap.add_argument("--rows", nargs="+", default=[], metavar="LABEL=METHOD[:K=V,...]",
                    help="extra rows, e.g. 'restore_a100=restore:adapt=100,adapt_loss=wedge'")
    ap.add_argument("--size", type=int, default=48,
                    help="nominal specimen size (48: the full run fits 90 minutes on 2 cores)")
    ap.add_argument("--supersample", type=int, default=2)
    ap.add_argument("--steps", nargs="+", type=float, default=list(STEPS))
    ap.add_argument("--contrasts", nargs="+", default=list(CONTRASTS), choices=list(CONTRASTS))
    ap.add_argument("--doses", nargs="+", type=float, default=list(DOSES),
                    help="electrons/pixel at the brightest pixel")
    ap.add_argument("--crossed", action="store_true",
                    help="every dose for every (family, contrast) instead of the balanced design")
    ap.add_argument("--seed", type=int, default=1, help="first specimen seed")
    ap.add_argument("--needle", action=argparse.BooleanOptionalAction, default=None,
                    help="also the real needle (default: on, off with --quick)")
    ap.add_argument("--needle-bin", type=int, default=4,
                    help="bin the 256-pixel needle series (4: a 64³ volume; 2: 128³, 8x slower)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true",
                    help="development subset: 3 families, 48³, one dose, 20° steps, no needle")
    ap.add_argument("--out", type=Path, help="write <out>.md, <out>.json and <out>.png")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                    help="write one table from the .json of parts run side by side (e.g. one "
                         "process per core, each with its own --families); runs nothing")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.families = [f for f in args.families if f in ("shepp_logan", "foam", "rods")] \
            or args.families[:3]
        args.size, args.steps, args.doses = min(args.size, 48), [max(args.steps)], args.doses[-1:]
    if args.needle is None:
        args.needle = not args.quick

    table = {**ROWS, **parse_rows(args.rows)}
    wanted = args.methods or list(table)
    unknown = [w for w in wanted if w not in table]
    if unknown:
        raise SystemExit(f"unknown row(s) {', '.join(unknown)}: choose from {', '.join(table)}")
    rows, skipped = {}, {}
    for label in wanted:
        method, params = table[label]
        why = usable(method, params)
        if why:
            skipped[label] = why
            print(f"skipping {label}: {why}", flush=True)
        else:
            rows[label] = (method, params)
    if not rows:
        raise SystemExit("no row can run")

    conds = conditions(args.families, args.steps, args.contrasts, args.doses, args.seed,
                       args.crossed)
    print(f"{len(conds)} conditions{' + the needle' if args.needle else ''} × {len(rows)} rows, "
          f"{args.size}³, {torch.get_num_threads()} threads", flush=True)
    state = machine_state(args)
    t_start, c_start = time.perf_counter(), time.process_time()
    results, slices, cache = [], {}, {}
    for i, cond in enumerate(conds):
        results += run_condition(cond, rows, args, cache, slices)
        done, cpu = time.perf_counter() - t_start, time.process_time() - c_start
        scale = (len(conds) - i - 1) / (i + 1)
        print(f"-- {i + 1}/{len(conds)} conditions in {done / 60:.1f} min ({cpu / 60:.1f} CPU "
              f"min); the rest of the simulated ones about {done * scale / 60:.1f} min "
              f"({cpu * scale / 60:.1f} CPU min)" + (" + the needle" if args.needle else ""),
              flush=True)
    if args.needle:
        results += run_needle(rows, args, slices)
    elapsed = time.perf_counter() - t_start
    labels = list(rows)
    summary = summarise(results, labels)
    text = markdown(results, summary, skipped, state, args, {**rows}, elapsed)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"meta": {**state, "elapsed_s": round(elapsed, 1), "size": args.size,
                      "supersample": args.supersample, "tilt_limit": TILT_LIMIT,
                      "contrast_variation": CONTRAST_VARIATION, "needle_limit": NEEDLE_LIMIT,
                      "rows": {lb: {"method": m, "params": p} for lb, (m, p) in rows.items()},
                      "skipped": skipped,
                      "conditions": [c.__dict__ for c in conds]},
             "summary": summary, "rows": results}, indent=1, default=_json))
        shown = {k: v for k, v in slices.items()
                 if k[0] == "needle" or k[0].endswith(f" {max(args.steps):g}°")}
        figure(shown, labels, args.out.with_suffix(".png"))
    return 0


def merge(args) -> int:
    """One table from parts run side by side (their rows and machine states joined)."""
    parts = [json.loads(p.read_text()) for p in args.merge]
    results = [r for part in parts for r in part["rows"]]
    rows: dict = {}
    skipped: dict = {}
    for part in parts:
        rows.update({lb: (v["method"], v["params"]) for lb, v in part["meta"]["rows"].items()})
        skipped.update(part["meta"]["skipped"])
    commands = [part["meta"]["command"] for part in parts]
    state = {**parts[0]["meta"],
             "command": "` and `".join(commands) + "` side by side, then `python "
             + shlex.join(sys.argv), "parts": [
        {k: part["meta"].get(k) for k in ("command", "elapsed_s", "load_average")}
        for part in parts]}
    elapsed = max(part["meta"]["elapsed_s"] for part in parts)  # they ran at the same time
    labels = list(rows)
    summary = summarise(results, labels)
    text = markdown(results, summary, skipped, state, args, rows, elapsed)
    print(text)
    if args.out:
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"meta": {**state, "elapsed_s": elapsed, "merged": [str(p) for p in args.merge]},
             "summary": summary, "rows": results}, indent=1, default=_json))
    return 0


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
