"""INR: implicit neural representation with joint alignment.

A coordinate network ``f(x, y, z) -> density`` is fitted so that integrals
of ``f`` along the rays of the measured pixels match the data, while the
pose of every tilt (shift, in-plane axis rotation, optionally a tilt-angle
offset) is optimised at the same time. The network's inductive bias fills
the missing wedge and the pose optimisation aligns the series inline.

Each step samples a batch of detector pixels of the training set, maps them
through the current poses to rays in the volume, integrates ``f`` along the
rays by quadrature (stratified samples whose spacing shrinks over training)
and compares with the data (smooth L1 or MSE), plus an optional TV penalty
on random points. Poses have their own optimiser and learning rate and are
switched on after a warm-up; the tilt nearest 0° is the fixed reference.

The default field is a multiresolution feature grid with a small decoder
(``field="grid"``), fitted coarse to fine; a SIREN (``field="siren"``) as in
the INR tomography study and random Fourier features are available.

References
----------
.. [1] Lim, Casert, McCray, ..., Ophus, "Missing wedge inpainting and joint
   alignment in electron tomography through implicit neural
   representations" (quantEM).
.. [2] V. Sitzmann et al., "Implicit neural representations with periodic
   activation functions", NeurIPS 2020.
.. [3] T. Mueller et al., "Instant neural graphics primitives with a
   multiresolution hash encoding", SIGGRAPH 2022.
.. [4] C.-H. Lin et al., "BARF: bundle-adjusting neural radiance fields",
   ICCV 2021 (coarse-to-fine pose refinement).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cancel import checkpoint
from ..operators.base import Projector
from ..operators.pose import PoseModel
from ..step import Step
from ._common import quick_sirt
from ._declare import Param, method
from ._driver import Problem, Report, Solver, iterate
from ._fields import FIELDS, make_field

__all__ = ["INRModel", "inr", "render_projections"]


@dataclass
class INRModel:
    """A fitted INR: the field, its poses and the frame they live in (CPU copies)."""

    field_kind: str
    field_options: dict
    field_state: dict
    pose_state: dict
    volume_shape: tuple[int, int, int]  # canonical (z, y, x)
    det_cols: int
    angles: np.ndarray
    scale: float
    extras: dict = field(default_factory=dict)

    def build(self, device: str | torch.device = "cpu"):
        fld = make_field(self.field_kind, self.volume_shape, **self.field_options)
        fld.load_state_dict(self.field_state)
        fld.set_progress(1.0)
        shift = self.extras.get("translation")
        if shift is not None:  # the frame re-anchored on the reference tilt
            fld = _Translated(fld, torch.as_tensor(shift, dtype=torch.float32))
        pose = PoseModel(len(self.angles), reference=int(self.pose_state["reference"]),
                         per_tilt_axis=bool(self.pose_state["per_tilt_axis"]),
                         learn_angles=bool(self.pose_state["learn_angles"]))
        pose.load_state_dict(self.pose_state["state"])
        return fld.to(device).eval(), pose.to(device)


class _Translated(nn.Module):
    """The field moved by ``t`` (normalised ``(x, y, z)``): ``f(p - t)``."""

    def __init__(self, fld: nn.Module, t: torch.Tensor) -> None:
        super().__init__()
        self.fld = fld
        self.register_buffer("t", t)

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        return self.fld(pts - self.t)


class _Rays:
    """Geometry of rays in the canonical frame, normalised for the field."""

    def __init__(self, shape: Sequence[int], det_cols: int, angles: np.ndarray, device, dtype):
        self.z, self.y, self.x = (int(s) for s in shape)
        self.u = int(det_cols)
        self.half = 0.5 * math.hypot(self.z, self.x) + 1.0
        self.angles = torch.as_tensor(angles, device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        self.norm = torch.tensor(
            [max((self.x - 1) / 2, 0.5), max((self.y - 1) / 2, 0.5), max((self.z - 1) / 2, 0.5)],
            device=device, dtype=dtype,
        )

    def points(self, t: torch.Tensor, v: torch.Tensor, u: torch.Tensor, pose: PoseModel | None,
               n_samples: int, jitter: torch.Generator | None) -> tuple[torch.Tensor, float]:
        """Normalised sample points ``(n, n_samples, 3)`` and the sample spacing."""
        cy, cu = (self.y - 1) / 2, (self.u - 1) / 2
        vy, uu = v.to(self.dtype) - cy, u.to(self.dtype) - cu
        theta = self.angles[t]
        if pose is not None:
            rot = torch.deg2rad(pose.rotations()[t])
            c, s = torch.cos(rot), torch.sin(rot)
            sh = pose.shifts()[t]
            uu, vy = c * uu - s * vy + sh[:, 1], s * uu + c * vy + sh[:, 0]
            if pose.learn_angles:
                theta = theta + pose.offsets()[t]
        th = torch.deg2rad(theta)
        ds = 2 * self.half / n_samples
        base = -self.half + ds * (torch.arange(n_samples, device=self.device, dtype=self.dtype) + 0.5)
        if jitter is not None:  # stratified sampling, reproducible through the generator
            r = torch.rand(len(t), n_samples, generator=jitter, dtype=self.dtype).to(self.device)
            base = base + ds * (r - 0.5)
        else:
            base = base.expand(len(t), n_samples)
        cth, sth = torch.cos(th)[:, None], torch.sin(th)[:, None]
        px = uu[:, None] * cth + base * sth
        pz = -uu[:, None] * sth + base * cth
        py = vy[:, None].expand_as(px)
        pts = torch.stack((px, py, pz), -1) / self.norm
        return pts, ds

    def voxel_points(self) -> torch.Tensor:
        def axis(n: int) -> torch.Tensor:
            if n > 1:
                return torch.linspace(-1, 1, n, device=self.device, dtype=self.dtype)
            return torch.zeros(1, device=self.device, dtype=self.dtype)

        zz, yy, xx = torch.meshgrid(axis(self.z), axis(self.y), axis(self.x), indexing="ij")
        return torch.stack((xx, yy, zz), -1)


def _integrate(fld, rays: _Rays, t, v, u, pose, n_samples, jitter) -> torch.Tensor:
    pts, ds = rays.points(t, v, u, pose, n_samples, jitter)
    return fld(pts).sum(-1) * ds


#: field evaluations between two stop checks: an optimiser step over 4096 rays of ~180
#: samples each is ~740k evaluations (1-2.5 s on two CPU cores), so it is taken in parts
#: with the gradients summed, and Stop acts within a fraction of a second
POINT_BUDGET = 1 << 17


def _ray_parts(n_rays: int, n_samples: int) -> list[slice]:
    """Slices of the rays such that each part has at most ``POINT_BUDGET`` sample points."""
    per = max(1, POINT_BUDGET // max(1, n_samples))
    return [slice(i, i + per) for i in range(0, n_rays, per)]


@torch.no_grad()
def _integrate_parts(fld, rays: _Rays, t, v, u, pose, n_samples: int) -> torch.Tensor:
    """``_integrate`` without jitter, in parts, checking for a stop between them."""
    out = []
    for part in _ray_parts(len(t), n_samples):
        checkpoint()
        out.append(_integrate(fld, rays, t[part], v[part], u[part], pose, n_samples, None))
    return torch.cat(out) if out else torch.zeros(0, device=t.device)


@torch.no_grad()
def _volume(fld, rays: _Rays, chunk: int = 262144) -> torch.Tensor:
    pts = rays.voxel_points().reshape(-1, 3)
    out = []
    for i in range(0, len(pts), chunk):
        checkpoint()
        out.append(fld(pts[i:i + chunk]))
    return torch.cat(out).reshape(rays.z, rays.y, rays.x)


@torch.no_grad()
def _anchor(fld, rays: _Rays, pose: PoseModel, yn: torch.Tensor, n_samples: int):
    """Re-anchor the learned frame on the reference tilt.

    The reference tilt's shift is held fixed, but while the other tilts
    align, the field settles where the unaligned images put it, and the
    single pinned tilt pulls it back only slowly: the reference then
    disagrees with the field by a fraction of a pixel, and so do all shifts
    measured relative to it. This registers the field's projection at the
    reference tilt on the measured image (sub-pixel phase correlation) and
    moves the field by the translation ``T`` (across the axis and along it;
    none along the beam, which the reference cannot see) that removes the
    disagreement. The other tilts' shifts change by ``T``'s projection,
    ``(t_y, t_x cos theta)``, so every tilt stays exactly as well fitted:
    this is the package's reference gauge
    (:func:`~tomoprior.frames.fix_reference`) applied to the
    reference tilt's effective correction ``-R d``.

    Returns the anchored shift corrections ``(n, 2)`` (float64) and ``T`` in
    normalised ``(x, y, z)``.
    """
    from ..frames import fix_reference
    from ..registration import register

    ref = pose.reference
    ny, nu = yn.shape[1:]
    dev = yn.device
    vv, uu = torch.meshgrid(torch.arange(ny, device=dev), torch.arange(nu, device=dev), indexing="ij")
    vv, uu = vv.reshape(-1), uu.reshape(-1)
    tt = torch.full_like(vv, ref)
    pred = _integrate_parts(fld, rays, tt, vv, uu, pose, n_samples)
    # moving the prediction's content by d = (dv, du) makes it match the measured image
    d = register(yn[ref].float().cpu().numpy(), pred.reshape(ny, nu).float().cpu().numpy(),
                 max_shift=max(2.0, min(ny, nu) / 8))
    r = math.radians(float(pose.rotations()[ref]))
    c, sn = math.cos(r), math.sin(r)
    dv, du = sn * d[1] + c * d[0], c * d[1] - sn * d[0]  # into the field's frame (as _Rays.points)
    theta = rays.angles.double()
    if pose.learn_angles:
        theta = theta + pose.offsets().double()
    theta = theta.cpu().numpy()
    shifts = pose.shifts().double().cpu().numpy()
    shifts[ref] = (-dv, -du)  # the reference's correction against the field
    t_x = du / math.cos(math.radians(theta[ref]))
    t = torch.tensor([t_x, dv, 0.0], device=dev, dtype=rays.dtype) / rays.norm
    return fix_reference(shifts, theta, ref), t


def _tv_points(fld, n: int, rays: _Rays, rng: torch.Generator) -> torch.Tensor:
    """Mean gradient magnitude of the field at random points (finite differences of 1 voxel)."""
    p = ((torch.rand(n, 3, generator=rng, dtype=rays.dtype) * 2 - 1) * 0.98).to(rays.device)
    h = 1.0 / rays.norm
    f0 = fld(p)
    diffs = [fld(p + torch.eye(3, device=rays.device, dtype=rays.dtype)[i] * h[i]) - f0 for i in range(3)]
    return torch.sqrt(sum(d * d for d in diffs) + 1e-10).mean()


#: seconds of training after which a picture is shown although ``every`` is not reached. On
#: a 64-px slab and two CPU cores an optimiser step takes about a second and a picture (the
#: field on the voxel grid and its residual, no held-out error or poses) about a quarter of
#: one, so progress moves about every 2 s; ``every`` alone (100) would leave it still for
#: minutes
PACE = 1.5
#: what the loss is, by the ``loss`` option: the data term of the last batch of rays
OBJECTIVES = {"smooth_l1": "smooth-L1 data term (ray batch)",
              "mse": "mean square data term (ray batch)"}


@dataclass(frozen=True)
class INROptions:
    """The INR's parameters (see :func:`inr`)."""

    learn_pose: bool
    field: str
    lr: float
    batch_rays: int
    lr_pose: float
    pose_start: float
    anchor: bool
    learn_angles: bool
    per_tilt_axis: bool
    loss: str
    tv_weight: float
    val_fraction: float
    samples: int
    width: int
    depth: int


