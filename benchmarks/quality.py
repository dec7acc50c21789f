"""Quality table of the DIP-TV study, reproduced on simulated Pt-on-carbon specimens.

For each phantom (HAADF and ADF contrast), tilt range ±60° with steps of 2°,
10° and 20°, noise-free and with Poisson noise, every method reconstructs the
same simulated series (simulated on a 2x finer grid with a different
projector, so no inverse crime). Reported per method and condition, inside
the specimen region: SSIM and PSNR after a least-squares intensity fit, the
median particle elongation along z (1.0 = round; the missing wedge stretches
particles), the support homogeneity ratio (coefficient of variation inside
the carbon support relative to the ground truth's: 1.0 = as homogeneous as
the truth, larger = noisier or porous-looking), and seconds.

Usage::

    python benchmarks/quality.py --out docs/quality            # full table (about an hour on 2 cores)
    python benchmarks/quality.py --quick                        # a small smoke run

Writes ``<out>.md`` (table + command), ``<out>.json`` (all numbers) and
``<out>.png`` (central xz slice per method and condition).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tomoprior import __version__, metrics
from tomoprior.engine import run
from tomoprior.phantoms import make_phantom, simulate

DEFAULTS = {
    "wbp": {},
    "sirt": {"iterations": 100},
    "cstv": {"iterations": 300, "lam": "auto"},
    "restore": {"iterations": 100},
    "restore_tv": {"iterations": 300, "lam": "auto"},
    "diptv": {"iterations": 1500, "every": 100},
    "diptv_pretrained": {"method": "diptv", "init": "pretrained", "iterations": 100, "every": 25,
                         "lam": 0.02},
    "inr": {"iterations": 2000, "every": 500},
}
LABELS = {"diptv_pretrained": "diptv (pretrained)"}


def reconstruct(method: str, series, geom, params: dict):
    """Run a method to the end; returns (last Step, seconds, iterations/s of the main phase).

    The main phase excludes warm starts and lambda searches (Steps that do not
    advance the iteration count), so DIP-TV's rate is that of its network steps.
    """
    kw = dict(params)
    method = kw.pop("method", method)
    t0 = time.perf_counter()
    rec = run(method, series, geom, **kw)
    last, first = None, None
    for last in rec:
        if first is None and last.iteration > 0 and last.phase == "iterate":
            first = (last.iteration, time.perf_counter())
    t1 = time.perf_counter()
    rate = None
    if first is not None and last.iteration > first[0] and t1 > first[1]:
        rate = (last.iteration - first[0]) / (t1 - first[1])
    residual = rec.evaluate(last.volume)["reprojection_residual"]
    return last, t1 - t0, rate, residual


def _set_params(params: dict, items: list[str]) -> None:
    """``["diptv.iterations=1000", ...]`` -> update the per-method parameter dicts."""
    from tomoprior.algorithms import get_method

    for item in items:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        if method not in params or not name or not value:
            raise SystemExit(f"--set expects METHOD.NAME=VALUE for a chosen method, got {item!r}")
        if name in ("iterations", "every"):
            params[method][name] = int(value)
        else:
            real = params[method].get("method", method)
            params[method][name] = get_method(real).param(name).parse(value)


def score(vol, truth, tr) -> dict:
    mask = tr.specimen_mask
    out = metrics.compare(vol, truth, mask=mask, fit=True)
    fitted = metrics.scale_to(vol, truth, mask)
    if tr.particles is not None and len(tr.particles):
        el = metrics.particle_elongation(fitted, tr.particles[:, :3], tr.particles[:, 3])
        out["elongation"] = float(el["median"])
    if tr.support_mask is not None and tr.support_mask.any():
        hom = metrics.support_homogeneity(fitted, tr.support_mask, reference=truth)
        out["support_ratio"] = float(hom["ratio"])
    return out


def _oracle_cstv(series, geom, tr, args, cstv_params: dict, meta: dict) -> dict:
    """CS-TV at every lambda of ``--oracle-lams``; the row of the best SSIM against the truth."""
    best = None
    for lam in args.oracle_lams:
        last, secs, rate, _ = reconstruct("cstv", series, geom,
                                          {**cstv_params, "lam": lam, "device": args.device})
        res = score(last.volume, tr.volume, tr)
        if best is None or res["ssim"] > best["ssim"]:
            best = {**res, "lam": lam, "seconds": round(secs, 2), "its_per_s": rate,
                    "iterations": int(last.iteration)}
    best.update(meta, method="cstv oracle")
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--phantoms", nargs="+", default=["pt_haadf", "pt_adf"])
    ap.add_argument("--steps", nargs="+", type=float, default=[2.0, 10.0, 20.0])
    ap.add_argument("--noise", nargs="+", default=["none", "poisson"])
    ap.add_argument("--dose", type=float, default=5e3, help="electrons/pixel at the brightest pixel")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULTS))
    ap.add_argument("--contrast-variation", type=float, default=0.4,
                    help="ADF: per-tilt diffraction factors of the particle groups in 1 ± this")
    ap.add_argument("--oracle-lams", nargs="*", type=float, default=[], metavar="LAM",
                    help="also run CS-TV at each of these lambdas and report the one with the best "
                         "SSIM against the truth (a ceiling for any lambda rule, not a method)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD.NAME=VALUE",
                    help="override a method's parameter, e.g. diptv.iterations=1000 (repeatable)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and iteration counts")
    ap.add_argument("--reuse", type=Path, metavar="JSON",
                    help="take the rows of --reuse-methods from this earlier run's JSON (same "
                         "conditions) instead of running them again")
    ap.add_argument("--reuse-methods", nargs="*", default=[], metavar="METHOD")
    ap.add_argument("--out", type=Path, help="write <out>.md, .json and .png")
    args = ap.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    params = {m: dict(DEFAULTS[m]) for m in args.methods}
    _set_params(params, args.set)
    if args.quick:
        args.size = min(args.size, 32)
        for m, p in params.items():
            if "iterations" in p:
                p["iterations"] = max(10, p["iterations"] // 20)
            if m in ("diptv", "inr"):
                p["every"] = p["iterations"]
    rows, slices = [], {}
    for name in args.phantoms:
        ph = make_phantom(name, args.size, seed=args.seed, supersample=2)
        tr = ph.coarse()
        for noise in args.noise:
            for step in args.steps:
                angles = np.arange(-60.0, 60.0 + 1e-6, step)
                series, geom = simulate(
                    ph, angles, noise=None if noise == "none" else noise,
                    dose=None if noise == "none" else args.dose,  # a dose alone means Poisson
                    seed=args.seed, contrast_variation=args.contrast_variation,
                )
                cond = f"{name} {noise} {step:g}°"
                meta = {"phantom": name, "noise": noise, "step": step, "n_tilts": int(angles.size)}
                for m in args.methods:
                    last, secs, rate, residual = reconstruct(m, series, geom,
                                                             {**params[m], "device": args.device})
                    res = score(last.volume, tr.volume, tr)
                    res.update(meta, method=LABELS.get(m, m), seconds=round(secs, 2),
                               its_per_s=rate, iterations=int(last.iteration), residual=residual)
                    if params[m].get("method", m) == "diptv":
                        res["best_iteration"] = last.extras.get("best_iteration")
                    if m == "cstv":
                        res["lam"] = last.extras.get("lam")
                    rows.append(res)
                    slices[(cond, m)] = metrics.scale_to(last.volume, tr.volume, tr.specimen_mask)
                    print(f"{cond:24s} {m:6s} SSIM {res['ssim']:.3f} PSNR {res['psnr']:5.1f} "
                          f"residual {residual:.4f} "
                          f"elong {res.get('elongation', float('nan')):.2f} "
                          f"support {res.get('support_ratio', float('nan')):.2f} {secs:7.1f}s",
                          flush=True)
                if args.reuse:
                    for old in json.loads(args.reuse.read_text()):
                        same = all(old.get(k) == meta[k] for k in ("phantom", "noise", "step"))
                        if same and old["method"] in args.reuse_methods:
                            rows.append({**old, "reused": str(args.reuse)})
                if args.oracle_lams:
                    rows.append(_oracle_cstv(series, geom, tr, args, params.get("cstv", DEFAULTS["cstv"]),
                                             meta))
                    print(f"{cond:24s} cstv oracle λ={rows[-1]['lam']:g} SSIM {rows[-1]['ssim']:.3f}",
                          flush=True)
                slices[(cond, "truth")] = tr.volume
    table = _markdown(rows, args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        _figure(slices, args.methods, args.out.with_suffix(".png"))
    return 0


def _markdown(rows: list[dict], args) -> str:
    cmd = "python " + shlex.join(sys.argv)
    lines = [
        "# Reconstruction quality on simulated Pt-on-carbon tilt series",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {dt.date.today().isoformat()}, napari-tomoprior {__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"device {args.device}.  ",
        f"Volume {args.size}³, tilt range ±60°, Poisson dose {args.dose:g} e⁻/pixel at the brightest "
        "pixel; SSIM/PSNR inside the specimen mask after a least-squares intensity fit; elongation = "
        "median z/xy extent of the particles (1 = round); support = CV inside the carbon relative to "
        "the truth (1 = as homogeneous as the truth); residual = ||A x - y|| / ||y|| against the "
        "measured series (lower: more consistent with the data). ADF particle groups are scaled per tilt by "
        f"diffraction factors in 1 ± {args.contrast_variation:g}."
        + (" `cstv oracle`: the best of CS-TV at λ in "
           f"{{{', '.join(f'{v:g}' for v in args.oracle_lams)}}} by SSIM against the truth (a ceiling "
           "for any rule that picks λ from the data, not a method)." if args.oracle_lams else ""),
        "",
        *([f"† from the earlier run {args.reuse} (same specimens, series and code path; its "
           "methods were not run again).", ""] if args.reuse else []),
        "| phantom | noise | step | tilts | method | SSIM | PSNR | residual | elongation | support | s | it/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lam = f" (λ={r['lam']:g})" if r.get("lam") not in (None, "auto") else ""
        best = f", best it {r['best_iteration']}" if r.get("best_iteration") is not None else ""
        best += " †" if r.get("reused") else ""
        rate = f"{r['its_per_s']:.1f}" if r.get("its_per_s") else "–"
        lines.append(
            f"| {r['phantom']} | {r['noise']} | {r['step']:g}° | {r['n_tilts']} | {r['method']}{lam}{best} | "
            f"{r['ssim']:.3f} | {r['psnr']:.1f} | {_fmt(r.get('residual'), '.4f')} | "
            f"{r.get('elongation', float('nan')):.2f} | "
            f"{r.get('support_ratio', float('nan')):.2f} | {r['seconds']:.1f} | {rate} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _figure(slices: dict, methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = sorted({c for c, _ in slices}, key=lambda c: list(dict.fromkeys(k for k, _ in slices)).index(c))
    cols = ["truth", *methods]
    fig, axes = plt.subplots(len(conds), len(cols), figsize=(1.6 * len(cols), 1.6 * len(conds)),
                             squeeze=False)
    for i, cond in enumerate(conds):
        truth = slices[(cond, "truth")]
        lo, hi = np.percentile(truth, [0.5, 99.8])
        for j, m in enumerate(cols):
            ax = axes[i, j]
            ax.axis("off")
            v = slices.get((cond, m))
            if v is None:
                continue
            ax.imshow(v[:, v.shape[1] // 2, :], cmap="gray", vmin=lo, vmax=hi)
            if i == 0:
                ax.set_title(m, fontsize=8)
            if j == 0:
                ax.text(-2, v.shape[0] / 2, cond, fontsize=6, ha="right", va="center", rotation=90)
    fig.suptitle("central xz slice (z vertical: the missing-wedge direction)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
