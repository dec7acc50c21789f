"""INR benchmark: speed and quality against quantEM, and pose recovery on misaligned data.

Run from the repository root::

    .venv/bin/python benchmarks/inr.py --quick                       # smoke run (a few minutes)
    .venv/bin/python benchmarks/inr.py --out docs/benchmarks/inr.md  # full run (1 to 1.5 h on 2 idle cores)

Part A, speed and quality against quantEM (project issue 6). A 32³
``pt_haadf`` phantom (Pt particles on a porous carbon grain: the specimen
the INR is meant for, with sharp particles and a graded support, unlike the
smooth ``blobs``), rendered at 64³ and simulated with ``supersample=2``
(projected on the fine grid by ray sampling and binned: no inverse crime) at
26 tilts from -60° to +60° (step 4.8°), noise-free, perfectly aligned. The
same series is reconstructed

- by quantEM 0.1.10's INR (``TomographyLiteINR``: a 4 × 256 H-SIREN,
  1024 rays a batch, 32 samples a ray, Adam at its default 1e-4, no
  scheduler, pose learning off because the data are aligned), run through
  ``benchmarks/_quantem_inr.py`` in the benchmark's own venv for
  ``--epochs`` epochs of 26 × 32 × 32 = 26 624 rays, the volume saved after
  every epoch (not timed);
- by this project's INR, ``tomoprior.run("inr", series, geometry,
  iterations=..., field=...)``: the default ``grid`` field (multiresolution
  feature grid) with the method's defaults for ``--iterations`` (2000), and
  ``siren`` (3 × 128) with ``lr=1e-3`` (the method's default 1e-2 is tuned
  for the grid; a SIREN does not learn with it) for as many rays as quantEM
  fits in its epochs; the volume is evaluated every ``--every`` iterations;
  the time is the run's own compute time (``Reconstruction.seconds``: data
  preparation, the validation loss and the volume at each step included).

Every volume is scored against the ground truth (the 64³ phantom binned to
32³) inside the specimen mask: SSIM after a least-squares intensity fit
(``tomoprior.metrics.ssim(..., mask=specimen_mask, fit=True)``) and the
relative data residual ``min_a ||a A x - y|| / ||y||`` with this project's
projector (the scale ``a`` absorbs quantEM's normalisation of the data by its
95 % quantile). quantEM's volume, axes ``(x, z, y)``, is mapped into
``(z, y, x)`` by the best of the 48 axis permutations/flips (correlation with
the truth), reported. The table gives rays/s (rays fitted per second of
compute, each ray one detector pixel), the final SSIM and residual, and the
time each of this project's runs needs to reach quantEM's final SSIM and
residual.

Part B, pose recovery (project issue 6). A 48³ ``pt_haadf`` phantom
(supersample 2), tilts -60°..60° every 4°, simulated with a smooth random
drift of up to ±3 px (``shifts=3.0``) and a 2° tilt-axis error
(``axis_error=2.0``), noise-free by default. Three INR runs: with pose
learning from the *nominal* geometry (axis 0°, no shifts), with the *true*
geometry and no pose learning (perfectly aligned), and with the nominal
geometry and no pose learning. The learned geometry (the last Step's
``Step.geometry``: learned poses folded into a raw-frame
``TiltGeometry``) is compared with the true one: the tilt axis directly, and
the per-tilt shift corrections after subtracting each geometry's shift at the
reference tilt (the tilt nearest 0°, held fixed by the INR, so only shifts
relative to it are defined; the simulated drift is zero there anyway). The
shift error is also given up to a rigid translation ``(tx, ty, tz)`` of the
volume, which moves the projection at tilt ``theta`` by ``tx`` along the axis
and ``ty cos(theta) + tz sin(theta)`` across it: the data cannot tell it from
a moved specimen, so it is a gauge freedom of joint reconstruction and
alignment. When the two numbers differ much, the other tilts agree with each
other but the reference tilt itself is misregistered against them (the
volume settles where the unaligned images put it during the warm-up, and
the one pinned tilt pulls it back only slowly); the residual of the reference
tilt after the rigid fit is in the JSON (``ref_residual``).

``--pose-params`` runs a sweep (one pose-learning run per value), by
default the method's defaults only. (The default ``lr_pose=0.05`` comes from
such a sweep: the axis learns at ``0.2 * lr_pose`` degrees a step, and at
the earlier default 5e-3 it travelled only 1.4° of the 2° error in 2000
iterations: axis error -0.62°, shift RMS 0.84 px, SSIM 0.72, against
+0.03°, 0.53 px and 0.86 with 0.05.)

Timings are only meaningful on an otherwise idle machine; the report records
the load average before and after. ``--threads`` (default 2) sets torch's
thread count for both projects; ``OMP_NUM_THREADS`` is left alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from projector import (  # noqa: E402
    apply_orientation,
    base_machine_info,
    best_orientation,
    describe_orientation,
    loadavg,
    report_header,
)

QUANTEM_PACKAGES = ("torch==2.13.0", "torchvision==0.28.0", "quantem==0.1.10")
ANCHOR_QUANTEM_S_PER_EPOCH = 19.0  # project issue 6: 26.6 k rays, 32^3, 26 tilts, this machine
GOAL_RATIO = 10.0
TARGETS = {"shift_rms": 0.5, "axis": 0.3}
# part B's pose-learning runs: the method's defaults
DEFAULT_POSE_SETS = ("",)


# -- helpers ------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_info() -> dict[str, str]:
    return {**base_machine_info(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset")}


def parse_params(text: str) -> dict:
    """``"lr_pose=0.01,pose_start=0.1"`` -> dict (values parsed by the method registry later)."""
    out = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep:
            raise SystemExit(f"bad parameter {part!r}: expected name=value")
        out[k.strip()] = v.strip()
    return out


def fmt_params(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "defaults"


def fmt_s(v) -> str:
    return "–" if v is None else f"{v:.1f}"


class Scorer:
    """SSIM (masked, fitted) and the scale-fitted relative data residual of volumes (z, y, x)."""

    def __init__(self, series, geometry, truth, mask):
        from tomoprior.engine import prepare
        from tomoprior.operators import make_projector

        self.prep = prepare(series, geometry)
        z, y, u = self.prep.volume_shape
        self.A = make_projector(self.prep.geometry.angles, (z, y, u), u, backend="sparse", device="cpu")
        self.y = torch.from_numpy(np.ascontiguousarray(self.prep.series, np.float32)).double()
        self.truth, self.mask = truth, mask

    def ssim(self, vol) -> float:
        from tomoprior import metrics

        return float(metrics.ssim(vol, self.truth, mask=self.mask, fit=True))

    def residual(self, vol) -> float:
        from tomoprior.transforms import volume_to_canonical

        vc = volume_to_canonical(np.asarray(vol, np.float32), self.prep.geometry)
        with torch.no_grad():
            ax = self.A(torch.from_numpy(np.ascontiguousarray(vc))).double()
        den = float(ax.ravel() @ ax.ravel())
        a = float(ax.ravel() @ self.y.ravel()) / den if den > 0 else 0.0
        return float(torch.linalg.vector_norm(a * ax - self.y) / torch.linalg.vector_norm(self.y))

    def score(self, vol) -> dict:
        return {"ssim": self.ssim(vol), "residual": self.residual(vol)}


def first_reaching(curve: list[dict], key: str, target: float, higher: bool) -> float | None:
    """Seconds at the first curve point whose ``key`` reaches ``target``."""
    for c in curve:
        v = c[key]
        if (v >= target) if higher else (v <= target):
            return c["seconds"]
    return None


def value_at(curve: list[dict], key: str, seconds: float) -> float | None:
    """``key`` at the last curve point within ``seconds``."""
    best = None
    for c in curve:
        if c["seconds"] <= seconds:
            best = c[key]
    return best


# -- quantEM ----------------------------------------------------------------------------------------
def ensure_quantem_venv(venv: Path, install: bool) -> Path:
    """The python of the benchmark venv with quantem; install it there if missing.

    The CPU torch goes first and torchvision without dependencies, otherwise
    pip would replace the CPU torch by a CUDA build.
    """
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import quantem.tomography.tomography_lite"],
                                      capture_output=True).returncode == 0:
        return py
    if not install:
        raise RuntimeError(f"{venv} has no quantem (run without --no-install to install it)")
    if not py.exists():
        base = shutil.which("python3") or sys.executable
        log(f"creating {venv} with {base}")
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    log(f"installing {', '.join(QUANTEM_PACKAGES)} into {venv}")
    subprocess.run([*pip, QUANTEM_PACKAGES[0]], check=True)
    subprocess.run([*pip, "--no-deps", QUANTEM_PACKAGES[1]], check=True)
    subprocess.run([*pip, QUANTEM_PACKAGES[2]], check=True)
    tv = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"],
                        capture_output=True, text=True).stdout.strip()
    if "+cpu" not in tv and not tv.startswith("2.13.0"):
        log(f"WARNING: torch in {venv} is {tv}, not the CPU build 2.13.0")
    return py


def run_quantem(py: Path, series: np.ndarray, angles: np.ndarray, epochs: int, threads: int,
                seed: int, workdir: Path) -> dict:
    s, a = workdir / "series.npy", workdir / "angles.npy"
    np.save(s, series.astype(np.float32))
    np.save(a, angles.astype(np.float32))
    out, js = workdir / "quantem_volume.npy", workdir / "quantem.json"
    cmd = [str(py), str(ROOT / "benchmarks" / "_quantem_inr.py"), "--series", str(s), "--angles",
           str(a), "--epochs", str(epochs), "--threads", str(threads), "--seed", str(seed),
           "--snapshots", ",".join(str(e) for e in range(1, epochs + 1)),
           "--out", str(out), "--json", str(js)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines = []
    for line in proc.stderr:  # per-epoch progress
        err_lines.append(line)
        if line.startswith("epoch"):
            log("  quantEM " + line.rstrip())
    proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"quantEM helper failed ({proc.returncode}):\n{''.join(err_lines)[-4000:]}")
    info = json.loads(js.read_text())
    info["subprocess_seconds"] = wall
    info["volumes"] = {int(k): np.load(v) for k, v in info["snapshots"].items()}
    return info


# -- this project's INR ------------------------------------------------------------------------------
def run_ours(series, geometry, params: dict, iterations: int, every: int, seed: int,
             scorer: Scorer | None, label: str) -> dict:
    """Run the INR; a curve of (seconds, iteration, rays, score) at every yielded step."""
    from tomoprior.engine import run

    rec = run("inr", series, geometry, iterations=iterations, every=every, device="cpu", seed=seed,
              **params)
    batch = int(rec.params["batch_rays"])
    curve, last = [], None
    with rec:
        for st in rec:
            last = st
            row = {"seconds": rec.seconds, "iteration": st.iteration, "rays": st.iteration * batch,
                   "loss": float(st.loss), "val_loss": st.heldout}
            if scorer is not None:
                row.update(scorer.score(st.volume))
            curve.append(row)
            log(f"  {label}: it {st.iteration:5d}  {rec.seconds:7.1f} s  "
                f"{row['rays'] / max(rec.seconds, 1e-9):8.0f} rays/s"
                + (f"  SSIM {row['ssim']:.4f}  residual {row['residual']:.4f}" if scorer else ""))
    return {"params": dict(rec.params), "iterations": iterations, "batch_rays": batch,
            "seconds": rec.seconds, "rays": iterations * batch,
            "rays_per_s": iterations * batch / max(rec.seconds, 1e-9),
            "samples": last.extras.get("samples") if last else None,
            "curve": curve, "last": last}


# -- part A -----------------------------------------------------------------------------------------
def part_speed(args) -> dict:
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom(args.phantom, args.size, seed=args.seed, supersample=2)
    angles = np.linspace(-args.range, args.range, args.tilts)
    noise = None if args.noise == "none" else args.noise
    series, geom = simulate(ph, angles, noise=noise, dose=args.dose if noise == "poisson" else None,
                            seed=args.seed, device="cpu")
    truth = ph.coarse()
    scorer = Scorer(series, geom, truth.volume, truth.specimen_mask)
    res: dict = {"phantom": args.phantom, "size": args.size, "tilts": int(angles.size),
                 "range": args.range, "step": float(angles[1] - angles[0]), "noise": args.noise,
                 "series_shape": list(series.shape), "load_before": loadavg()}

    if not args.skip_quantem:
        venv = Path(args.bench_venv)
        py = ensure_quantem_venv(venv if venv.is_absolute() else ROOT / venv, not args.no_install)
        log(f"quantEM INR: {args.epochs} epochs ({py})")
        with tempfile.TemporaryDirectory(prefix="tomoprior-inr-bench-") as tmp:
            q = run_quantem(py, series, angles, args.epochs, args.threads, args.seed, Path(tmp))
        final = q["volumes"][max(q["volumes"])]
        cands = best_orientation(final, truth.volume)
        corr, perm, flips = cands[0]
        q["orientation"] = describe_orientation(perm, flips)
        q["orientation_corr"] = corr
        q["orientation_runner_up"] = (describe_orientation(*cands[1][1:]), cands[1][0])
        curve, t = [], 0.0
        for e in sorted(q["volumes"]):
            t += q["epoch_seconds"][e - 1]
            row = {"seconds": t, "epoch": e, "rays": e * q["rays_per_epoch"], "loss": q["losses"][e - 1]}
            row.update(scorer.score(apply_orientation(q["volumes"][e], perm, flips)))
            curve.append(row)
            log(f"  quantEM epoch {e}: {t:.1f} s  SSIM {row['ssim']:.4f}  residual {row['residual']:.4f}")
        q["curve"] = curve
        del q["volumes"]
        res["quantem"] = q
        res["load_after_quantem"] = loadavg()

    ours = {}
    q_rays = args.epochs * series.shape[0] * max(series.shape) ** 2  # quantEM's rays in all epochs
    for name, params in args.configs:
        params = dict(params)
        its = params.pop("iterations", None)
        if its is None:
            its = args.iterations
        elif its == "match":  # as many rays as quantEM fits in its epochs
            from tomoprior.algorithms import get_method

            batch = int(get_method("inr").resolve(params)["batch_rays"])
            its = max(1, round(q_rays / batch))
        its = int(its)
        every = args.every if its == args.iterations else max(1, its // 20)
        log(f"this project's INR '{name}' ({fmt_params(params)}): {its} iterations")
        r = run_ours(series, geom, params, its, every, args.seed, scorer, name)
        r.pop("last")
        r["params_given"] = {k: v for k, v in params.items() if k != "field"}
        r["field"] = params["field"]
        ours[name] = r
    res["ours"] = ours
    res["load_after"] = loadavg()
    return res


def speed_table(r: dict) -> str:
    q = r.get("quantem")
    out = [
        f"`{r['phantom']}` {r['size']}³ (rendered {2 * r['size']}³, `supersample=2`), {r['tilts']} tilts "
        f"{-r['range']:g}°..{r['range']:g}° (step {r['step']:.1f}°), noise: {r['noise']}, aligned. "
        "SSIM inside the specimen mask after a least-squares intensity fit; residual = "
        "min_a ‖a·Ax − y‖/‖y‖ with this project's projector.",
        "",
        "| run | samples/ray | rays fitted | seconds | rays/s | × quantEM rays/s | SSIM | residual "
        "| s to quantEM's SSIM | s to quantEM's residual | SSIM at quantEM's time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    q_rate = q["rays_per_s"] if q else None
    if q:
        qc = q["curve"][-1]
        out.append(
            f"| quantEM 0.1.10, H-SIREN 4×256, {q['epochs']} epochs | {q['samples_per_ray']} | "
            f"{q['epochs'] * q['rays_per_epoch']:,} | {q['seconds']:.1f} | {q_rate:,.0f} | 1.0 | "
            f"{qc['ssim']:.4f} | {qc['residual']:.4f} | "
            f"{fmt_s(first_reaching(q['curve'], 'ssim', qc['ssim'], True))} | "
            f"{fmt_s(first_reaching(q['curve'], 'residual', qc['residual'], False))} | {qc['ssim']:.4f} |")
    for name, o in r["ours"].items():
        c = o["curve"][-1]
        ratio = f"{o['rays_per_s'] / q_rate:.1f}" if q_rate else "–"
        t_ssim = first_reaching(o["curve"], "ssim", q["curve"][-1]["ssim"], True) if q else None
        t_res = first_reaching(o["curve"], "residual", q["curve"][-1]["residual"], False) if q else None
        at_q = value_at(o["curve"], "ssim", q["seconds"]) if q else None
        out.append(
            f"| this project, `{o['field']}` ({fmt_params(o['params_given'])}), {o['iterations']} it × "
            f"{o['batch_rays']} rays | {o['samples']} | {o['rays']:,} | {o['seconds']:.1f} | "
            f"{o['rays_per_s']:,.0f} | {ratio} | {c['ssim']:.4f} | {c['residual']:.4f} | "
            f"{fmt_s(t_ssim) if q else '–'} | {fmt_s(t_res) if q else '–'} | "
            f"{'–' if at_q is None else f'{at_q:.4f}'} |")
    out.append("")
    if q:
        per_epoch = float(np.mean(q["epoch_seconds"]))
        out.append(f"- quantEM: {per_epoch:.1f} s per epoch of {q['rays_per_epoch']:,} rays "
                   f"(issue 6 measured about {ANCHOR_QUANTEM_S_PER_EPOCH:.0f} s on this machine when "
                   f"idle); timed around each `reconstruct(num_iter=1)` call; volume evaluation "
                   f"not timed. Call: `{q['call']}`.")
        out.append(f"- quantEM's volume (axes x, z, y) mapped into (z, y, x) by `{q['orientation']}` "
                   f"(best of 48 permutations/flips, correlation {q['orientation_corr']:.4f}; "
                   f"runner-up `{q['orientation_runner_up'][0]}` {q['orientation_runner_up'][1]:.4f}).")
        q_ssim = q["curve"][-1]["ssim"]
        bits, met = [], []
        for name, o in r["ours"].items():
            ratio, ss = o["rays_per_s"] / q_rate, o["curve"][-1]["ssim"]
            better = ss >= q_ssim
            bits.append(f"`{name}` {ratio:.1f}× (SSIM {ss:.3f} vs {q_ssim:.3f}: "
                        f"{'equal or better' if better else 'worse'})")
            if better and ratio >= GOAL_RATIO:
                met.append(f"`{name}`")
        out.append("- **rays/s, this project / quantEM: " + "; ".join(bits) + f"**. Goal ≥ {GOAL_RATIO:.0f}× "
                   "at equal or better quality: " + (f"met by {', '.join(met)}" if met else "not met") + ".")
        out.append("- quantEM SSIM by epoch: " + ", ".join(
            f"{c['epoch']}: {c['ssim']:.3f} ({c['seconds']:.0f} s)" for c in q["curve"]))
    for name, o in r["ours"].items():
        pts = o["curve"]
        step = max(1, len(pts) // 8)
        out.append(f"- `{name}` SSIM by iteration: " + ", ".join(
            f"{c['iteration']}: {c['ssim']:.3f} ({c['seconds']:.0f} s)" for c in pts[step - 1::step]))
    out.append("- this project's seconds are the run's own compute time (`Reconstruction.seconds`), "
               "including data preparation and the validation loss and volume at every yielded "
               "step; rays/s = iterations × rays per step / seconds. Its INR holds out 5 % of the "
               "pixels for the validation loss (quantEM fits all).")
    out.append(f"- load average (1/5/15 min): before {r['load_before']}"
               + (f", after quantEM {r['load_after_quantem']}" if q else "")
               + f", at the end {r['load_after']}.")
    return "\n".join(out)


# -- part B -----------------------------------------------------------------------------------------
def pose_errors(learned: dict, true_geom, angles: np.ndarray) -> dict:
    """Errors of a learned raw-frame geometry against the true one (see the module notes).

    ``shift_rms``: RMS over the non-reference tilts of the shift error relative to the reference
    tilt. ``shift_rms_rigid``: RMS over all tilts after removing the best rigid translation
    ``(tx, ty, tz)`` of the volume, which moves the projection at tilt ``theta`` by ``tx`` along
    the axis and ``ty cos(theta) + tz sin(theta)`` across it (a gauge freedom of joint
    reconstruction and alignment: the data cannot tell it from a moved specimen).
    """
    ref = int(np.argmin(np.abs(angles)))
    sl = np.asarray(learned["shifts"], np.float64)
    st = np.asarray(true_geom.shifts, np.float64)
    d = (sl - sl[ref]) - (st - st[ref])
    keep = np.arange(len(angles)) != ref
    rms = float(np.sqrt(np.mean(np.sum(d[keep] ** 2, axis=1))))
    # for an axis at phi from +x towards +y, (dy, dx) along it is (sin phi, cos phi)
    phi = math.radians(float(true_geom.tilt_axis))

    def split(e):
        return e[:, 0] * math.cos(phi) - e[:, 1] * math.sin(phi), e[:, 0] * math.sin(phi) + e[:, 1] * math.cos(phi)

    across_r, along_r = split(d)
    across, along = split(sl - st)  # absolute errors: a moved volume moves every tilt, the reference too
    th = np.radians(angles)
    basis = np.stack((np.cos(th), np.sin(th)), axis=1)
    (ty, tz), *_ = np.linalg.lstsq(basis, across, rcond=None)
    tx = float(np.mean(along))
    r_across, r_along = across - basis @ np.array([ty, tz]), along - tx
    return {
        "shift_rms": rms,
        "shift_rms_across": float(np.sqrt(np.mean(across_r[keep] ** 2))),
        "shift_rms_along": float(np.sqrt(np.mean(along_r[keep] ** 2))),
        "shift_max": float(np.max(np.hypot(d[keep, 0], d[keep, 1]))),
        "shift_rms_rigid": float(np.sqrt(np.mean(r_across ** 2 + r_along ** 2))),
        "rigid_translation": [tx, float(ty), float(tz)],
        "ref_residual": float(np.hypot(r_across[ref], r_along[ref])),
        "axis_learned": float(learned["tilt_axis"]),
        "axis_true": float(true_geom.tilt_axis),
        "axis_error": float(learned["tilt_axis"]) - float(true_geom.tilt_axis),
        "true_shift_rms": float(np.sqrt(np.mean(np.sum((st - st[ref])[keep] ** 2, axis=1)))),
    }


def part_pose(args) -> dict:
    from tomoprior.geometry import angles_from_range
    from tomoprior.phantoms import make_phantom, simulate

    ph = make_phantom("pt_haadf", args.pose_size, seed=args.seed, supersample=2)
    angles = angles_from_range(-args.pose_range, args.pose_range, args.pose_step)
    noise = None if args.pose_noise == "none" else args.pose_noise
    series, true_geom = simulate(ph, angles, shifts=args.pose_shift, axis_error=args.pose_axis_error,
                                 noise=noise, dose=args.dose if noise == "poisson" else None,
                                 seed=args.seed, device="cpu")
    nominal = true_geom.replace(tilt_axis=true_geom.extra["simulation"]["nominal_tilt_axis"],
                                shifts=np.zeros_like(true_geom.shifts))
    truth = ph.coarse()
    from tomoprior import metrics

    def ssim(v):
        return float(metrics.ssim(v, truth.volume, mask=truth.specimen_mask, fit=True))

    res: dict = {"size": args.pose_size, "tilts": int(angles.size), "range": args.pose_range,
                 "step": args.pose_step, "shift_amplitude": args.pose_shift,
                 "axis_error": args.pose_axis_error, "noise": args.pose_noise,
                 "iterations": args.pose_iterations, "load_before": loadavg(), "runs": []}
    base = dict(args.pose_base)
    every = max(1, args.pose_iterations // 4)
    todo = []
    for p in args.pose_sets:
        todo.append(("learned", nominal, {**base, **p, "learn_pose": "true"}))
    if not args.skip_pose_references:
        todo.append(("aligned (true geometry)", true_geom, {**base, "learn_pose": "false"}))
        todo.append(("unaligned (nominal, no pose learning)", nominal, {**base, "learn_pose": "false"}))
    for label, g, params in todo:
        log(f"pose part, {label} ({fmt_params(params)}): {args.pose_iterations} iterations")
        r = run_ours(series, g, params, args.pose_iterations, every, args.seed, None, label)
        last = r.pop("last")
        row = {"label": label, "params": params, "seconds": r["seconds"], "rays_per_s": r["rays_per_s"],
               "ssim": ssim(last.volume), "curve": r["curve"]}
        if last.geometry is not None:
            row.update(pose_errors(last.geometry, true_geom, angles))
            log(f"    shift RMS {row['shift_rms']:.3f} px (rigid-gauge {row['shift_rms_rigid']:.3f}),"
                f" axis {row['axis_learned']:.3f}° (true {row['axis_true']:.3f}°), SSIM {row['ssim']:.4f}")
        else:
            log(f"    SSIM {row['ssim']:.4f}")
        res["runs"].append(row)
    res["load_after"] = loadavg()
    return res


def pose_table(r: dict) -> str:
    out = [
        f"`pt_haadf` {r['size']}³ (supersample 2), {r['tilts']} tilts {-r['range']:g}°..{r['range']:g}° "
        f"step {r['step']:g}°, smooth random drift up to ±{r['shift_amplitude']:g} px, tilt-axis error "
        f"{r['axis_error']:g}°, noise: {r['noise']}; {r['iterations']} iterations per run. Targets: "
        f"shift RMS ≤ {TARGETS['shift_rms']} px, axis within {TARGETS['axis']}°.",
        "",
        "| run | parameters | shift RMS px | across / along axis px | max px "
        "| shift RMS px up to a volume translation (tx, ty, tz) | tilt axis ° (true) | axis error ° "
        "| SSIM | seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in r["runs"]:
        p = {k: v for k, v in row["params"].items() if k != "learn_pose"}
        if "shift_rms" in row:
            ok_s = "✓" if row["shift_rms"] <= TARGETS["shift_rms"] else "✗"
            ok_a = "✓" if abs(row["axis_error"]) <= TARGETS["axis"] else "✗"
            out.append(
                f"| {row['label']} | {fmt_params(p)} | {row['shift_rms']:.3f} {ok_s} | "
                f"{row['shift_rms_across']:.3f} / {row['shift_rms_along']:.3f} | {row['shift_max']:.2f} | "
                f"{row['shift_rms_rigid']:.3f} ({', '.join(f'{t:+.2f}' for t in row['rigid_translation'])}; "
                f"reference tilt off by {row['ref_residual']:.2f}) | "
                f"{row['axis_learned']:.3f} ({row['axis_true']:.3f}) | {row['axis_error']:+.3f} {ok_a} | "
                f"{row['ssim']:.4f} | {row['seconds']:.0f} |")
        else:
            out.append(f"| {row['label']} | {fmt_params(p)} | – | – | – | – | – | – | {row['ssim']:.4f} | "
                       f"{row['seconds']:.0f} |")
    true_rms = next((row["true_shift_rms"] for row in r["runs"] if "true_shift_rms" in row), None)
    out.append("")
    if true_rms is not None:
        out.append(f"- RMS of the true shifts relative to the reference tilt (the error of not aligning "
                   f"at all): {true_rms:.3f} px; the nominal axis is off by {r['axis_error']:g}°.")
    out.append("- shift RMS: raw-frame shift corrections of the non-reference tilts, each relative to "
               "the reference tilt (nearest 0°, held fixed by the INR), learned vs true. 'Up to a volume "
               "translation': RMS over all tilts after removing the best rigid translation (tx, ty, tz) "
               "of the volume (tx along the axis; ty cos θ + tz sin θ across it), which the data cannot "
               "distinguish from a moved specimen; a large gap between the two means the reference tilt "
               "itself is misregistered against the others.")
    out.append(f"- load average (1/5/15 min): before {r['load_before']}, at the end {r['load_after']}.")
    return "\n".join(out)


METHOD_NOTES = """## How it is measured

