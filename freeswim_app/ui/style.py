"""The app's look: Fusion with a dark palette, plus ``resources/style.qss`` for the app's own widgets."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory, QWidget

logger = logging.getLogger(__name__)

STYLE_SHEET_PATH = Path(__file__).resolve().parent.parent / "resources" / "style.qss"


def load_style_sheet(path: Path = STYLE_SHEET_PATH) -> str:
    """Return the style sheet text, or an empty string (Qt's default look) when the file cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        logger.warning("Cannot read the style sheet %s: %s; using Qt's default look", path, error)
        return ""


def dark_palette() -> QPalette:
    palette = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#202225",
        QPalette.ColorRole.WindowText: "#dcdfe4",
        QPalette.ColorRole.Base: "#17181a",
        QPalette.ColorRole.AlternateBase: "#1d1f22",
        QPalette.ColorRole.ToolTipBase: "#2b2d31",
        QPalette.ColorRole.ToolTipText: "#dcdfe4",
        QPalette.ColorRole.Text: "#dcdfe4",
        QPalette.ColorRole.Button: "#2b2d31",
        QPalette.ColorRole.ButtonText: "#dcdfe4",
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: "#2f6feb",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#58a6ff",
        QPalette.ColorRole.PlaceholderText: "#6b717b",
    }
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b717b"))
    return palette


def apply_style(window: QWidget) -> None:
    """Give the application Fusion with the dark palette, and `window` (and its dialogs) the style sheet."""
    app = QApplication.instance()
    if isinstance(app, QApplication):
        fusion = QStyleFactory.create("Fusion")
        if fusion is not None:
            app.setStyle(fusion)
        app.setPalette(dark_palette())
    window.setStyleSheet(load_style_sheet())
