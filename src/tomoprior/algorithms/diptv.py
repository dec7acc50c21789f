r"""DIP-TV: Deep Image Prior with a total-variation term.

An untrained encoder-decoder ``f_w`` maps a fixed input ``z`` to the volume;
its weights are fitted so that the projected volume matches the measured
pixels, plus a TV term:

.. math::

    \min_w \tfrac{1}{2N} \|M (A x_w - y)\|^2 + \lambda \frac{\mathrm{TV}(x_w)}{n_y n_u},
    \qquad x_w = \mathrm{softplus}(b + f_w(z))

The normalisation makes ``lam`` the same relative weight as CS-TV's (the
objective is CS-TV's divided by the number of detector pixels), so a good
CS-TV lambda is a good DIP-TV lambda, and ``lam="auto"`` takes the one
CS-TV chooses by the mean square error on held-out pixels (see CS-TV's
``lam_rule``). No training data is needed: the network's
architecture is the prior.

Efficiency on a CPU comes from four choices, each measured on simulated
Pt-on-carbon series:

* **Warm start of the output.** ``b`` is the (inverse-softplus) warm-start
  volume, by default CS-TV's, and the network's last layer starts at zero,
  so iteration 0 *is* the warm start; the network then only learns
  corrections. Without it, thousands of iterations go into re-learning what
  SIRT or CS-TV give in seconds.
* **Informed input.** ``z`` holds random channels that vary smoothly from
  slice to slice plus the warm-start volume itself; both fit several times
  faster than independent noise per slice.
* **Slabs of slices.** In the 2D mode one network is shared by all y-slices
  (slices are the batch) and each step fits a random slab of
  ``batch_slices`` slices, so steps are cheap and every step improves the
  shared network.
* **Group normalisation**, so a slice's output does not depend on which
  slices share its slab.

DIP eventually fits noise: a small random fraction of detector pixels is
held out, the whole volume is evaluated every ``every`` steps, and the
snapshot with the lowest held-out error (the warm start included) is
returned at the end; a moving average of snapshots is shown while running.

References
----------
.. [1] D. Ulyanov, A. Vedaldi, V. Lempitsky, "Deep Image Prior", CVPR 2018.
.. [2] D. O. Baguer, J. Leuschner, M. Schmidt, "Computed tomography
   reconstruction using deep image prior and learned reconstruction
   methods", Inverse Problems 36, 094004 (2020).
.. [3] K. Gong et al., "PET image reconstruction using deep image prior",
   IEEE Trans. Med. Imaging 38, 1655 (2019) (an image as the network input).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..operators.base import Projector
from ..step import ResumeState, Step
from ._adapt import ADAPT_PARAMS, DEFAULT_LR, AdaptOptions, adapt_network
from ._common import quick_sirt, residual_ratio, robust_scale
from ._declare import Param, method
from ._dip_pretrained import PretrainedGenerator
from ._driver import Problem, Report, Solver, iterate
from ._restore_model import RestoreModel, load_model
from ._tv import tv_norm
from ._unet import SkipNet

__all__ = ["diptv", "parse_channels"]

DEFAULT_SLICES = 16  # slices per step of an untrained network (batch_slices="auto")
PRETRAINED_SLICES = 8  # of the trained one, whose small steps need fewer


def parse_channels(channels: str | tuple | list) -> tuple[int, ...]:
    """``"16,32,64"`` or a sequence -> tuple of ints."""
    try:
        if isinstance(channels, str):
            chs = tuple(int(p) for p in channels.replace(" ", "").split(",") if p)
        else:
            chs = tuple(int(c) for c in channels)
    except (TypeError, ValueError):
        chs = ()
    if not chs or min(chs) < 1:
        raise ParameterError(f"channels must be positive integers like '16,32,64', got {channels!r}")
    return chs


def _inverse_softplus(x: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    x = x.clamp_min(floor)
    return x + torch.log(-torch.expm1(-x))


def _smooth_noise(ny: int, channels: int, z: int, x: int, sigma: float) -> torch.Tensor:
    """Gaussian noise ``(ny, channels, z, x)`` smoothed along y, std 0.1."""
    noise = torch.randn(ny, channels, z, x)
    if sigma > 0 and ny > 1:
        r = int(3 * sigma)
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
        k = (k / k.sum()).reshape(1, 1, -1)
        flat = noise.permute(1, 2, 3, 0).reshape(-1, 1, ny)
        flat = F.conv1d(F.pad(flat, (r, r), mode="replicate"), k)
        noise = flat.reshape(channels, z, x, ny).permute(3, 0, 1, 2)
    return 0.1 * noise / noise.std().clamp_min(1e-12)


class _Generator:
    """Network + fixed input + base volume; maps to a canonical (z, y, x) volume."""

    def __init__(self, base: torch.Tensor, mode, channels, in_channels, device, seed,
                 warm: bool):
        z, ny, nx = base.shape
        self.mode = mode
        spatial = (z, nx) if mode == "2d" else (z, ny, nx)
        depth = min(len(channels), SkipNet.max_depth(spatial))
        if depth < 1:
            raise ParameterError(f"volume {tuple(base.shape)} too small for a DIP network")
        self.base = _inverse_softplus(base.float()).to(device)
        extra = 1 if warm else 0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            self.net = SkipNet(in_channels + extra, channels[:depth], dims=2 if mode == "2d" else 3)
            if mode == "2d":
                noise = _smooth_noise(ny, in_channels, z, nx, sigma=4.0)
            else:
                noise = 0.1 * torch.randn(1, in_channels, z, ny, nx)
        if warm:  # the network starts at zero: the first output is the warm start itself
            torch.nn.init.zeros_(self.net.head.weight)
            torch.nn.init.zeros_(self.net.head.bias)
            img = (base.float() / base.float().amax().clamp_min(1e-12)).cpu()
            img = img.permute(1, 0, 2)[:, None] if mode == "2d" else img[None, None]
            noise = torch.cat([noise, img], dim=1)
        self.net.to(device)
        self.z = noise.to(device)
        if mode == "2d":  # oneDNN / cuDNN convolutions run faster on NHWC tensors
            self.net.to(memory_format=torch.channels_last)
            self.z = self.z.contiguous(memory_format=torch.channels_last)

    def __call__(self, sl: slice | None = None) -> torch.Tensor:
        """The volume (or, in 2D mode, the y-slab ``sl`` of it) as ``(z, y, x)``."""
        if self.mode == "2d":
            z = self.z if sl is None else self.z[sl]
            delta = self.net(z)[:, 0].permute(1, 0, 2)  # (y, z, x) -> (z, y, x)
            base = self.base if sl is None else self.base[:, sl]
        else:
            delta, base = self.net(self.z)[0, 0], self.base
        return F.softplus(base + delta.float())

    @torch.no_grad()
    def full(self, chunk: int = 64) -> torch.Tensor:
        """The whole volume, evaluated slab by slab without gradients."""
        if self.mode != "2d":
            return self()
        ny = self.z.shape[0]
        return torch.cat([self(slice(i, min(ny, i + chunk))) for i in range(0, ny, chunk)], dim=1)


@dataclass(frozen=True)
class DIPOptions:
    """DIP-TV's parameters (see :func:`diptv`)."""

    lam: float | str
    lr: float | str
    warm_start: str
    warm_iterations: int
    mode: str
    channels: tuple[int, ...]
    in_channels: int
    batch_slices: int | str
    val_fraction: float
    ema: float
    amp: bool
    init: str = "warm"
    model: str = ""
    patience: int = 0
    adapt: AdaptOptions = field(default_factory=AdaptOptions)


