"""Training of the frame-interpolation network (``tomoprior train interpolate``).

The data come from :mod:`tomoprior.phantoms._triplets`: the training series
are simulated once at the start (seed stream ``seed``), the validation
series from another stream (``seed + 1``), so no validation series is ever
trained on. Each step draws a batch of triplets (a series, a gap of 2-20°,
the middle's position ``t``, a ``patch_rows x patch_cols`` crop, random
flips and a random swap of left and right with ``t -> 1 - t``) and
minimises ``L1 + ssim_weight * (1 - SSIM)`` between the prediction and the
*clean* middle frame.

Everything random is seeded: the same command on the same number of threads
gives the same model. A checkpoint (``OUT.ckpt``) is written every
``checkpoint_every`` steps; ``resume=True`` continues from it exactly.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..errors import ModelError, ParameterError
from ..training import cosine_schedule, load_checkpoint, restore_generators, save_checkpoint
from ._model import save_model
from ._net import InterpNet

__all__ = ["InterpTrainConfig", "specimen_mask", "ssim_loss", "train_interpolate", "validate"]

VALIDATION_GAPS = (4, 8, 10, 16)


@dataclass
class InterpTrainConfig:
    """Everything that determines a trained interpolation model (recorded in its card)."""

    steps: int = 6000
    batch: int = 24
    patch_rows: int = 64
    patch_cols: int = 96
    lr: float = 2e-3
    channels: tuple[int, ...] = (16, 32, 48, 64)
    fold: int = 4
    series: int = 120
    val_series: int = 12
    seed: int = 0
    ssim_weight: float = 0.5
    checkpoint_every: int = 250
    validate_every: int = 1000
    until: int = 0  # > 0: stop after this step of the ``steps``-long schedule and write the model
    ranges: dict = field(default_factory=dict)  # overrides of TripletRanges (small tests)

    def check(self) -> None:
        if min(self.steps, self.batch, self.series, self.val_series) < 1:
            raise ParameterError("steps, batch, series and val_series must be >= 1")
        m = self.fold * 2 ** (len(self.channels) - 1)
        if self.patch_rows % m or self.patch_cols % m or min(self.patch_rows, self.patch_cols) < m:
            raise ParameterError(f"the patch sides must be multiples of {m}, got "
                                 f"{self.patch_rows} x {self.patch_cols}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"lr must be a positive number, got {self.lr}")
        if self.ssim_weight < 0 or not math.isfinite(self.ssim_weight):
            raise ParameterError(f"ssim_weight must be >= 0, got {self.ssim_weight}")
        if self.validate_every < 1 or self.checkpoint_every < 1:
            raise ParameterError("validate_every and checkpoint_every must be >= 1")
        if not 0 <= self.until <= self.steps:
            raise ParameterError(f"until must lie in 0..steps ({self.steps}), got {self.until}")

    @property
    def last_step(self) -> int:
        """The step after which the model is written."""
        return self.until or self.steps


def _gauss(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``1 - mean SSIM`` of ``(B, 1, H, W)`` images (Gaussian window, sigma 1.5)."""
    g = _gauss().to(pred)
    gx, gy = g.reshape(1, 1, 1, -1), g.reshape(1, 1, -1, 1)

    def blur(a):
        return F.conv2d(F.conv2d(a, gx), gy)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(pred), blur(target)
    vx = blur(pred * pred) - mx * mx
    vy = blur(target * target) - my * my
    cxy = blur(pred * target) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return 1 - s.mean()


