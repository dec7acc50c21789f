"""Training of the restoration network (``tomoprior train restore``).

It lives above :mod:`tomoprior.algorithms` and :mod:`tomoprior.phantoms` (it needs both);
the network, its file format and its use are in ``algorithms/_unetpp.py``,
``algorithms/_restore_model.py`` and ``algorithms/restore.py``.

The data come from :func:`~tomoprior.phantoms.restoration_pairs`: the
training specimens are simulated once at the start (seed stream ``seed``),
the validation specimens from another stream (``seed + 1``), so no
validation specimen is ever trained on. Each step takes a batch of random
``patch x patch`` crops (zero padded where a slice is smaller, randomly
flipped across and along the beam) and minimises the L1 distance to the
true slice; with ``gan_weight > 0`` the relativistic least-squares GAN loss
of a patch discriminator (RaLSGAN) is added from step ``gan_start`` on.

Everything random is seeded: the same command on the same number of threads
gives the same model. A checkpoint (``OUT.ckpt``) is written every
``checkpoint_every`` steps; ``resume=True`` continues from it exactly.
"""

from __future__ import annotations

import hashlib
import json
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

from . import __version__
from .algorithms._restore_model import restore_volume, save_model
from .algorithms._unetpp import NestedUNet, PatchDiscriminator
from .errors import ModelError, ParameterError

__all__ = ["TrainConfig", "train_restore", "validate"]


