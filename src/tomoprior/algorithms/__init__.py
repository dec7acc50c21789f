"""Reconstruction methods and their registry.

Every method is a generator function ``method(A, y, *, iterations, x0,
every, start, mask, seed, **params) -> Iterator[Step]`` in a module of its
own, working in the canonical frame (tilt axis along y). The registry below
describes each method once: its label, parameters (types, defaults, ranges,
which are advanced) and traits. The command line, :func:`tomoprior.run` and
the napari widgets are all built from it, so adding a method is one entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MethodUnavailable
from ..step import Step

__all__ = ["METHODS", "Method", "Param", "get_method"]


@dataclass(frozen=True)
class Param:
    """One user-settable parameter of a method."""

    name: str
    default: Any
    label: str = ""
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    advanced: bool = False
    log: bool = False
    allow_auto: bool = False  # the string "auto" is accepted besides numbers

    @property
    def kind(self) -> type:
        if self.choices is not None:
            return str
        if self.allow_auto:
            return float
        return type(self.default)

    def parse(self, text: str | Any) -> Any:
        """Convert a command-line string (or value) to this parameter's type and check it."""
        kind = self.kind
        value = text
        if self.allow_auto and isinstance(text, str) and text.strip().lower() == "auto":
            return "auto"
        if isinstance(text, str):
            t = text.strip()
            if self.choices is not None and t in [str(c) for c in self.choices]:
                value = next(c for c in self.choices if str(c) == t)
            elif kind is bool:
                if t.lower() in ("1", "true", "yes", "on"):
                    value = True
                elif t.lower() in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError(f"{self.name} expects true or false, got {text!r}")
            elif kind is int:
                value = int(float(t))
            elif kind is float:
                value = float(t)
        elif kind is float and isinstance(text, int) and not isinstance(text, bool):
            value = float(text)
        if self.choices is not None and value not in self.choices:
            opts = ", ".join(str(c) for c in self.choices)
            raise ValueError(f"{self.name} must be one of {opts}, got {text!r}")
        if self.min is not None and value < self.min:
            raise ValueError(f"{self.name} must be >= {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise ValueError(f"{self.name} must be <= {self.max}, got {value}")
        return value


@dataclass(frozen=True)
class Method:
    """A reconstruction method as the user interfaces see it."""

    name: str
    label: str
    module: str
    function: str
    description: str
    params: tuple[Param, ...] = ()
    iterative: bool = True
    default_iterations: int = 100
    default_every: int = 1
    separable: bool = False  # y-slices independent: chunks need no overlap
    uses_mask: bool = False  # accepts a mask of detector pixels to fit (held-out validation)
    citation: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., Iterator[Step]]:
        try:
            mod = importlib.import_module(self.module)
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise MethodUnavailable(f"{self.label} cannot be loaded: {exc}") from exc
        return getattr(mod, self.function)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise KeyError(f"{self.label} has no parameter {name!r} (known: {known})")

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``given`` values, each parsed and range-checked."""
        out = self.defaults()
        for key, value in (given or {}).items():
            try:
                out[key] = self.param(key).parse(value)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        return out


_P = Param
METHODS: dict[str, Method] = {
    "wbp": Method(
        name="wbp",
        label="WBP",
        module="tomoprior.algorithms.wbp",
        function="wbp",
        description="Weighted back-projection: instant preview, streaks and elongation in the missing wedge.",
        params=(
            _P("filter", "ram-lak", "Filter", "Apodisation of the ramp filter",
               choices=("ram-lak", "shepp-logan", "cosine", "hamming", "hann", "none")),
            _P("nonneg", False, "Clip negatives", "Set negative densities to zero", advanced=True),
        ),
        iterative=False,
        default_iterations=1,
        separable=True,
        citation="Radermacher, in Electron Tomography (Frank, ed.), Springer 2006",
    ),
    "sirt": Method(
        name="sirt",
        label="SIRT",
        module="tomoprior.algorithms.sirt",
        function="sirt",
        description="Simultaneous iterative reconstruction: robust, smooth, smeared along the missing wedge.",
        params=(
            _P("relaxation", 1.0, "Relaxation", "Step length (0-2)", min=0.01, max=1.99),
            _P("nonneg", True, "Non-negative", "Clip negative densities after each update"),
        ),
        default_iterations=100,
        default_every=5,
        separable=True,
        uses_mask=True,
        citation="Gilbert, J. Theor. Biol. 36 (1972) 105",
    ),
    "cstv": Method(
        name="cstv",
        label="CS-TV",
        module="tomoprior.algorithms.cstv",
        function="cstv",
        description="Total-variation compressed sensing (Chambolle-Pock): sharp edges, "
        "piecewise-constant look; lam='auto' picks the weight by held-out pixels.",
        params=(
            _P("lam", "auto", "TV weight λ", "Relative TV weight, or 'auto': chosen from a grid "
               "by the median error on held-out pixels", min=0.0, max=100.0, log=True, allow_auto=True),
            _P("nonneg", True, "Non-negative", "Constrain densities to >= 0"),
            _P("adaptive", True, "Adaptive steps", "Residual-balancing primal/dual steps",
               advanced=True),
            _P("val_fraction", 0.05, "Validation fraction", "Held-out pixels for lam='auto'",
               min=0.0, max=0.5, advanced=True),
        ),
        default_iterations=200,
        default_every=10,
        uses_mask=True,
        citation="Sidky, Jorgensen & Pan, Phys. Med. Biol. 57 (2012) 3065; "
        "Chambolle & Pock, J. Math. Imaging Vis. 40 (2011) 120",
    ),
    "diptv": Method(
        name="diptv",
        label="DIP-TV",
        module="tomoprior.algorithms.diptv",
        function="diptv",
        description="Deep Image Prior + TV: an untrained U-Net whose projected output must match "
        "the data; fills the missing wedge with natural structure. Best iterate kept by "
        "held-out pixels.",
        params=(
            _P("lam", "auto", "TV weight λ", "Relative TV weight (as CS-TV), or 'auto': the "
               "weight CS-TV picks by held-out pixels", min=0.0, max=100.0, log=True,
               allow_auto=True),
            _P("lr", 1e-3, "Learning rate", "Adam step size", min=1e-6, max=1.0, log=True),
            _P("warm_start", "cstv", "Warm start", "Volume the network starts from",
               choices=("cstv", "sirt", "none")),
            _P("warm_iterations", 150, "Warm-start iterations", "Iterations of the warm start",
               min=1, max=100000, advanced=True),
            _P("mode", "2d", "Network", "2d: one network over slices (fast); 3d: volume network",
               choices=("2d", "3d"), advanced=True),
            _P("channels", "16,32,64", "Channels", "Feature channels per level", advanced=True),
            _P("in_channels", 8, "Input channels", "Channels of the random input", min=1, max=128,
               advanced=True),
            _P("val_fraction", 0.05, "Validation fraction", "Held-out pixels (0 disables)",
               min=0.0, max=0.5, advanced=True),
            _P("batch_slices", 16, "Slices per step", "2D: random slab of slices per step (0: all)",
               min=0, max=100000, advanced=True),
            _P("ema", 0.7, "Average decay", "Moving average of snapshots for the live view",
               min=0.0, max=0.9999, advanced=True),
            _P("amp", True, "Mixed precision", "bfloat16 network on CUDA", advanced=True),
        ),
        default_iterations=1000,
        default_every=25,
        uses_mask=True,
        citation="Ulyanov et al., CVPR 2018; Baguer et al., Inverse Problems 36 (2020) 094004",
    ),
    "inr": Method(
        name="inr",
        label="INR",
        module="tomoprior.algorithms.inr",
        function="inr",
        description="Implicit neural representation fitted along rays, optionally learning "
        "per-tilt shifts and the tilt axis; renders virtual projections.",
        params=(
            _P("learn_pose", False, "Learn alignment", "Refine per-tilt shifts and the axis"),
            _P("field", "grid", "Network", "grid: multiresolution grid (fast); siren; fourier",
               choices=("grid", "siren", "fourier")),
            _P("lr", 1e-2, "Learning rate", "Adam step size of the network", min=1e-6, max=1.0,
               log=True),
            _P("batch_rays", 4096, "Rays per step", "Detector pixels per optimiser step",
               min=64, max=1_000_000, advanced=True),
            _P("lr_pose", 5e-2, "Pose learning rate", "Adam step size of shifts (px); the "
               "axis (deg) learns at a fifth of it", min=0.0, max=1.0, log=True, advanced=True),
            _P("pose_start", 0.2, "Pose warm-up", "Fraction of steps before poses move",
               min=0.0, max=1.0, advanced=True),
            _P("anchor", True, "Anchor on reference", "Report volume and poses in the frame of "
               "the tilt nearest 0° (registered on its image)", advanced=True),
            _P("learn_angles", False, "Learn tilt offsets", "Refine tilt angles (needs more "
               "data)", advanced=True),
            _P("per_tilt_axis", False, "Per-tilt axis", "Refine the in-plane rotation per tilt",
               advanced=True),
            _P("loss", "smooth_l1", "Loss", "Data loss", choices=("smooth_l1", "mse"),
               advanced=True),
            _P("tv_weight", 0.0, "TV weight", "TV penalty on random points (0: off)", min=0.0,
               max=100.0, advanced=True),
            _P("val_fraction", 0.05, "Validation fraction", "Held-out pixels (0 disables)",
               min=0.0, max=0.5, advanced=True),
            _P("samples", 0, "Samples per ray", "0: one per voxel", min=0, max=4096,
               advanced=True),
            _P("width", 128, "Width (siren/fourier)", "Hidden units", min=8, max=1024,
               advanced=True),
            _P("depth", 3, "Depth (siren/fourier)", "Hidden layers", min=1, max=12,
               advanced=True),
        ),
        default_iterations=2000,
        default_every=100,
        uses_mask=True,
        citation="Lim, Casert, McCray, ..., Ophus (quantEM INR); Sitzmann et al., NeurIPS 2020",
    ),
}


def register(method: Method) -> None:
    """Add a method to the registry (used by the method modules' issues and by plugins)."""
    METHODS[method.name] = method


def get_method(name: str) -> Method:
    """The registry entry for ``name`` or a clear error."""
    key = str(name).strip().lower().replace("-", "")
    if key in METHODS:
        return METHODS[key]
    known = ", ".join(METHODS)
    raise MethodUnavailable(f"unknown or unavailable method {name!r}: available are {known}")
