"""Learned missing-wedge restoration: a base reconstruction, then a trained network.

The base reconstruction (SIRT, or WBP) is streamed while it runs; then a
nested U-Net (:class:`~tomoprior.algorithms._unetpp.NestedUNet`), trained on
this package's simulator (``tomoprior train restore``), corrects every slice
across the tilt axis, where the missing wedge smears and streaks. Slices are
divided by the 99.5th percentile of the base volume before the network and
multiplied back after, so the result does not depend on the data's scale.

The network never sees the measured projections: the restored volume is a
prediction, not a fit, and its reprojection residual is reported so that it
can be compared with the data-consistent methods (DIP-TV with
``init="pretrained"`` starts from this network and fits the data).

References
----------
.. [1] Z. Zhou et al., "UNet++: a nested U-Net architecture", DLMIA 2018.
.. [2] C. Wang, G. Ding, Y. Liu, H. L. Xin, "0.71 Å resolution electron
   tomography enabled by deep learning aided information recovery",
   Adv. Intell. Syst. 2, 2000152 (2020) (IRDM).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError
from ..operators.base import Projector
from ..step import Step, last_step
from ._adapt import ADAPT_PARAMS, DEFAULT_LR, AdaptOptions
from ._common import RELATIVE_RESIDUAL, relative_residual, residual_ratio, robust_scale
from ._declare import Param, method
from ._driver import Problem, Report, Solver, iterate
from ._network_start import network_volume
from ._restore_model import RestoreModel, load_model, restore_volume

__all__ = ["MODEL_PARAMS", "restore"]

#: the restoration network's parameters, declared once for every method that runs it
MODEL_PARAMS = (
    Param("model", "Model file", "A model from `tomoprior train restore` (empty: the "
          "shipped one)", advanced=True),
    Param("batch", "Slices per batch", "Slices the network takes at once", min=1, max=4096,
          advanced=True),
)


class _Restore(Solver):
    label = "Restore"
    hint = "lower the base iterations"
    objective = RELATIVE_RESIDUAL  # the base SIRT's loss, then the restoration's residual

    def __init__(self, base: str, model: RestoreModel, batch: int) -> None:
        self.base, self.model, self.batch = base, model, batch

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        self.p = p
        if self.base == "wbp":
            from .wbp import wbp

            self.x = torch.from_numpy(last_step(wbp(p.A, p.y)).volume).to(p.device, p.A.dtype)
        else:
            from .sirt import _SIRT

            self.sirt = _SIRT(1.0, True)
            yield from self.sirt.setup(p, None, start)
        self.phase = "base"

    def update(self, k: int) -> float | None:
        if self.base == "wbp":
            return None
        return self.sirt.update(k)

    def report(self, iteration: int, last: bool) -> Report:
        base = self.x if self.base == "wbp" else self.sirt.x
        if not last:
            loss, res = (None, None) if self.base == "wbp" else (self.sirt.loss, self.sirt.residual)
            return Report(base, loss, res, extras={"model": self.model.name})
        vol = base.detach().float().cpu()
        scale = robust_scale(vol.numpy())
        out = restore_volume(self.model.net, vol, scale, batch=self.batch).to(self.p.device)
        self.phase = "restore"
        with torch.no_grad():
            res = residual_ratio(self.p.A(out.to(self.p.A.dtype)) - self.p.y, self.p.y,
                                 self.p.mask)
        return Report(out, res, res, extras={"model": self.model.name, "scale": scale,
                                             "reprojection_residual": res})

    def stopped(self, iteration: int) -> Report:
        """A stop keeps the base reconstruction reached: the network does not start."""
        return self.report(iteration, False)


class _AdaptedRestore(Solver):
    """Base SIRT, adaptation of the network to the series, restoration (all in the set-up)."""

    label = "Restore (adapted)"
    hint = "lower adapt_lr"
    objective = RELATIVE_RESIDUAL
    phase = "restore"

    def __init__(self, model: RestoreModel, batch: int, base_iterations: int,
                 adapt: AdaptOptions) -> None:
        self.model, self.batch, self.its, self.adapt = model, batch, base_iterations, adapt

    def setup(self, p: Problem, x0: Any, start: int) -> Iterator[Step]:
        self.p = p
        x, self.summary = yield from network_volume(p, self.model, self.its, self.batch, start,
                                                    self.adapt, p.seed, show_result=False)
        self.x = x.to(p.device)

    def update(self, k: int) -> None:
        return None

    def report(self, iteration: int, last: bool) -> Report:
        res = relative_residual(self.p.A, self.x, self.p.y, self.p.mask)
        return Report(self.x, res, res, extras={"model": self.model.name,
                                                "reprojection_residual": res, **self.summary})


@method(
    "restore", label="Restore (learned)", order=35,
    help="A trained U-Net++ restores the missing wedge of a SIRT (or WBP) reconstruction, "
    "slice by slice; fast, but a prediction, not a fit to the data.",
    params=(
        Param("base", "Base", "Reconstruction the network restores", choices=("sirt", "wbp")),
        *MODEL_PARAMS,
        *ADAPT_PARAMS,
    ),
    separable=False,
    citation="Zhou et al., DLMIA 2018 (UNet++); Wang, Ding, Liu, Xin, Adv. Intell. Syst. 2020 "
    "(IRDM)",
)
def restore(
    A: Projector,
    y: torch.Tensor | np.ndarray,
    *,
    iterations: int = 100,
    every: int = 25,
    mask: torch.Tensor | np.ndarray | None = None,
    start: int = 0,
    base: str = "sirt",
    model: str = "",
    batch: int = 8,
    seed: int = 0,
    adapt: int = 0,
    adapt_loss: str = "wedge",
    adapt_lr: float = DEFAULT_LR,
    adapt_save: str = "",
) -> Iterator[Step]:
    """Restoration of a base reconstruction by the trained network.

    Parameters
    ----------
    A : Projector
    y : (n_tilts, y, u) canonical tilt series
    iterations : int
        Iterations of the base SIRT (ignored with ``base="wbp"``); the
        shipped model was trained on 100-iteration SIRT.
    every : int
        Snapshot interval of the base reconstruction.
    mask : bool array like ``y``, optional
        Detector pixels to use (``False`` = held out by the caller): neither
        the base SIRT nor the adaptation sees the others, so their error
        compares with the data-fitting methods'.
    start : int
        Iteration numbering starts here.
    base : "sirt" or "wbp"
    model : str
        Path of a model file; empty for the shipped model.
    batch : int
        Slices per network call. On the full needle (256² slices, two CPU threads) 8 is
        the fastest and peaks 1.07 GB; 32 took 20 % longer and peaked 2.37 GB.
    seed : int
        Seeds the adaptation's draws (slices, patches, rotations).
    adapt : int
        Steps of test-time adaptation of the network to this series before it
        predicts (:mod:`~tomoprior.algorithms._adapt`; the base is then always
        SIRT); 0 runs the network as shipped.
    adapt_loss : "halves", "wedge" or "projection"
        The adaptation's self-supervised loss.
    adapt_lr : float
        Adam learning rate of the adaptation.
    adapt_save : str
        Write the adapted network to this model file (must not exist).

    Yields
    ------
    Step
        ``phase="base"`` steps while the base runs, then one ``phase="restore"``
        step with the restored volume; ``loss`` is the relative reprojection
        residual ``||A x - y|| / ||y||`` throughout (the base SIRT's, then the
        restoration's), the same as ``residual``.
    """
    opts = AdaptOptions.check(adapt, adapt_loss, adapt_lr, adapt_save)
    if opts.steps and base != "sirt":
        raise ParameterError("adapt needs base=sirt: the adaptation's half-set reconstructions "
                             "are SIRTs")
    if mask is not None and base == "wbp":
        raise ParameterError("base=wbp uses every detector pixel; held-out pixels need "
                             "base=sirt")
    problem = Problem.build(A, y, mask, seed)
    net = load_model(model or None, A.device)  # a bad model file fails before any computation
    if opts.steps:
        return iterate(_AdaptedRestore(net, batch, iterations, opts), problem, name="restore",
                       iterations=1, every=1, start=start)
    its = 1 if base == "wbp" else iterations
    return iterate(_Restore(base, net, batch), problem, name="restore", iterations=its,
                   every=every, start=start)
