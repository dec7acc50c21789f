"""Which learned method to use: the measured answer from the unseen-family benchmark.

``benchmarks/generalisation.py`` reconstructs specimen families the training
generator cannot produce and ``benchmarks/recommendation.py`` condenses its
table into ``tomoprior/models/generalisation_summary.json``, shipped with the
package: per learned method and adaptation, its mean SSIM over the families
and its difference to CS-TV (mean and worst family). The widgets show the
best learned row beside the method's parameters, with a button that applies
its parameters; the held-out error of a run on the user's own data (the
comparison widget) says whether it holds there too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["LEARNED", "Recommendation", "recommendation", "summary"]

#: methods whose prior was learned (their quality depends on the specimen)
LEARNED = ("restore", "restore_tv", "diptv")
SUMMARY_FILE = "generalisation_summary.json"


@dataclass(frozen=True)
class Recommendation:
    """The best learned method of the unseen-family benchmark, against CS-TV."""

    method: str
    params: dict[str, Any]
    label: str
    mean_ssim: float
    cstv_mean_ssim: float
    worst_delta: float
    worst_family: str
    families: int
    steps: tuple[float, ...] = ()
    source: str = "docs/generalisation.md"
    rows: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def delta(self) -> float:
        return self.mean_ssim - self.cstv_mean_ssim

    def text(self) -> str:
        """Two sentences for the method panel."""
        steps = "/".join(f"{s:g}°" for s in self.steps) if self.steps else ""
        where = f"{self.families} specimen families it never trained on" + (
            f" (±60°, {steps} steps)" if steps else "")
        head = (f"On {where}, the best learned setting was {self.label}: mean SSIM "
                f"{self.mean_ssim:.3f} against CS-TV's {self.cstv_mean_ssim:.3f} "
                f"({self.delta:+.3f}; worst family {self.worst_family} {self.worst_delta:+.3f}).")
        if self.delta > 0 and self.worst_delta >= -0.005:
            tail = "Check on your data: its held-out error should be below CS-TV's."
        else:
            tail = ("CS-TV is the safer choice there; use the learned prior where its held-out "
                    "error on your data (comparison widget) is below CS-TV's.")
        return f"{head} {tail}"


@cache
def summary() -> dict | None:
    """The shipped summary of the unseen-family benchmark (None if the package has none)."""
    try:
        text = resources.files("tomoprior.models").joinpath(SUMMARY_FILE).read_text("utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)


def recommendation(data: dict | None = None) -> Recommendation | None:
    """The best learned row of a summary (default: the shipped one)."""
    data = summary() if data is None else data
    if not data or not data.get("rows"):
        return None
    learned = [r for r in data["rows"] if r["method"] in LEARNED]
    if not learned:
        return None
    best = max(learned, key=lambda r: r["mean_ssim"])
    return Recommendation(
        method=best["method"], params=dict(best.get("params", {})), label=best["label"],
        mean_ssim=float(best["mean_ssim"]), cstv_mean_ssim=float(data["cstv_mean_ssim"]),
        worst_delta=float(best["worst_delta"]), worst_family=str(best["worst_family"]),
        families=int(data["families"]), steps=tuple(data.get("steps", ())),
        source=str(data.get("source", "docs/generalisation.md")), rows=tuple(learned))