@dataclass
class TrainConfig:
    """Everything that determines a trained model (recorded in its card)."""

    steps: int = 6000
    epochs: float = 0.0  # > 0: steps follow from passes over the training slices
    batch: int = 16
    patch: int = 64
    lr: float = 1e-3
    channels: tuple[int, ...] = (16, 32, 64, 128)
    specimens: int = 240
    val_specimens: int = 16
    seed: int = 0
    base: str = "sirt"
    gan_weight: float = 0.0
    gan_start: int = 0
    checkpoint_every: int = 250
    validate_every: int = 1000
    ranges: dict = field(default_factory=dict)  # overrides of PairRanges (small tests)
    init: str = ""  # a model file whose weights the network starts from (fine-tuning)

    def check(self) -> None:
        if self.epochs < 0 or not math.isfinite(self.epochs):
            raise ParameterError(f"epochs must be >= 0, got {self.epochs}")
        if self.steps < 1 or self.batch < 1 or self.specimens < 1 or self.val_specimens < 1:
            raise ParameterError("steps, batch, specimens and val_specimens must be >= 1")
        if self.patch < 16 or self.patch % 8:
            raise ParameterError(f"patch must be a multiple of 8 and >= 16, got {self.patch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ParameterError(f"lr must be a positive number, got {self.lr}")
        if self.validate_every < 1 or self.checkpoint_every < 1:
            raise ParameterError("validate_every and checkpoint_every must be >= 1")
        if self.base not in ("sirt", "wbp"):
            raise ParameterError(f"base must be sirt or wbp, got {self.base!r}")
        if self.gan_weight < 0 or not math.isfinite(self.gan_weight):
            raise ParameterError(f"gan_weight must be >= 0, got {self.gan_weight}")


def _specimens(first: int, n: int, cfg: TrainConfig, progress: Callable[[str], None],
               cache: Path | None = None) -> list:
    from .phantoms._pairs import PairRanges, simulate_specimen

    ranges = PairRanges(**cfg.ranges)
    key = hashlib.sha1(json.dumps([ranges.to_dict(), cfg.base, __version__],
                                  sort_keys=True).encode()).hexdigest()[:12]
    out = []
    t0 = time.perf_counter()
    for i in range(n):
        path = None if cache is None else cache / f"specimen-{first + i}-{key}.npz"
        if path is not None and path.is_file():
            out.append(_load_specimen(path))
        else:
            out.append(simulate_specimen(first + i, ranges, cfg.base))
            if path is not None:
                _save_specimen(path, out[-1])
        if (i + 1) % max(1, n // 20) == 0 or i + 1 == n:
            progress(f"simulated {i + 1}/{n} specimens ({time.perf_counter() - t0:.0f}s)")
    return out


def _save_specimen(path: Path, sp) -> None:
    from ._atomic import replacing

    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        np.savez(tmp, base=sp.base, truth=sp.truth, scale=sp.scale, info=json.dumps(sp.info))


def _load_specimen(path: Path):
    from .phantoms._pairs import Specimen

    with np.load(path) as z:
        return Specimen(z["base"], z["truth"], float(z["scale"]), json.loads(str(z["info"])))


def validate(net: torch.nn.Module, specimens: list) -> dict[str, Any]:
    """Mean SSIM of base and restored volumes against the truth, overall and per family."""
    from .metrics import ssim

    rows: dict[str, list[tuple[float, float]]] = {}
    for sp in specimens:
        restored = restore_volume(net, sp.base, sp.scale).numpy()
        pair = (ssim(sp.base, sp.truth, fit=True), ssim(restored, sp.truth, fit=True))
        rows.setdefault(sp.info["family"], []).append(pair)
        rows.setdefault("all", []).append(pair)
    return {fam: {"n": len(v), "base_ssim": round(float(np.mean([a for a, _ in v])), 4),
                  "restored_ssim": round(float(np.mean([b for _, b in v])), 4)}
            for fam, v in rows.items()}


class _Batches:
    """Random crops of the training slices; its state is one numpy generator."""

    def __init__(self, specimens: list, cfg: TrainConfig) -> None:
        from .phantoms._pairs import specimen_pairs

        self.pairs = []
        for sp in specimens:
            rng = np.random.default_rng([sp.info["seed"], 11])
            self.pairs += specimen_pairs(sp, 10_000, rng)  # every filled slice
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, 23])

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        c, r = self.cfg.patch, self.rng
        xs = np.zeros((self.cfg.batch, 1, c, c), np.float32)
        ts = np.zeros_like(xs)
        for b in range(self.cfg.batch):
            inp, tgt = self.pairs[int(r.integers(len(self.pairs)))]
            h, w = inp.shape
            i0 = int(r.integers(0, max(1, h - c + 1)))
            j0 = int(r.integers(0, max(1, w - c + 1)))
            a, t = inp[i0:i0 + c, j0:j0 + c], tgt[i0:i0 + c, j0:j0 + c]
            if r.random() < 0.5:
                a, t = a[:, ::-1], t[:, ::-1]
            if r.random() < 0.5:
                a, t = a[::-1], t[::-1]
            oi, oj = (c - a.shape[0]) // 2, (c - a.shape[1]) // 2
            xs[b, 0, oi:oi + a.shape[0], oj:oj + a.shape[1]] = a
            ts[b, 0, oi:oi + a.shape[0], oj:oj + a.shape[1]] = t
        cl = torch.channels_last
        return (torch.from_numpy(xs).contiguous(memory_format=cl),
                torch.from_numpy(ts).contiguous(memory_format=cl))


# options that may change on resume: the schedule's length, reporting, and the GAN term as
# long as it starts after the checkpoint (the run up to there is the same)
_FREE_ON_RESUME = ("steps", "validate_every", "checkpoint_every", "gan_weight", "gan_start")


def cosine_schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay of the learning rate over ``steps``, to 3 % of its start."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(1.0, k / steps))) * 0.97 + 0.03)


def load_checkpoint(ckpt: Path, check: Callable[[dict], None], parts: dict[str, Any]) -> dict:
    """The checkpoint ``ckpt``, checked by ``check(state)``, loaded into ``parts``.

    ``parts`` maps the checkpoint's keys to the modules, optimisers and
    schedulers that take them (``load_state_dict``). A missing or damaged
    file is a one-line :class:`ModelError`; ``check`` raises
    :class:`ParameterError` for options that differ from the run's.
    """
    if not ckpt.is_file():
        raise ModelError(f"no checkpoint to resume from: {ckpt}")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        check(state)
        for key, part in parts.items():
            part.load_state_dict(state[key])
        _ = int(state["step"]), list(state["log"])  # a file without them is damaged
    except ParameterError:
        raise
    except Exception as exc:  # truncated, foreign or damaged checkpoint
        raise ModelError(f"{ckpt.name} is not a usable checkpoint ({type(exc).__name__}); "
                         "delete it to start afresh") from None
    return state


