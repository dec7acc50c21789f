"""Reconstruction methods and their registry.

Every method is a generator function ``method(A, y, *, iterations, every, x0,
mask, start, resume, seed, <parameters>) -> Iterator[Step]`` in a module of
its own, working in the canonical frame (tilt axis along y), and declared
once beside its function with :func:`~tomoprior.algorithms._declare.method`.
The registry below collects those declarations from every module of this
package; the command line, :func:`tomoprior.run`, the napari widgets and the
README's method table are all built from it, so adding a method is one new
module (plus its tests).
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import MethodUnavailable
from ._declare import Capabilities, Method, Param

__all__ = ["METHODS", "Capabilities", "Method", "Param", "get_method", "methods_table"]


def _discover() -> dict[str, Method]:
    found: list[Method] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(mod).values():
            m = getattr(obj, "__tomoprior_method__", None)
            if isinstance(m, Method) and m.module == mod.__name__:
                found.append(m)
    found.sort(key=lambda m: (m.order, m.name))
    names = [m.name for m in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two methods share a name: {names}")
    return {m.name: m for m in found}


METHODS: dict[str, Method] = _discover()


def get_method(name: str) -> Method:
    """The registry entry for a name or label (``"cs-tv"``, ``"CS-TV"`` find ``cstv``)."""
    def norm(text: str) -> str:
        return "".join(ch for ch in str(text).lower() if ch.isalnum())

    key = norm(name)
    for m in METHODS.values():  # names first ("cs-tv" finds cstv), then labels
        if norm(m.name) == key:
            return m
    for m in METHODS.values():
        if norm(m.label) == key:
            return m
    known = ", ".join(METHODS)
    raise MethodUnavailable(f"unknown or unavailable method {name!r}: available are {known}")


def methods_table() -> str:
    """The Markdown table of methods and parameters shown in the README."""
    lines = ["| method | what it does | parameters (`--param NAME=VALUE`, default) |",
             "| --- | --- | --- |"]
    for m in METHODS.values():
        params = "; ".join(f"`{p.name}={p.default}`" for p in m.params) or "none"
        lines.append(f"| `{m.name}` ({m.label}) | {m.help} | {params} |")
    return "\n".join(lines)
