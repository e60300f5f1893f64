"""The layering, enforced from outside: the import-linter contracts in pyproject.toml (the
static imports) and what importing the engine actually loads (the runtime imports)."""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import loragui.engine

ROOT = Path(__file__).resolve().parents[1]
QT_PACKAGES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph")
# the modules the window and the command line read before torch has loaded
TORCH_FREE = ["config", "events", "atomic", "formats", "resources", "folders", "pairing",
              "preprocessing", "dataset", "runrecord"]


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
    names = [f"loragui.engine.{n}" for n in TORCH_FREE
             if importlib.util.find_spec(f"loragui.engine.{n}") is not None]
    done = _run_python(
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules, 'torch was loaded'\n"
    )
    assert done.returncode == 0, done.stderr
