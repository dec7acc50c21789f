"""Render a trained model's card (the JSON beside its weights) as a Markdown page.

Usage::

    python benchmarks/model_card.py src/tomoprior/models/restore_default.json \\
        --command "tomoprior train restore -o ... --seed 0" --out docs/models/restore_default.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def render(card: dict, command: str, notes: str = "") -> str:
    t, d = card["training"], card["data"]
    r = d["ranges"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"*Task*: {card['task']}.  ",
        f"*Architecture*: {card['architecture']['name']} (U-Net++), channels "
        f"{card['architecture']['channels']}, residual output; weights stored as float16.  ",
        f"*Package version at training*: {card['package_version']}.  ",
        f"*Input*: {card['input']['base']} reconstruction ({card['input']['base_iterations']} "
        f"iterations), {card['input']['normalisation']}.",
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        f"Seed {t['seed']}, {t['steps']} steps of batch {t['batch']} ({t['patch']} px patches), "
        f"Adam lr {t['lr']} with a cosine schedule, L1 loss"
        + (f" plus RaLSGAN (weight {t['gan_weight']}) from step {t['gan_start']}" if t["gan_weight"] else "")
        + f"; {t['threads']} threads on {t['device']}: {t['train_seconds'] / 60:.1f} min of training, "
        f"{t['total_seconds'] / 60:.1f} min in all (simulating the data included).",
        "",
        "## Data",
        "",
        f"Generator `{d['generator']}` (the package's simulator; no training set is stored). "
        f"{t['specimens']} training specimens (seeds {d['train_specimen_seeds'][0]}-"
        f"{d['train_specimen_seeds'][1]}, {t['slices']} slices across the tilt axis), "
        f"{t['val_specimens']} validation specimens from another seed stream "
        f"({d['validation_specimen_seeds'][0]}-{d['validation_specimen_seeds'][1]}). Every "
        "specimen is rendered at twice the reconstruction grid and projected by ray sampling (no "
        "inverse crime). The benchmark specimens (seed 1) are never drawn.",
        "",
        "| range | values |",
        "|---|---|",
        f"| families (weights) | {', '.join(f'{f} ({w:g})' for f, w in zip(r['families'], r['family_weights']))} |",
        f"| volume sizes | {', '.join(str(s) for s in r['sizes'])} px |",
        f"| tilt range | -a..+b with b in [{r['max_tilt'][0]:g}, {r['max_tilt'][1]:g}]°, a up to 8° smaller |",
        f"| tilt step | {r['step'][0]:g}-{r['step'][1]:g}° |",
        f"| Poisson dose | {r['dose'][0]:g}-{r['dose'][1]:g} e⁻ at the brightest pixel (log-uniform) |",
        f"| detector offset | {r['offset'][0]:g}-{r['offset'][1]:g} of the brightest pixel |",
        f"| misalignment | drift up to {r['drift'][1]:g} px, axis error ±{r['axis_error']:g}° |",
        f"| ADF diffraction contrast | 1 ± {r['diffraction'][0]:g}-{r['diffraction'][1]:g} per particle group and tilt (off for a third) |",
        "",
        "## Validation (specimens never trained on)",
        "",
        "Mean 3D SSIM against the truth, after a least-squares intensity fit.",
        "",
        "| family | specimens | base SSIM | restored SSIM | gain |",
        "|---|---|---|---|---|",
    ]
    for fam, v in sorted(card["validation"].items(), key=lambda kv: (kv[0] == "all", kv[0])):
        lines.append(f"| {fam} | {v['n']} | {v['base_ssim']:.3f} | {v['restored_ssim']:.3f} | "
                     f"{v['restored_ssim'] - v['base_ssim']:+.3f} |")
    lines += ["", "## Training log", "", "| step | L1 (batch) | minutes | validation SSIM (all) |",
              "|---|---|---|---|"]
    for e in card["log"]:
        lines.append(f"| {e['step']} | {e['l1']:.4f} | {e['seconds'] / 60:.1f} | "
                     f"{e['validation']['all']['restored_ssim']:.3f} |")
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("card", type=Path)
    ap.add_argument("--command", required=True)
    ap.add_argument("--notes", type=Path, help="Markdown appended to the page")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    card = json.loads(args.card.read_text())
    notes = args.notes.read_text() if args.notes else ""
    args.out.write_text(render(card, args.command, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
