"""Discrete 3D total variation: forward differences with Neumann boundaries."""

from __future__ import annotations

import torch

__all__ = ["GRAD_NORM", "div3", "grad3", "tv_norm"]

GRAD_NORM = 12.0**0.5  # upper bound of ||grad3|| (2 per axis, 3 axes)


def grad3(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Forward differences ``(3, *x.shape)`` along the last three axes; zero at the far edge.

    With ``out`` (a ``(3, *x.shape)`` buffer) the differences are written there without a
    temporary (no autograd): the solvers' loops reuse one buffer.
    """
    if out is not None:
        for axis in range(3):
            dim = x.ndim - 3 + axis
            n = x.shape[dim]
            o = out[axis]
            if n > 1:
                head = o.narrow(dim, 0, n - 1)
                head.copy_(x.narrow(dim, 1, n - 1))
                head.sub_(x.narrow(dim, 0, n - 1))
            o.narrow(dim, n - 1, 1).zero_()
        return out
    g = x.new_zeros((3, *x.shape))
    g[0, ..., :-1, :, :] = x[..., 1:, :, :] - x[..., :-1, :, :]
    g[1, ..., :, :-1, :] = x[..., :, 1:, :] - x[..., :, :-1, :]
    g[2, ..., :, :, :-1] = x[..., :, :, 1:] - x[..., :, :, :-1]
    return g


def div3(p: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Divergence, the negative adjoint of :func:`grad3`: ``<grad3 x, p> = -<x, div3 p>``.

    With ``out`` (a buffer shaped like ``p[0]``) it is written there without temporaries.
    """
    if out is not None:
        out.zero_()
        for axis in range(3):
            q = p[axis]
            dim = q.ndim - 3 + axis
            n = q.shape[dim]
            if n < 2:
                continue
            out.narrow(dim, 0, n - 1).add_(q.narrow(dim, 0, n - 1))
            out.narrow(dim, 1, n - 1).sub_(q.narrow(dim, 0, n - 1))
        return out
    d = torch.zeros_like(p[0])
    for axis in range(3):
        q = p[axis]
        dim = q.ndim - 3 + axis
        n = q.shape[dim]
        if n < 2:
            continue  # no differences along a singleton axis
        d.narrow(dim, 0, 1).add_(q.narrow(dim, 0, 1))
        if n > 2:
            d.narrow(dim, 1, n - 2).add_(q.narrow(dim, 1, n - 2) - q.narrow(dim, 0, n - 2))
        d.narrow(dim, n - 1, 1).sub_(q.narrow(dim, n - 2, 1))
    return d


def tv_norm(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Isotropic TV ``sum sqrt(dz^2 + dy^2 + dx^2 + eps)`` (differentiable for ``eps > 0``)."""
    g = grad3(x)
    # component by component: a reduction over the first axis is slow on the CPU
    return torch.sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2] + eps).sum()