class _INR(Solver):
    label = "INR"
    hint = "lower the learning rate 'lr'"
    pace = PACE

    def __init__(self, opts: INROptions, iterations: int) -> None:
        self.o, self.iterations = opts, iterations
        self.objective = OBJECTIVES[opts.loss]

    def fitted(self, problem: Problem) -> torch.Tensor | None:
        """The training pixels (the held-out ones are never fitted)."""
        return getattr(self, "train", problem.mask)

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        o, A, dev = self.o, p.A, p.device
        self.p = p
        self.rng = torch.Generator(device="cpu").manual_seed(p.seed)
        _, self.scale = quick_sirt(A, p.y, p.mask)
        self.yn = (p.y / self.scale).float()
        train, val = p.split(o.val_fraction)
        self.train = train
        self.train_idx = (torch.nonzero(train > 0) if train is not None
                          else torch.nonzero(torch.ones_like(self.yn, dtype=torch.bool)))
        self.val_idx = torch.nonzero(val > 0) if val is not None else None
        if self.val_idx is not None and len(self.val_idx) > 16384:
            keep = torch.randperm(len(self.val_idx), generator=self.rng)[:16384].to(dev)
            self.val_idx = self.val_idx[keep]
        self.rays = _Rays(A.domain_shape, A.det_cols, A.angles, dev, torch.float32)
        self.n_full = o.samples or int(math.ceil(2 * self.rays.half))
        self.field_options = {"width": o.width, "depth": o.depth} if o.field != "grid" else {}
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(p.seed)
            self.fld = make_field(o.field, A.domain_shape, **self.field_options).to(dev)
        self.ref = int(np.argmin(np.abs(A.angles)))
        self.pose = PoseModel(A.n_tilts, reference=self.ref, per_tilt_axis=o.per_tilt_axis,
                              learn_angles=o.learn_angles).to(dev)
        self.opt = torch.optim.Adam(self.fld.parameters(), lr=o.lr)
        self.pose_opt = torch.optim.Adam(self.pose.param_groups(o.lr_pose, o.lr_pose * 0.2),
                                         lr=o.lr_pose)
        its = max(self.iterations, 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda k: 0.1 ** (k / its))
        self.crit = ((lambda a, b: F.smooth_l1_loss(a, b, beta=0.05)) if o.loss == "smooth_l1"
                     else F.mse_loss)
        self.warm = x0 is not None
        if self.warm:
            self._fit_volume((p.start_volume(x0) / self.scale).float())
        self.t_start, self.rays_done, self.k = time.perf_counter(), 0, 0
        self.loss_value: float | None = None
        self.shift: torch.Tensor | None = None  # the frame of the last report (anchor)
        return iter(())

    def _fit_volume(self, target: torch.Tensor) -> None:
        """Warm start: fit the field to a given volume on random voxels."""
        vox = self.rays.voxel_points().reshape(-1, 3)
        tv = target.reshape(-1)
        self.fld.set_progress(1.0)
        for _k in range(200):
            checkpoint()
            sel = torch.randint(0, len(vox), (min(65536, len(vox)),), generator=self.rng)
            sel = sel.to(self.p.device)
            self.opt.zero_grad(set_to_none=True)
            F.mse_loss(self.fld(vox[sel]), tv[sel]).backward()
            self.opt.step()

    def _pose(self) -> PoseModel | None:
        return self.pose if self.o.learn_pose else None

    def update(self, k: int) -> float:
        o = self.o
        frac = k / max(self.iterations, 1)
        self.fld.set_progress(1.0 if self.warm else min(1.0, 2 * frac))
        self.n_s = max(8, int(self.n_full * (0.5 + 0.5 * min(1.0, 2 * frac))))
        sel = torch.randint(0, len(self.train_idx), (int(o.batch_rays),), generator=self.rng)
        t, v, u = self.train_idx[sel.to(self.p.device)].unbind(1)
        self.opt.zero_grad(set_to_none=True)
        self.pose_opt.zero_grad(set_to_none=True)
        parts = _ray_parts(len(t), self.n_s)
        lval = torch.zeros((), device=t.device)
        for i, part in enumerate(parts):  # one part: the whole batch at once, as always
            if i:
                checkpoint()  # a stop here leaves the parameters as they were
            tp, vp, up = t[part], v[part], u[part]
            pred = _integrate(self.fld, self.rays, tp, vp, up, self._pose(), self.n_s, self.rng)
            # the batch mean as a sum of part means weighted by their share of the rays
            lp = self.crit(pred, self.yn[tp, vp, up]) * (len(tp) / len(t))
            loss = lp
            if o.tv_weight > 0 and i == len(parts) - 1:
                loss = loss + o.tv_weight * _tv_points(self.fld, 4096, self.rays, self.rng)
            loss.backward()
            lval = lval + lp.detach()
        self.k = k  # the step is taken: a stop before this left the parameters as they were
        self.opt.step()
        self.sched.step()
        if self._poses_move():
            self.pose_opt.step()
        self.rays_done += len(t)
        self.loss_value = float(lval.detach())
        return self.loss_value

    def _poses_move(self) -> bool:
        return self.o.learn_pose and self.k / max(self.iterations, 1) > self.o.pose_start

    @torch.no_grad()
    def report(self, iteration: int, last: bool) -> Report:
        o, rays, pose = self.o, self.rays, self.pose
        val_loss = None
        if self.val_idx is not None:
            tv_, vv, uv = self.val_idx.unbind(1)
            pv = _integrate_parts(self.fld, rays, tv_, vv, uv, self._pose(), self.n_full)
            val_loss = float(F.mse_loss(pv, self.yn[tv_, vv, uv]))
        # reported poses and volume share one frame, anchored on the reference tilt
        anchored, shift = None, None
        if self._poses_move() and o.anchor:
            anchored, shift = _anchor(self.fld, rays, pose, self.yn, self.n_full)
        self.shift = shift
        vol = self._sampled()
        extras = self._extras()
        poses = None
        if o.learn_pose:
            poses = pose.as_dict()
            if anchored is not None:
                poses["shifts"] = anchored.round(4).tolist()
                poses["anchor_translation"] = (
                    (shift * rays.norm).cpu().double().numpy().round(4).tolist())
        model = self._model(anchored, shift) if last else None
        return Report(vol, self.loss_value, heldout=val_loss, poses=poses, model=model,
                      extras=extras)

    @torch.no_grad()
    def picture(self, iteration: int) -> Report:
        """The field on the voxel grid, in the frame of the last report, between two reports.

        The held-out error and the anchored poses are left to the reports:
        they cost several times the picture.
        """
        return Report(self._sampled(), self.loss_value, extras=self._extras())

    def _sampled(self) -> torch.Tensor:
        """The field on the voxel grid (data units), moved by the anchor of the last report."""
        shown = self.fld if self.shift is None else _Translated(self.fld, self.shift)
        return _volume(shown, self.rays) * self.scale

    def _extras(self) -> dict[str, Any]:
        el = time.perf_counter() - self.t_start
        return {"train_loss": self.loss_value, "samples": getattr(self, "n_s", self.n_full),
                "rays_per_s": self.rays_done / max(el, 1e-9), "field": self.o.field}

    def _model(self, anchored: np.ndarray | None, shift: torch.Tensor | None) -> INRModel:
        o, A = self.o, self.p.A
        state = {n: t.detach().cpu() for n, t in self.pose.state_dict().items()}
        if anchored is not None:
            state["shift_init"] = torch.from_numpy(anchored).float()
            state["shift_delta"] = torch.zeros_like(state["shift_delta"])
        return INRModel(
            o.field, self.field_options,
            {n: t.detach().cpu() for n, t in self.fld.state_dict().items()},
            {"reference": self.ref, "per_tilt_axis": o.per_tilt_axis,
             "learn_angles": o.learn_angles, "state": state},
            tuple(A.domain_shape), A.det_cols, np.asarray(A.angles), self.scale,
            {} if shift is None else {"translation": shift.detach().cpu().tolist()},
        )


