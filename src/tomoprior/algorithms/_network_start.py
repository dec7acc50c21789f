"""The trained network's volume for a series: base SIRT, optional adaptation, restoration.

``restore`` (when it adapts) and ``restore_tv`` share these set-up steps:
the base reconstruction is streamed (``phase="base"``), the network is
fine-tuned on the series when ``adapt > 0`` (``"adapt base"`` and
``"adapt"`` phases, see :mod:`._adapt`), and its restoration of the base is
yielded (``phase="restore"``). Without adaptation the steps and the volume
are exactly those of the network as shipped.
"""

from __future__ import annotations

from collections.abc import Generator

import torch

from ..step import Step
from ._adapt import AdaptOptions, adapt_network
from ._common import robust_scale, snapshot
from ._driver import Problem
from ._restore_model import RestoreModel, restore_volume

__all__ = ["network_volume"]


def network_volume(p: Problem, model: RestoreModel, base_iterations: int, batch: int,
                   start: int, adapt: AdaptOptions | None = None, seed: int = 0,
                   total: int | None = None, base_mask: torch.Tensor | None = None,
                   show_result: bool = True
                   ) -> Generator[Step, None, tuple[torch.Tensor, dict]]:
    """Yield the set-up steps; return the network's volume (CPU, data units) and a summary.

    ``base_mask`` selects the detector pixels the base SIRT fits (default:
    the problem's mask); ``show_result=False`` leaves the restoration's step
    to the caller.
    """
    from .sirt import sirt

    its = int(base_iterations)
    last = None
    mask = p.mask if base_mask is None else base_mask
    for last in sirt(p.A, p.y, iterations=its, every=max(1, its // 10), mask=mask):
        # a copy: the network restores last.volume, whatever the consumer does
        yield Step(iteration=start, volume=last.volume.copy(), loss=last.loss,
                   residual=last.residual, objective_name=last.objective_name, phase="base",
                   total=total, extras={"base_iteration": last.iteration,
                                        "phase_fraction": last.iteration / max(1, its)})
    base = last.volume
    del last
    summary: dict = {}
    if adapt is not None and adapt.steps > 0:
        summary = yield from adapt_network(
            model, p, torch.from_numpy(base), adapt, seed=seed, batch=batch, start=start,
            total=total, base_iterations=its)
    x_net = restore_volume(model.net, base, robust_scale(base), batch=batch)
    del base
    if show_result:
        yield Step(iteration=start, volume=snapshot(x_net), phase="restore", total=total,
                   extras={"model": model.name, "phase_fraction": 1.0, **summary})
    return x_net, summary
