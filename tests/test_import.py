"""`import tomoprior` and everything outside tomoprior._qt work without Qt, napari or ASTRA."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy",
               "astra", "distributed")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import tomoprior
    names = []
    for mod in pkgutil.walk_packages(tomoprior.__path__, "tomoprior."):
        if mod.name.startswith("tomoprior._qt") or mod.name == "tomoprior._demo":
            continue
        importlib.import_module(mod.name)
        names.append(mod.name)
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not loaded, loaded
    print(len(names), "modules imported")
    """
)


def test_import_without_qt():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "modules imported" in res.stdout


def test_version_is_set():
    import tomoprior

    assert tomoprior.__version__ and tomoprior.__version__ != "0.0.0+unknown"
