"""A slab task: read a slab's window, bring it to the canonical frame, run the method."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from ..transforms import bin_images, canonical_turns
from ._source import Window, _is_dask, _sample_points, read_window

if TYPE_CHECKING:
    from ._plan import SlabPlan


# -- the tasks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlabTask:
    """One slab of a plan: call it with its window of the series (or None to read the
    plan's source) to get the canonical inner block ``(z, inner, u)`` float32.

    ``job="lambda"`` returns CS-TV's λ choice on the slab, ``job="poses"``
    the INR's learned poses (the plan's global decisions).
    """

    plan: SlabPlan
    index: int
    inner: tuple[int, int]
    outer: tuple[int, int]
    region: Window  # oriented images (before the quarter turns)
    window: Window  # input images read (binned pixels)
    job: str = "slab"

    @property
    def nbytes(self) -> int:
        """Bytes of the series this task reads (float32 after binning, all kept tilts)."""
        r, c = self.window.shape
        return 4 * len(self.plan.indices) * r * c

    def read(self) -> np.ndarray:
        """The task's window, read from the plan's source."""
        src = self.plan.source
        if src is None:
            raise DataError("this slab plan has no file to read from: pass the slab's window")
        part = read_window(src.open(), self.plan.indices, self.window, self.plan.binning)
        return part.compute() if _is_dask(part) else part

    def canonical(self, window: Any) -> np.ndarray:
        """The slab's tilt series ``(n, outer, u)`` in the canonical frame, as :func:`prepare`
        would cut it from the whole series."""
        from ..engine.inputs import _check_finite

        p = self.plan
        data = np.asarray(window.compute() if _is_dask(window) else window)
        x = bin_images(data.astype(np.float32, copy=False), p.binning)
        expected = (len(p.indices), *self.window.shape)
        if x.shape != expected:
            raise DataError(f"slab {self.index}: got a window of shape {x.shape}, expected {expected}")
        _check_finite(x)
        if p.warped:
            x = _warp_window(x, self.region, self.window, p.image_shape, p.geometry.shifts,
                             canonical_turns(p.geometry.tilt_axis)[1])
        k = p.turns
        return np.ascontiguousarray(np.rot90(x, -k, axes=(1, 2)) if k else x)

    def steps(self, y: np.ndarray, params: dict[str, Any], every: int) -> Iterator[Any]:
        """The method's steps on this slab's canonical series ``y``."""
        import torch

        from ..algorithms import get_method
        from ..device import resolve_device
        from ..operators import make_projector

        p = self.plan
        m = get_method(p.method)
        z, _, nu = p.volume_shape
        A = make_projector(p.geometry.angles, (z, y.shape[1], nu), nu, backend=p.backend,
                           device=resolve_device(p.device))
        kwargs = dict(params)
        run_kw = {"iterations": p.iterations, "every": every, "start": 0, "seed": p.seed}
        kwargs.update({k: v for k, v in run_kw.items() if m.accepts(k)})
        return m.function(A, torch.from_numpy(y), **kwargs)

    def __call__(self, window: Any = None) -> Any:
        if window is None:
            window = self.read()
        y = self.canonical(window)
        del window
        s, e = self.inner
        os_ = self.outer[0]
        if self.job == "lambda":
            return self._lambda(y)
        if self.job == "poses":
            last = _last(self.steps(y, {**self.plan.params, "learn_pose": True}, 10**9))
            if last.poses is None:
                raise DataError("the INR returned no poses")
            return {"slab": [s, e], "poses": dict(last.poses)}
        last = _last(self.steps(y, self.plan.params, 10**9))
        return np.ascontiguousarray(last.volume[:, s - os_ : e - os_])

    def _lambda(self, y: np.ndarray) -> dict[str, Any]:
        """CS-TV's λ search on this slab, stopped as soon as λ is chosen."""
        gen = self.steps(y, {**self.plan.params, "lam": "auto"}, 1)
        try:
            for st in gen:
                if st.phase != "lambda search":
                    return {"slab": list(self.inner), "lam": float(st.extras["lam"]),
                            "search": [dict(r) for r in st.search]}
        finally:
            gen.close()
        raise DataError("the CS-TV λ search produced no choice")


def _last(steps: Iterator[Any]) -> Any:
    last = None
    try:
        for last in steps:
            pass
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()
    if last is None:
        raise DataError("the reconstruction of a slab produced no result")
    return last


def _warp_window(x: np.ndarray, region: Window, window: Window, image_shape: tuple[int, int],
                 shifts: np.ndarray, residual: float) -> np.ndarray:
    """The oriented images over ``region`` from the input images over ``window``.

    The same bilinear resampling with border clamping as
    :func:`~tomoprior.transforms.warp_images` on the whole image, evaluated
    only where the slab needs it.
    """
    import torch
    import torch.nn.functional as F

    iy, ix = _sample_points(region, image_shape, shifts, residual)
    wh, ww = window.shape
    gx = (2 * (ix - window.cols[0]) + 1) / ww - 1
    gy = (2 * (iy - window.rows[0]) + 1) / wh - 1
    grid = torch.from_numpy(np.stack((gx, gy), -1).astype(np.float32))
    with torch.no_grad():
        out = F.grid_sample(torch.from_numpy(np.ascontiguousarray(x))[:, None], grid,
                            mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0].numpy()


