#!/bin/sh
# Add FreeSwim Studio to the Linux application menu, or remove it again.
#
# Usage (from the unpacked FreeSwimStudio folder):
#   ./install-desktop-entry.sh              install for the current user (~/.local/share)
#   ./install-desktop-entry.sh --uninstall  remove what the install added
# PREFIX overrides the target (default: $XDG_DATA_HOME or ~/.local/share).
#
# The app stays in this folder: the menu entry runs it from here by absolute
# path, so rerun the script after moving the folder.
set -eu

APP_ID=org.freeswim.FreeSwimStudio
APP_FOLDER=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-${XDG_DATA_HOME:-$HOME/.local/share}}
SOURCE=$APP_FOLDER/share

installed_files() {
    echo "$PREFIX/applications/$APP_ID.desktop"
    echo "$PREFIX/metainfo/$APP_ID.metainfo.xml"
    for icon in "$SOURCE"/icons/hicolor/*/apps/*; do
        echo "$PREFIX/icons/hicolor/${icon#"$SOURCE"/icons/hicolor/}"
    done
}

refresh_caches() {
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$PREFIX/applications" || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t "$PREFIX/icons/hicolor" || true
    fi
}

if [ "${1:-}" = "--uninstall" ]; then
    installed_files | while read -r path; do rm -f "$path"; done
    refresh_caches
    echo "Removed FreeSwim Studio from the application menu under $PREFIX"
    exit 0
fi

if [ ! -x "$APP_FOLDER/FreeSwimStudio" ]; then
    echo "FreeSwimStudio not found in $APP_FOLDER. Run this script from the unpacked app folder." >&2
    exit 1
fi

mkdir -p "$PREFIX/applications" "$PREFIX/metainfo"
# Exec and TryExec name the binary without a path. Point both at this folder's copy.
sed -e "s|^Exec=FreeSwimStudio|Exec=\"$APP_FOLDER/FreeSwimStudio\"|" \
    -e "s|^TryExec=FreeSwimStudio|TryExec=$APP_FOLDER/FreeSwimStudio|" \
    "$SOURCE/applications/$APP_ID.desktop" > "$PREFIX/applications/$APP_ID.desktop"
cp "$SOURCE/metainfo/$APP_ID.metainfo.xml" "$PREFIX/metainfo/"
for icon in "$SOURCE"/icons/hicolor/*/apps/*; do
    target=$PREFIX/icons/hicolor/${icon#"$SOURCE"/icons/hicolor/}
    mkdir -p "$(dirname "$target")"
    cp "$icon" "$target"
done
refresh_caches
echo "Added FreeSwim Studio to the application menu: $PREFIX/applications/$APP_ID.desktop"
