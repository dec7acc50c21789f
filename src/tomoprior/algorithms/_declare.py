"""Method declarations: each algorithm states its name, parameters and traits once.

A method module decorates its generator function with :func:`method`::

    @method("sirt", label="SIRT", order=20, help="...",
            params=(Param("relaxation", "Relaxation", "Step length", min=0.01, max=1.99),),
            separable=True)
    def sirt(A, y, *, iterations=100, every=5, x0=None, mask=None, start=0, resume=None,
             seed=0, relaxation=1.0):
        ...

Defaults come from the function's signature (so they cannot drift), the
labels, help texts, ranges and choices from the :class:`Param` entries, and
the capabilities partly from the signature (a method that takes
``iterations`` is iterative, ``resume`` resumable, ``mask`` fits a subset of
pixels) and partly from the declaration (``separable``, ``learns_poses``).
The declaration is checked against the signature when the module is
imported. Calling the decorated function validates every parameter through
its declaration, so a mistyped or out-of-range keyword raises
:class:`~tomoprior.errors.ParameterError` instead of being ignored.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..step import Step

__all__ = ["RUN_KEYWORDS", "Capabilities", "Method", "Param", "method"]

# keywords every method may take that are not parameters of the method itself
RUN_KEYWORDS = ("iterations", "every", "x0", "mask", "start", "resume", "seed")


@dataclass(frozen=True)
class Param:
    """One user-settable parameter of a method; ``default`` is filled in from the signature."""

    name: str
    label: str = ""
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    advanced: bool = False
    log: bool = False
    allow_auto: bool = False  # the string "auto" is accepted besides numbers
    default: Any = None

    @property
    def kind(self) -> type:
        if self.choices is not None:
            return str
        if self.allow_auto:
            return float
        return type(self.default)

    def parse(self, text: Any) -> Any:
        """Convert a command-line string (or a value) to this parameter's type and check it.

        Raises :class:`~tomoprior.errors.ParameterError` naming the parameter.
        """
        try:
            value = self._convert(text)
        except (TypeError, ValueError):
            raise ParameterError(
                f"{self.name} expects {self._expected()}, got {text!r}") from None
        if self.choices is not None and value not in self.choices:
            opts = ", ".join(str(c) for c in self.choices)
            raise ParameterError(f"{self.name} must be one of {opts}, got {text!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ParameterError(f"{self.name} must be a finite number, got {text!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise ParameterError(f"{self.name} must be >= {self.min:g}, got {value:g}")
            if self.max is not None and value > self.max:
                raise ParameterError(f"{self.name} must be <= {self.max:g}, got {value:g}")
        return value

    def _expected(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
        what = names.get(self.kind, self.kind.__name__)
        return f"'auto' or {what}" if self.allow_auto else what

    def _convert(self, text: Any) -> Any:
        kind = self.kind
        if isinstance(text, str):
            t = text.strip()
            if self.allow_auto and t.lower() == "auto":
                return "auto"
            if self.choices is not None:
                return next((c for c in self.choices if str(c) == t), t)
            if kind is bool:
                if t.lower() in ("1", "true", "yes", "on"):
                    return True
                if t.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(t)
            if kind is int:
                f = float(t)
                if not f.is_integer():
                    raise ValueError(t)
                return int(f)
            if kind is float:
                return float(t)
            return t
        if kind is bool:
            if isinstance(text, bool) or (isinstance(text, int) and text in (0, 1)):
                return bool(text)
            raise TypeError(text)
        if kind is int:
            if isinstance(text, bool) or not float(text).is_integer():
                raise TypeError(text)
            return int(text)
        if kind is float:
            if isinstance(text, bool):
                raise TypeError(text)
            return float(text)
        if kind is str and not isinstance(text, str) and self.choices is None:
            if isinstance(text, os.PathLike):  # a model file given as a Path
                return os.fspath(text)
            if isinstance(text, (tuple, list)):  # e.g. DIP-TV's channels given as a sequence
                return ",".join(str(v) for v in text)
            raise TypeError(text)
        return text


@dataclass(frozen=True)
class Capabilities:
    """What a method can do, for the user interfaces and :func:`tomoprior.run`."""

    iterative: bool  # takes ``iterations`` and ``every``; streams intermediate volumes
    resumable: bool  # its last Step carries a ResumeState that continues the run exactly
    uses_mask: bool  # fits a subset of detector pixels (held-out validation)
    seeded: bool  # randomised, reproducible through ``seed``
    warm_start: bool  # accepts a starting volume ``x0``
    separable: bool = False  # y-slices independent: chunks need no overlap
    learns_poses: bool = False  # refines per-tilt shifts and the axis; steps carry poses

    def names(self) -> list[str]:
        return [k for k, v in self.__dict__.items() if v is True]


@dataclass(frozen=True)
class Method:
    """A reconstruction method as the user interfaces see it (built by :func:`method`)."""

    name: str
    label: str
    help: str
    function: Callable[..., Iterator[Step]]
    params: tuple[Param, ...]
    capabilities: Capabilities
    default_iterations: int
    default_every: int
    order: int = 100
    citation: str = ""
    #: ``{param: {value: {"iterations": n, "every": k}}}``: run defaults that follow from a
    #: parameter (DIP-TV from the trained network needs a tenth of the steps of a cold start)
    defaults_when: Mapping[str, Mapping[Any, Mapping[str, int]]] = field(default_factory=dict)

    def run_defaults(self, params: Mapping[str, Any] | None = None) -> tuple[int, int]:
        """``(iterations, every)`` by default for these (resolved) parameters."""
        its, every = self.default_iterations, self.default_every
        for name, by_value in self.defaults_when.items():
            value = (params or {}).get(name, self.param(name).default)
            chosen = by_value.get(value, {})
            its, every = chosen.get("iterations", its), chosen.get("every", every)
        return its, every

    @property
    def module(self) -> str:
        return self.function.__module__

    def load(self) -> Callable[..., Iterator[Step]]:
        """The method's generator function."""
        return self.function

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise ParameterError(f"{self.label} has no parameter {name!r} (known: {known})")

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``given`` values, each parsed and range-checked."""
        out = self.defaults()
        for key, value in (given or {}).items():
            out[key] = self.param(key).parse(value)
        return out

    def accepts(self, keyword: str) -> bool:
        """Whether the function takes the run keyword ``keyword`` (e.g. ``"mask"``)."""
        return keyword in inspect.signature(self.function).parameters


def _signature_defaults(fn: Callable) -> tuple[dict[str, Any], set[str]]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if len(params) < 2 or [p.name for p in params[:2]] != ["A", "y"]:
        raise TypeError(f"{fn.__qualname__}: a method takes (A, y, *, ...)")
    defaults, run = {}, set()
    for p in params[2:]:
        if p.kind is not p.KEYWORD_ONLY:
            raise TypeError(f"{fn.__qualname__}: parameter {p.name!r} must be keyword-only")
        if p.default is p.empty:
            raise TypeError(f"{fn.__qualname__}: parameter {p.name!r} needs a default")
        if p.name in RUN_KEYWORDS:
            run.add(p.name)
        else:
            defaults[p.name] = p.default
    return defaults, run


def _count(key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{key} must be an integer, got {value!r}")
    if value < low:
        raise ParameterError(f"{key} must be >= {low}, got {value}")
    return int(value)


def method(
    name: str,
    *,
    label: str,
    help: str,
    params: tuple[Param, ...] = (),
    order: int = 100,
    separable: bool = False,
    learns_poses: bool = False,
    citation: str = "",
    defaults_when: Mapping[str, Mapping[Any, Mapping[str, int]]] | None = None,
) -> Callable[[Callable[..., Iterator[Step]]], Callable[..., Iterator[Step]]]:
    """Declare the decorated generator function as a reconstruction method.

    ``defaults_when`` gives the iterations and snapshot interval that follow
    from a parameter's value (``{"init": {"pretrained": {"iterations": 100}}}``):
    a call that gives no ``iterations`` (or ``every``) gets them, from the
    engine, the command line, the widgets or Python alike.
    """

    def decorate(fn: Callable[..., Iterator[Step]]) -> Callable[..., Iterator[Step]]:
        defaults, run = _signature_defaults(fn)
        declared = [p.name for p in params]
        if sorted(declared) != sorted(defaults):
            raise TypeError(
                f"{fn.__qualname__}: declared parameters {sorted(declared)} differ from the "
                f"signature's {sorted(defaults)}")
        bound = tuple(replace(p, default=defaults[p.name]) for p in params)
        for p in bound:  # the defaults themselves must pass their own checks
            p.parse(p.default)
        sig = inspect.signature(fn)
        caps = Capabilities(
            iterative="iterations" in run, resumable="resume" in run, uses_mask="mask" in run,
            seeded="seed" in run, warm_start="x0" in run, separable=separable,
            learns_poses=learns_poses,
        )
        its = sig.parameters["iterations"].default if caps.iterative else 1
        every = sig.parameters["every"].default if "every" in run else 1
        spec_by_name = {p.name: p for p in bound}
        when = {k: dict(v) for k, v in (defaults_when or {}).items()}
        for key, by_value in when.items():
            if key not in spec_by_name:
                raise TypeError(f"{fn.__qualname__}: defaults_when names no parameter {key!r}")
            for value, chosen in by_value.items():
                spec_by_name[key].parse(value)
                if set(chosen) - {"iterations", "every"}:
                    raise TypeError(f"{fn.__qualname__}: defaults_when sets only iterations "
                                    f"and every, not {sorted(set(chosen))}")

        @functools.wraps(fn)
        def wrapper(A, y, **kwargs: Any) -> Iterator[Step]:
            for key, value in kwargs.items():
                if key in spec_by_name:
                    kwargs[key] = spec_by_name[key].parse(value)
                elif key not in run:
                    known = ", ".join(sorted(set(spec_by_name) | run))
                    raise ParameterError(f"{label} has no parameter {key!r} (known: {known})")
            if when and caps.iterative:
                its_d, every_d = wrapper.__tomoprior_method__.run_defaults(kwargs)
                kwargs.setdefault("iterations", its_d)
                if "every" in run:
                    kwargs.setdefault("every", every_d)
            for key, low in (("iterations", 0), ("every", 1), ("start", 0), ("seed", 0)):
                if key in kwargs:
                    kwargs[key] = _count(key, kwargs[key], low)
            return fn(A, y, **kwargs)

        wrapper.__tomoprior_method__ = Method(  # type: ignore[attr-defined]
            name=name, label=label, help=help, function=wrapper, params=bound, capabilities=caps,
            default_iterations=int(its), default_every=int(every), order=order,
            citation=citation, defaults_when=when,
        )
        return wrapper

    return decorate
