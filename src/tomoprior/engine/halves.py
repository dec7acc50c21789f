"""Where to trust a reconstruction: half-set runs, ensembles and their uncertainty map.

Any method runs on subsets of the kept tilts, one run after another:

``halves``
    The even and the odd tilts (in angle order) reconstructed separately: two
    volumes from independent data. Their Fourier shell correlation gives the
    resolution (spherical, in the x-y plane, along the beam and over the tilt
    plane: :mod:`tomoprior.resolution`), their average is the result, and half
    their difference, ``(a - b) / 2``, is the noise of that average. With
    ``ensemble=K``, K such pairs (the first even/odd, the others random splits
    that keep both halves spread over the tilt range); the map averages the
    K squared half-differences.
``ensemble=K`` (without halves)
    K runs, run ``k`` leaving out fold ``k`` of a K-fold split of the tilts
    (each fold spread over the range) and using seed ``seed + k``: a
    delete-a-group jackknife [1]_. The result is the members' mean, the map the
    jackknife standard deviation ``sqrt((K-1)/K sum_k (x_k - mean)^2)``, which
    estimates the spread of a run on all the tilts; for a network (DIP-TV, INR,
    the restoration) the members differ in their data and their seeds, as a
    deep ensemble's do [2]_.

The map is the standard deviation per voxel, smoothed over a Gaussian of
:data:`SMOOTH` voxels (a few runs say little about one voxel) and divided by
the contrast of the result (its 0.5-99.5 percentile range): 0.1 means the
runs disagree there by a tenth of the volume's contrast. It has the volume's
shape and frame.

:class:`TrustRun` is the :class:`~tomoprior.engine.Reconstruction` of such a
run, returned by ``tomoprior.run(..., halves=True)`` or ``ensemble=K``.
While a member runs, its Steps carry the running mean of the members so far
(the current one included) as ``volume`` and, at most every
:data:`MAP_EVERY_S` seconds and at the end of each member, the map as it
forms (:class:`TrustStep`); the last Step holds the final mean, map and
resolution, and the provenance records every member (``"trust"``).

References
----------
.. [1] B. Efron, C. Stein, "The jackknife estimate of variance", Ann. Stat.
   9(3), 586-596 (1981); grouped (delete-d) jackknife: J. Shao, C. F. J. Wu,
   Ann. Stat. 17(3), 1176-1197 (1989).
.. [2] B. Lakshminarayanan, A. Pritzel, C. Blundell, "Simple and scalable
   predictive uncertainty estimation using deep ensembles", NeurIPS 2017.
.. [3] D. Cardone, K. Grünewald, A. C. Steven, "A resolution criterion for
   electron tomography based on cross-validation", J. Struct. Biol. 151(2),
   117-129 (2005).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cancel import StopRequested, shielded
from ..errors import DataError, GeometryError, ParameterError
from ..geometry import Selection
from ..step import Step
from .inputs import Prepared
from .session import Reconstruction

__all__ = [
    "MAP_EVERY_S",
    "MAX_MEMBERS",
    "SMOOTH",
    "Member",
    "TrustPlan",
    "TrustRun",
    "TrustStep",
    "check_trust",
    "contrast",
    "even_odd",
    "jackknife_folds",
    "random_halves",
    "spread",
    "subset",
]

#: Gaussian smoothing of the variance map, voxels (sigma)
SMOOTH = 1.0
#: the map is recomputed during a member at most this often (and at each member's end)
MAP_EVERY_S = 2.0
#: most members an ensemble may have (halves: pairs)
MAX_MEMBERS = 32


@dataclass(frozen=True)
class TrustPlan:
    """What to run: ``mode`` ``"halves"`` (``count`` pairs) or ``"ensemble"`` (``count`` runs)."""

    mode: str
    count: int

    @property
    def members(self) -> int:
        return 2 * self.count if self.mode == "halves" else self.count


def check_trust(halves: Any, ensemble: Any) -> TrustPlan | None:
    """The plan of ``run(halves=..., ensemble=...)``; None for an ordinary run.

    Raises :class:`ParameterError` for an ensemble of fewer than 2 runs
    (without halves), fewer than 1 pair, or more than :data:`MAX_MEMBERS`.
    """
    if not isinstance(halves, (bool, np.bool_)):
        raise ParameterError(f"halves must be True or False, got {halves!r}")
    if ensemble is None:
        return TrustPlan("halves", 1) if halves else None
    if isinstance(ensemble, (bool, np.bool_)) or not isinstance(ensemble, (int, np.integer)):
        raise ParameterError(f"ensemble must be a whole number of runs, got {ensemble!r}")
    k = int(ensemble)
    low = 1 if halves else 2
    if not low <= k <= MAX_MEMBERS:
        what = "half-set pairs" if halves else "runs (for one pair of half sets: halves)"
        raise ParameterError(f"ensemble must be {low} to {MAX_MEMBERS} {what}, got {k}")
    return TrustPlan("halves" if halves else "ensemble", k)


# -- splits of the kept tilts (positions into them) -------------------------------------------
def even_odd(angles: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the even and the odd tilts in angle order (each sorted).

    Together they are every position once; each half spans the tilt range.
    """
    order = np.argsort(np.asarray(angles, np.float64), kind="stable")
    return np.sort(order[0::2]), np.sort(order[1::2])


