"""The code of README.md and of the user guides in docs/ runs as written.

Every ``python`` block of the pages runs with ``exec``, and every command line of
their shell blocks (no info string, ``bash``, ``sh``, ``shell`` or ``console``) runs
through the ``tomoprior`` console-script entry point in this process (one interpreter
start instead of one per line). The blocks of a page run in page order in one folder,
as a reader following the page would, so a command that writes a file an earlier one
wrote fails as it would for the reader; run alone (``-k``), a block gets a fresh folder.

The folder starts with small versions of the files the examples name (see
:func:`make_samples`); :data:`CLI_SHRINK` appends options to command lines and
:data:`PY_SHRINK` replaces text in Python blocks so that each runs in seconds. Both
only shrink the work (iterations, slices, training steps, sizes): what a line does and
the options it shows stay as written. An example that cannot run here carries the
comment ``# not run in tests: REASON`` as its block's first line and is reported as
skipped with that reason. A failure names the page and line, and the error.

The pages are README.md and ``docs/*.md``. The benchmark pages and model cards in
``docs/benchmarks/`` and ``docs/models/`` are not collected (their commands take hours),
and the result pages in ``docs/`` quote theirs in inline code, which is not a block.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

from doc_blocks import Block, Command, blocks, commands

# the examples' arrays are small: one thread avoids OpenMP contention on 2 busy cores
pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDLE = ROOT / "src" / "tomoprior" / "sample_data" / "needle_haadf" / "needle_haadf.tif"

#: Options appended to a ``tomoprior`` command line: ``(subcommand, {option: value the
#: line must have}, options)``. argparse keeps an option's last value and the CLI the
#: last ``--param KEY=VALUE``, so these override what the line says. ``--slices`` picks
#: 8 of the 32 columns of the test's needle (the docs' slices are for the 256-pixel one).
CLI_SHRINK: list[tuple[str, dict[str, str], list[str]]] = [
    ("reconstruct", {}, ["--iterations", "2", "--slices", "12:20"]),
    ("reconstruct", {"--method": "diptv"}, ["--param", "warm_iterations=2"]),
    ("reconstruct", {"--method": "restore_tv"}, ["--param", "base_iterations=2"]),
    ("interpolate", {"--method": "reproject"}, ["--iterations", "2"]),
    ("align", {}, ["--rounds", "1"]),
    ("simulate", {}, ["--size", "24"]),
    ("train restore", {}, ["--steps", "2", "--batch", "2", "--size", "16",
                           "--specimens", "1", "--val-specimens", "1"]),
    ("train interpolate", {}, ["--steps", "2", "--until", "2", "--batch", "2",
                               "--series", "1", "--val-series", "1"]),
]

#: Text replaced in the Python blocks of a page: ``{page: [(old, new), ...]}``; every
#: ``old`` must occur in the page's Python blocks (``test_shrink_tables_match``).
PY_SHRINK: dict[str, list[tuple[str, str]]] = {
    "README.md": [
        ('increment=10, lam="auto")', 'increment=10, lam="auto", iterations=5)'),
        ("chunk=64, iterations=100)", "chunk=64, iterations=5)"),
        ('method="sirt", iterations=100)', 'method="sirt", iterations=5)'),
        ('chunk=64, lam="auto")', 'chunk=64, lam="auto", iterations=5)'),
    ],
}

#: Why ``make`` lines are not run: they set up a virtual environment, then
#: ``make demo`` opens napari and ``make test`` runs the whole suite, this file included.
MAKE_REASON = ("make targets install packages and run napari (demo) or the whole suite "
               "(test, which runs this file again)")


def _collect() -> tuple[list[Block], list[Command]]:
    found = [b for page in PAGES for b in blocks(page, ROOT)]
    return ([b for b in found if b.kind == "python"],
            [c for b in found if b.kind == "shell" for c in commands(b)])


PY_BLOCKS, COMMANDS = _collect()


def make_samples(folder: Path) -> None:
    """Write the files the docs' examples read, small, into ``folder``.

    ``needle.tif`` is the bundled HAADF needle binned 8 × 8: 77 tilts of 32 × 32
    pixels of 26.88 nm, angles in ``needle.rawtlt``; ``drift.tif`` and ``raw.tif``
    are copies (unaligned: their drift and tilt axis are the needle's own);
    ``tilts.mrc`` is a simulated HAADF series of Pt on carbon, 32³, ±60° in 2°
    steps, with Poisson noise.
    """
    from tomoprior import io, phantoms
    from tomoprior.geometry import angles_from_range

    f = io.read(NEEDLE)
    b = 8
    n, h, w = f.data.shape
    needle = f.load().reshape(n, h // b, b, w // b, b).mean(axis=(2, 4), dtype=np.float32)
    g = dataclasses.replace(f.geometry, pixel_size=f.geometry.pixel_size * b)
    io.write_tilt_series(folder / "needle.tif", needle, g)
    io.write_tilt_series(folder / "drift.tif", needle, g)
    io.write_tilt_series(folder / "raw.tif", needle, g)
    ph = phantoms.make_phantom("pt_haadf", size=32, seed=0)
    series, gs = phantoms.simulate(ph, angles_from_range(-60, 60, 2), noise="poisson",
                                   dose=1e4, seed=0, pixel_size=1.0, device="cpu")
    io.write_tilt_series(folder / "tilts.mrc", series, gs)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    make_samples(folder)
    return folder


@pytest.fixture(scope="module")
def page_dirs(samples, tmp_path_factory):
    """``folder(block)``: the page's folder, made from the samples on first use."""
    made: dict[str, Path] = {}

    def folder(block: Block) -> Path:
        if block.page not in made:
            made[block.page] = tmp_path_factory.mktemp(block.page.replace("/", "_"))
            shutil.copytree(samples, made[block.page], dirs_exist_ok=True)
        return made[block.page]

    return folder


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _option(argv: list[str], name: str) -> str | None:
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def shrink(argv: list[str]) -> list[str]:
    """The options :data:`CLI_SHRINK` appends to the command line ``argv``."""
    words = argv[1:]
    extra: list[str] = []
    for sub, needs, options in CLI_SHRINK:
        if words[: len(sub.split())] == sub.split() and all(
                _option(words, k) == v for k, v in needs.items()):
            extra += options
    return extra


def _tomoprior_main():
    (script,) = entry_points(group="console_scripts", name="tomoprior")
    return script.load()


def _ids(items) -> list[str]:
    return [f"{x.page}:{x.line}" if isinstance(x, Block) else x.where for x in items]


@pytest.mark.parametrize("command", COMMANDS, ids=_ids(COMMANDS))
def test_command(command: Command, page_dirs, monkeypatch, capsys, restore_threads):
    if command.block.skip:
        pytest.skip(f"{command.where}: {command.block.skip}")
    program = command.argv[0]
    if program == "make":
        pytest.skip(f"{command.where}: {MAKE_REASON}")
    folder = page_dirs(command.block)
    monkeypatch.chdir(folder)
    extra: list[str] = []
    if program == "python":
        done = subprocess.run([sys.executable, *command.argv[1:]], capture_output=True,
                              text=True, timeout=120)
        rc, out, err = done.returncode, done.stdout, done.stderr
    elif program == "tomoprior":
        extra = shrink(command.argv)
        try:
            rc = _tomoprior_main()(command.argv[1:] + extra)
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code
        out, err = capsys.readouterr()
    else:
        pytest.fail(f"{command.where}: no way to run {program!r} here; teach "
                    "tests/test_readme.py or mark the block '# not run in tests: REASON'",
                    pytrace=False)
    ran = f"`{command.text}`" + (f" (with `{' '.join(extra)}` appended)" if extra else "")
    if rc != 0:
        pytest.fail(f"{command.where}: {ran} exited {rc}:\n{err[-3000:]}", pytrace=False)
    output = _option(command.argv, "-o") or _option(command.argv, "--output")
    if output and not (folder / output).exists():
        pytest.fail(f"{command.where}: {ran} exited 0 but wrote no {output}", pytrace=False)
    if "--json" in command.argv:
        last = out.strip().splitlines()[-1] if out.strip() else ""
        try:
            assert isinstance(json.loads(last), dict)
        except (ValueError, AssertionError):
            pytest.fail(f"{command.where}: {ran}: the last line of stdout is not a JSON "
                        f"object: {last[:200]!r}", pytrace=False)


@pytest.mark.parametrize("block", PY_BLOCKS, ids=_ids(PY_BLOCKS))
def test_python_block(block: Block, page_dirs, monkeypatch, restore_threads):
    if block.skip:
        pytest.skip(f"{block.page}:{block.line}: {block.skip}")
    code = block.code
    for old, new in PY_SHRINK.get(block.page, []):
        code = code.replace(old, new)
    monkeypatch.chdir(page_dirs(block))
    failure = None
    try:
        # blank lines before the code: errors give the line numbers of the page
        exec(compile("\n" * (block.line - 1) + code, block.page, "exec"),
             {"__name__": "__doc_example__"})
    except Exception as exc:
        tb = exc.__traceback__.tb_next  # from the example's own frame on
        frames = [f for f in traceback.extract_tb(tb) if f.filename == block.page]
        line = frames[-1].lineno if frames else getattr(exc, "lineno", None) or block.line
        detail = "".join(traceback.format_exception(type(exc), exc, tb)[-12:])
        failure = (f"{block.page}:{line} (block at line {block.line}): "
                   f"{type(exc).__name__}: {exc}\n{detail}")
    if failure:
        pytest.fail(failure, pytrace=False)


def test_pages_have_examples():
    readme = [b for b in PY_BLOCKS if b.page == "README.md"]
    assert readme, "no python block found in README.md"
    assert any(c.argv[0] == "tomoprior" for c in COMMANDS if c.block.page == "README.md")


def test_shrink_tables_match():
    """Every text :data:`PY_SHRINK` replaces is still in its page's Python blocks."""
    for page, pairs in PY_SHRINK.items():
        code = "".join(b.code for b in PY_BLOCKS if b.page == page)
        stale = [old for old, _ in pairs if old not in code]
        assert not stale, f"{page}: PY_SHRINK entries match no python block: {stale}"
    used = {" ".join(c.argv[1:3]) for c in COMMANDS if c.argv[0] == "tomoprior"}
    for sub, _, _ in CLI_SHRINK:
        assert any(u.startswith(sub) for u in used), f"CLI_SHRINK entry {sub!r} matches no line"


def test_blocks_parser(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```\ntomoprior info a.mrc   # a comment\n"
        "tomoprior reconstruct a.mrc -o v.tif \\\n    --method sirt\n```\n\n"
        "```python\n# not run in tests: needs a cluster\nprint(1)\n```\n\n"
        "```mermaid\ngraph\n```\n", encoding="utf-8")
    found = blocks(page, tmp_path)
    assert [(b.kind, b.line, b.skip) for b in found] == [
        ("shell", 4, None), ("python", 10, "needs a cluster")]
    lines = commands(found[0])
    assert [c.line for c in lines] == [4, 5]
    assert lines[0].argv == ["tomoprior", "info", "a.mrc"]
    assert lines[1].argv[-2:] == ["--method", "sirt"]
    assert shrink(["tomoprior", "interpolate", "x.tif", "--method", "reproject"]) == [
        "--iterations", "2"]
    assert shrink(["tomoprior", "interpolate", "x.tif"]) == []
