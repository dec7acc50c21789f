"""How strongly should ``restore_tv`` pull towards the network? Its ``mu`` on unseen specimens.

Specimens come from the restoration model's simulator
(:func:`tomoprior.phantoms.simulate_specimen`: Pt-on-carbon in HAADF and ADF
contrast, 64³, random tilt range, step, dose and misalignment) with seeds
from the validation stream that neither training nor the model's selection
used, and never the quality benchmark's specimens. For each: CS-TV
(``lam="auto"``), ``restore``, and ``restore_tv`` at every ``mu`` of the grid
with CS-TV's lambda; SSIM inside the specimen (truth above 5 % of its
maximum, dilated 2 px) after a least-squares intensity fit, and the
reprojection residual relative to CS-TV's.

Usage::

    python benchmarks/restore_tv_mu.py --threads 1 --out docs/restore_tv_mu   # ~15 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from tomoprior import __version__
from tomoprior.algorithms.cstv import cstv
from tomoprior.algorithms.restore import restore
from tomoprior.algorithms.restore_tv import DEFAULT_MU, restore_tv
from tomoprior.metrics import ssim
from tomoprior.operators import make_projector
from tomoprior.phantoms._pairs import FIRST_SEED, PairRanges, simulate_specimen
from tomoprior.step import last_step

FIRST = FIRST_SEED + 1_000_000 + 1000  # validation stream (seed 1), past its first 16 specimens


def _score(v: np.ndarray, truth: np.ndarray) -> float:
    mask = ndimage.binary_dilation(truth > 0.05 * truth.max(), iterations=2)
    return ssim(v, truth, mask=mask, fit=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specimens", type=int, default=12)
    ap.add_argument("--mus", nargs="+", type=float, default=[0.001, 0.003, 0.01, 0.03, 0.1])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ranges = PairRanges(families=("pt_haadf", "pt_adf"), family_weights=(0.5, 0.5), sizes=(64,))
    rows = []
    t0 = time.perf_counter()
    for i in range(args.specimens):
        sp = simulate_specimen(FIRST + i, ranges, keep_series=True)
        y = torch.from_numpy(np.ascontiguousarray(sp.series, dtype=np.float32))
        A = make_projector(sp.angles, sp.truth.shape, sp.series.shape[2], device="cpu")

        def residual(v, A=A, y=y) -> float:
            return float(torch.linalg.vector_norm(A(torch.as_tensor(v)) - y)
                         / torch.linalg.vector_norm(y))

        cs = last_step(cstv(A, y, iterations=args.iterations, every=args.iterations))
        lam, r0 = float(cs.extras["lam"]), residual(cs.volume)
        net = last_step(restore(A, y, every=100)).volume
        row = {"seed": FIRST + i, "family": sp.info["family"], "step": sp.info["step"],
               "dose": sp.info["dose"], "n_tilts": sp.info["n_tilts"], "lam": lam,
               "cstv": _score(cs.volume, sp.truth), "restore": _score(net, sp.truth),
               "restore_residual": residual(net) / r0, "mu": {}}
        for mu in args.mus:
            v = last_step(restore_tv(A, y, mu=mu, lam=lam, iterations=args.iterations,
                                     every=args.iterations)).volume
            row["mu"][f"{mu:g}"] = {"ssim": _score(v, sp.truth), "residual": residual(v) / r0}
        rows.append(row)
        print(f"{i + 1}/{args.specimens} {row['family']:8s} step {row['step']:5.2f} dose "
              f"{row['dose']:7.0f} cstv {row['cstv']:.3f} restore {row['restore']:.3f} "
              + " ".join(f"mu={k}: {v['ssim']:.3f}" for k, v in row["mu"].items())
              + f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
    table = _markdown(rows, args)
    print(table)
    if args.out:
        args.out.with_suffix(".md").write_text(table)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


def _markdown(rows: list[dict], args) -> str:
    mus = list(rows[0]["mu"])
    lines = [
        "# restore_tv: the prior weight μ on specimens no model or choice has seen",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Date: {dt.date.today().isoformat()}, napari-tomoprior {__version__}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads.  ",
        f"{len(rows)} simulated Pt-on-carbon specimens (HAADF and ADF, 64³, random tilt range "
        "±45-75°, step 1-20°, Poisson dose 1e3-1e5, drift and axis error), seeds "
        f"{rows[0]['seed']}-{rows[-1]['seed']} of the simulator's validation stream. SSIM inside "
        "the specimen after a least-squares intensity fit; in brackets the reprojection residual "
        "relative to CS-TV's. restore_tv uses CS-TV's automatic λ. The default μ is "
        f"{DEFAULT_MU:g}.",
        "",
        "| family | step | dose | CS-TV | restore | " + " | ".join(f"μ={m}" for m in mus) + " |",
        "|---|---|---|---|---|" + "---|" * len(mus),
    ]
    for r in rows:
        best = max([r["cstv"], r["restore"], *(v["ssim"] for v in r["mu"].values())])

        def cell(s: float, res: float | None = None, best=best) -> str:
            text = f"{s:.3f}" + ("" if res is None else f" ({res:.2f})")
            return f"**{text}**" if s == best else text

        lines.append(
            f"| {r['family']} | {r['step']:.1f}° | {r['dose']:.0f} | {cell(r['cstv'])} | "
            f"{cell(r['restore'], r['restore_residual'])} | "
            + " | ".join(cell(v["ssim"], v["residual"]) for v in r["mu"].values()) + " |")
    cs = np.array([r["cstv"] for r in rows])
    mean = [float(np.mean([r["mu"][m]["ssim"] for r in rows])) for m in mus]
    gain = [np.array([r["mu"][m]["ssim"] for r in rows]) - cs for m in mus]
    lines += [
        f"| **mean** | | | {cs.mean():.3f} | {np.mean([r['restore'] for r in rows]):.3f} | "
        + " | ".join(f"{v:.3f}" for v in mean) + " |",
        "| mean gain over CS-TV | | | | | " + " | ".join(f"{g.mean():+.3f}" for g in gain) + " |",
        "| worst gain over CS-TV | | | | | " + " | ".join(f"{g.min():+.3f}" for g in gain) + " |",
        "| specimens above CS-TV | | | | | " + " | ".join(f"{int((g > 0).sum())}/{len(rows)}"
                                                         for g in gain) + " |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
