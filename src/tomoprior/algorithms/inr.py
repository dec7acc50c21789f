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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..operators.base import Projector
from ..operators.pose import PoseModel
from ..step import Step
from ._common import as_tensor, init_volume, quick_sirt, release, snapshot, validation_split
from ._fields import make_field

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


@torch.no_grad()
def _volume(fld, rays: _Rays, chunk: int = 262144) -> torch.Tensor:
    pts = rays.voxel_points().reshape(-1, 3)
    out = torch.cat([fld(pts[i:i + chunk]) for i in range(0, len(pts), chunk)])
    return out.reshape(rays.z, rays.y, rays.x)


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
    (:func:`~tomoprior.alignment._frame.fix_reference`) applied to the
    reference tilt's effective correction ``-R d``.

    Returns the anchored shift corrections ``(n, 2)`` (float64) and ``T`` in
    normalised ``(x, y, z)``.
    """
    from ..alignment._frame import fix_reference
    from ..alignment.register import register

    ref = pose.reference
    ny, nu = yn.shape[1:]
    dev = yn.device
    vv, uu = torch.meshgrid(torch.arange(ny, device=dev), torch.arange(nu, device=dev), indexing="ij")
    vv, uu = vv.reshape(-1), uu.reshape(-1)
    tt = torch.full_like(vv, ref)
    pred = torch.cat([_integrate(fld, rays, tt[i:i + 16384], vv[i:i + 16384], uu[i:i + 16384], pose,
                                 n_samples, None) for i in range(0, len(vv), 16384)])
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


def inr(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 2000,
    every: int = 100,
    field: str = "grid",
    batch_rays: int = 4096,
    samples: int = 0,
    lr: float = 1e-2,
    lr_pose: float = 5e-2,
    learn_pose: bool = False,
    learn_angles: bool = False,
    per_tilt_axis: bool = False,
    pose_start: float = 0.2,
    anchor: bool = True,
    loss: str = "smooth_l1",
    tv_weight: float = 0.0,
    val_fraction: float = 0.05,
    width: int = 128,
    depth: int = 3,
    x0: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
    start: int = 0,
    **_: object,
) -> Iterator[Step]:
    """INR reconstruction (optionally with pose learning) as a generator of Steps.

    Parameters
    ----------
    A : Projector
        Gives the canonical geometry (angles, volume shape, detector size);
        the INR integrates along rays itself and does not call ``A``.
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Optimiser steps (each over ``batch_rays`` rays).
    field : "grid", "siren" or "fourier"
    samples : int
        Samples per ray at the end of training (0: one per voxel along the
        longest ray); training starts with half as many.
    lr, lr_pose : float
        Learning rates of the field and of the poses (pixels and degrees).
    learn_pose : bool
        Learn per-tilt shifts and the global in-plane axis rotation.
    learn_angles, per_tilt_axis : bool
        Also learn tilt-angle offsets / a per-tilt axis rotation.
    pose_start : float
        Fraction of the iterations before poses are released.
    anchor : bool
        With pose learning, report the volume and poses in the frame of the
        reference tilt (see :func:`_anchor`); the fit itself is unchanged.
    loss : "smooth_l1" or "mse"
    tv_weight : float
        Weight of the TV penalty on random points (0 disables it).
    x0 : volume, optional
        Warm start: the field is first fitted to this volume.

    Yields
    ------
    Step
        The field sampled on the voxel grid; ``extras["poses"]`` holds the
        current alignment (canonical frame), ``val_loss``, ``rays_per_s``;
        the last step's ``extras["model"]`` is an :class:`INRModel` for
        :func:`render_projections`.
    """
    if loss not in ("smooth_l1", "mse"):
        raise ValueError(f"loss must be 'smooth_l1' or 'mse', got {loss!r}")
    y = as_tensor(y, A)
    m = None if mask is None else as_tensor(mask, A, "mask")
    dev = A.device
    every = max(1, int(every))
    gen_rng = torch.Generator(device="cpu").manual_seed(seed)
    try:
        _, scale = quick_sirt(A, y, m)
        yn = (y / scale).float()
        train, val = validation_split(tuple(yn.shape), m, val_fraction, seed, yn)
        train_idx = (torch.nonzero(train > 0) if train is not None
                     else torch.nonzero(torch.ones_like(yn, dtype=torch.bool)))
        val_idx = torch.nonzero(val > 0) if val is not None else None
        if val_idx is not None and len(val_idx) > 16384:
            val_idx = val_idx[torch.randperm(len(val_idx), generator=gen_rng)[:16384].to(dev)]
        rays = _Rays(A.domain_shape, A.det_cols, A.angles, dev, torch.float32)
        n_full = samples or int(math.ceil(2 * rays.half))
        options = {"width": width, "depth": depth} if field != "grid" else {}
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            fld = make_field(field, A.domain_shape, **options).to(dev)
        ref = int(np.argmin(np.abs(A.angles)))
        pose = PoseModel(A.n_tilts, reference=ref, per_tilt_axis=per_tilt_axis,
                         learn_angles=learn_angles).to(dev)
        opt = torch.optim.Adam(fld.parameters(), lr=lr)
        pose_opt = torch.optim.Adam(pose.param_groups(lr_pose, lr_pose * 0.2), lr=lr_pose)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.1 ** (k / max(iterations, 1)))
        crit = (lambda a, b: F.smooth_l1_loss(a, b, beta=0.05)) if loss == "smooth_l1" else F.mse_loss
        total = start + iterations

        if x0 is not None:  # warm start: fit the field to the given volume
            target = (init_volume(A, x0) / scale).float()
            vox = rays.voxel_points().reshape(-1, 3)
            tv = target.reshape(-1)
            fld.set_progress(1.0)
            for _k in range(200):
                sel = torch.randint(0, len(vox), (min(65536, len(vox)),), generator=gen_rng).to(dev)
                opt.zero_grad(set_to_none=True)
                F.mse_loss(fld(vox[sel]), tv[sel]).backward()
                opt.step()

        t_start = time.perf_counter()
        rays_done = 0
        val_loss = None
        for k in range(1, iterations + 1):
            frac = k / max(iterations, 1)
            fld.set_progress(min(1.0, 2 * frac) if x0 is None else 1.0)
            n_s = max(8, int(n_full * (0.5 + 0.5 * min(1.0, 2 * frac))))
            use_pose = learn_pose and frac > pose_start
            sel = torch.randint(0, len(train_idx), (int(batch_rays),), generator=gen_rng).to(dev)
            t, v, u = train_idx[sel].unbind(1)
            opt.zero_grad(set_to_none=True)
            pose_opt.zero_grad(set_to_none=True)
            pred = _integrate(fld, rays, t, v, u, pose if learn_pose else None, n_s, gen_rng)
            lval = crit(pred, yn[t, v, u])
            total_loss = lval + (tv_weight * _tv_points(fld, 4096, rays, gen_rng) if tv_weight > 0 else 0.0)
            total_loss.backward()
            opt.step()
            sched.step()
            if use_pose:
                pose_opt.step()
            rays_done += len(t)
            loss_value = float(lval.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError("INR diverged (loss is not finite): lower the learning rate 'lr'")
            if k % every == 0 or k == iterations:
                with torch.no_grad():
                    if val_idx is not None:
                        tv_, vv, uv = val_idx.unbind(1)
                        pv = _integrate(fld, rays, tv_, vv, uv, pose if learn_pose else None, n_full, None)
                        val_loss = float(F.mse_loss(pv, yn[tv_, vv, uv]))
                    # reported poses and volume share one frame, anchored on the reference tilt
                    anchored, shift = None, None
                    if use_pose and anchor:
                        anchored, shift = _anchor(fld, rays, pose, yn, n_full)
                    shown = fld if shift is None else _Translated(fld, shift)
                    vol = _volume(shown, rays) * scale
                el = time.perf_counter() - t_start
                extras = {"train_loss": loss_value, "val_loss": val_loss, "samples": n_s,
                          "rays_per_s": rays_done / max(el, 1e-9), "field": field}
                if learn_pose:
                    poses = pose.as_dict()
                    if anchored is not None:
                        poses["shifts"] = anchored.round(4).tolist()
                        poses["anchor_translation"] = (shift * rays.norm).cpu().double().numpy().round(4).tolist()
                    extras["poses"] = poses
                if k == iterations:
                    state = {n: p.detach().cpu() for n, p in pose.state_dict().items()}
                    if anchored is not None:
                        state["shift_init"] = torch.from_numpy(anchored).float()
                        state["shift_delta"] = torch.zeros_like(state["shift_delta"])
                    extras["model"] = INRModel(
                        field, options, {n: p.detach().cpu() for n, p in fld.state_dict().items()},
                        {"reference": ref, "per_tilt_axis": per_tilt_axis, "learn_angles": learn_angles,
                         "state": state},
                        tuple(A.domain_shape), A.det_cols, np.asarray(A.angles), scale,
                        {} if shift is None else {"translation": shift.detach().cpu().tolist()},
                    )
                yield Step(start + k, snapshot(vol), loss_value, extras, total)
    finally:
        release(dev)


@torch.no_grad()
def render_projections(
    model: INRModel,
    angles: Sequence[float] | np.ndarray,
    *,
    rows: int | None = None,
    cols: int | None = None,
    samples: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Virtual projections of a fitted INR at any tilt angles.

    Parameters
    ----------
    model : INRModel
        From the last Step of :func:`inr` (``step.extras["model"]``).
    angles : degrees
        Any tilt angles, measured or not (e.g. to fill the missing wedge or
        interpolate between tilts).
    rows, cols : int, optional
        Detector size (defaults: the volume's y size and the training
        detector width).

    Returns
    -------
    ndarray (n_angles, rows, cols), float32, in the data's units, aligned
    (learned poses are not applied) and in the canonical frame (tilt axis
    along the rows).
    """
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
    return (out * model.scale).cpu().numpy().astype(np.float32)
