"""The direction of imports (docs/architecture.md): import-linter's contracts in pyproject.toml hold,
and they would have caught the import circle neoqa 0.6.0 had (registry -> ensemble -> persistence
-> registry, hidden by function-local imports)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(capsys):
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0, capsys.readouterr().out


def test_the_contracts_catch_a_circle_and_a_layer_broken(tmp_path, capsys):
    """A copy of the package with the old circle (a registry importing the ensemble, which imports
    persistence, which imports the registry) and an upward import (data reaching into runs)
    breaks the contracts: the check is not a formality."""
    pytest.importorskip("importlinter")
    import shutil
    import sys

    from importlinter.cli import lint_imports

    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "neoqa", src / "neoqa", ignore=shutil.ignore_patterns("__pycache__", "*.nb*"))
    registry = src / "neoqa" / "models" / "registry.py"
    registry.write_text(registry.read_text() + "\n\ndef _circle():\n    from neoqa.models import ensemble  # noqa\n")
    store = src / "neoqa" / "data" / "store.py"
    store.write_text(store.read_text() + "\n\ndef _upward():\n    from neoqa.runs import zoo  # noqa\n")
    config = tmp_path / "pyproject.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    sys.path.insert(0, str(src))
    saved = {k: v for k, v in sys.modules.items() if k == "neoqa" or k.startswith("neoqa.")}
    for k in saved:
        del sys.modules[k]
    try:
        assert lint_imports(config_filename=str(config), no_cache=True) == 1
    finally:
        sys.path.remove(str(src))
        for k in [k for k in sys.modules if k == "neoqa" or k.startswith("neoqa.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    out = capsys.readouterr().out
    assert "neoqa.data.store -> neoqa.runs.zoo" in out or "neoqa.data is not allowed to import neoqa.runs" in out
    assert "No cycles are allowed in neoqa.models" in out


def test_the_tests_mirror_the_subpackages():
    """Every subpackage of neoqa has a test folder of its own (cross-cutting tests sit at the top)."""
    packages = {p.parent.name for p in (ROOT / "src" / "neoqa").glob("*/__init__.py")}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert packages == folders, (packages - folders, folders - packages)
