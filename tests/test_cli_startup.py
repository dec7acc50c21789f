"""The command line starts without torch; its help and `methods` come from the registries."""

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tomoprior import io
from tomoprior.cli import build_parser, main
from tomoprior.geometry import TiltGeometry

COMMANDS = [["info"], ["reconstruct"], ["simulate"], ["align"], ["interpolate"], ["methods"],
            ["train"], ["train", "restore"], ["train", "interpolate"]]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tomoprior.cli import main

    def status(argv):
        try:
            return main(argv)
        except SystemExit as exc:
            return exc.code

    codes = [status(["--help"])] + [status([*c, "--help"]) for c in json.loads(sys.argv[2])]
    codes += [status(["info", sys.argv[1]]), status(["info", sys.argv[1], "--json"]),
              status(["methods"]), status(["methods", "--json"]), status(["methods", "--markdown"])]
    print("CODES", codes, "TORCH", "torch" in sys.modules)
    """
)


def test_help_info_and_methods_do_not_import_torch(tmp_path):
    path = tmp_path / "s.tif"
    io.write_tilt_series(path, np.ones((3, 8, 8), np.float32), TiltGeometry([-10.0, 0.0, 10.0]))
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(path), json.dumps(COMMANDS)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    tail = res.stdout.strip().splitlines()[-1]
    assert tail == f"CODES {[0] * (len(COMMANDS) + 6)} TORCH False", tail


def test_catalog_is_the_registry():
    from tomoprior import _cli_methods

    text = Path(_cli_methods.__file__).with_name("_cli_catalog.py").read_text(encoding="utf-8")
    assert text == _cli_methods.catalog_source(), (
        "_cli_catalog.py is stale: run `python -m tomoprior._cli_methods`")


def _parsers(parser: argparse.ArgumentParser, name: str = "tomoprior"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_has_help_showing_its_default():
    missing, no_default = [], []
    for name, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS:
                continue
            flag = f"{name} {action.option_strings[-1]}"
            if not action.help:
                missing.append(flag)
            elif action.default not in (None, False):
                if "default" not in formatter._expand_help(action):
                    no_default.append(flag)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"help without the default: {no_default}"


def _help(argv) -> str:
    res = subprocess.run([sys.executable, "-m", "tomoprior.cli", *argv, "--help"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_help_lists_every_method_and_phantom():
    from tomoprior.algorithms import METHODS
    from tomoprior.phantoms import PHANTOMS

    top, recon, sim = _help([]), _help(["reconstruct"]), _help(["simulate"])
    for name, m in METHODS.items():
        assert f"  {name} " in top and m.label in top, name
        assert name in recon, name
    for name in PHANTOMS:
        assert name in sim, name
    assert "exit status" in recon and "TOMOPRIOR_MEMORY_BUDGET" in top


def test_methods_text_counts_and_aligns(capsys):
    from tomoprior.algorithms import METHODS

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    text = "\n".join(lines)
    assert "1 iterations" not in text and "one pass, no iterations" in text
    heads = [next(ln for ln in lines if ln.startswith(name + " ")) for name in METHODS]
    label_columns = {ln.index(m.label + ":") for ln, m in zip(heads, METHODS.values())}
    assert len(label_columns) == 1, heads  # every label in one column
    column = label_columns.pop()
    body = [ln for ln in lines if ln not in heads]
    assert all(ln.startswith(" " * column) for ln in body)  # traits and parameters beneath it
    params = [ln for ln in body if ln.lstrip().startswith("--param")]
    assert params and all(ln.index("--param") == column for ln in params)


@pytest.mark.parametrize("spelling", ["SIRT", "Sirt"])
def test_method_names_in_any_case(small_series, tmp_path, capsys, spelling):
    series, g, _ = small_series
    path = tmp_path / "s.tif"
    io.write_tilt_series(path, series[::4], g.subset(range(0, series.shape[0], 4)))
    assert main(["reconstruct", str(path), "-o", str(tmp_path / "v.tif"), "--method", spelling,
                 "--iterations", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["method"] == "sirt"
