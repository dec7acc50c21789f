"""The unseen specimen families of the generalisation benchmark, and their separation from training.

``benchmarks/unseen_families.py`` must stay out of reach of everything that
trains or simulates for training (no module of the package imports or reads
it) and must not borrow the package's specimen code (it imports no
``tomoprior`` module), so that the benchmark judges the learned methods on
specimens their training could not have produced.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SRC = ROOT / "src" / "tomoprior"
TRAINING_MODULES = (
    "phantoms/__init__.py", "phantoms/_pairs.py", "phantoms/_triplets.py",
    "algorithms/_restore_model.py", "_cli_train.py", "interpolation/training.py", "training.py",
)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


uf = _load("unseen_families")
SIZE = 32


@pytest.fixture(scope="module")
def rendered():
    return {name: uf.render(name, SIZE, seed=3) for name in uf.FAMILIES}


def _imports(path: Path) -> set[str]:
    """Every module name an ``import`` / ``from ... import`` in the file names (relative resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(SRC.parent).with_suffix("").parts if path.is_relative_to(SRC) else ()
    package = list(parts[:-1])  # the package a relative import starts from (also for __init__)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*up, base] if base else up)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _code_strings(path: Path) -> list[str]:
    """The string constants of a module that are not docstrings (paths, module names, ...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_string_check_sees_code_and_skips_docstrings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""Mentions unseen_families."""\nP = "benchmarks/unseen_families.py"\n')
    assert _code_strings(f) == ["benchmarks/unseen_families.py"]


def test_at_least_six_families():
    assert len(uf.FAMILIES) >= 6
    assert len(set(uf.FAMILIES)) == len(uf.FAMILIES)


@pytest.mark.parametrize("name", uf.FAMILIES)
def test_deterministic_per_seed(name, rendered):
    a, b = rendered[name], uf.render(name, SIZE, seed=3)
    np.testing.assert_array_equal(a.volume, b.volume)
    np.testing.assert_array_equal(a.groups, b.groups)
    np.testing.assert_array_equal(a.region, b.region)
    np.testing.assert_array_equal(a.objects, b.objects)
    np.testing.assert_array_equal(uf.make(name, SIZE, seed=3), a.truth())
    np.testing.assert_array_equal(uf.make_groups(name, SIZE, seed=3), a.groups)


@pytest.mark.parametrize("name", uf.FAMILIES)
def test_different_seeds_differ(name, rendered):
    other = uf.make(name, SIZE, seed=4)
    assert np.abs(other - rendered[name].truth()).mean() > 1e-3 * rendered[name].truth().max()


@pytest.mark.parametrize("name", uf.FAMILIES)
def test_specimen_is_sensible(name, rendered):
    sp = rendered[name]
    n = SIZE * sp.supersample
    assert sp.volume.shape == sp.groups.shape == sp.region.shape == (n, n, n)
    assert sp.volume.dtype == np.float32 and sp.groups.dtype == np.int16
    truth = sp.truth()
    assert truth.shape == (SIZE, SIZE, SIZE) and truth.dtype == np.float32
    assert np.all(np.isfinite(sp.volume)) and sp.volume.min() >= 0
    assert np.isclose(truth.mean(), sp.volume.mean(), rtol=1e-4)  # a block mean keeps the mass
    occupied = (truth > 0.05 * truth.max()).mean()
    assert 0.005 < occupied < 0.8, occupied
    # the scoring region holds the whole specimen, and is not the whole box
    assert sp.region[sp.volume > 0].all()
    assert 0.01 < sp.region.mean() < 0.95
    # ADF groups: crystalline pieces exist, only where there is matter
    assert (sp.groups > 0).any()
    assert np.all(sp.volume[sp.groups > 0] > 0)
    # compact objects lie inside the grid with a positive radius
    if len(sp.objects):
        assert np.all((sp.objects[:, :3] >= 0) & (sp.objects[:, :3] <= n - 1))
        assert np.all(sp.objects[:, 3] > 0)


def test_families_are_not_the_same_specimen(rendered):
    truths = [rendered[f].truth() for f in uf.FAMILIES]
    for i in range(len(truths)):
        for j in range(i + 1, len(truths)):
            assert not np.allclose(truths[i], truths[j])


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family"):
        uf.render("pt_haadf", SIZE)


def test_unseen_families_uses_no_package_code():
    names = _imports(BENCH / "unseen_families.py")
    assert names, "the parser found no imports at all"
    assert not [m for m in names if m == "tomoprior" or m.startswith("tomoprior.")]
    allowed = {"__future__", "zlib", "collections", "dataclasses", "numpy", "scipy"}
    assert {m.split(".")[0] for m in names} <= allowed


def test_no_package_module_imports_or_reads_the_unseen_families():
    files = sorted(SRC.rglob("*.py"))
    for rel in TRAINING_MODULES:  # the training code is among what is checked
        assert SRC / rel in files, rel
    for path in files:
        # a docstring may name the module; code may neither import it nor name its file
        assert "unseen_families" not in " ".join(_code_strings(path)), path
        assert not any(m.split(".")[-1] == "unseen_families" or m.startswith("benchmarks")
                       for m in _imports(path)), path


def test_training_generators_do_not_load_it_at_run_time():
    code = (
        "import sys\n"
        "import tomoprior, tomoprior.phantoms, tomoprior.training, tomoprior._cli_train\n"
        "import tomoprior.phantoms._pairs, tomoprior.phantoms._triplets\n"
        "import tomoprior.algorithms._restore_model, tomoprior.interpolation.training\n"
        "from tomoprior.algorithms import METHODS\n"
        "bad = [m for m in sys.modules if 'unseen' in m or m.startswith('benchmarks')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.fixture(scope="module")
def generalisation():
    sys.path.insert(0, str(BENCH))
    try:
        yield _load("generalisation")
    finally:
        sys.path.remove(str(BENCH))


def test_benchmark_design_is_balanced(generalisation):
    g = generalisation
    conds = g.conditions(uf.FAMILIES, (10.0, 20.0), ("haadf", "adf"), (1e3, 1e4), 1, False)
    assert len(conds) == len(uf.FAMILIES) * 2 * 2
    for fam in uf.FAMILIES:  # every family meets both doses
        assert {c.dose for c in conds if c.family == fam} == {1e3, 1e4}
    for con in ("haadf", "adf"):  # and every contrast
        assert {c.dose for c in conds if c.contrast == con} == {1e3, 1e4}
    # both steps on one specimen and dose (paired), a new specimen per (family, contrast)
    pairs = {(c.family, c.contrast): set() for c in conds}
    for c in conds:
        pairs[(c.family, c.contrast)].add((c.seed, c.dose))
    assert all(len(v) == 1 for v in pairs.values())
    assert len({next(iter(v))[0] for v in pairs.values()}) == len(pairs)
    crossed = g.conditions(uf.FAMILIES[:2], (10.0,), ("adf",), (1e3, 1e4), 1, True)
    assert len(crossed) == 4


def test_rows_parse_and_undeclared_parameters_are_skipped(generalisation):
    g = generalisation
    rows = g.parse_rows(["mine=restore_tv:mu=0.03,lam=auto", "plain=sirt"])
    assert rows == {"mine": ("restore_tv", {"mu": "0.03", "lam": "auto"}), "plain": ("sirt", {})}
    with pytest.raises(SystemExit):
        g.parse_rows(["no-method"])
    assert g.usable("restore_tv", {"mu": "0.03"}) is None
    assert "does not declare" in g.usable("sirt", {"no_such_parameter": 1})
    assert g.usable("sirt", {"relaxation": 5.0})  # out of range: a reason, not a crash
    assert g.usable("no_such_method", {})
