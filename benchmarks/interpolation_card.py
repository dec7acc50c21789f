"""Render the interpolation model's card (the JSON beside its weights) as a Markdown page.

Usage::

    python benchmarks/interpolation_card.py src/tomoprior/models/interpolate_default.json \\
        --command "tomoprior train interpolate -o ... --seed 0 --threads 2" \\
        --benchmark docs/interpolation.json --out docs/models/interpolate_default.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def render(card: dict, command: str, bench: dict | None = None, timing: str = "") -> str:
    t, d, a = card["training"], card["data"], card["architecture"]
    r = d["ranges"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"*Task*: {card['task']}.  ",
        f"*Architecture*: {a['name']}: {a['fold']}×{a['fold']} pixels folded into channels, a "
        f"U-Net with channels {a['channels']} at 1/{a['fold']} to 1/{a['fold'] * 2 ** (len(a['channels']) - 1)} "
        "of the image size, predicting a correction to the linear blend of the two neighbours; "
        "inputs: left, right, blend, the position t and the gap; weights stored as float16.  ",
        f"*Package version at training*: {card['package_version']}.  ",
        f"*Input*: {card['input']['normalisation']}; {card['input']['frame']}.  ",
        f"*Target*: {card['input']['target']}.",
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        f"Seed {t['seed']}, "
        + (f"the first {t['stopped_at']} steps of a {t['steps']}-step schedule"
           if t.get("until") else f"{t['steps']} steps")
        + f" of batch {t['batch']} ({t['patch_rows']}×"
        f"{t['patch_cols']} px crops, random flips and left/right swaps), Adam lr {t['lr']} with "
        f"a cosine schedule, loss L1 + {t['ssim_weight']} (1 - SSIM) against the clean middle "
        f"frame; {t['threads']} threads on {t['device']}. "
        + (timing or f"{t['train_seconds'] / 60:.1f} min of training, "
           f"{t['total_seconds'] / 60:.1f} min in all (simulating the data included)."),
        "",
        "## Data",
        "",
        f"Generator `{d['generator']}` (the package's simulator; no training set is stored). "
        f"{t['series']} training series (seeds {d['train_series_seeds'][0]}-"
        f"{d['train_series_seeds'][1]}), {t['val_series']} validation series from another seed "
        f"stream ({d['validation_series_seeds'][0]}-{d['validation_series_seeds'][1]}). Each "
        "specimen is rendered at twice the image resolution, projected on that fine grid and "
        "binned (no inverse crime). The benchmark's series (seeds below 1000) are never drawn.",
        "",
        "| range | values |",
        "|---|---|",
        "| specimens | 1-6 faceted particles (octahedral with random {100} truncation, "
        "icosahedral, Ino/Marks decahedral), random orientation and size, in contact or close |",
        "| elements | Pt, Ag, Au, Cu: density (Z/78)^1.7 of Pt, ±10 % |",
        f"| thin carbon film | with chance {r['support']}: a disc 0.03-0.08 of the field thick, "
        "0.02-0.06 of Pt, textured ±20 % |",
        f"| image sizes | {', '.join(str(s) for s in r['sizes'])} px (tilt axis along the rows) |",
        f"| tilts | ±{r['max_tilt']}° at 1° |",
        f"| Poisson dose | {r['dose'][0]:g}-{r['dose'][1]:g} e⁻ at the brightest pixel "
        "(log-uniform) |",
        f"| detector offset | {r['offset'][0]:g}-{r['offset'][1]:g} of the brightest pixel |",
        f"| triplet gap | {r['gap'][0]}-{r['gap'][1]}° (whole degrees); the middle frame halfway "
        f"({r['centred']:.0%}) or anywhere in between |",
        "",
        "## Validation (series never trained on)",
        "",
        "Mean SSIM of the frame halfway between two measured ones against the clean frame, on "
        "frames normalised to 0..1, over the whole frame and inside the specimen (clean frame "
        "above its background, dilated 3 px).",
        "",
        "| gap | frames | linear | learned | gain | linear, specimen | learned, specimen | gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g, v in card["validation"].items():
        lines.append(
            f"| {g if g == 'all' else g + '°'} | {v['n']} | {v['linear_ssim']:.4f} | "
            f"{v['learned_ssim']:.4f} | {v['learned_ssim'] - v['linear_ssim']:+.4f} | "
            f"{v['linear_ssim_specimen']:.4f} | {v['learned_ssim_specimen']:.4f} | "
            f"{v['learned_ssim_specimen'] - v['linear_ssim_specimen']:+.4f} |")
    lines += ["", "## Training log", "", "| step | loss (batch) | minutes | validation SSIM "
              "learned (linear) | specimen |", "|---|---|---|---|---|"]
    for e in card["log"]:
        v = e["validation"]["all"]
        loss = "-" if e["loss"] is None else f"{e['loss']:.4f}"
        lines.append(f"| {e['step']} | {loss} | {e['seconds'] / 60:.1f} | "
                     f"{v['learned_ssim']:.4f} ({v['linear_ssim']:.4f}) | "
                     f"{v['learned_ssim_specimen']:.4f} ({v['linear_ssim_specimen']:.4f}) |")
    if bench:
        lines += ["", "## Held-apart benchmark", "",
                  "Full tables, the real needle and the reconstructions: "
                  "[docs/interpolation.md](../interpolation.md)."]
    lines += ["", "The full card is `src/tomoprior/models/interpolate_default.json`; the training "
              "log as printed: [interpolate_default_training_log.txt]"
              "(interpolate_default_training_log.txt)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("card", type=Path)
    ap.add_argument("--command", required=True)
    ap.add_argument("--benchmark", type=Path)
    ap.add_argument("--timing", default="", help="how long the training took, when the card "
                    "cannot say (a run in parts)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    card = json.loads(args.card.read_text())
    bench = json.loads(args.benchmark.read_text()) if args.benchmark and args.benchmark.is_file() \
        else None
    text = render(card, args.command, bench, args.timing)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
