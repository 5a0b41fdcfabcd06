"""Log panel: shows the app's and the engine's log records as they happen.

Records can come from any thread, because the engine logs on the worker thread.
The handler therefore only emits a Qt signal, and the text view changes in the GUI thread.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from freeswim_engine.logs import LOG_FORMAT

LOGGER_NAMES = ("freeswim_engine", "freeswim_app")
MAX_LINES = 5000


class _RecordSignal(QObject):
    record_logged = Signal(int, str)  # level number, formatted text


class QtLogHandler(logging.Handler):
    """A logging handler that forwards each formatted record through a Qt signal.

    The signal's QObject lives in the thread that created the handler (the GUI
    thread), so slots connected to `record_logged` run there whatever thread logged.
    """

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.bridge = _RecordSignal()
        self.record_logged = self.bridge.record_logged

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.bridge.record_logged.emit(record.levelno, text)
        except RuntimeError:
            pass  # the panel was destroyed while another thread was still logging
        except Exception:  # noqa: BLE001 (logging.Handler contract: report, never raise)
            self.handleError(record)


class LogPanel(QWidget):
    """Read-only view of recent log lines with a level filter and a button to open the log folder."""

    open_log_folder_requested = Signal()

    def __init__(self, parent: QWidget | None = None, logger_names: tuple[str, ...] = LOGGER_NAMES) -> None:
        super().__init__(parent)
        self._records: list[tuple[int, str]] = []
        self.text_view = QPlainTextEdit()
        self.text_view.setReadOnly(True)
        self.text_view.setMaximumBlockCount(MAX_LINES)
        self.text_view.setObjectName("logView")
        self.level_box = QComboBox()
        levels = (
            (self.tr("Debug"), logging.DEBUG),
            (self.tr("Info"), logging.INFO),
            (self.tr("Warning"), logging.WARNING),
            (self.tr("Error"), logging.ERROR),
        )
        for caption, level in levels:
            self.level_box.addItem(caption, level)
        self.level_box.setCurrentIndex(1)
        self.level_box.currentIndexChanged.connect(self._refilter)
        self.open_folder_button = QPushButton(self.tr("Open log folder"))
        self.open_folder_button.clicked.connect(self.open_log_folder_requested)
        self.clear_button = QPushButton(self.tr("Clear"))
        self.clear_button.clicked.connect(self.clear)
        row = QHBoxLayout()
        row.addWidget(self.level_box)
        row.addStretch(1)
        row.addWidget(self.clear_button)
        row.addWidget(self.open_folder_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.text_view, 1)

        self.handler = QtLogHandler(logging.DEBUG)
        self.handler.record_logged.connect(self.append_record)
        self._loggers = [logging.getLogger(name) for name in logger_names]
        for logger in self._loggers:
            logger.addHandler(self.handler)
        self.destroyed.connect(self._detach)

    def _detach(self, *_args: object) -> None:
        for logger in self._loggers:
            logger.removeHandler(self.handler)

    def detach(self) -> None:
        """Stop receiving records; call before the app shuts down."""
        self._detach()

    def append_record(self, level: int, text: str) -> None:
        self._records.append((level, text))
        del self._records[:-MAX_LINES]
        if level >= self.level_box.currentData():
            self.text_view.appendPlainText(text)
            self.text_view.moveCursor(QTextCursor.MoveOperation.End)

    def clear(self) -> None:
        self._records.clear()
        self.text_view.clear()

    def _refilter(self) -> None:
        minimum = self.level_box.currentData()
        self.text_view.setPlainText("\n".join(text for level, text in self._records if level >= minimum))
        self.text_view.moveCursor(QTextCursor.MoveOperation.End)
