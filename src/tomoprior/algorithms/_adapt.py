"""Test-time adaptation: the trained restoration network fine-tuned on the user's own series.

The shipped network learned to fill the missing wedge of this package's
simulated specimens; a microscopist's specimen is never the simulator's.
Before it predicts, ``adapt`` steps of Adam fine-tune it on the measured
series alone, with a self-supervised loss that needs no ground truth
(``adapt_loss``):

``"wedge"`` (the default)
    The rotate-and-re-wedge loss (:mod:`._wedge`) on the base reconstruction:
    patches of its slices across the tilt axis are rotated and re-wedged and
    the network restores them; the loss compares with the rotated patches
    where those were measured (IsoNet's recipe in the slice plane).
``"halves"``
    The same loss with input and target from independent halves of the
    tilts: patches of slices across the tilt axis
    of the even-tilt reconstruction are rotated and re-wedged and the
    network restores them; the loss compares with the rotated odd-tilt
    patches where those were measured (DeepDeWedge's recipe in the slice
    plane; the halves' independent noise and streaks cannot be learned). With
    coarse steps a half has too few tilts: at 20° (seven tilts in ±60°) each
    half-set SIRT is so poor that the adapted network gets worse
    (docs/benchmarks/adapt_tuning.md).
``"projection"``
    Projection consistency with tilts held out of the network's input: the
    network restores the even-tilt reconstruction and its volume is
    projected at the odd tilts (and the other way round); the loss is the
    relative residual there (Noise2Inverse's split, in projection space).

Afterwards the network restores the base reconstruction of all tilts, as
without adaptation. The volume it would predict is streamed while it adapts
(about every two seconds), a stop between two steps keeps the last one
shown, and the adapted weights can be saved as a model file for the next
series of the same specimen (``model=`` that file).

References
----------
.. [1] M. Z. Darestani, J. Liu, R. Heckel, "Test-time training can close the
   natural distribution shift performance gap in deep learning based
   compressed sensing", ICML 2022.
.. [2] A. A. Hendriksen, D. M. Pelt, K. J. Batenburg, "Noise2Inverse",
   IEEE Trans. Comput. Imaging 6, 1320 (2020).
.. [3] S. Wiedemann, R. Heckel, Nat. Commun. 15, 8255 (2024) (DeepDeWedge).
.. [4] Y.-T. Liu et al., Nat. Commun. 13, 6482 (2022) (IsoNet).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cancel import checkpoint
from ..errors import ParameterError
from ..step import Step
from ._common import robust_scale, snapshot
from ._declare import Param
from ._driver import Problem
from ._restore_model import RestoreModel, restore_volume, save_model
from ._wedge import rewedge, rotate_patches, slice_plane_angles, wedge_loss, wedge_mask

__all__ = ["ADAPT_LOSSES", "ADAPT_PARAMS", "AdaptOptions", "adapt_network", "tilt_halves"]

ADAPT_LOSSES = ("wedge", "halves", "projection")
DEFAULT_LR = 1e-4
PATCH = 64  # side of the rotated patches of the wedge losses
PACE = 2.0  # seconds of adaptation between two pictures

#: the adaptation's parameters, declared once for every method that runs the network
ADAPT_PARAMS = (
    Param("adapt", "Adaptation steps", "Fine-tune the trained network on this series before "
          "it predicts (0: the network as shipped)", min=0, max=100000),
    Param("adapt_loss", "Adaptation loss", "Self-supervised loss of the adaptation: wedge "
          "(rotated, re-wedged slices of the base), halves (the even tilts' restore the odd "
          "tilts'; needs fine steps), projection (held-out tilts)", choices=ADAPT_LOSSES),
    Param("adapt_lr", "Adaptation rate", "Adam learning rate of the adaptation", min=1e-7,
          max=1e-1, log=True, advanced=True),
    Param("adapt_save", "Save adapted model", "Write the adapted network to this model file "
          "(reuse it with model=...); empty: not saved", advanced=True),
)


@dataclass(frozen=True)
class AdaptOptions:
    """Checked adaptation parameters (see :data:`ADAPT_PARAMS`)."""

    steps: int = 0
    loss: str = "wedge"
    lr: float = DEFAULT_LR
    save: str = ""

    @classmethod
    def check(cls, adapt: int, adapt_loss: str, adapt_lr: float, adapt_save: str
              ) -> AdaptOptions:
        """One clear line for a bad value; the save path is checked before any computing."""
        if isinstance(adapt, bool) or not isinstance(adapt, (int, np.integer)) or adapt < 0:
            raise ParameterError(f"adapt must be a whole number of steps >= 0, got {adapt!r}")
        if adapt_loss not in ADAPT_LOSSES:
            raise ParameterError(f"adapt_loss must be one of {', '.join(ADAPT_LOSSES)}, "
                                 f"got {adapt_loss!r}")
        if not (np.isfinite(adapt_lr) and 0 < adapt_lr <= 0.1):
            raise ParameterError(f"adapt_lr must be a number in (0, 0.1], got {adapt_lr}")
        save = str(adapt_save or "")
        if save:
            if not adapt:
                raise ParameterError("adapt_save needs adapt > 0: there is no adapted network "
                                     "to save")
            path = Path(save).expanduser()
            if path.exists():
                raise ParameterError(f"adapt_save: {path} exists; choose a new file name")
            if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
                raise ParameterError(f"adapt_save: cannot write into {path.parent}")
        return cls(int(adapt), str(adapt_loss), float(adapt_lr), save)


def tilt_halves(A, y: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Detector weights of the even and of the odd tilts, in the order of their angles."""
    order = np.argsort(np.asarray(A.angles), kind="stable")
    halves = []
    for part in (order[0::2], order[1::2]):
        w = torch.zeros_like(y)
        w[torch.as_tensor(part, device=y.device)] = 1
        halves.append(w if mask is None else w * mask)
    return halves[0], halves[1]