@method(
    "inr", label="INR", order=50, learns_poses=True,
    help="Implicit neural representation fitted along rays, optionally learning per-tilt "
    "shifts and the tilt axis; renders virtual projections.",
    params=(
        Param("learn_pose", "Learn alignment", "Refine per-tilt shifts and the axis"),
        Param("field", "Network", "grid: multiresolution grid (fast); siren; fourier",
              choices=tuple(FIELDS)),
        Param("lr", "Learning rate", "Adam step size of the network", min=1e-6, max=1.0,
              log=True),
        Param("batch_rays", "Rays per step", "Detector pixels per optimiser step",
              min=64, max=1_000_000, advanced=True),
        Param("lr_pose", "Pose learning rate", "Adam step size of shifts (px); the axis (deg) "
              "learns at a fifth of it", min=0.0, max=1.0, log=True, advanced=True),
        Param("pose_start", "Pose warm-up", "Fraction of steps before poses move",
              min=0.0, max=1.0, advanced=True),
        Param("anchor", "Anchor on reference", "Report volume and poses in the frame of the "
              "tilt nearest 0° (registered on its image)", advanced=True),
        Param("learn_angles", "Learn tilt offsets", "Refine tilt angles (needs more data)",
              advanced=True),
        Param("per_tilt_axis", "Per-tilt axis", "Refine the in-plane rotation per tilt",
              advanced=True),
        Param("loss", "Loss", "Data loss", choices=tuple(OBJECTIVES), advanced=True),
        Param("tv_weight", "TV weight", "TV penalty on random points (0: off)", min=0.0,
              max=100.0, advanced=True),
        Param("val_fraction", "Validation fraction", "Held-out pixels (0 disables)",
              min=0.0, max=0.5, advanced=True),
        Param("samples", "Samples per ray", "0: one per voxel", min=0, max=4096, advanced=True),
        Param("width", "Width (siren/fourier)", "Hidden units", min=8, max=1024, advanced=True),
        Param("depth", "Depth (siren/fourier)", "Hidden layers", min=1, max=12, advanced=True),
    ),
    citation="Lim, Casert, McCray, ..., Ophus (quantEM INR); Sitzmann et al., NeurIPS 2020",
)
def inr(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 2000,
    every: int = 100,
    x0: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    seed: int = 0,
    learn_pose: bool = False,
    field: str = "grid",
    lr: float = 1e-2,
    batch_rays: int = 4096,
    lr_pose: float = 5e-2,
    pose_start: float = 0.2,
    anchor: bool = True,
    learn_angles: bool = False,
    per_tilt_axis: bool = False,
    loss: str = "smooth_l1",
    tv_weight: float = 0.0,
    val_fraction: float = 0.05,
    samples: int = 0,
    width: int = 128,
    depth: int = 3,
) -> Iterator[Step]:
    """INR reconstruction (optionally with pose learning) as a generator of Steps.

    Not resumable: its learning-rate and coarse-to-fine schedules depend on
    the planned number of iterations.

    Parameters
    ----------
    A : Projector
        Gives the canonical geometry (angles, volume shape, detector size);
        the INR integrates along rays itself and calls ``A`` only for the
        steps' ``residual``.
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Optimiser steps (each over ``batch_rays`` rays).
    every : int
        Snapshot interval. Between two snapshots a picture comes at least
        every ``PACE`` seconds of training (the field on the voxel grid,
        without ``heldout`` and ``poses``), so progress shows on a CPU too.
    x0 : volume, optional
        Warm start: the field is first fitted to this volume.
    mask : bool array like ``y``, optional
        Pixels to fit; the others are the validation set.
    seed : int
        Seeds the field, the ray batches and the validation split.
    learn_pose : bool
        Learn per-tilt shifts and the global in-plane axis rotation.
    field : "grid", "siren" or "fourier"
    lr, lr_pose : float
        Learning rates of the field and of the poses (pixels and degrees).
    batch_rays : int
    pose_start : float
        Fraction of the iterations before poses are released.
    anchor : bool
        With pose learning, report the volume and poses in the frame of the
        reference tilt (see :func:`_anchor`); the fit itself is unchanged.
    learn_angles, per_tilt_axis : bool
        Also learn tilt-angle offsets / a per-tilt axis rotation.
    loss : "smooth_l1" or "mse"
    tv_weight : float
        Weight of the TV penalty on random points (0 disables it).
    val_fraction : float
    samples : int
        Samples per ray at the end of training (0: one per voxel along the
        longest ray); training starts with half as many.
    width, depth : int
        Size of the siren and fourier fields.

    Yields
    ------
    Step
        The field sampled on the voxel grid; ``loss`` is the data term of the
        last batch of rays (``OBJECTIVES``), ``residual`` that of the
        sampled volume projected by ``A`` over the training pixels (learned
        poses are not applied to it); ``poses`` holds the current
        alignment (canonical frame), ``heldout`` the held-out error,
        ``extras`` ``rays_per_s``; the last step's ``model`` is an
        :class:`INRModel` for :func:`render_projections`.
    """
    opts = INROptions(learn_pose=learn_pose, field=field, lr=lr, batch_rays=batch_rays,
                      lr_pose=lr_pose, pose_start=pose_start, anchor=anchor,
                      learn_angles=learn_angles, per_tilt_axis=per_tilt_axis, loss=loss,
                      tv_weight=tv_weight, val_fraction=val_fraction, samples=samples,
                      width=width, depth=depth)
    problem = Problem.build(A, y, mask, seed)
    return iterate(_INR(opts, iterations), problem, name="inr", iterations=iterations,
                   every=every, start=start, x0=x0)