**quantEM** runs in the benchmark's own venv (`.bench-venv`, git-ignored), never mixed with the
project's; `benchmarks/inr.py` fills it when quantem is missing (`--no-install` turns that off):

```bash
.bench-venv/bin/pip install torch==2.13.0                 # the CPU build, first
.bench-venv/bin/pip install --no-deps torchvision==0.28.0 # without --no-deps pip pulls a CUDA torch
.bench-venv/bin/pip install quantem==0.1.10
```

`benchmarks/_quantem_inr.py` (run with that venv's python, it does not import tomoprior) calls
quantEM's "lite" INR pipeline with its defaults, one epoch per call so that every epoch is timed
and the volume can be saved after it:

```python
tomo = TomographyLiteINR.from_dataset(tilt_series, tilt_angles, device="cpu", rng=seed)
for epoch in range(epochs):
    tomo.reconstruct(num_iter=1, obj_lr=1e-4, pose_lr=1e-2, batch_size=1024,
                     num_workers=0, learn_pose=False, scheduler_type="none")
    volume = tomo.obj_model.obj_view[0]       # axes (x, z, y); not timed
```

`from_dataset` builds a `TomographyINRDataset` (the series divided by its 95 % quantile; the tilt
nearest 0° is the pose reference) and an `ObjectINR` around `HSiren(alpha=1,
winner_initialization=72)`: 3 → 256 (sinh) → 3 × (256 → 256, sine, ω₀ = 30) → 1, positivity as
a hard constraint. An epoch visits each of the `n_tilts × N²` detector pixels once (`N` = the
largest dimension of the series) in shuffled batches of 1024 rays, `N` samples a ray, Adam with
gradient clipping at norm 1. Departures from quantEM's defaults: `num_workers=0` (its default of
32 spawned loader processes does not fit a 2-core machine; quantEM's own CPU test uses 0),
`learn_pose=False` (the data of part A are aligned; pose learning can only cost quantEM
quality there), `torch.set_num_threads(--threads)`; bfloat16 autocast is CUDA-only in quantEM
and therefore off. The optimiser state carries over between the calls (`TomographyLiteINR`
creates the optimisers on the first call only), so N calls of one epoch are the same
computation as one call of N epochs with the default constant learning rate.

**Orientation.** quantEM samples its field on `meshgrid(x, y, z, indexing="ij")` with x along
the detector columns (the tilt axis; rays are rotated about x), y along the rows and z along
the beam; `obj_view` transposes that to (x, z, y). `np.transpose(v, (1, 2, 0))` maps it into
this project's (z, y, x) for a horizontal tilt axis (the best of the 48 permutations/flips by
correlation with the truth; the benchmark searches them again on every run and reports the
winner).

