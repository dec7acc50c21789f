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
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..operators.base import Projector
from ..step import Step
from ._common import as_tensor, init_volume, quick_sirt, release, snapshot, validation_split
from ._tv import tv_norm
from ._unet import SkipNet

__all__ = ["diptv", "parse_channels"]


def parse_channels(channels: str | tuple | list) -> tuple[int, ...]:
    """``"16,32,64"`` or a sequence -> tuple of ints."""
    if isinstance(channels, str):
        parts = [p for p in channels.replace(" ", "").split(",") if p]
        chs = tuple(int(p) for p in parts)
    else:
        chs = tuple(int(c) for c in channels)
    if not chs or min(chs) < 1:
        raise ValueError(f"channels must be positive integers like '16,32,64', got {channels!r}")
    return chs


def _cpu(obj):
    """Deep copy of an optimiser state with tensors moved to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj


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
            raise ValueError(f"volume {tuple(base.shape)} too small for a DIP network")
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


def diptv(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 1000,
    lam: float | str = "auto",
    lr: float = 1e-3,
    x0: torch.Tensor | np.ndarray | None = None,
    every: int = 25,
    warm_start: str = "cstv",
    warm_iterations: int = 150,
    mode: str = "2d",
    channels: str | tuple = "16,32,64",
    in_channels: int = 8,
    batch_slices: int = 16,
    val_fraction: float = 0.05,
    ema: float = 0.7,
    amp: bool = True,
    mask: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
    start: int = 0,
    resume: dict | None = None,
    **_: object,
) -> Iterator[Step]:
    """DIP-TV reconstruction as a generator of :class:`~tomoprior.step.Step`.

    Parameters
    ----------
    A : Projector
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Optimiser steps of the network.
    lam : float or "auto"
        Relative TV weight (as CS-TV's ``lam``); ``"auto"`` takes the weight
        CS-TV chooses by the mean square error on held-out pixels.
    lr : float
        Adam learning rate.
    x0 : volume, optional
        Warm-start volume (overrides ``warm_start``).
    warm_start : "cstv", "sirt" or "none"
        Volume the network starts from: CS-TV's or SIRT's reconstruction
        (``warm_iterations`` iterations), or a flat start.
    mode : "2d" or "3d"
    channels : str or sequence
        Feature channels per level, e.g. ``"16,32,64"``.
    in_channels : int
        Random input channels (the warm-start volume is one more).
    batch_slices : int
        2D mode: each step fits a random slab of this many y-slices; 0 uses all.
    val_fraction : float
        Held-out detector pixels for validation when no ``mask`` is given.
    ema : float
        Decay, per snapshot, of the moving average shown while running.
    amp : bool
        bfloat16 autocast for the network on CUDA (ignored on the CPU).
    mask : bool array like ``y``, optional
        Pixels to fit; the others are the validation set.
    seed : int
        Seeds the network, its input, the slab order and the validation split.
    resume : dict, optional
        ``extras["resume"]`` of the last Step of an earlier call: continues
        exactly (network, optimiser, average and best snapshot).

    Yields
    ------
    Step
        ``phase`` "warm start" steps while the warm start runs, then "dip"
        steps every ``every`` network steps showing the moving average; the
        last step holds the best snapshot by held-out error
        (``best_iteration``; 0 means the warm start was best). Extras:
        ``train_loss``, ``val_loss``, ``tv``, ``lam``. ``loss`` and these
        extras are those of the network's whole current volume (data term +
        ``lam`` x TV), not of the last slab, so the curve is smooth.
    """
    if mode not in ("2d", "3d"):
        raise ValueError(f"mode must be '2d' or '3d', got {mode!r}")
    if warm_start not in ("cstv", "sirt", "none"):
        raise ValueError(f"warm_start must be 'cstv', 'sirt' or 'none', got {warm_start!r}")
    chs = parse_channels(channels)
    every = max(1, int(every))
    y = as_tensor(y, A)
    m = None if mask is None else as_tensor(mask, A, "mask")
    dev = A.device
    try:
        if resume is not None:
            sirt_vol, scale = None, float(resume["scale"])
        else:
            sirt_vol, scale = quick_sirt(A, y, m)
        yn = (y / scale).float()
        train, val = validation_split(tuple(yn.shape), m, val_fraction, seed, yn)
        total = start + iterations
        if resume is not None:
            mode, chs, in_channels = resume["mode"], tuple(resume["channels"]), resume["in_channels"]
            lam, warm, base = float(resume["lam"]), bool(resume["warm"]), resume["base"].to(dev)
        else:
            warm_vol, lam = yield from _warm_start(
                A, y, x0, warm_start, warm_iterations, lam, train, val_fraction, seed, every,
                sirt_vol, start, total,
            )
            warm = warm_vol is not None
            base = (warm_vol / scale).float() if warm else torch.full(
                A.domain_shape, float(sirt_vol.mean() / scale), device=dev)
        lam = float(lam)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        gen = _Generator(base, mode, chs, int(in_channels), dev, seed, warm)
        yield from _fit(gen, A, yn, train, val, lam, lr, iterations, every, batch_slices, ema,
                        amp, seed, start, total, scale, resume,
                        {"mode": mode, "channels": list(chs), "in_channels": int(in_channels),
                         "lam": lam, "warm": warm, "base": base.detach().cpu()})
    finally:
        release(dev)


def _warm_start(A, y, x0, warm_start, warm_iterations, lam, train, val_fraction, seed, every,
                sirt_vol, start, total):
    """Warm-start volume (data units, or None for a flat start) and the TV weight to use.

    CS-TV runs on the training pixels only, so the held-out pixels stay unseen.
    """
    from .cstv import cstv
    from .sirt import sirt

    auto = isinstance(lam, str) and lam.strip().lower() == "auto"
    if not auto:
        lam = float(lam)
    vol = None if x0 is None else init_volume(A, x0)
    if vol is None and warm_start == "sirt":
        last = None
        for last in sirt(A, y, iterations=max(1, int(warm_iterations)), every=every, mask=train):
            yield Step(start, last.volume, last.loss,
                       {"phase": "warm start", "warm_iteration": last.iteration}, total)
        vol = torch.from_numpy(last.volume).to(device=A.device, dtype=A.dtype)
    if auto or (vol is None and warm_start == "cstv"):
        last = None
        # the mean-square rule: on data no volume fits it picks a stronger lambda than the
        # median, and the network, started from a weaker one, fits the inconsistency
        gen = cstv(A, y, iterations=max(1, int(warm_iterations)), lam="auto" if auto else lam,
                   lam_rule="mean square",
                   every=every, mask=train, val_fraction=max(val_fraction, 0.01), seed=seed)
        for last in gen:
            yield Step(start, last.volume, last.loss,
                       {"phase": "warm start", "warm_iteration": last.iteration,
                        "lam": last.extras.get("lam")}, total)
        if auto:
            lam = float(last.extras["lam"])
        if vol is None and warm_start == "cstv":
            vol = torch.from_numpy(last.volume).to(device=A.device, dtype=A.dtype)
    return vol, lam


def _fit(gen, A, yn, train, val, lam, lr, iterations, every, batch_slices, ema, amp, seed, start,
         total, scale, resume, config):
    """The DIP-TV iterations proper (slabs of slices, snapshots, best by held-out error)."""
    dev = A.device
    ny, nu = A.range_shape[1], A.range_shape[2]
    ones = torch.ones_like(yn)
    train_w = ones if train is None else train
    n_val = float(val.sum()) if val is not None else 0.0
    b = ny if (gen.mode == "3d" or not batch_slices or batch_slices >= ny) else int(batch_slices)
    A_slab = A if b == ny else A.for_slices(b)
    order = torch.Generator().manual_seed(seed + 1)
    use_amp = bool(amp) and dev.type == "cuda" and torch.cuda.is_bf16_supported()
    opt = torch.optim.Adam(gen.net.parameters(), lr=lr)

    def forward(sl: slice | None) -> torch.Tensor:
        if use_amp:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return gen(sl)
        return gen(sl)

    def val_error(res: torch.Tensor) -> float:
        """Mean square held-out error of a residual ``A x - y``."""
        r = res * val
        return float((r * r).sum() / n_val)

    avg = None
    best: tuple[float, torch.Tensor | None, int] = (math.inf, None, start)
    val_loss: float | None = None
    if resume is not None:
        gen.net.load_state_dict(resume["net"])
        opt.load_state_dict(resume["opt"])
        avg = None if resume["avg"] is None else resume["avg"].to(dev)
        rb = resume["best"]
        best = (rb[0], None if rb[1] is None else rb[1].to(dev), rb[2])
        val_loss = resume["val"]
        order.set_state(resume["order"])
    elif val is not None:  # the starting point is a candidate too
        x_start = gen.full()
        best = (val_error(A(x_start) - yn), x_start, start)
    for k in range(1, iterations + 1):
        if b == ny:
            sl = slice(0, ny)
        else:
            s0 = int(torch.randint(0, ny - b + 1, (1,), generator=order))
            sl = slice(s0, s0 + b)
        opt.zero_grad(set_to_none=True)
        x = forward(sl)
        w = train_w[:, sl]
        r = (A_slab(x) - yn[:, sl]) * w
        data = 0.5 * (r * r).sum() / w.sum().clamp_min(1.0)
        tv = tv_norm(x, eps=1e-10) / float(x.shape[1] * nu)
        loss = data + lam * tv
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError("DIP-TV diverged (loss is not finite): lower the learning rate 'lr'")
        last = k == iterations
        if k % every == 0 or last:
            with torch.no_grad():
                xf = gen.full()
                avg = xf.clone() if avg is None else avg.mul_(ema).add_(xf, alpha=1 - ema)
                # the whole volume's objective: the slab losses jump from slab to slab
                res = A(xf) - yn
                rt = res * train_w
                data_full = float(0.5 * (rt * rt).sum() / train_w.sum().clamp_min(1.0))
                tv_full = float(tv_norm(xf)) / float(ny * nu)
                loss_value = data_full + lam * tv_full
                if val is not None:
                    val_loss = val_error(res)
                    if val_loss < best[0]:
                        best = (val_loss, xf.clone(), start + k)
                    v_avg = val_error(A(avg) - yn)
                    if v_avg < best[0]:
                        best = (v_avg, avg.clone(), start + k)
            extras = {"phase": "dip", "train_loss": data_full, "tv": tv_full,
                      "val_loss": val_loss, "lam": lam}
            shown = avg
            if last:
                if best[1] is not None:
                    extras["best_iteration"] = best[2]
                    extras["best_val_loss"] = best[0]
                    shown = best[1]
                extras["resume"] = {
                    **config, "scale": scale,
                    "net": {n: t.detach().cpu().clone() for n, t in gen.net.state_dict().items()},
                    "opt": _cpu(opt.state_dict()), "avg": None if avg is None else avg.cpu(),
                    "best": (best[0], None if best[1] is None else best[1].cpu(), best[2]),
                    "val": val_loss, "order": order.get_state(),
                }
            yield Step(start + k, snapshot(shown * scale), loss_value, extras, total)
