"""Check that a built wheel carries everything loragui needs at run time.

    python packaging/check_wheel.py dist/loragui-*.whl

Every file of the checkout's ``resources/`` (base models, sample data and its
LICENSE.txt, icons) must be in the wheel under ``loragui/resources/`` with the
same size, the desktop integration of ``packaging/linux/`` under ``loragui/linux/``,
next to every module of ``loragui/``; the ``loragui`` command, the
licence files and the project URLs must be in its metadata. Exits 1 and lists
what is missing otherwise.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def expected_files() -> dict[str, int]:
    """Wheel path -> size of every file that must travel in the wheel."""
    files = {}
    for path in sorted((ROOT / "resources").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files["loragui/resources/" + path.relative_to(ROOT / "resources").as_posix()] = \
                path.stat().st_size
    for pattern in ("*.desktop", "*.metainfo.xml", "*.sh"):  # packaging/linux -> loragui/linux
        for path in sorted((ROOT / "packaging" / "linux").glob(pattern)):
            files[f"loragui/linux/{path.name}"] = path.stat().st_size
    for path in sorted((ROOT / "loragui").rglob("*.py")):
        if "__pycache__" not in path.parts:
            files[path.relative_to(ROOT).as_posix()] = path.stat().st_size
    return files


def check(wheel: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        sizes = {info.filename: info.file_size for info in zf.infolist()}
        for name, size in expected_files().items():
            if name not in sizes:
                problems.append(f"missing: {name}")
            elif sizes[name] != size:
                problems.append(f"{name}: {sizes[name]} bytes in the wheel, {size} in the checkout")
        dist_info = next((n.split("/")[0] for n in sizes if n.split("/")[0].endswith(".dist-info")), None)
        if dist_info is None:
            return problems + ["no .dist-info folder"]
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        if "loragui = loragui.cli:main" not in entry_points:
            problems.append("the `loragui` command is not among the entry points")
        if "[gui_scripts]\nloragui-gui = loragui.cli:window" not in entry_points:
            problems.append("the `loragui-gui` window program is not among the GUI entry points")
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        for needed in ("License-Expression: MIT", "License-File: LICENSE", "Project-URL: Homepage"):
            if needed not in metadata:
                problems.append(f"METADATA lacks {needed!r}")
        if f"{dist_info}/licenses/LICENSE" not in sizes:
            problems.append("LICENSE is not in the wheel")
        strays = [n for n in sizes if "__pycache__" in n or n.endswith(".pyc")]
        problems += [f"stray file: {n}" for n in strays]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    wheel = Path(argv[0])
    problems = check(wheel)
    for problem in problems:
        print(f"check_wheel: {problem}", file=sys.stderr)
    if problems:
        return 1
    with zipfile.ZipFile(wheel) as zf:
        n = sum(1 for name in zf.namelist() if name.startswith("loragui/resources/"))
    print(f"check_wheel: {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB) carries loragui, "
          f"its {n} resource files (base models, sample data, icons), the desktop entry, "
          "the licences and the `loragui` command")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