def save_checkpoint(ckpt: Path, cfg: Any, step: int, parts: dict[str, Any], log: list[dict],
                    batch_rng: Any, **extra: Any) -> None:
    """Write what :func:`load_checkpoint` reads back, atomically: the options, the step,
    the state of every part (``state_dict``), the log and both random generators."""
    from ._atomic import replacing

    state = {"config": asdict(cfg) | {"channels": list(cfg.channels)}, "step": step,
             **{key: part.state_dict() for key, part in parts.items()}, "log": log,
             "batch_rng": batch_rng, "torch_rng": torch.get_rng_state(), **extra}
    with replacing(ckpt) as tmp:
        torch.save(state, tmp)


def restore_generators(state: dict, rng: np.random.Generator) -> None:
    """Put the batch generator ``rng`` and torch's generator where the checkpoint left them."""
    rng.bit_generator.state = state["batch_rng"]
    torch.set_rng_state(state["torch_rng"])


def _check_resumable(state: dict, cfg: TrainConfig) -> None:
    now = asdict(cfg) | {"channels": list(cfg.channels)}
    # options added after a checkpoint was written count as their defaults
    then = asdict(TrainConfig()) | {"channels": list(TrainConfig().channels)} | state["config"]
    differ = sorted(k for k in now if now[k] != then.get(k) and k not in _FREE_ON_RESUME)
    if differ:
        raise ParameterError(f"the checkpoint was written with other options: {', '.join(differ)}")
    gan_changed = (now["gan_weight"], now["gan_start"]) != (then["gan_weight"], then["gan_start"])
    started = then["gan_weight"] > 0 and state["step"] > then["gan_start"]
    if gan_changed and (started or (now["gan_weight"] > 0 and now["gan_start"] < state["step"])):
        raise ParameterError("the GAN options can change on resume only before the GAN term starts")
    if now["steps"] != then["steps"] and not now["epochs"]:
        raise ParameterError("--steps must stay as it was (the learning-rate schedule follows it)")


