"""Filling in tilts: learned, linear and reprojected virtual frames, on held-apart
simulated nanocluster series and on the real needle; and whether filled-in series
help a reconstruction.

1. Simulated clusters (the training generator, seeds 1..N, never drawn in
   training: those start at 200000). For each gap ``g``, the measured frames
   are every ``g``-th of the ±90° series at 1°; each frame halfway between
   two kept ones is predicted (learned, linear; reprojection by CS-TV on the
   first few series) and scored against the clean (noise-free) frame and
   against the measured (noisy) one: SSIM and PSNR on frames normalised to
   0..1 by the series' 0.5th and 99.5th percentiles, over the whole frame and
   inside the specimen (clean frame above its background, dilated 3 px).
2. The real needle (77 tilts at 2°, aligned once by cross-correlation): keep
   every 4th (8° gaps) or 5th (10°) frame, predict all the left-out ones,
   score them against the measured frames (whole frame).
3. Reconstructions of the needle (binned 2×): SIRT and CS-TV of the sparse
   series and of the series filled in by each method, scored inside the
   needle against the same method's volume from all 77 frames.
4. Speed: ×4 of a 77-frame 512² series (the needle upsampled), learned and linear.

Usage::

    python benchmarks/interpolation.py --out docs/interpolation

About 30 minutes on 2 cores with ``--volume-methods sirt``; the CS-TV volumes
(nine, with ``lam="auto"``) add about 50 minutes on 1 thread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from tomoprior import __version__, io, metrics
from tomoprior.geometry import TiltGeometry
from tomoprior.interpolation import interpolate, plan_angles
from tomoprior.interpolation._model import load_model
from tomoprior.interpolation.training import specimen_mask
from tomoprior.phantoms._triplets import normalisation, simulate_cluster_series

ROOT = Path(__file__).resolve().parents[1]
NEEDLE = [ROOT.parent / "shared" / "data" / "needle_haadf" / "needle_haadf.tif",
          ROOT / "src" / "tomoprior" / "sample_data" / "needle_haadf" / "needle_haadf.tif"]
METHODS = ("learned", "linear", "reproject")


def _scores(pred: np.ndarray, ref: np.ndarray, mask=None) -> tuple[float, float]:
    kw = {"data_range": 1.0}
    return (metrics.ssim(pred, ref, mask=mask, **kw), metrics.psnr(pred, ref, mask=mask, **kw))


def simulated(model, seeds, gaps, reproject_series, reproject_gaps, log) -> list[dict]:
    rows = []
    for s_i, seed in enumerate(seeds):
        s = simulate_cluster_series(seed)
        g0 = TiltGeometry(s.angles, tilt_axis="vertical")
        for g in gaps:
            keep = np.arange(0, len(s.angles), g)
            geom = g0.subset(keep)
            plan = plan_angles(geom.angles, factor=2) if g % 2 == 0 else None
            if plan is None:
                continue
            targets = keep[:-1] + g // 2
            methods = ["learned", "linear"]
            if s_i < reproject_series and g in reproject_gaps:
                methods.append("reproject")
            for m in methods:
                t0 = time.perf_counter()
                kw = {"model": model} if m == "learned" else {}
                res = interpolate(s.noisy[keep], geom, plan=plan, method=m, device="cpu", **kw)
                secs = time.perf_counter() - t0
                virt = res.series[~res.measured]
                for j, ti in enumerate(targets):
                    clean, noisy = s.clean[ti], s.noisy[ti]
                    mask = specimen_mask(clean)
                    a = _scores(virt[j], clean)
                    b = _scores(virt[j], clean, mask)
                    c = _scores(virt[j], noisy)
                    rows.append({"seed": seed, "gap": g, "method": m, "ssim_clean": a[0],
                                 "psnr_clean": a[1], "ssim_clean_specimen": b[0],
                                 "psnr_clean_specimen": b[1], "ssim_measured": c[0],
                                 "psnr_measured": c[1], "seconds": secs / len(targets)})
            log(f"series {seed} ({s.info['size']} px, dose {s.info['dose']:.0f}) gap {g}° done")
    return rows


def _summary(rows, keys=("gap", "method")) -> list[dict]:
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for k, v in sorted(groups.items(), key=lambda kv: (kv[0][0], METHODS.index(kv[0][1]))):
        row = dict(zip(keys, k))
        row["n"] = len(v)
        for f in v[0]:
            if f not in keys and f not in ("seed", "frame") and isinstance(v[0][f], float):
                row[f] = float(np.mean([x[f] for x in v]))
        row["series"] = len({x.get("seed") for x in v})
        out.append(row)
    return out


def needle_data(log):
    from tomoprior.alignment import align_series, aligned_geometry

    path = next(p for p in NEEDLE if p.is_file())
    f = io.read(path)
    data = f.load().astype(np.float32)
    t0 = time.perf_counter()
    aligned, geom, _ = align_series(data, f.geometry, method="xcorr", binning=2)
    log(f"needle aligned in {time.perf_counter() - t0:.0f}s (axis {geom.tilt_axis:.2f}°)")
    return aligned.astype(np.float32), aligned_geometry(geom)


def needle_frames(model, data, geom, keeps, log, reproject=None) -> tuple[list[dict], dict]:
    lo, scale = normalisation(data)
    norm = (data - lo) / scale
    rows, filled = [], {}
    for every in keeps:
        keep = np.arange(0, data.shape[0], every)
        if keep[-1] != data.shape[0] - 1:
            keep = keep[keep <= data.shape[0] - 1]
        sub = geom.subset(keep)
        plan = plan_angles(sub.angles, factor=every)
        for m in METHODS:
            t0 = time.perf_counter()
            kw = {"model": model} if m == "learned" else {}
            if m == "reproject":
                kw = dict(reproject or {})
            res = interpolate(data[keep], sub, plan=plan, method=m, device="cpu", **kw)
            secs = time.perf_counter() - t0
            filled[(every, m)] = (res, keep)
            virt = (res.series[~res.measured] - lo) / scale
            truth_idx = [int(np.argmin(np.abs(geom.angles - a)))
                         for a in res.geometry.angles[~res.measured]]
            for j, ti in enumerate(truth_idx):
                s_, p_ = _scores(virt[j], norm[ti])
                rows.append({"every": every, "gap": float(abs(sub.angles[1] - sub.angles[0])),
                             "method": m, "frame": ti, "ssim_measured": s_, "psnr_measured": p_,
                             "seconds": secs})
            log(f"needle every {every}: {m} in {secs:.1f}s")
    return rows, filled


VOLUME_METHODS = {"sirt": {"iterations": 100}, "cstv": {"iterations": 300}}


def needle_volumes(data, geom, filled, keeps, log,
                   methods=("sirt", "cstv")) -> tuple[list[dict], dict]:
    """Rows per (method, kept, input), and per method its reference volume's settings."""
    from tomoprior.engine import run

    out, refs = [], {}
    for recon in methods:
        kw = VOLUME_METHODS[recon]
        def volume(series, g, recon=recon, kw=kw):
            """The last step's volume and what it reports (CS-TV: the lambda it used)."""
            t0, last = time.perf_counter(), None
            for last in run(recon, series, g, bin=2, device="cpu", **kw):
                pass
            info = {"seconds": round(time.perf_counter() - t0, 1)}
            if "lam" in last.extras:
                info["lam"] = float(last.extras["lam"])
            return last.volume, info

        ref, ref_info = volume(data, geom)
        log(f"{recon} reference ({data.shape[0]} tilts): {ref_info}")
        mask = ndimage.binary_dilation(ref > np.percentile(ref, 70), iterations=2)
        for every in keeps:
            res, keep = filled[(every, "linear")]
            inputs = [("sparse", data[keep], geom.subset(keep))]
            inputs += [(f"filled ({m})", filled[(every, m)][0].series,
                        filled[(every, m)][0].geometry) for m in METHODS]
            for name, series, g in inputs:
                v, info = volume(series, g)
                sc = metrics.compare(v, ref, mask=mask, fit=True)
                out.append({"recon": recon, "every": every, "input": name,
                            "n_tilts": int(series.shape[0]), "ssim": sc["ssim"],
                            "psnr": sc["psnr"], **info})
                log(f"{recon} every {every}, {name}: SSIM {sc['ssim']:.4f}, "
                    f"PSNR {sc['psnr']:.2f}, {info}")
        refs[recon] = {"n_tilts": int(data.shape[0]), **kw, **ref_info}
    return out, refs