def _half_bases(p: Problem, iterations: int, start: int, total: int | None
                ) -> Generator[Step, None, tuple[torch.Tensor, torch.Tensor]]:
    """SIRT of the even and of the odd tilts (streamed as the "adapt base" phase)."""
    from .sirt import sirt

    vols = []
    for h, w in enumerate(tilt_halves(p.A, p.y, p.mask)):
        last = None
        for last in sirt(p.A, p.y, iterations=iterations, every=max(1, iterations // 5), mask=w):
            yield Step(iteration=start, volume=last.volume.copy(), loss=last.loss,
                       residual=None, objective_name=last.objective_name, total=total,
                       phase="adapt base",
                       extras={"half": "even" if h == 0 else "odd",
                               "phase_fraction": (h + last.iteration / iterations) / 2})
        vols.append(torch.from_numpy(last.volume).to(p.device, torch.float32))
    return vols[0], vols[1]


class _Adaptation:
    """One fine-tuning run of ``model.net`` on a problem's series."""

    def __init__(self, model: RestoreModel, p: Problem, base: torch.Tensor, opts: AdaptOptions,
                 seed: int, batch: int) -> None:
        self.model, self.p, self.opts, self.batch = model, p, opts, max(1, int(batch))
        self.base = base.to(p.device, torch.float32)
        self.scale = robust_scale(base.detach().cpu().numpy())
        self.rng = torch.Generator().manual_seed(int(seed) + 7)
        self.net = model.net
        self.dtype = next(self.net.parameters()).dtype
        self.losses: list[float] = []

    def prepare(self, halves: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        p = self.p
        # (y, 1, z, x): slices across the tilt axis, in the network's units
        def slices(v: torch.Tensor) -> torch.Tensor:
            return (v / self.scale).permute(1, 0, 2)[:, None].contiguous()

        src = halves if halves is not None else (self.base, self.base)
        self.src = [slices(v) for v in src]
        if self.opts.loss == "projection":
            self.weights = tilt_halves(p.A, p.y, p.mask)
            self.slab = min(self.batch, p.A.domain_shape[1])
            self.A_slab = p.A if self.slab == p.A.domain_shape[1] else p.A.for_slices(self.slab)
        else:
            _, z, x = self.src[0].shape[1:]
            self.size = int(min(PATCH, z, x))
            self.lines = slice_plane_angles(p.A)
            self.measured = wedge_mask(self.size, self.lines, device=p.device)

    def _draw(self, n: int, high: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=self.rng)

    def loss(self, k: int) -> torch.Tensor:
        if self.opts.loss == "projection":
            return self._projection_loss(k)
        return self._wedge_loss()

    def _wedge_loss(self) -> torch.Tensor:
        ny, _, z, x = self.src[0].shape
        n = self.batch
        idx = self._draw(n, ny)
        centres = torch.stack((torch.rand(n, generator=self.rng) * (z - 1),
                               torch.rand(n, generator=self.rng) * (x - 1)), dim=1)
        phi = torch.rand(n, generator=self.rng) * 360.0
        dev = self.p.device
        idx_d = idx.to(dev)
        with torch.no_grad():
            a = rotate_patches(self.src[0][idx_d], centres, phi, self.size)
            b = rotate_patches(self.src[1][idx_d], centres, phi, self.size)
            rotated = wedge_mask(self.size, self.lines, phi, device=dev)[:, None]
            inp = rewedge(a, self.measured)
        pred = self.net(inp.to(self.dtype)).float()
        return wedge_loss(pred, b, self.measured, rotated)

    def _projection_loss(self, k: int) -> torch.Tensor:
        ny = self.src[0].shape[0]
        h = k % 2  # the network sees one half, the loss the other
        s0 = int(self._draw(1, ny - self.slab + 1))
        sl = slice(s0, s0 + self.slab)
        inp = self.src[h][sl]
        pred = (self.net(inp.to(self.dtype)).float()[:, 0] * self.scale).permute(1, 0, 2)
        w = self.weights[1 - h][:, sl]
        y = self.p.y[:, sl]
        r = (self.A_slab(pred.to(self.p.A.dtype)) - y) * w
        return (r * r).sum() / ((y * w) ** 2).sum().clamp_min(1e-12)

    def predict(self) -> torch.Tensor:
        was = self.net.training
        self.net.eval()
        try:
            # the base stays on the device: each batch of slices is read from it
            return restore_volume(self.net, self.base, self.scale, batch=self.batch)
        finally:
            self.net.train(was)


def adapt_network(model: RestoreModel, p: Problem, base: torch.Tensor, opts: AdaptOptions, *,
                  seed: int = 0, batch: int = 8, start: int = 0, total: int | None = None,
                  base_iterations: int = 100
                  ) -> Generator[Step, None, dict]:
    """Fine-tune ``model.net`` in place on the series of ``p``; yields pictures while it adapts.

    ``base`` is the reconstruction of all tilts the network restores
    afterwards (data units). Returns a summary: the loss at the start and at
    the end (each the mean of a tenth of the steps), and the saved file.
    Yields ``phase="adapt base"`` steps (the half-set SIRTs, for the halves
    and projection losses) and ``phase="adapt"`` steps with the volume the
    adapted network predicts at that moment.
    """
    halves = None
    if opts.loss in ("halves", "projection"):
        halves = yield from _half_bases(p, base_iterations, start, total)
    run = _Adaptation(model, p, base, opts, seed, batch)
    run.prepare(halves)
    net = run.net
    net.train()
    for prm in net.parameters():
        prm.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=opts.lr)
    took = 0.0
    since = time.perf_counter()
    n = opts.steps
    for k in range(1, n + 1):
        checkpoint()
        loss = run.loss(k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.losses.append(float(loss.detach()))
        if k == n or time.perf_counter() - since >= max(PACE, 2 * took):
            t0 = time.perf_counter()
            vol = run.predict()
            took = time.perf_counter() - t0
            yield Step(iteration=start, volume=snapshot(vol), loss=run.losses[-1],
                       objective_name=f"adaptation loss ({opts.loss})", total=total,
                       phase="adapt",
                       extras={"adapt_step": k, "adapt_steps": n, "adapt_loss": opts.loss,
                               "phase_fraction": k / n})
            since = time.perf_counter()
    with torch.no_grad():  # the weights as a model file keeps them (float16): the saved
        for prm in net.parameters():  # network predicts exactly this run's volume
            prm.copy_(prm.half().to(prm.dtype))
            prm.requires_grad_(False)
    net.eval()
    tenth = max(1, n // 10)
    summary = {"adapt_steps": n, "adapt_loss": opts.loss,
               "adapt_loss_first": float(np.mean(run.losses[:tenth])),
               "adapt_loss_last": float(np.mean(run.losses[-tenth:]))}
    if opts.save:
        card = {**model.card, "name": Path(opts.save).stem,
                "adapted": {"from": model.name, "steps": n, "loss": opts.loss, "lr": opts.lr,
                            "seed": int(seed), "volume_shape": list(p.A.domain_shape)}}
        save_model(opts.save, net, card)
        summary["adapt_saved"] = str(opts.save)
    return summary
