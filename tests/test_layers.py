"""The package's layers: imports point one way (see docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "tomoprior"


def _imports(path: Path) -> set[str]:
    """Absolute names of the tomoprior modules a file imports (at any depth in the file)."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {n for n in out if n.startswith("tomoprior")}


def _modules(sub: str) -> list[Path]:
    root = SRC / sub
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


# (layer, layers it must not import)
RULES = [
    ("algorithms", ("tomoprior.alignment", "tomoprior._napari", "tomoprior._qt", "tomoprior.engine",
                    "tomoprior.cli", "tomoprior.io", "tomoprior.phantoms")),
    ("frames", ("tomoprior.algorithms", "tomoprior.alignment", "tomoprior._napari", "tomoprior._qt")),
    ("registration", ("tomoprior.algorithms", "tomoprior.alignment", "tomoprior._napari",
                      "tomoprior._qt")),
    ("operators", ("tomoprior.algorithms", "tomoprior.alignment", "tomoprior.engine",
                   "tomoprior._napari", "tomoprior._qt")),
    ("alignment", ("tomoprior._napari", "tomoprior._qt", "tomoprior.engine", "tomoprior.cli")),
    ("phantoms", ("tomoprior.engine", "tomoprior.alignment", "tomoprior._napari", "tomoprior._qt",
                  "tomoprior.training", "tomoprior.cli")),
    ("training", ("tomoprior._napari", "tomoprior._qt", "tomoprior.cli")),
    ("interpolation", ("tomoprior._napari", "tomoprior._qt", "tomoprior.cli",
                       "tomoprior._cli_interpolate")),
    ("projections", ("tomoprior.algorithms", "tomoprior.alignment", "tomoprior.engine",
                     "tomoprior.phantoms", "tomoprior.interpolation", "tomoprior._napari",
                     "tomoprior._qt")),
    ("_napari", ("tomoprior._qt",)),
    ("cancel", ("tomoprior.algorithms", "tomoprior.alignment", "tomoprior.engine", "tomoprior.io",
                "tomoprior._napari", "tomoprior._qt", "tomoprior.cli")),
]


@pytest.mark.parametrize(("layer", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_imports_point_one_way(layer, forbidden):
    bad = []
    for path in _modules(layer):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(bad)


def test_qt_only_in_qt_package():
    for path in SRC.rglob("*.py"):
        if "_qt" in path.relative_to(SRC).parts or path.name == "_demo.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert n.split(".")[0] not in ("qtpy", "PyQt5", "PyQt6", "PySide6", "superqt",
                                               "magicgui"), f"{path.relative_to(SRC)} imports {n}"


def test_relative_imports_are_resolved():
    """The checker itself: relative imports one and two levels up resolve to full names."""
    names = _imports(SRC / "algorithms" / "sirt.py")
    assert "tomoprior.operators.base" in names and "tomoprior.algorithms._driver" in names
