"""The npe2 manifest: valid, complete, and in step with tomoprior.io."""

import importlib
import pathlib

import pytest

npe2 = pytest.importorskip("npe2")

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_file(ROOT / "napari.yaml")


def test_manifest_is_valid_and_named(manifest):
    assert manifest.name == "napari-tomoprior"
    assert manifest.display_name == "Tomoprior"
    # the package copy is a symlink to the top-level file (editable installs find it)
    link = ROOT / "src" / "tomoprior" / "napari.yaml"
    assert link.resolve() == (ROOT / "napari.yaml").resolve()


def test_manifest_is_found_through_the_entry_point():
    pm = npe2.PluginManager.instance()
    pm.discover()
    found = pm.get_manifest("napari-tomoprior")
    assert found.display_name == "Tomoprior"


def test_reader_patterns_match_supported_extensions(manifest):
    from tomoprior.io import SUPPORTED_EXTENSIONS

    (reader,) = manifest.contributions.readers
    assert sorted(reader.filename_patterns) == sorted(f"*{e}" for e in SUPPORTED_EXTENSIONS)


def test_writer_extensions_match_volume_extensions(manifest):
    from tomoprior.io import VOLUME_EXTENSIONS

    (writer,) = manifest.contributions.writers
    assert sorted(writer.filename_extensions) == sorted(VOLUME_EXTENSIONS)


def test_every_command_imports(manifest):
    for cmd in manifest.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd.id


def test_samples_and_widgets_declared(manifest):
    keys = {s.key for s in manifest.contributions.sample_data}
    assert keys == {
        "needle_haadf",
        "pt_haadf_series",
        "pt_haadf_truth",
        "pt_adf_series",
        "pt_adf_truth",
    }
    names = {w.display_name for w in manifest.contributions.widgets}
    assert {"Reconstruction", "Compare methods"} <= names