def random_halves(angles: Sequence[float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random split into two halves, each neighbouring pair of tilts (in angle order) split
    between them, so both halves stay spread over the range (an odd tilt out goes either way)."""
    order = np.argsort(np.asarray(angles, np.float64), kind="stable")
    a, b = [], []
    for i in range(0, order.size, 2):
        pair = list(order[i:i + 2])
        rng.shuffle(pair)
        if len(pair) == 1 and rng.random() < 0.5:
            b.append(pair[0])
            continue
        a.append(pair[0])
        b.extend(pair[1:])
    return np.sort(np.array(a, int)), np.sort(np.array(b, int))


def jackknife_folds(angles: Sequence[float], k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``k`` disjoint folds covering every position, each spread over the tilt range.

    In angle order, every group of ``k`` neighbouring tilts gives one tilt to
    each fold, in random order (the last, smaller group to random folds).
    """
    order = np.argsort(np.asarray(angles, np.float64), kind="stable")
    folds: list[list[int]] = [[] for _ in range(k)]
    for i in range(0, order.size, k):
        group = order[i:i + k]
        for pos, f in zip(group, rng.permutation(k)):
            folds[int(f)].append(int(pos))
    return [np.sort(np.array(f, int)) for f in folds]


@dataclass(frozen=True)
class Member:
    """One run of a trust plan: the kept-tilt positions it uses and its seed."""

    positions: np.ndarray
    seed: int
    label: str  # "half 1/2", "member 3/4"


def _members(plan: TrustPlan, angles: np.ndarray, seed: int) -> list[Member]:
    n = int(angles.size)
    total = plan.members
    out: list[Member] = []
    if plan.mode == "halves":
        if n < 4:
            raise GeometryError(f"half sets need at least 4 kept tilts (2 per half), got {n}")
        for j in range(plan.count):
            a, b = even_odd(angles) if j == 0 else random_halves(
                angles, np.random.default_rng([seed, j]))
            for side, pos in enumerate((a, b)):
                i = 2 * j + side
                out.append(Member(pos, seed + i, f"half {i + 1}/{total}"))
        return out
    k = plan.count
    folds = jackknife_folds(angles, k, np.random.default_rng([seed, k]))
    if k > n or n - max(f.size for f in folds) < 2:
        raise GeometryError(f"an ensemble of {k} runs leaves out 1/{k} of the tilts per run: "
                            f"{n} kept tilts are too few (at least 2 must remain per run)")
    everything = np.arange(n)
    for j, fold in enumerate(folds):
        out.append(Member(np.setdiff1d(everything, fold), seed + j, f"member {j + 1}/{total}"))
    return out


def subset(p: Prepared, positions: Sequence[int]) -> Prepared:
    """The prepared series restricted to the kept tilts at ``positions`` (a copy of them)."""
    pos = np.asarray(positions, int)
    sel = p.selection
    return dataclasses.replace(
        p,
        series=np.asarray(p.series[pos]),
        geometry=p.geometry.subset(pos),
        selection=Selection(indices=sel.indices[pos], angles=sel.angles[pos],
                            geometry=sel.geometry.subset(pos)),
    )


# -- the map ----------------------------------------------------------------------------------------
def spread(volumes: Sequence[np.ndarray], mode: str, count: int, smooth: float = SMOOTH
           ) -> np.ndarray | None:
    """Per-voxel standard deviation of the result (the volumes' units), or None when the
    volumes given cannot tell one yet.

    Parameters
    ----------
    volumes : sequence of arrays
        ``"halves"``: in pairs ``(a_0, b_0, a_1, b_1, ...)`` (an unpaired last one is
        left out); ``"ensemble"``: the members so far (at least 2).
    mode : "halves" or "ensemble"
    count : int
        The ensemble's planned size K (the jackknife factor ``(K - 1) / m`` for ``m``
        members so far); unused for halves.
    smooth : float
        Gaussian sigma (voxels) applied to the variance; 0 for none.
    """
    from scipy import ndimage as ndi

    vols = [np.asarray(v, np.float32) for v in volumes]
    if mode == "halves":
        pairs = len(vols) // 2
        if pairs < 1:
            return None
        var = np.zeros_like(vols[0])
        for j in range(pairs):
            d = 0.5 * (vols[2 * j] - vols[2 * j + 1])
            var += d * d
        var /= pairs
    else:
        m = len(vols)
        if m < 2:
            return None
        mean = np.mean(vols, axis=0, dtype=np.float32)
        var = np.zeros_like(mean)
        for v in vols:
            d = v - mean
            var += d * d
        var *= (max(int(count), m) - 1) / m
    if smooth > 0:
        var = ndi.gaussian_filter(var, float(smooth), mode="nearest")
    return np.sqrt(np.maximum(var, 0.0, out=var), out=var)


def contrast(volume: np.ndarray, samples: int = 1_000_000) -> float:
    """The volume's contrast: its 0.5-99.5 percentile range (of at most ``samples`` voxels)."""
    flat = np.asarray(volume).ravel()
    step = max(1, flat.size // samples)
    lo, hi = np.percentile(flat[::step].astype(np.float64), (0.5, 99.5))
    span = float(hi - lo)
    return span if span > 0 and np.isfinite(span) else 1.0


@dataclass(frozen=True, kw_only=True)
class TrustStep(Step):
    """A Step of a :class:`TrustRun`.

    Attributes
    ----------
    uncertainty : ndarray or None
        The map as it stands (per-voxel std / contrast, float32, the volume's
        shape), on the steps where it was recomputed; None on the others.
    member : (index, count) or None
        The member running (0-based); None on the final step.
    resolution : mapping or None
        On the final step of a half-set run: the resolutions per direction
        (:meth:`tomoprior.resolution.DirectionalFSC.summary` without curves).
    """

    uncertainty: np.ndarray | None = None
    member: tuple[int, int] | None = None
    resolution: Any = None


def _as_trust(step: Step, **changes: Any) -> TrustStep:
    fields = {f.name: getattr(step, f.name) for f in dataclasses.fields(Step)}
    fields.update(changes)
    return TrustStep(**fields)


class TrustRun(Reconstruction):
    """A half-set or ensemble run: members one after another, then their mean, map and FSC.

    Built by :func:`tomoprior.run` with ``halves=True`` or ``ensemble=K``; it is a
    :class:`~tomoprior.engine.Reconstruction` (iterate it, ``close()`` to stop, its
    ``provenance()`` and ``evaluate()``), whose ``prepared`` holds every kept tilt.

    Attributes
    ----------
    plan : TrustPlan
    members : list of Member
    runs : list of Reconstruction
        The members' runs, as they start.
    volumes : list of ndarray
        Their final volumes (input frame), as they finish.
    uncertainty : ndarray or None
        The final map (std / :attr:`contrast`).
    current_map : ndarray or None
        The latest map computed, live or final (a reader that skips Steps, such as a
        throttled display, finds it here).
    contrast : float or None
    fsc : DirectionalFSC or None
        Of the first pair's halves (half-set runs).
    """

    def __init__(self, method: Any, prepared: Prepared, *, trust: TrustPlan, **kwargs: Any) -> None:
        super().__init__(method, prepared, **kwargs)
        self.plan = trust
        self.members = _members(trust, np.asarray(prepared.geometry.angles, np.float64), self.seed)
        self.runs: list[Reconstruction] = []
        self.volumes: list[np.ndarray] = []
        self.uncertainty: np.ndarray | None = None
        self.current_map: np.ndarray | None = None
        self.contrast: float | None = None
        self.fsc: Any = None

    # -- the members -------------------------------------------------------------------------
    def _member_run(self, i: int) -> Reconstruction:
        mem = self.members[i]
        rec = Reconstruction(
            self.method, subset(self.prepared, mem.positions), params=self.params,
            iterations=self.iterations, every=self.every, device=self.device,
            backend=self.backend, x0=None, start=self.start, heldout=self.heldout, seed=mem.seed,
            chunk=self._chunk, overlap=self._overlap, source=self.source,
        )
        rec.preview = self.preview and i == 0
        return rec

    def _steps(self) -> Iterator[Step]:
        n = len(self.members)
        mode, count = self.plan.mode, self.plan.count
        map_at = -np.inf
        for i in range(n):
            rec = self._member_run(i)
            self.runs.append(rec)
            label = self.members[i].label
            try:
                for st in rec:
                    if st.phase == "preview":
                        yield _as_trust(st, member=(i, n))
                        continue
                    current = [*self.volumes, st.volume]
                    mean = np.mean(current, axis=0, dtype=np.float32) if i else st.volume
                    umap = None
                    now = time.monotonic()
                    if i and now - map_at >= MAP_EVERY_S:
                        umap = self._map(current, mode, count, mean)
                        map_at = time.monotonic()
                        if umap is not None:
                            self.current_map = umap
                    phase = label if st.phase == "iterate" else f"{label}: {st.phase}"
                    yield _as_trust(st, volume=mean, phase=phase, uncertainty=umap, member=(i, n),
                                    resume=None, model=None)
            finally:
                rec.close()
            if rec.stopped:  # a stop inside the member: the whole run stops
                raise StopRequested
            if rec.last is None or rec.last.phase == "preview":
                raise DataError(f"{label} of the {self.method.label} run produced no volume")
            self.volumes.append(np.asarray(rec.last.volume, np.float32))
        with shielded():  # a second's work that must finish once the members have
            final = self._final_step(rec.last)
        yield final

    def _map(self, volumes: list[np.ndarray], mode: str, count: int,
             mean: np.ndarray) -> np.ndarray | None:
        std = spread(volumes, mode, count)
        if std is None:
            return None
        return std / np.float32(contrast(mean))

    def _final_step(self, last: Step) -> TrustStep:
        from ..metrics import reprojection_residual
        from ..operators import make_projector
        from ..resolution import directional_fsc

        mean = np.mean(self.volumes, axis=0, dtype=np.float32)
        self.contrast = contrast(mean)
        std = spread(self.volumes, self.plan.mode, self.plan.count)
        self.uncertainty = None if std is None else std / np.float32(self.contrast)
        if self.uncertainty is not None:
            self.current_map = self.uncertainty
        resolution = None
        g = self.prepared.geometry
        extras: dict[str, Any] = {"members": len(self.members), "trust": self.plan.mode}
        if self.plan.mode == "halves":
            self.fsc = directional_fsc(self.volumes[0], self.volumes[1], pixel_size=g.pixel_size,
                                       pixel_unit=g.pixel_unit, tilt_axis=g.tilt_axis)
            resolution = self.fsc.summary(curves=False)
            for which in ("spherical", "xy", "z"):
                value = self.fsc.resolution(which)
                if np.isfinite(value):
                    extras[f"resolution_{which}"] = round(float(value), 4)
        p = self.prepared
        vc = self.canonical(mean)
        A = make_projector(g.angles, vc.shape, p.volume_shape[2], backend=self.backend,
                           device=self.device)
        residual = reprojection_residual(A, vc, np.asarray(p.series, np.float32))
        return TrustStep(
            iteration=last.iteration, volume=mean, residual=residual, total=last.total,
            phase="iterate", extras=extras, uncertainty=self.uncertainty,
            member=None, resolution=resolution,
        )

    # -- results ---------------------------------------------------------------------------------
    def halves(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The first pair's two half-set volumes (a half-set run that has finished them)."""
        if self.plan.mode != "halves" or len(self.volumes) < 2:
            return None
        return self.volumes[0], self.volumes[1]

    def heldout_mask(self) -> np.ndarray | None:
        """Pixels held out of every fit: those of one pair of halves (each tilt is fitted by
        one half only); None for an ensemble or several pairs (members fit each other's)."""
        if self.heldout <= 0 or self.plan.mode != "halves" or self.plan.count != 1:
            return None
        from ..metrics import heldout_mask

        shape = self.prepared.series.shape
        full = np.zeros(shape, bool)
        for mem in self.members[:2]:
            full[mem.positions] = heldout_mask((mem.positions.size, *shape[1:]),
                                               fraction=self.heldout, seed=mem.seed)
        return full

    def trust_record(self) -> dict[str, Any]:
        """The ``"trust"`` block of the provenance: members, map and resolution."""
        kept = self.prepared.selection.indices
        members = []
        for i, mem in enumerate(self.members):
            rec = self.runs[i] if i < len(self.runs) else None
            last = None if rec is None else rec.last
            members.append({
                "label": mem.label,
                "kept_tilts": [int(kept[j]) for j in mem.positions],
                "seed": mem.seed,
                "iterations": None if last is None else int(last.iteration),
                "seconds": None if rec is None else round(rec.seconds, 3),
                "final_residual": (None if last is None or last.residual is None
                                   or not np.isfinite(last.residual) else float(last.residual)),
                "finished": bool(rec is not None and rec.finished),
                "result": {} if rec is None else rec.provenance().get("result", {}),
            })
        how = ("half the difference of the two halves, (a - b) / 2, root mean square over the "
               "pairs" if self.plan.mode == "halves" else
               "delete-a-group jackknife over the members, sqrt((K-1)/K sum (x_k - mean)^2)")
        out: dict[str, Any] = {
            "mode": self.plan.mode,
            "count": self.plan.count,
            "members": members,
            "result": "the mean of the members",
            "uncertainty": {
                "measure": f"per-voxel standard deviation: {how}; Gaussian-smoothed variance "
                           f"(sigma {SMOOTH:g} voxel), divided by the contrast of the result",
                "smooth_sigma": SMOOTH,
                "contrast": self.contrast,
                "contrast_definition": "0.5-99.5 percentile range of the result",
            },
        }
        u = self.uncertainty
        if u is not None:
            q = np.percentile(u.ravel()[:: max(1, u.size // 1_000_000)], (50, 95, 99))
            out["uncertainty"].update(median=round(float(q[0]), 5), p95=round(float(q[1]), 5),
                                      p99=round(float(q[2]), 5))
        if self.fsc is not None:
            out["resolution"] = self.fsc.summary(curves=True)
        return out

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        prov["trust"] = self.trust_record()
        return prov
