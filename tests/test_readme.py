"""The README in the order a newcomer reads it, and its commands the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _setup_commands() -> list[str]:
    setup = README[README.index("## Set up\n"):]
    setup = setup[:setup.index("\n## ")]
    return re.findall(r"```bash\n(.+?)\n```", setup, re.S)


def test_sections_come_in_the_order_a_newcomer_needs_them():
    titles = re.findall(r"^## (.+)$", README, re.M)
    order = ["Set up", "Quick start: the window", "Quick start: the command line",
             "Install a frozen build", "Desktop integration"]
    assert [t for t in titles if t in order] == order
    assert README.index("![") < README.index("## Set up")  # the screenshot first


def test_the_first_command_installs_the_cpu_build_first_and_says_when():
    first, _ = _setup_commands()
    cpu = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in first and first.index(cpu) < first.index("pip install . ")
    assert first.endswith("&& loragui --sample")
    intro = README[README.index("## Set up"):README.index(first)]
    assert "without an" in intro and "NVIDIA GPU" in intro


def test_the_test_command_is_the_one_ci_runs():
    _, tests = _setup_commands()
    install = 'pip install -e ".[test,onnx,bioimageio]"'
    run = "QT_QPA_PLATFORM=offscreen python -m pytest -q"
    assert tests.endswith(f"{install} && {run}")
    # CI's copy may only add pip's options (--quiet)
    assert re.search(r"python -m pip install (--\S+ )*-e \"\.\[test,onnx,bioimageio\]\"\n"
                     + re.escape(run) + "\n", CI), "the test command differs from .ci/run's"


def test_ci_runs_the_first_commands_install_part_and_the_program_it_installed():
    assert "awk '/^## Set up/" in CI and '"${first%% && loragui*}"' in CI
    block = CI[CI.index("README.md's first command in a fresh"):]
    block = block[:block.index('step "the wheel')]
    assert "loragui --version" in block and "loragui --self-test" in block