class _DIPTV(Solver):
    label = "DIP-TV"
    hint = "lower the learning rate 'lr'"
    objective = "0.5/N*||M(Ax-y)||^2 + lam*TV(x)/(ny*nu)"

    def __init__(self, opts: DIPOptions, total: int, model: RestoreModel | None) -> None:
        self.o, self.total, self.model = opts, total, model
        self.adapted: dict = {}  # the adaptation's summary (init="pretrained", adapt > 0)
        self.since_best = 0  # snapshots since the held-out error last improved

    # -- set-up -------------------------------------------------------------------------
    def _data(self, p: Problem, scale: float) -> None:
        self.p, self.scale = p, scale
        self.yn = (p.y / scale).float()
        self.train, self.val = p.split(self.o.val_fraction)

    def fitted(self, problem: Problem) -> torch.Tensor | None:
        """The training pixels (the held-out ones are never fitted)."""
        return getattr(self, "train", problem.mask)

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        sirt_vol, scale = quick_sirt(p.A, p.y, p.mask)
        self._data(p, scale)
        pretrained = self.o.init == "pretrained"
        if pretrained:  # the network's input: the base reconstruction it was trained on
            its = int(self.model.card.get("input", {}).get("base_iterations", 100))
            warm_vol, lam = yield from self._warm_start(None, sirt_vol, start, "sirt", its,
                                                        base_mask=p.mask)
            if self.o.adapt.steps:  # the network first learns this series, then fits it
                self.adapted = yield from adapt_network(
                    self.model, p, warm_vol, self.o.adapt, seed=p.seed, start=start,
                    total=self.total, base_iterations=its)
        else:
            warm_vol, lam = yield from self._warm_start(x0, sirt_vol, start)
        warm = warm_vol is not None
        base = (warm_vol / scale).float() if warm else torch.full(
            p.A.domain_shape, float(sirt_vol.mean() / scale), device=p.device)
        self.config = {"mode": self.o.mode, "channels": list(self.o.channels),
                       "in_channels": self.o.in_channels, "lam": float(lam), "warm": warm,
                       "base": base, "init": self.o.init,
                       "base_scale": robust_scale(base.cpu().numpy()) if pretrained else 1.0}
        self._build(start)
        self.best = (math.inf, None, start)
        if self.val is not None:  # the starting point is a candidate too
            x_start = self.gen.full()
            self.best = (self._val_error(self.p.A(x_start) - self.yn), x_start, start)

    def restore(self, p: Problem, state: Mapping[str, Any], start: int) -> None:
        for key in ("seed", "val_fraction"):  # they decide the held-out split and the input
            now = p.seed if key == "seed" else self.o.val_fraction
            if state[key] != now:
                raise ParameterError(f"the resume state has {key}={state[key]}; a resumed run "
                                     f"keeps it (got {key}={now})")
        self._data(p, float(state["scale"]))
        keys = ("mode", "channels", "in_channels", "lam", "warm", "init", "base_scale")
        self.config = {k: state[k] for k in keys}
        self.config["base"] = state["base"].to(p.device)
        self._build(start)
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.avg = None if state["avg"] is None else state["avg"].to(p.device)
        rb = state["best"]
        self.best = (rb[0], None if rb[1] is None else rb[1].to(p.device), rb[2])
        self.val_loss = state["val"]
        self.since_best = int(state.get("since_best", 0))
        self.order.set_state(state["order"])

    def _build(self, start: int) -> None:
        c, o, dev = self.config, self.o, self.p.device
        self.lam = float(c["lam"])
        if c["init"] == "pretrained":
            self.gen = PretrainedGenerator(c["base"], self.model, c["base_scale"], dev)
        else:
            self.gen = _Generator(c["base"], c["mode"], tuple(c["channels"]),
                                  int(c["in_channels"]), dev, self.p.seed, bool(c["warm"]))
        self.net = self.gen.net
        ny = self.p.A.range_shape[1]
        self.train_w = torch.ones_like(self.yn) if self.train is None else self.train
        self.n_val = float(self.val.sum()) if self.val is not None else 0.0
        b = o.batch_slices
        if b == "auto":  # the trained network's steps are small (lr 1e-5): half the slices do
            b = PRETRAINED_SLICES if c["init"] == "pretrained" else DEFAULT_SLICES
        self.slab = ny if (c["mode"] == "3d" or not b or b >= ny) else int(b)
        self.A_slab = self.p.A if self.slab == ny else self.p.A.for_slices(self.slab)
        self.order = torch.Generator().manual_seed(self.p.seed + 1)
        self.use_amp = bool(o.amp) and dev.type == "cuda" and torch.cuda.is_bf16_supported()
        lr = o.lr if o.lr != "auto" else (1e-5 if c["init"] == "pretrained" else 1e-3)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=float(lr))
        self.avg: torch.Tensor | None = None
        self.val_loss: float | None = None

    def _warm_start(self, x0: Any, sirt_vol: torch.Tensor, start: int,
                    warm_start: str | None = None, iterations: int | None = None,
                    base_mask: Any = "train"):
        """Warm-start volume (data units, or None for a flat start) and the TV weight to use.

        CS-TV runs on the training pixels only, so the held-out pixels stay unseen. A SIRT
        base does too, except for the pretrained network (``base_mask``: the caller's mask
        only): SIRT from 95 % of the pixels of a sparse series has isolated outlier voxels
        the network never saw in training (ADF 10°: SSIM of the restored start 0.836 with
        all pixels, 0.794 without the held-out ones). The held-out pixels then reach the
        network's fixed input, but never the loss.
        """
        from .cstv import cstv
        from .sirt import sirt

        o, p = self.o, self.p
        auto = o.lam == "auto"
        lam = o.lam
        kind = warm_start or o.warm_start
        cs_its = max(1, int(o.warm_iterations))
        its = max(1, int(iterations or cs_its))
        every = max(1, its // 10)
        vol = None if x0 is None else p.start_volume(x0)

        def shown(st: Step, part: str, fitted: bool, **extras: Any) -> Step:
            # a copy: the warm start goes on from st.volume, whatever the consumer does;
            # its residual is DIP-TV's where the part fits the same pixels (``fitted``)
            inner = st.extras.get("phase_fraction")
            if inner is None and st.total:
                inner = st.iteration / st.total
            return Step(iteration=start, volume=st.volume.copy(), loss=st.loss,
                        residual=st.residual if fitted else None,
                        objective_name=st.objective_name, total=self.total,
                        phase="warm start", heldout=st.heldout,
                        extras={"warm_iteration": st.iteration, "warm_part": part,
                                **({} if inner is None else {"phase_fraction": float(inner)}),
                                **extras})

        if vol is None and kind == "sirt":
            last = None
            mask = self.train if isinstance(base_mask, str) else base_mask
            for last in sirt(p.A, p.y, iterations=its, every=every, mask=mask):
                yield shown(last, "SIRT", mask is self.train)
            vol = torch.from_numpy(last.volume).to(device=p.device, dtype=p.A.dtype)
        if auto or (vol is None and kind == "cstv"):
            last = None
            lam_only = vol is not None  # the start is made: CS-TV only chooses the weight
            # the mean-square rule: on data no volume fits it picks a stronger lambda than the
            # median, and the network, started from a weaker one, fits the inconsistency
            steps = cstv(p.A, p.y, iterations=cs_its, lam=lam, lam_rule="mean square",
                         every=1 if lam_only else max(1, cs_its // 10), mask=self.train,
                         val_fraction=max(o.val_fraction, 0.01), seed=p.seed)
            try:
                for last in steps:
                    if lam_only and last.phase != "lambda search":
                        break  # the weight is chosen; its fit would be thrown away
                    part = "λ search" if last.phase == "lambda search" else "CS-TV"
                    yield shown(last, part, True, lam=last.extras.get("lam"))
            finally:
                steps.close()
            if auto:
                lam = float(last.extras["lam"])
            if vol is None and kind == "cstv":
                vol = torch.from_numpy(last.volume).to(device=p.device, dtype=p.A.dtype)
        return vol, lam

    # -- iterations --------------------------------------------------------------------------
    def _val_error(self, res: torch.Tensor) -> float:
        """Mean square held-out error of a residual ``A x - y``."""
        r = res * self.val
        return float((r * r).sum() / self.n_val)

    def update(self, k: int) -> float:
        ny, nu = self.p.A.range_shape[1], self.p.A.range_shape[2]
        if self.slab == ny:
            sl = slice(0, ny)
        else:
            s0 = int(torch.randint(0, ny - self.slab + 1, (1,), generator=self.order))
            sl = slice(s0, s0 + self.slab)
        self.opt.zero_grad(set_to_none=True)
        if self.use_amp:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                x = self.gen(sl)
        else:
            x = self.gen(sl)
        w = self.train_w[:, sl]
        r = (self.A_slab(x) - self.yn[:, sl]) * w
        data = 0.5 * (r * r).sum() / w.sum().clamp_min(1.0)
        tv = tv_norm(x, eps=1e-10) / float(x.shape[1] * nu)
        loss = data + self.lam * tv
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def report(self, iteration: int, last: bool) -> Report:
        A, yn, tw = self.p.A, self.yn, self.train_w
        ny, nu = A.range_shape[1], A.range_shape[2]
        xf = self.gen.full()
        ema = self.o.ema
        self.avg = xf.clone() if self.avg is None else self.avg.mul_(ema).add_(xf, alpha=1 - ema)
        # the whole volume's objective: the slab losses jump from slab to slab
        res = A(xf) - yn
        rt = res * tw
        data = float(0.5 * (rt * rt).sum() / tw.sum().clamp_min(1.0))
        tv = float(tv_norm(xf)) / float(ny * nu)
        res_avg = None  # the residual of the average, where the held-out error needs it
        if self.val is not None:
            before = self.best[0]
            self.val_loss = self._val_error(res)
            if self.val_loss < self.best[0]:
                self.best = (self.val_loss, xf.clone(), iteration)
            res_avg = A(self.avg) - yn
            v_avg = self._val_error(res_avg)
            if v_avg < self.best[0]:
                self.best = (v_avg, self.avg.clone(), iteration)
            if not last:  # a plateau: snapshots in a row without a better held-out error
                self.since_best = 0 if self.best[0] < before else self.since_best + 1
        extras: dict[str, Any] = {"train_loss": data, "tv": tv, "lam": self.lam}
        if last:
            extras.update(self.adapted)
        shown, residual = self.avg, None
        if last and self.best[1] is not None:
            extras.update(best_iteration=self.best[2], best_heldout=self.best[0])
            shown = self.best[1]
        elif res_avg is not None:
            residual = residual_ratio(res_avg, yn, self.train)
        return Report(shown * self.scale, data + self.lam * tv, residual, heldout=self.val_loss,
                      extras=extras)

    def converged(self) -> bool:
        """The held-out error has not improved for ``patience`` snapshots: the best
        snapshot (the run's result) is behind, more steps only fit noise."""
        return self.o.patience > 0 and self.since_best >= self.o.patience

    def state(self) -> dict[str, Any]:
        return {**self.config, "scale": self.scale, "seed": self.p.seed,
                "val_fraction": self.o.val_fraction, "net": self.net.state_dict(),
                "opt": self.opt.state_dict(), "avg": self.avg, "best": self.best,
                "val": self.val_loss, "order": self.order.get_state(),
                "since_best": self.since_best}


@method(
    "diptv", label="DIP-TV", order=40,
    help="Deep Image Prior + TV: an untrained U-Net whose projected output must match the data; "
    "fills the missing wedge with natural structure. Best iterate kept by held-out pixels.",
    params=(
        Param("lam", "TV weight λ", "Relative TV weight (as CS-TV), or 'auto': the weight CS-TV "
              "picks by held-out pixels", min=0.0, max=100.0, log=True, allow_auto=True),
        Param("lr", "Learning rate", "Adam step size, or 'auto': 1e-3 for an untrained network, "
              "1e-5 for the pretrained one (0 keeps the start)", min=0.0, max=1.0, log=True,
              allow_auto=True),
        Param("warm_start", "Warm start", "Volume the network starts from",
              choices=("cstv", "sirt", "none")),
        Param("warm_iterations", "Warm-start iterations", "Iterations of the warm start",
              min=1, max=100000, advanced=True),
        Param("mode", "Network", "2d: one network over slices (fast); 3d: volume network",
              choices=("2d", "3d"), advanced=True),
        Param("channels", "Channels", "Feature channels per level", advanced=True),
        Param("in_channels", "Input channels", "Channels of the random input", min=1, max=128,
              advanced=True),
        Param("val_fraction", "Validation fraction", "Held-out pixels (0 disables)",
              min=0.0, max=0.5, advanced=True),
        Param("batch_slices", "Slices per step", "2D: random slab of slices per step (0: all), "
              "or 'auto': 16 for an untrained network, 8 for the pretrained one",
              min=0, max=100000, advanced=True, allow_auto=True),
        Param("ema", "Average decay", "Moving average of snapshots for the live view",
              min=0.0, max=0.9999, advanced=True),
        Param("amp", "Mixed precision", "bfloat16 network on CUDA", advanced=True),
        Param("init", "Network start", "warm: an untrained network on the warm start; "
              "pretrained: the trained restoration network on a SIRT base",
              choices=("warm", "pretrained")),
        Param("model", "Model file", "Restoration model for init=pretrained (empty: the "
              "shipped one)", advanced=True),
        Param("patience", "Patience", "Stop once this many snapshots in a row have not "
              "improved the held-out error; the best is kept (0: run every step)",
              min=0, max=100000, advanced=True),
        *ADAPT_PARAMS,
    ),
    citation="Ulyanov et al., CVPR 2018; Baguer et al., Inverse Problems 36 (2020) 094004",
    # the trained network starts near the result: a tenth of a cold start's steps
    defaults_when={"init": {"pretrained": {"iterations": 100, "every": 25}}},
)
def diptv(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 1000,
    every: int = 25,
    x0: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    resume: ResumeState | None = None,
    seed: int = 0,
    lam: float | str = "auto",
    lr: float | str = "auto",
    warm_start: str = "cstv",
    warm_iterations: int = 150,
    mode: str = "2d",
    channels: str = "16,32,64",
    in_channels: int = 8,
    val_fraction: float = 0.05,
    batch_slices: int | str = "auto",
    ema: float = 0.7,
    amp: bool = True,
    init: str = "warm",
    model: str = "",
    patience: int = 8,
    adapt: int = 0,
    adapt_loss: str = "wedge",
    adapt_lr: float = DEFAULT_LR,
    adapt_save: str = "",
) -> Iterator[Step]:
    """DIP-TV reconstruction as a generator of :class:`~tomoprior.step.Step`.

    Parameters
    ----------
    A : Projector
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Optimiser steps of the network.
    every : int
        Snapshot interval (each snapshot evaluates the whole volume).
    x0 : volume, optional
        Warm-start volume (overrides ``warm_start``).
    mask : bool array like ``y``, optional
        Pixels to fit; the others are the validation set.
    resume : ResumeState, optional
        ``step.resume`` of the last Step of an earlier call: continues
        exactly (network, optimiser, average and best snapshot).
    seed : int
        Seeds the network, its input, the slab order and the validation split.
    lam : float or "auto"
        Relative TV weight (as CS-TV's ``lam``); ``"auto"`` takes the weight
        CS-TV chooses by the mean square error on held-out pixels.
    lr : float or "auto"
        Adam learning rate; ``"auto"`` takes 1e-3 for an untrained network and 1e-5 for the
        pretrained one, whose weights larger steps move away from what training taught
        them (ADF ±60°/10°: 1e-5 keeps improving on the restored start, 1e-4 falls below it).
    warm_start : "cstv", "sirt" or "none"
        Volume the network starts from: CS-TV's or SIRT's reconstruction
        (``warm_iterations`` iterations), or a flat start.
    warm_iterations : int
    mode : "2d" or "3d"
    channels : str
        Feature channels per level, e.g. ``"16,32,64"``.
    in_channels : int
        Random input channels (the warm-start volume is one more).
    val_fraction : float
        Held-out detector pixels for validation when no ``mask`` is given.
    batch_slices : int or "auto"
        2D mode: each step fits a random slab of this many y-slices; 0 uses all.
        ``"auto"``: 16 for an untrained network, 8 for the pretrained one (half
        the network's cost per step; on docs/quality.md's specimens the same
        SSIM within 0.002, see docs/benchmarks/methods_speed.md).
    ema : float
        Decay, per snapshot, of the moving average shown while running.
    amp : bool
        bfloat16 autocast for the network on CUDA (ignored on the CPU).
    init : "warm" or "pretrained"
        ``"warm"``: an untrained network whose output starts at the warm
        start. ``"pretrained"``: the trained restoration network (``model``)
        with the slices of a SIRT base reconstruction as its input, so the
        first output is ``restore``'s result; fitting then makes it
        consistent with the data (``warm_start``, ``mode``, ``channels`` and
        ``in_channels`` do not apply).
    model : str
        Restoration model file for ``init="pretrained"`` (empty: the shipped one).
    patience : int
        The run ends once this many snapshots in a row (``every`` steps
        apart) have not lowered the held-out error: the best snapshot is its
        result and later steps only fit noise. 0 runs all ``iterations``;
        without held-out pixels it never stops early.
    adapt, adapt_loss, adapt_lr, adapt_save
        With ``init="pretrained"``: test-time adaptation of the trained
        network to this series (:mod:`~tomoprior.algorithms._adapt`) before
        DIP-TV fits it; 0 starts from the network as shipped.

    Notes
    -----
    Without ``iterations`` (and ``every``) a cold start runs 1000 steps,
    one from the trained network (``init="pretrained"``) 100: the method's
    declaration holds both.

    Yields
    ------
    Step
        "warm start" steps while the warm start runs, then a step every
        ``every`` network steps showing the moving average; the last step
        holds the best snapshot by held-out error (``best_iteration`` in
        ``extras``; ``start`` means the warm start was best). ``loss`` and
        the extras ``train_loss`` and ``tv`` are those of the network's
        whole current volume (data term + ``lam`` x TV), not of the last
        slab, so the curve is smooth; the warm start's steps carry the loss
        of the method that makes it (``objective_name`` says which);
        ``residual`` is that of the step's volume over the training pixels;
        ``heldout`` is the held-out error.
    """
    opts = DIPOptions(lam=lam, lr=lr, warm_start=warm_start, warm_iterations=warm_iterations,
                      mode=mode, channels=parse_channels(channels), in_channels=in_channels,
                      batch_slices=batch_slices, val_fraction=val_fraction, ema=ema, amp=amp,
                      init=init, model=model, patience=patience,
                      adapt=AdaptOptions.check(adapt, adapt_loss, adapt_lr, adapt_save))
    if adapt and init != "pretrained":
        raise ParameterError("adapt adapts the trained network: add --param init=pretrained")
    if model and init != "pretrained":
        raise ParameterError("model is used only with init='pretrained': add --param init=pretrained")
    if init == "pretrained" and mode != "2d":
        raise ParameterError("init='pretrained' needs mode='2d' (the trained network is 2D)")
    problem = Problem.build(A, y, mask, seed)
    if resume is not None and isinstance(resume, ResumeState):
        init = str(resume.data.get("init", init))  # a resumed run keeps its network
    net = load_model(model or None, A.device) if init == "pretrained" else None
    return iterate(_DIPTV(opts, start + iterations, net), problem, name="diptv",
                   iterations=iterations, every=every, start=start, x0=x0, resume=resume)