def speed(model, data, geom, log) -> dict:
    big = ndimage.zoom(data[:, :, :], (1, 2, 2), order=1).astype(np.float32)  # 77 x 512 x 512
    out = {"shape": list(big.shape), "factor": 4, "threads": torch.get_num_threads()}
    for m in ("learned", "linear"):
        kw = {"model": model} if m == "learned" else {}
        best = None
        for _ in range(2):
            t0 = time.perf_counter()
            res = interpolate(big, geom, factor=4, method=m, device="cpu", **kw)
            dt_ = time.perf_counter() - t0
            best = dt_ if best is None else min(best, dt_)
        out[m] = round(best, 2)
        out["frames_out"] = int(res.series.shape[0])
        log(f"x4 of {big.shape} with {m}: {best:.1f}s")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="interpolation model (default: shipped)")
    ap.add_argument("--series", type=int, default=12, help="simulated held-apart series")
    ap.add_argument("--gaps", type=int, nargs="+", default=[4, 8, 10, 16, 20])
    ap.add_argument("--reproject-series", type=int, default=3)
    ap.add_argument("--reproject-gaps", type=int, nargs="+", default=[8, 10])
    ap.add_argument("--keep-every", type=int, nargs="+", default=[4, 5])
    ap.add_argument("--needle-reproject", default="cstv", metavar="METHOD",
                    help="reconstruction behind the needle's reprojected frames (full size)")
    ap.add_argument("--needle-reproject-iterations", type=int, default=None)
    ap.add_argument("--volume-methods", nargs="+", default=["sirt", "cstv"],
                    choices=list(VOLUME_METHODS))
    ap.add_argument("--skip", nargs="*", default=[], choices=["simulated", "needle", "volumes",
                                                               "speed"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", flush=True)

    model = load_model(args.model)
    result: dict = {"model": model.name, "model_version": model.card.get("package_version"),
                    "command": " ".join(["python", *sys.argv]), "version": __version__,
                    "date": dt.date.today().isoformat(), "torch": torch.__version__,
                    "machine": platform.machine(), "threads": torch.get_num_threads()}
    if "simulated" not in args.skip:
        rows = simulated(model, range(1, args.series + 1), args.gaps, args.reproject_series,
                         args.reproject_gaps, log)
        result["simulated"] = _summary(rows)
        result["simulated_reproject_subset"] = _summary(
            [r for r in rows if r["seed"] <= args.reproject_series and r["gap"] in
             args.reproject_gaps])
    if not {"needle", "volumes", "speed"} <= set(args.skip):
        data, geom = needle_data(log)
    if "needle" not in args.skip:
        rp = {"recon_method": args.needle_reproject}
        if args.needle_reproject_iterations:
            rp["iterations"] = args.needle_reproject_iterations
        result["needle_reproject"] = rp
        rows, filled = needle_frames(model, data, geom, args.keep_every, log, rp)
        result["needle"] = _summary(rows, ("every", "method"))
        if "volumes" not in args.skip:
            result["needle_volumes"], result["needle_volume_refs"] = needle_volumes(
                data, geom, filled, args.keep_every, log, args.volume_methods)
    if "speed" not in args.skip:
        result["speed"] = speed(model, data, geom, log)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    table = markdown(result)
    print(table)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(table)
    return 0


def markdown(r: dict) -> str:
    lines = [
        "# Filling in tilts: learned, linear and reprojected frames",
        "",
        f"Command: `{r['command']}`  ",
        f"Date: {r['date']}, napari-tomoprior {r['version']}, torch {r['torch']}, "
        f"{r['machine']}, {r['threads']} threads; model `{r['model']}` "
        f"(trained with {r['model_version']}).",
        "",
    ]
    if "simulated" in r:
        lines += [
            "## Simulated nanocluster series (held apart: seeds never used in training)",
            "",
            "Every g-th frame of a ±90° series at 1° is kept; the frame halfway between two kept "
            "ones is predicted. SSIM/PSNR against the clean frame (whole frame, and inside the "
            "specimen) and against the measured, noisy frame; frames normalised to 0..1.",
            "",
            "| gap | method | frames | SSIM clean | SSIM clean, specimen | PSNR clean | "
            "SSIM measured | PSNR measured |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for x in r["simulated"]:
            lines.append(f"| {x['gap']}° | {x['method']} | {x['n']} | {x['ssim_clean']:.4f} | "
                         f"{x['ssim_clean_specimen']:.4f} | {x['psnr_clean']:.2f} | "
                         f"{x['ssim_measured']:.4f} | {x['psnr_measured']:.2f} |")
        if r.get("simulated_reproject_subset"):
            lines += ["", "Same metrics on the subset where reprojection (CS-TV) was run:", "",
                      "| gap | method | frames | SSIM clean | SSIM clean, specimen | PSNR clean |",
                      "|---|---|---|---|---|---|"]
            for x in r["simulated_reproject_subset"]:
                lines.append(f"| {x['gap']}° | {x['method']} | {x['n']} | {x['ssim_clean']:.4f} "
                             f"| {x['ssim_clean_specimen']:.4f} | {x['psnr_clean']:.2f} |")
        lines.append("")
    if "needle" in r:
        lines += [
            "## Real needle (77 measured frames at 2°, aligned by cross-correlation)",
            "",
            "Every 4th or 5th frame is kept; every left-out frame is predicted and scored against "
            "the measured one (normalised to 0..1 by the series' percentiles; whole frame). "
            f"Reprojection: {r.get('needle_reproject', {})}.",
            "",
            "| kept | gap | method | frames | SSIM | PSNR | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in r["needle"]:
            lines.append(f"| every {x['every']} | {x['gap']:g}° | {x['method']} | {x['n']} | "
                         f"{x['ssim_measured']:.4f} | {x['psnr_measured']:.2f} | "
                         f"{x['seconds']:.1f} |")
        lines.append("")
    if "needle_volumes" in r:
        lam = any("lam" in x for x in r["needle_volumes"])
        lines += [
            "## Do filled-in series help a reconstruction? (needle, binned 2×)",
            "",
            "Each reconstruction is scored inside the needle (the reference's top 30 % of voxels, "
            "dilated 2 px) against the same method's volume from all 77 measured frames, after an "
            "affine intensity match.",
            "",
            "| reconstruction | kept | input | frames | SSIM | PSNR |" + (" λ |" if lam else ""),
            "|---|---|---|---|---|---|" + ("---|" if lam else ""),
        ]
        for x in r["needle_volumes"]:
            lines.append(f"| {x['recon']} | every {x['every']} | {x['input']} | {x['n_tilts']} | "
                         f"{x['ssim']:.4f} | {x['psnr']:.2f} |"
                         + (f" {x['lam']:g} |" if "lam" in x else " |" if lam else ""))
        if lam:
            lines += ["", "λ: the TV weight that CS-TV's `lam=\"auto\"` chose for that volume "
                      "(held-out detector pixels)."]
        for k, v in r.get("needle_volume_refs", {}).items():
            lines.append(f"Reference {k}: {v['n_tilts']} frames, {v['iterations']} iterations"
                         + (f", λ {v['lam']:g}" if "lam" in v else "") + ".")
        lines.append("")
    if "speed" in r:
        s = r["speed"]
        lines += ["## Speed", "",
                  f"×4 of a {s['shape'][0]}-frame {s['shape'][1]}×{s['shape'][2]} series "
                  f"({s['frames_out']} frames out), {s['threads']} threads, best of two: learned "
                  f"{s['learned']:.1f} s, linear {s['linear']:.1f} s.", ""]
    lines.append(f"Total benchmark time: {r['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