def _simulate(first: int, n: int, cfg: InterpTrainConfig, progress: Callable[[str], None]) -> list:
    from ..phantoms._triplets import TripletRanges, simulate_cluster_series

    ranges = TripletRanges(**cfg.ranges)
    out = []
    t0 = time.perf_counter()
    for i in range(n):
        s = simulate_cluster_series(first + i, ranges)
        s.noisy, s.clean = s.noisy.astype(np.float16), s.clean.astype(np.float16)
        out.append(s)
        if (i + 1) % max(1, n // 10) == 0 or i + 1 == n:
            progress(f"simulated {i + 1}/{n} series ({time.perf_counter() - t0:.0f}s)")
    return out


class _Batches:
    """Random triplet crops of the training series; its state is one numpy generator."""

    def __init__(self, series: list, cfg: InterpTrainConfig) -> None:
        from ..phantoms._triplets import TripletRanges

        self.series, self.cfg = series, cfg
        self.ranges = TripletRanges(**cfg.ranges)
        self.rng = np.random.default_rng([cfg.seed, 29])

    def __call__(self) -> tuple[torch.Tensor, ...]:
        from ..phantoms._triplets import series_triplets

        cfg, r = self.cfg, self.rng
        ph, pw = cfg.patch_rows, cfg.patch_cols
        imgs = np.zeros((3, cfg.batch, 1, ph, pw), np.float32)  # left, clean middle, right
        gaps = np.zeros(cfg.batch, np.float32)
        ts = np.zeros(cfg.batch, np.float32)
        for b in range(cfg.batch):
            s = self.series[int(r.integers(len(self.series)))]
            left, _, clean, right, gap, t = series_triplets(s, 1, r, self.ranges)[0]
            h, w = left.shape
            i0 = int(r.integers(0, max(1, h - ph + 1)))
            j0 = int(r.integers(0, max(1, w - pw + 1)))
            trip = [a[i0:i0 + ph, j0:j0 + pw].astype(np.float32) for a in (left, clean, right)]
            if r.random() < 0.5:
                trip = [a[:, ::-1] for a in trip]
            if r.random() < 0.5:
                trip = [a[::-1] for a in trip]
            if r.random() < 0.5:  # time reversal: right becomes left
                trip, t = trip[::-1], 1.0 - t
            oi, oj = (ph - trip[0].shape[0]) // 2, (pw - trip[0].shape[1]) // 2
            for k in range(3):
                imgs[k, b, 0, oi:oi + trip[k].shape[0], oj:oj + trip[k].shape[1]] = trip[k]
            gaps[b], ts[b] = gap, t
        return (*(torch.from_numpy(a) for a in imgs), torch.from_numpy(ts), torch.from_numpy(gaps))


def _pad_to(a: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = a.shape[-2:]
    ph, pw = -h % m, -w % m
    return (F.pad(a, (0, pw, 0, ph)) if ph or pw else a), (h, w)


@torch.inference_mode()
def validate(net: InterpNet, series: list, gaps=VALIDATION_GAPS, per_gap: int = 4) -> dict[str, Any]:
    """Mean SSIM against the clean middle frame, linear and learned, per gap (t = 1/2)."""
    from ..metrics import ssim

    rows: dict[str, list[tuple[float, float]]] = {}
    for s in series:
        n = len(s.angles)
        for g in gaps:
            starts = np.linspace(0, n - 1 - g, per_gap).round().astype(int)
            left = torch.from_numpy(s.noisy[starts].astype(np.float32))[:, None]
            right = torch.from_numpy(s.noisy[starts + g].astype(np.float32))[:, None]
            k = g // 2
            t = torch.full((len(starts),), k / g)
            lp, (h, w) = _pad_to(left, net.multiple)
            rp, _ = _pad_to(right, net.multiple)
            pred = net(lp, rp, t, torch.full_like(t, float(g)))[:, 0, :h, :w].numpy()
            lin = (left + t.reshape(-1, 1, 1, 1) * (right - left))[:, 0].numpy()
            for j, i in enumerate(starts):
                truth = s.clean[i + k].astype(np.float32)
                mask = specimen_mask(truth)
                rows.setdefault(str(g), []).append(
                    (ssim(lin[j], truth, data_range=1.0), ssim(pred[j], truth, data_range=1.0),
                     ssim(lin[j], truth, data_range=1.0, mask=mask),
                     ssim(pred[j], truth, data_range=1.0, mask=mask)))
    rows["all"] = [p for v in rows.values() for p in v]
    keys = ("linear_ssim", "learned_ssim", "linear_ssim_specimen", "learned_ssim_specimen")
    return {g: {"n": len(v), **{key: round(float(np.mean([p[c] for p in v])), 4)
                                for c, key in enumerate(keys)}}
            for g, v in rows.items()}


def specimen_mask(clean: np.ndarray, level: float = 0.05, margin: int = 3) -> np.ndarray:
    """Where a clean frame shows the specimen: ``level`` above its median, dilated by ``margin``."""
    from scipy.ndimage import binary_dilation

    inside = clean - np.median(clean) > level
    if not inside.any():
        return np.ones_like(inside)
    return binary_dilation(inside, iterations=margin)


def _check_resumable(state: dict, cfg: InterpTrainConfig) -> None:
    now = asdict(cfg) | {"channels": list(cfg.channels)}
    then = asdict(InterpTrainConfig()) | {"channels": list(InterpTrainConfig().channels)} \
        | state["config"]
    free = ("validate_every", "checkpoint_every", "until")
    differ = sorted(k for k in now if now[k] != then.get(k) and k not in free)
    if differ:
        raise ParameterError(f"the checkpoint was written with other options: {', '.join(differ)}")


def train_interpolate(
    out: str | os.PathLike,
    cfg: InterpTrainConfig,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: Callable[[str], None] = lambda msg: None,
    step_callback: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train an interpolation network and write ``out`` (weights + card); returns the card."""
    from ..phantoms._triplets import FIRST_SEED, TripletRanges

    cfg.check()
    out = Path(out)
    ckpt = out.with_name(out.name + ".ckpt")
    dev = torch.device(device)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    net = InterpNet(cfg.channels, cfg.fold).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = cosine_schedule(opt, cfg.steps)
    log: list[dict] = []
    step = 0
    state = None
    parts = {"net": net, "opt": opt, "sched": sched}
    if resume:
        state = load_checkpoint(ckpt, lambda st: _check_resumable(st, cfg), parts)
        step, log = int(state["step"]), list(state["log"])
    train_first = FIRST_SEED + 1_000_000 * cfg.seed
    val_first = FIRST_SEED + 1_000_000 * (cfg.seed + 1)
    done = step >= cfg.last_step  # a checkpoint at or past the last step: write the model
    train = [] if done else _simulate(train_first, cfg.series, cfg, progress)
    valid = _simulate(val_first, cfg.val_series, cfg, progress)
    batches = _Batches(train, cfg)
    if state is not None:
        restore_generators(state, batches.rng)
    progress(f"{len(train)} training series, {len(valid)} validation series; steps "
             f"{step + 1}-{cfg.last_step} of a {cfg.steps}-step schedule")
    t_train = time.perf_counter()
    net.train()
    if done and (not log or log[-1]["step"] != step):
        net.eval()
        log.append({"step": step, "loss": None, "l1": None,
                    "seconds": round(time.perf_counter() - t_start, 1),
                    "validation": validate(net, valid)})
    while step < cfg.last_step:
        left, mid, right, t, gap = (a.to(dev) for a in batches())
        pred = net(left, right, t, gap)
        l1 = F.l1_loss(pred, mid)
        loss = l1 + cfg.ssim_weight * ssim_loss(pred, mid) if cfg.ssim_weight else l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ModelError(f"training diverged at step {step}: lower --lr")
        if step_callback is not None:
            step_callback(step, value)
        if step % cfg.validate_every == 0 or step == cfg.last_step:
            net.eval()
            entry = {"step": step, "loss": round(value, 5), "l1": round(float(l1.detach()), 5),
                     "seconds": round(time.perf_counter() - t_start, 1),
                     "validation": validate(net, valid)}
            net.train()
            log.append(entry)
            v = entry["validation"]["all"]
            progress(f"step {step}: validation SSIM learned {v['learned_ssim']:.4f} "
                     f"(linear {v['linear_ssim']:.4f}); on the specimen "
                     f"{v['learned_ssim_specimen']:.4f} ({v['linear_ssim_specimen']:.4f})")
        if step % cfg.checkpoint_every == 0 or step == cfg.last_step:
            save_checkpoint(ckpt, cfg, step, parts, log, batches.rng.bit_generator.state,
                            seconds=round(time.perf_counter() - t_start, 1))
    net.eval()
    ranges = TripletRanges(**cfg.ranges)
    card = {
        "name": out.stem,
        "task": "tilt-frame interpolation: the frame at a position t between two measured "
                "neighbouring tilts, gap 2-20 degrees, tilt axis along the image rows",
        "package_version": __version__,
        "input": {"normalisation": "(series - p0.5) / (p99.5 - p0.5) of the whole measured series",
                  "frame": "canonical: tilt axis along the rows (vertical)",
                  "target": "the clean (noise-free) middle frame"},
        "training": {**asdict(cfg), "channels": list(cfg.channels), "stopped_at": step,
                     "threads": torch.get_num_threads(), "device": str(dev), "resumed": resume,
                     "train_seconds": round(time.perf_counter() - t_train, 1),
                     "total_seconds": round(time.perf_counter() - t_start, 1),
                     "checkpoint_seconds": state.get("seconds") if state else None},
        "data": {"generator": "tomoprior.phantoms.interpolation_triplets",
                 "ranges": ranges.to_dict(),
                 "train_series_seeds": [train_first, train_first + cfg.series - 1],
                 "validation_series_seeds": [val_first, val_first + cfg.val_series - 1]},
        "validation": log[-1]["validation"] if log else {},
        "log": log,
    }
    save_model(out, net, card)
    progress(f"wrote {out} and {out.with_suffix('.json').name}")
    return card
