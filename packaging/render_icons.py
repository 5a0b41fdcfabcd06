"""Render the app icon's PNG sizes and Windows .ico from resources/icons/freeswim-studio.svg.

Run it after editing the SVG and commit what it writes:

    .venv/bin/python packaging/render_icons.py

It writes ``resources/icons/freeswim-studio-<N>.png`` for every size in
PNG_SIZES, ``resources/icons/freeswim-studio.ico``, and copies the SVG and
PNGs into ``freeswim_app/resources/icons/``, the folder the app loads at run
time. Qt renders the SVG offscreen, so no display is needed.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ICON_NAME = "freeswim-studio"
SOURCE_SVG = REPO_ROOT / "resources" / "icons" / f"{ICON_NAME}.svg"
OUTPUT_FOLDER = REPO_ROOT / "resources" / "icons"
APP_ICON_FOLDER = REPO_ROOT / "freeswim_app" / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
# An .ico entry stores width and height in one byte each, so 256 pixels is the largest size.
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render_png(svg_path: Path, size: int) -> bytes:
    """Render the SVG to a square PNG of ``size`` pixels and return the encoded bytes."""
    from PySide6 import QtCore, QtGui, QtSvg

    renderer = QtSvg.QSvgRenderer(str(svg_path))
    if not renderer.isValid():
        raise ValueError(f"Invalid SVG {svg_path}: Qt could not parse it. Open it in an SVG viewer and fix it.")
    image = QtGui.QImage(size, size, QtGui.QImage.Format.Format_ARGB32)
    image.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(image)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()

    buffer = QtCore.QBuffer()
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise RuntimeError(f"Qt failed to encode the {size}x{size} icon as PNG")
    return bytes(buffer.data().data())


def build_ico(pngs: dict[int, bytes]) -> bytes:
    """Pack PNG images into an .ico file (PNG entries, which Windows Vista and later read)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))  # reserved, type 1 = icon, image count
    directory = b""
    offset = len(header) + 16 * len(pngs)
    for size, data in sorted(pngs.items()):
        # A size byte of 0 means 256.
        side = 0 if size == 256 else size
        directory += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    return header + directory + b"".join(data for _, data in sorted(pngs.items()))


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtGui

    app = QtGui.QGuiApplication.instance() or QtGui.QGuiApplication(sys.argv[:1])
    pngs = {size: render_png(SOURCE_SVG, size) for size in PNG_SIZES}

    APP_ICON_FOLDER.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE_SVG, APP_ICON_FOLDER / SOURCE_SVG.name)
    for size, data in pngs.items():
        name = f"{ICON_NAME}-{size}.png"
        (OUTPUT_FOLDER / name).write_bytes(data)
        (APP_ICON_FOLDER / name).write_bytes(data)
    ico_path = OUTPUT_FOLDER / f"{ICON_NAME}.ico"
    ico_path.write_bytes(build_ico({size: pngs[size] for size in ICO_SIZES}))

    print(f"Wrote {len(pngs)} PNG sizes and {ico_path.relative_to(REPO_ROOT)}; copied them to "
          f"{APP_ICON_FOLDER.relative_to(REPO_ROOT)}")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