**This project** runs `tomoprior.run("inr", series, geometry, iterations=..., every=...,
device="cpu", seed=..., field=...)` with the method's defaults unless a parameter is listed
(grid field: 4096 rays a step, lr 1e-2 decayed 10× over the run, samples a ray growing from
half to one per voxel along the longest ray, 5 % of the pixels held out). `rays/s` divides the
rays fitted (iterations × rays a step) by the run's compute time, `Reconstruction.seconds`,
which includes data preparation and the validation loss and volume evaluated at every yielded
step (the scoring by the benchmark is outside it).

**Scores.** SSIM against the ground truth (the 2×-supersampled phantom binned to the
reconstruction grid) inside the specimen mask, after a least-squares intensity fit
(`tomoprior.metrics.ssim(..., mask=specimen_mask, fit=True)`); data residual
`min_a ‖a·Ax − y‖ / ‖y‖` with this project's `sparse` projector (the scale `a` absorbs
quantEM's data normalisation). "s to quantEM's SSIM" is the compute time of the first
evaluated step whose SSIM reaches quantEM's final SSIM (resolution: `--every` iterations);
likewise for the residual.
"""


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 quantEM epoch, short INR runs")
    p.add_argument("--out", help="write the markdown report to this file")
    p.add_argument("--json", help="write all numbers (curves included) to this file")
    p.add_argument("--skip-speed", action="store_true", help="skip part A")
    p.add_argument("--skip-pose", action="store_true", help="skip part B")
    p.add_argument("--skip-quantem", action="store_true", help="part A without quantEM")
    p.add_argument("--threads", type=int, default=2, help="torch threads, both projects (0: torch's own)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bench-venv", default=".bench-venv", help="venv with quantem (filled if missing)")
    p.add_argument("--no-install", action="store_true", help="never install into the venv")
    # part A
    p.add_argument("--phantom", default="pt_haadf")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--tilts", type=int, default=26)
    p.add_argument("--range", type=float, default=60.0, help="tilts from -range to +range")
    p.add_argument("--noise", default="none", choices=("none", "poisson"))
    p.add_argument("--dose", type=float, default=1e4)
    p.add_argument("--epochs", type=int, help="quantEM epochs (default 50; quick 1)")
    p.add_argument("--iterations", type=int, help="this project's INR iterations (default 2000; quick 60)")
    p.add_argument("--every", type=int, help="evaluate every N iterations (default iterations/40)")
    p.add_argument("--fields", default="grid,siren:lr=1e-3:iterations=match",
                   help="this project's configurations, separated by commas: field[:param=value...]; "
                        "iterations=N or iterations=match (as many rays as quantEM's epochs) "
                        "overrides --iterations")
    # part B
    p.add_argument("--pose-size", type=int, help="phantom size (default 48; quick 32)")
    p.add_argument("--pose-range", type=float, default=60.0)
    p.add_argument("--pose-step", type=float, help="tilt step (default 4; quick 6)")
    p.add_argument("--pose-shift", type=float, default=3.0, help="largest drift, px")
    p.add_argument("--pose-axis-error", type=float, default=2.0, help="degrees")
    p.add_argument("--pose-noise", default="none", choices=("none", "poisson"))
    p.add_argument("--pose-iterations", type=int, help="INR iterations (default 2000; quick 100)")
    p.add_argument("--pose-base", default="", help="parameters of all part-B runs, e.g. batch_rays=2048")
    p.add_argument("--pose-params", action="append",
                   help="parameters of a pose-learning run (repeat for a sweep), e.g. "
                        "'lr_pose=0.02,pose_start=0.1' ('' = the method's defaults); default: "
                        + " and ".join(repr(p) for p in DEFAULT_POSE_SETS))
    p.add_argument("--skip-pose-references", action="store_true",
                   help="only the pose-learning runs (no aligned / unaligned references)")
    args = p.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    q = args.quick
    args.epochs = args.epochs or (1 if q else 50)
    args.iterations = args.iterations or (40 if q else 2000)
    args.every = args.every or max(1, args.iterations // (6 if q else 40))
    args.configs = []
    for spec in args.fields.split(","):
        parts = [s for s in spec.strip().split(":") if s]
        if not parts:
            continue
        params = {"field": parts[0], **parse_params(",".join(parts[1:]))}
        args.configs.append((" ".join(parts), params))
    args.pose_size = args.pose_size or (32 if q else 48)
    args.pose_step = args.pose_step or (6.0 if q else 4.0)
    args.pose_iterations = args.pose_iterations or (100 if q else 2000)
    args.pose_base = parse_params(args.pose_base)
    args.pose_sets = [parse_params(s) for s in (args.pose_params or list(DEFAULT_POSE_SETS))]

    info = machine_info()
    cmd, started, parts = report_header(
        "INR benchmark: speed and quality vs quantEM, pose recovery", "benchmarks/inr.py", argv, info)
    t_all = time.perf_counter()
    parts[-1] += f"; load average (1/5/15 min) at start {loadavg()}"
    if q:
        parts += ["", "**Quick run (`--quick`): one quantEM epoch and short INR runs, a smoke test of the "
                  "pipeline, not the reference numbers.**"]
    results: dict = {"command": cmd, "date": started.isoformat(timespec="seconds"), "machine": info}

    if not args.skip_speed:
        r = part_speed(args)
        results["speed"] = r
        if "quantem" in r:
            qv = r["quantem"]["versions"]
            results["quantem_versions"] = qv
        parts += ["", "## A. Speed and quality: this project's INR vs quantEM", "", speed_table(r)]
        if "quantem" in r:
            parts.append("- quantEM side: " + ", ".join(f"{k} {v}" for k, v in qv.items())
                         + f", torch threads {r['quantem']['torch_threads']}; model "
                         + r["quantem"]["model"] + ".")
    if not args.skip_pose:
        r = part_pose(args)
        results["pose"] = r
        parts += ["", "## B. Pose recovery on simulated misalignment", "", pose_table(r)]

    parts += ["", METHOD_NOTES]
    parts += ["", f"Total benchmark time: {time.perf_counter() - t_all:.0f} s; load average at the end "
              f"{loadavg()}.", ""]
    text = "\n".join(parts)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        log(f"wrote {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
