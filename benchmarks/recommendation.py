"""Condense the unseen-family benchmark into the summary the widgets show.

Reads ``docs/generalisation.json`` (``benchmarks/generalisation.py``) and
writes ``src/tomoprior/models/generalisation_summary.json``: per row, its
method and parameters, mean SSIM over the families at all steps, and its
difference to CS-TV (mean, and on the worst family). :mod:`tomoprior.recommend`
picks the best learned row from it.

Usage::

    python benchmarks/recommendation.py docs/generalisation.json \\
        --out src/tomoprior/models/generalisation_summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tomoprior.algorithms import get_method


def condense(data: dict, source: str) -> dict:
    meta = data["meta"]
    rows_meta = meta["rows"]
    overall = [s for s in data["summary"] if s["step"] is None]
    base = next(s for s in overall if s["row"] == "cstv")
    steps = sorted({c["step"] for c in meta.get("conditions", [])}) or sorted(
        {s["step"] for s in data["summary"] if s["step"] is not None})
    out_rows = []
    for s in overall:
        spec = rows_meta[s["row"]]
        method = get_method(spec["method"])  # values typed by the declaration ("200" -> 200)
        params = {k: method.param(k).parse(v) for k, v in spec["params"].items()
                  if k != "device"}
        label = s["row"] if not params else f"{spec['method']} with " + ", ".join(
            f"{k}={v}" for k, v in params.items())
        out_rows.append({"row": s["row"], "method": spec["method"], "params": params,
                         "label": label, "mean_ssim": round(s["ssim"], 4),
                         "delta": None if s["delta"] is None else round(s["delta"], 4),
                         "worst_family": s["worst_family"],
                         "worst_delta": None if s["worst_delta"] is None
                         else round(s["worst_delta"], 4),
                         "seconds": round(s["seconds"], 2)})
    return {"source": source, "date": meta.get("date"), "commit": meta.get("commit"),
            "families": base["families"], "steps": steps,
            "cstv_mean_ssim": round(base["ssim"], 4), "rows": out_rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--source", default="docs/generalisation.md")
    args = ap.parse_args(argv)
    summary = condense(json.loads(args.json.read_text()), args.source)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}: {len(summary['rows'])} rows, CS-TV mean "
          f"{summary['cstv_mean_ssim']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
