#!/usr/bin/env bash
# Put loragui into the desktop's application menu, with its icon.
#
#   install-desktop-entry.sh [--datadir DIR] [--exec PATH] [--uninstall]
#
# Installs, under DIR (default: ${XDG_DATA_HOME:-~/.local/share}, that is for this user only;
# /usr/local/share for everyone, as root):
#   DIR/applications/io.github.loragui.LoraGui.desktop   (Exec= the loragui program's full path)
#   DIR/metainfo/io.github.loragui.LoraGui.metainfo.xml  (for software centres)
#   DIR/icons/hicolor/{16x16..512x512,scalable}/apps/io.github.loragui.LoraGui.{png,svg}
#
# Run it from where it lies: a checkout (packaging/linux/), a frozen build (linux/ next to the
# loragui program), or a pip installation (site-packages/loragui/linux/):
#   bash "$(python -c 'import loragui; print(loragui.__path__[0])')/linux/install-desktop-entry.sh"
# --exec defaults to the frozen build's program, else to the loragui command of the virtual
# environment this script is installed in, else to `loragui` on PATH.
# The icons come from the checkout's resources/icons or the installed loragui/resources/icons.
set -euo pipefail

APP_ID=io.github.loragui.LoraGui
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
datadir="${XDG_DATA_HOME:-$HOME/.local/share}"
exec_path=""
uninstall=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --datadir) datadir="$2"; shift 2 ;;
        --exec) exec_path="$2"; shift 2 ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-desktop-entry.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

refresh() {
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$datadir/applications" || true
    command -v gtk-update-icon-cache >/dev/null && [[ -f "$datadir/icons/hicolor/index.theme" ]] \
        && gtk-update-icon-cache -q -t "$datadir/icons/hicolor" || true
}

if [[ $uninstall == 1 ]]; then
    rm -f "$datadir/applications/$APP_ID.desktop" "$datadir/metainfo/$APP_ID.metainfo.xml"
    rm -f "$datadir"/icons/hicolor/*/apps/"$APP_ID".png "$datadir"/icons/hicolor/scalable/apps/"$APP_ID".svg
    refresh
    echo "removed loragui's desktop entry from $datadir"
    exit 0
fi

# The program the menu entry starts.
if [[ -z "$exec_path" ]]; then
    venv_bin="$here/../../../../../bin"          # VENV/lib/pythonX.Y/site-packages/loragui/linux
    if [[ -x "$here/../loragui" && -d "$here/../_internal" ]]; then
        exec_path="$here/../loragui"                     # a frozen build: DIST/linux/ -> DIST/loragui
    elif [[ "$here" == */site-packages/loragui/linux && -x "$venv_bin/loragui" ]]; then
        exec_path="$venv_bin/loragui"
    elif command -v loragui >/dev/null; then
        exec_path="$(command -v loragui)"
    else
        echo "install-desktop-entry.sh: no loragui program found; install loragui, activate its" \
             "virtual environment, or give --exec PATH" >&2
        exit 1
    fi
fi
exec_path="$(cd "$(dirname "$exec_path")" && pwd)/$(basename "$exec_path")"
if [[ ! -x "$exec_path" ]]; then
    echo "install-desktop-entry.sh: $exec_path is not an executable program" >&2
    exit 1
fi
case "$exec_path" in
    *[\"\`\$\\%]*) echo "install-desktop-entry.sh: cannot put $exec_path into a .desktop file" \
                        "(it holds one of \" \` \$ \\ %); move it, or use --exec" >&2; exit 1 ;;
esac

# The icons: a checkout, a frozen build, or the Python package installed with the program.
icons=""
for candidate in "$here/../../resources/icons" "$here/../_internal/loragui/resources/icons" \
                 "$here/../resources/icons"; do
    if [[ -d "$candidate/hicolor" ]]; then icons="$(cd "$candidate" && pwd)"; break; fi
done
if [[ -z "$icons" && -x "$(dirname "$exec_path")/python" ]]; then
    icons="$("$(dirname "$exec_path")/python" -c \
        'import loragui.gui.icons as i; print(i.icons_dir())' 2>/dev/null || true)"
fi
if [[ -z "$icons" || ! -d "$icons/hicolor" ]]; then
    echo "install-desktop-entry.sh: cannot find loragui's icons (resources/icons/hicolor)" >&2
    exit 1
fi

quoted="$exec_path"
[[ "$exec_path" == *" "* ]] && quoted="\"$exec_path\""
mkdir -p "$datadir/applications" "$datadir/metainfo" "$datadir/icons"
sed -e "s|^Exec=.*|Exec=$quoted|" -e "s|^TryExec=.*|TryExec=$exec_path|" \
    "$here/$APP_ID.desktop" > "$datadir/applications/$APP_ID.desktop"
cp "$here/$APP_ID.metainfo.xml" "$datadir/metainfo/$APP_ID.metainfo.xml"
(cd "$icons" && find hicolor -name "$APP_ID.*" -type f) | while read -r rel; do
    mkdir -p "$datadir/icons/$(dirname "$rel")"
    cp "$icons/$rel" "$datadir/icons/$rel"
done
refresh
echo "installed loragui's desktop entry into $datadir (starts $exec_path)"