def _ralsgan(d_real: torch.Tensor, d_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relativistic average least-squares losses ``(discriminator, generator)``."""
    rm, fm = d_real.mean(), d_fake.mean()
    d_loss = ((d_real - fm - 1) ** 2).mean() + ((d_fake - rm + 1) ** 2).mean()
    g_loss = ((d_fake - rm - 1) ** 2).mean() + ((d_real - fm + 1) ** 2).mean()
    return 0.5 * d_loss, 0.5 * g_loss


def _initial_weights(net: NestedUNet, path: str) -> dict:
    """Load a model file's weights into ``net`` (same channels); returns what the card records."""
    from .algorithms._restore_model import load_model

    model = load_model(path)
    if tuple(model.net.channels) != tuple(net.channels):
        raise ParameterError(f"--init {path}: its channels {list(model.net.channels)} differ "
                             f"from the network's {list(net.channels)}")
    net.load_state_dict(model.net.state_dict())
    digest = hashlib.sha256(Path(model.path).read_bytes()).hexdigest()
    return {"model": model.name, "sha256": digest,
            "package_version": model.card.get("package_version", "")}


def train_restore(
    out: str | os.PathLike,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    cache: str | os.PathLike | None = None,
    progress: Callable[[str], None] = lambda msg: None,
    step_callback: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train a restoration network and write ``out`` (weights + card); returns the card."""
    from .phantoms._pairs import FIRST_SEED, PairRanges

    cfg.check()
    out = Path(out)
    ckpt = out.with_name(out.name + ".ckpt")
    dev = torch.device(device)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    net = NestedUNet(cfg.channels).to(dev).to(memory_format=torch.channels_last)
    start_from = _initial_weights(net, cfg.init) if cfg.init else None
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = cosine_schedule(opt, cfg.steps)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 1)
        disc = PatchDiscriminator().to(dev)
    d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr * 0.5, betas=(0.5, 0.999))
    log: list[dict] = []
    step = 0
    parts = {"net": net, "opt": opt, "sched": sched, "disc": disc, "d_opt": d_opt}
    if resume:
        state = load_checkpoint(ckpt, lambda st: _check_resumable(st, cfg), parts)
        step, log = int(state["step"]), list(state["log"])
    folder = None if cache is None else Path(cache)
    train = _specimens(FIRST_SEED + 1_000_000 * cfg.seed, cfg.specimens, cfg, progress, folder)
    valid = _specimens(FIRST_SEED + 1_000_000 * (cfg.seed + 1), cfg.val_specimens, cfg, progress,
                       folder)
    batches = _Batches(train, cfg)
    if cfg.epochs:
        cfg.steps = max(1, math.ceil(cfg.epochs * len(batches.pairs) / cfg.batch))
    if resume:
        restore_generators(state, batches.rng)
    progress(f"{len(batches.pairs)} training slices from {len(train)} specimens; "
             f"{cfg.steps} steps")
    t_train = time.perf_counter()
    net.train()
    while step < cfg.steps:
        x, t = (a.to(dev) for a in batches())
        pred = net(x)
        loss = F.l1_loss(pred, t)
        total = loss
        use_gan = cfg.gan_weight > 0 and step >= cfg.gan_start
        if use_gan:
            d_loss, _ = _ralsgan(disc(t), disc(pred.detach()))
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            _, g_loss = _ralsgan(disc(t), disc(pred))
            total = loss + cfg.gan_weight * g_loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ModelError(f"training diverged at step {step}: lower --lr")
        if step_callback is not None:
            step_callback(step, value)
        entry = None
        if step % cfg.validate_every == 0 or step == cfg.steps:
            net.eval()
            entry = {"step": step, "l1": round(value, 5),
                     "seconds": round(time.perf_counter() - t_start, 1),
                     "validation": validate(net, valid)}
            net.train()
            log.append(entry)
            v = entry["validation"]["all"]
            progress(f"step {step}: validation SSIM {v['restored_ssim']:.4f} "
                     f"(base {v['base_ssim']:.4f})")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, cfg, step, parts, log, batches.rng.bit_generator.state)
    net.eval()
    card = {
        "name": out.stem,
        "task": "missing-wedge restoration of limited-angle reconstructions, slice by slice "
                "across the tilt axis",
        "package_version": __version__,
        "input": {"base": cfg.base, "base_iterations": PairRanges(**cfg.ranges).base_iterations,
                  "normalisation": "slices divided by the 99.5th percentile of the base volume"},
        "training": {**asdict(cfg), "channels": list(cfg.channels), "threads": torch.get_num_threads(),
                     "device": str(dev), "train_seconds": round(time.perf_counter() - t_train, 1),
                     "total_seconds": round(time.perf_counter() - t_start, 1),
                     "slices": len(batches.pairs)},
        "data": {"generator": "tomoprior.phantoms.restoration_pairs",
                 "ranges": PairRanges(**cfg.ranges).to_dict(),
                 "train_specimen_seeds": [FIRST_SEED + 1_000_000 * cfg.seed,
                                          FIRST_SEED + 1_000_000 * cfg.seed + cfg.specimens - 1],
                 "validation_specimen_seeds": [
                     FIRST_SEED + 1_000_000 * (cfg.seed + 1),
                     FIRST_SEED + 1_000_000 * (cfg.seed + 1) + cfg.val_specimens - 1]},
        "validation": log[-1]["validation"] if log else {},
        "log": log,
    }
    if start_from is not None:
        card["training"]["init"] = start_from
    save_model(out, net, card)
    progress(f"wrote {out} and {out.with_suffix('.json').name}")
    return json.loads(json.dumps(card))
