"""The reconstruction methods and phantoms as the command line names them, without torch.

The method declarations live in the algorithm modules beside their torch
code, so reading :data:`tomoprior.algorithms.METHODS` costs the torch
import. The command line's help, its method and phantom choices and
``tomoprior methods`` read instead :mod:`tomoprior._cli_catalog`, a
snapshot of the registry generated from it::

    python -m tomoprior._cli_methods     # rewrites src/tomoprior/_cli_catalog.py

``tests/test_cli_startup.py`` fails when the snapshot differs from the
registry, as the README's method table does when it is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._cli_catalog import METHODS, NOISE_DEFAULTS, PHANTOMS

__all__ = [
    "METHODS",
    "NOISE_DEFAULTS",
    "PHANTOMS",
    "add_methods_parser",
    "catalog_source",
    "cmd_methods",
    "method_list",
    "method_name",
    "methods_markdown",
    "phantom_name",
    "registry_catalog",
]


def _norm(text: object) -> str:
    return "".join(ch for ch in str(text).lower() if ch.isalnum())


def method_name(text: str) -> str:
    """The registry name for a method name or label in any case (``"SIRT"``, ``"cs-tv"``).

    Text that names no method comes back unchanged, so that argparse's
    ``choices`` reports it with the list of names.
    """
    key = _norm(text)
    for name in METHODS:  # names first, then labels, as get_method looks them up
        if _norm(name) == key:
            return name
    for name, m in METHODS.items():
        if _norm(m["label"]) == key:
            return name
    return text


def phantom_name(text: str) -> str:
    """The registry name for a phantom name in any case, ``-`` or ``_`` (``"Shepp-Logan"``)."""
    key = str(text).strip().lower().replace("-", "_")
    return key if key in PHANTOMS else text


def method_list(conjunction: str = "or") -> str:
    """``"wbp, sirt, ... or inr"``: every method name, in the registry's order."""
    names = list(METHODS)
    return ", ".join(names[:-1]) + f" {conjunction} {names[-1]}"


def _iterations(m: dict[str, Any]) -> str:
    if "iterative" not in m["capabilities"]:
        return "one pass, no iterations"
    n = int(m["default_iterations"])
    text = f"{n} iteration{'' if n == 1 else 's'} by default"
    follows = [f"{d['iterations']} with {name}={value}"
               for name, by_value in m.get("defaults_when", {}).items()
               for value, d in by_value.items() if "iterations" in d]
    return text + (f" ({', '.join(follows)})" if follows else "")


def _bounds(p: dict[str, Any]) -> str:
    if p["choices"]:
        return "; one of " + ", ".join(str(c) for c in p["choices"])
    if p["min"] is None and p["max"] is None:
        return ""
    lo = "" if p["min"] is None else f"{p['min']:g}"
    hi = "" if p["max"] is None else f"{p['max']:g}"
    return f" [{lo}, {hi}]"


def methods_text() -> str:
    """``tomoprior methods``: each method, its traits and its parameters in aligned columns."""
    import textwrap

    width = max(len(n) for n in METHODS) + 2
    pad = " " * width
    lines: list[str] = []
    for name, m in METHODS.items():
        head = f"{name:<{width}}{m['label']}: {m['help']}"
        lines += textwrap.wrap(head, 100, subsequent_indent=pad)
        traits = ", ".join(c for c in m["capabilities"] if c != "iterative")
        lines.append(pad + "; ".join(t for t in (_iterations(m), traits) if t))
        keys = [f"--param {k}={p['default']}" for k, p in m["params"].items()]
        col = max((len(k) for k in keys), default=0) + 2
        for key, p in zip(keys, m["params"].values()):
            lines += textwrap.wrap(f"{pad}{key:<{col}}{p['help']}{_bounds(p)}", 100,
                                   subsequent_indent=pad + " " * col)
    return "\n".join(lines)


def methods_markdown() -> str:
    """The Markdown table of methods and parameters shown in the README."""
    lines = ["| method | what it does | parameters (`--param NAME=VALUE`, default) |",
             "| --- | --- | --- |"]
    for name, m in METHODS.items():
        params = "; ".join(f"`{k}={p['default']}`" for k, p in m["params"].items()) or "none"
        lines.append(f"| `{name}` ({m['label']}) | {m['help']} | {params} |")
    return "\n".join(lines)


def cmd_methods(args: argparse.Namespace) -> int:
    """``tomoprior methods``: the registry as text, JSON or the README's Markdown table."""
    from ._cli_common import emit_json

    if args.markdown:
        print(methods_markdown())
    elif args.json:
        emit_json(METHODS)
    else:
        print(methods_text())
    return 0


def add_methods_parser(sub) -> None:
    """``tomoprior methods`` on the main sub-parsers."""
    p = sub.add_parser("methods", help="list the reconstruction methods and their parameters",
                       description="The reconstruction methods, what each does, and the "
                       "parameters `tomoprior reconstruct --param KEY=VALUE` takes.")
    p.add_argument("--json", action="store_true",
                   help="print the registry as one JSON object instead")
    p.add_argument("--markdown", action="store_true",
                   help="print the README's method table instead")
    p.set_defaults(func=cmd_methods)


# -- the snapshot -------------------------------------------------------------------------------
def registry_catalog() -> tuple[dict[str, Any], tuple[str, ...], dict[str, float]]:
    """Methods, phantom names and the simulator's noise defaults, read from the package itself
    (imports torch)."""
    from . import phantoms
    from .algorithms import METHODS as registry
    from .phantoms._simulate import DEFAULT_DOSE, DEFAULT_SIGMA

    methods = {
        n: {"label": m.label, "help": m.help, "capabilities": m.capabilities.names(),
            "default_iterations": m.default_iterations, "default_every": m.default_every,
            "defaults_when": {k: {v: dict(d) for v, d in by.items()}
                              for k, by in m.defaults_when.items()},
            "params": {p.name: {"default": p.default, "help": p.help, "min": p.min, "max": p.max,
                                "choices": None if p.choices is None else list(p.choices),
                                "auto": p.allow_auto, "advanced": p.advanced}
                       for p in m.params}}
        for n, m in registry.items()
    }
    return methods, tuple(phantoms.PHANTOMS), {"dose": DEFAULT_DOSE, "sigma": DEFAULT_SIGMA}


def _literal(value: Any, indent: int) -> str:
    """A Python literal of ``value``: dicts of dicts one key a line, everything else inline."""
    if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
        inner = " " * (indent + 4)
        items = "".join(f"{inner}{k!r}: {_literal(v, indent + 4)},\n" for k, v in value.items())
        return "{\n" + items + " " * indent + "}"
    return repr(value)


def catalog_source() -> str:
    """The text of ``_cli_catalog.py`` for the registries as they are now."""
    methods, phantom_names, noise = registry_catalog()
    return (
        '"""Generated by ``python -m tomoprior._cli_methods`` from the method and phantom\n'
        "registries and the simulator: the command line reads them here without importing\n"
        'torch. Do not edit."""\n'
        "\n"
        f"METHODS = {_literal(methods, 0)}\n"
        "\n"
        f"PHANTOMS = {phantom_names!r}\n"
        "\n"
        f"NOISE_DEFAULTS = {noise!r}\n"
    )


def write_catalog(path: Path | None = None) -> Path:
    """Rewrite ``_cli_catalog.py`` from the registries; return its path."""
    target = path or Path(__file__).with_name("_cli_catalog.py")
    target.write_text(catalog_source(), encoding="utf-8")
    return target


if __name__ == "__main__":  # pragma: no cover
    print(f"wrote {write_catalog()}", file=sys.stderr)
