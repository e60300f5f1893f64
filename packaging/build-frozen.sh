#!/usr/bin/env bash
# Build the frozen one-folder app (no Python needed to run it) into dist/loragui/, then
# check it: no missing shared libraries, `--version`, `info` on the bundled base model,
# `predict` on the sample images, and the offscreen self-test (open the window, load the sample, train a few CPU steps, export).
#
#   packaging/build-frozen.sh [--no-test]
#
# Environment:
#   FREEZE_VENV    the virtual environment to build in (default build/freeze-venv; created
#                  when missing). Kept apart from a development environment so that nothing
#                  installed for development (test tools, ONNX, ...) ends up in the bundle.
#   TORCH_INSTALL  pip arguments for PyTorch (default "torch==2.13.0", the CPU build where
#                  pip finds it; elsewhere use "torch --index-url https://download.pytorch.org/whl/cpu").
#
# Then: tar -C dist -czf loragui-linux-x86_64.tar.gz loragui; users unpack it, run
# loragui/loragui, and loragui/linux/install-desktop-entry.sh for the application menu.
set -euo pipefail
cd "$(dirname "$0")/.."

test=1
[[ "${1:-}" == "--no-test" ]] && test=0
venv="${FREEZE_VENV:-build/freeze-venv}"
torch_install="${TORCH_INSTALL:-torch==2.13.0}"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
py="$venv/bin/python"
# shellcheck disable=SC2086
"$py" -m pip install --quiet $torch_install
"$py" -m pip install --quiet "pyinstaller>=6.11" .  # and loragui's dependencies
"$py" -m pip install --quiet --no-deps --force-reinstall .   # this tree's loragui, always

start=$(date +%s)
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/loragui.spec
mkdir -p dist/loragui/linux
cp packaging/linux/io.github.loragui.LoraGui.desktop packaging/linux/io.github.loragui.LoraGui.metainfo.xml \
    packaging/linux/install-desktop-entry.sh dist/loragui/linux/
# Symbol tables are not needed at run time: strip torch's and Python's libraries (-90 MB).
# Not the auditwheel-repaired ones (*.libs/, numpy, Pillow, Qt): patchelf'd files break.
if command -v strip >/dev/null; then
    find dist/loragui/_internal/torch/lib dist/loragui/_internal/python3.*/lib-dynload \
        dist/loragui/_internal -maxdepth 1 \( -name 'libtorch*.so' -o -name 'libc10.so' \
        -o -name 'libshm.so' -o -name 'libpython3*.so*' -o -name '*.cpython-*.so' \) -type f \
        -exec strip --strip-unneeded {} +
fi
build_s=$(( $(date +%s) - start ))

# Every shared library in the bundle must resolve, inside the bundle or (only these: Wayland's
# client libraries, present wherever a Wayland session runs) on the user's system.
missing=$(find dist/loragui -name '*.so*' -type f -print0 \
    | LD_LIBRARY_PATH="dist/loragui/_internal:dist/loragui/_internal/torch/lib:dist/loragui/_internal/PySide6/Qt/lib" \
      xargs -0 ldd 2>/dev/null | grep "not found" | awk '{print $1}' | sort -u \
    | grep -v -E '^libwayland-(client|cursor|egl)\.so' || true)
if [[ -n "$missing" ]]; then
    echo "build-frozen: the bundle needs libraries that are not in it:" $missing >&2
    exit 1
fi

echo "build-frozen: built dist/loragui in ${build_s} s; $(du -sh dist/loragui | cut -f1) on disk," \
     "$(find dist/loragui -type f | wc -l) files"
if [[ $test == 1 ]]; then
    dist/loragui/loragui --version
    dist/loragui/loragui info | head -3
    tmp="$(mktemp -d)"
    dist/loragui/loragui predict --images resources/sample/images --out "$tmp/masks" --device cpu
    rm -rf "$tmp"
    QT_QPA_PLATFORM=offscreen dist/loragui/loragui --self-test
fi
