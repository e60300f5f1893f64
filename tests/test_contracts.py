"""The layering, enforced from outside: the import-linter contracts in pyproject.toml (the
static imports) and what importing the engine actually loads (the runtime imports)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import loragui.engine

ROOT = Path(__file__).resolve().parents[1]
QT_PACKAGES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph")


def _torch_free_modules() -> list[str]:
    """The modules the torch-free contract in pyproject.toml names (one list, kept there)."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"]
                   if c.get("forbidden_modules") == ["torch"]]
    return contract["source_modules"]


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True
    )


def test_the_import_contracts_in_pyproject_are_kept():
    # `lint-imports` itself, through its entry point: the console script's shebang may name
    # another interpreter than the one running the tests.
    done = _run_python(
        "import sys\n"
        "from importlinter.cli import lint_imports_command\n"
        "sys.exit(lint_imports_command())\n",
        str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_importing_every_engine_module_and_the_command_line_loads_no_qt():
    modules = [m.name for m in pkgutil.walk_packages(loragui.engine.__path__, "loragui.engine.")]
    done = _run_python(
        "import importlib, sys\n"
        f"for name in {modules + ['loragui.cli']!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & {set(QT_PACKAGES)!r})\n"
        "assert not bad, bad\n"
    )
    assert done.returncode == 0, done.stderr


def test_the_torch_free_modules_load_without_torch():
    names = _torch_free_modules()
    done = _run_python(
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules, 'torch was loaded'\n"
    )
    assert done.returncode == 0, done.stderr
