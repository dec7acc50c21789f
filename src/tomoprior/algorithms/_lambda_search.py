"""CS-TV's ``lam="auto"``: the TV weight chosen by the error on held-out detector pixels.

The candidates of a grid are solved from the strongest weight to the weakest,
each warm-started from the last (a continuation path), and scored by the
error their volume makes on detector pixels held out of the fit. Two measures
keep the search a small part of a run:

* λ is one number for the whole volume, so it is chosen on a few sample slabs
  of y-slices (the slices the tilt axis runs through) rather than on all of
  them: ``SAMPLE_SLABS`` slabs of ``SAMPLE_WIDTH`` slices, one in each equal
  band of the volume, each placed where that band's projections hold the most
  signal. A volume of at most ``3 * SAMPLE_SLABS * SAMPLE_WIDTH // 2`` slices
  is searched whole.
* The path stops once the held-out error has turned up: the error of a TV
  weight along such a path falls while the weight removes noise and rises
  once it removes structure, so the weaker weights after the turn are not
  solved.

References
----------
.. [1] E. Y. Sidky, J. H. Jorgensen, X. Pan, "Convex optimization problem
   prototyping for image reconstruction in computed tomography with the
   Chambolle-Pock algorithm", Phys. Med. Biol. 57, 3065 (2012).
.. [2] M. Stone, "Cross-validatory choice and assessment of statistical
   predictions", J. R. Stat. Soc. B 36, 111-147 (1974).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..operators.base import Projector
from ..step import Step
from ._common import snapshot

__all__ = ["SAMPLE_SLABS", "SAMPLE_WIDTH", "sample_rows", "search_lambda"]

#: slabs of y-slices a large volume's λ search runs on, and their width
SAMPLE_SLABS = 3
SAMPLE_WIDTH = 8

#: one solve: (projector, data, start volume, effective weight, iterations, weights) -> iterates
Solve = Callable[[Projector, torch.Tensor, torch.Tensor, float, int, torch.Tensor],
                 Iterator[torch.Tensor]]


def sample_rows(y: torch.Tensor, slabs: int = SAMPLE_SLABS,
                width: int = SAMPLE_WIDTH) -> list[slice] | None:
    """The y-slabs the search runs on, or None when the whole volume is small enough.

    One slab of ``width`` slices in each of ``slabs`` equal bands of the
    volume, where the band's data hold the most signal (sum of ``|y|``), so
    that a specimen filling part of the field is sampled where it is.
    """
    ny = int(y.shape[1])
    if ny <= 3 * slabs * width // 2:
        return None
    energy = y.detach().abs().sum(dim=(0, 2)).double().cpu().numpy()
    edges = np.linspace(0, ny, slabs + 1).round().astype(int)
    out = []
    for a, b in itertools.pairwise(edges):
        if b - a <= width:
            s = min(int(a), ny - width)
        else:
            window = np.convolve(energy[a:b], np.ones(width), mode="valid")
            s = int(a + np.argmax(window))
        out.append(slice(s, s + width))
    return out


@dataclass
class _Part:
    """One slab of the search: its projector, data, weights and current iterate."""

    A: Projector
    y: torch.Tensor
    train: torch.Tensor
    valid: torch.Tensor
    x: torch.Tensor


def search_lambda(
    A: Projector,
    y: torch.Tensor,
    x: torch.Tensor,
    *,
    train: torch.Tensor,
    valid: torch.Tensor,
    grid: Sequence[float],
    iterations: int,
    solve: Solve,
    rule: str,
    scale: float,
    start: int,
    search: list[dict],
    rows: list[slice] | None,
) -> Iterator[Step]:
    """Solve each λ of ``grid`` (strong to weak) and score it on the held-out pixels.

    Yields "lambda search" Steps (a few pictures per candidate, and one with
    its score); returns ``(lam, x_best)`` where ``x_best`` is the best
    candidate's whole volume, or ``None`` when the search ran on the sample
    slabs ``rows`` (the final fit then starts from ``x``). ``search`` gets a
    row per candidate: ``lam``, ``val_loss`` (mean square held-out error),
    ``val_median_abs``; ``rule`` (``"median"`` or ``"mean square"``) says
    which decides.
    """
    whole = rows is None
    parts = ([_Part(A, y, train, valid, x)] if whole else
             [_Part(A.for_slices(s.stop - s.start), y[:, s], train[:, s], valid[:, s], x[:, s])
              for s in rows])
    picture = x.clone()  # the whole volume shown, sample slabs filled in as they form
    n_val = float(sum(float(p.valid.sum()) for p in parts)) or 1.0
    best: tuple[float, float | None, torch.Tensor | None] = (np.inf, None, None)
    show = max(1, iterations // 4)  # a picture a few times per candidate
    extras_base = {"candidates": len(grid), "search_slices": None if whole else
                   int(sum(s.stop - s.start for s in rows))}

    def shown() -> np.ndarray:
        if whole:
            return snapshot(parts[0].x * scale)
        for s, p in zip(rows, parts):
            picture[:, s] = p.x
        return snapshot(picture * scale)

    for i, lam in enumerate(grid):
        for pi, p in enumerate(parts):
            for j, xk in enumerate(solve(p.A, p.y, p.x, lam * A.n_tilts, iterations, p.train),
                                   start=1):
                p.x = xk
                if j % show == 0 and j < iterations:
                    frac = (i + (pi + j / iterations) / len(parts)) / len(grid)
                    yield Step(iteration=start, volume=shown(), phase="lambda search",
                               search=tuple(dict(r) for r in search),
                               extras={**extras_base, "lam": lam, "candidate": i + 1,
                                       "phase_fraction": frac})
        with torch.no_grad():
            res = [(p.A(p.x) - p.y) * p.valid for p in parts]
            val = sum(float((r * r).sum()) for r in res) / n_val
            held = torch.cat([r[p.valid > 0].reshape(-1) for r, p in zip(res, parts)])
            mad = float(held.abs().median()) if held.numel() else float("nan")
        search.append({"lam": lam, "val_loss": val, "val_median_abs": mad})
        score = mad if rule == "median" else val
        turned = score > best[0] and best[1] is not None
        if score < best[0]:
            best = (score, lam, parts[0].x.clone() if whole else None)
        yield Step(iteration=start, volume=shown(), phase="lambda search", heldout=val,
                   search=tuple(dict(r) for r in search),
                   extras={**extras_base, "lam": lam, "val_median_abs": mad,
                           "candidate": i + 1,
                           "phase_fraction": 1.0 if turned else (i + 1) / len(grid)})
        if turned:  # the held-out error rose: weaker weights only fit more noise
            break
    return best[1], best[2]