@torch.no_grad()
def render_projections(
    model: INRModel,
    angles: Sequence[float] | np.ndarray,
    *,
    rows: int | None = None,
    cols: int | None = None,
    samples: int = 0,
    device: str | torch.device = "cpu",
    frame: str = "canonical",
    geometry: Any = None,
) -> np.ndarray:
    """Virtual projections of a fitted INR at any tilt angles.

    Parameters
    ----------
    model : INRModel
        From the last Step of :func:`inr` (``step.model``).
    angles : degrees
        Any tilt angles, measured or not (e.g. to fill the missing wedge or
        interpolate between tilts).
    rows, cols : int, optional
        Detector size (defaults: the volume's y size and the training
        detector width).
    frame : {"canonical", "input"}
        ``"canonical"``: the tilt axis along the rows (as the fit sees
        them). ``"input"``: as the microscope records them for
        ``geometry``'s tilt axis (quarter turns and the fine axis rotation
        undone), beside the measured frames of the series.
    geometry : TiltGeometry, optional
        The run's geometry (needed for ``frame="input"``), e.g.
        ``rec.prepared.geometry``.

    Returns
    -------
    ndarray (n_angles, rows, cols), float32, in the data's units, aligned
    (learned poses are not applied), in the chosen frame.
    """
    from ..errors import GeometryError

    if frame not in ("canonical", "input"):
        raise GeometryError(f"frame must be 'canonical' or 'input', got {frame!r}")
    if frame == "input" and geometry is None:
        raise GeometryError("frame='input' needs the geometry of the run (its tilt axis)")
    dev = torch.device(device)
    fld, _pose = model.build(dev)
    z, ny, nx = model.volume_shape
    rows = rows or ny
    cols = cols or model.det_cols
    ang = np.asarray(angles, dtype=np.float64).reshape(-1)
    rays = _Rays((z, ny, nx), cols, ang, dev, torch.float32)
    n_s = samples or int(math.ceil(2 * rays.half))
    out = torch.zeros(len(ang), rows, cols, device=dev)
    vv, uu = torch.meshgrid(torch.arange(rows, device=dev), torch.arange(cols, device=dev), indexing="ij")
    vv, uu = vv.reshape(-1), uu.reshape(-1)
    for i in range(len(ang)):
        t = torch.full_like(vv, i)
        for j in range(0, len(vv), 16384):
            sl = slice(j, j + 16384)
            out[i].view(-1)[sl] = _integrate(fld, rays, t[sl], vv[sl], uu[sl], None, n_s, None)
    images = (out * model.scale).cpu().numpy().astype(np.float32)
    if frame == "input":
        from ..projections import canonical_to_frame

        images = canonical_to_frame(images, geometry.tilt_axis)
    return images
