"""The error or hint line under a form field, with buttons that apply suggested fixes."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget


class FieldMessage(QWidget):
    """An error or hint shown under one form field, with optional clickable fixes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setObjectName("fieldError")
        layout.addWidget(self.label, 1)
        self._buttons_layout = QHBoxLayout()
        layout.addLayout(self._buttons_layout)
        self.suggestion_buttons: list[QPushButton] = []
        self.hide()

    def show_error(self, text: str, suggestions: list[tuple[str, Callable[[], None]]] | None = None) -> None:
        self.clear()
        self.label.setText(text)
        for caption, action in suggestions or []:
            button = QPushButton(caption)
            button.setObjectName("suggestionButton")
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.clicked.connect(action)
            self._buttons_layout.addWidget(button)
            self.suggestion_buttons.append(button)
        self.show()

    def clear(self) -> None:
        self.label.clear()
        for button in self.suggestion_buttons:
            button.deleteLater()
        self.suggestion_buttons = []
        self.hide()
