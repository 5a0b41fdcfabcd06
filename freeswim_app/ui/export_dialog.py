"""Export dialog: re-encode a finished job's MP4 with another codec, CRF or frame rate.

The encode runs in a background thread and streams frames from ffmpeg's decoder
into ``freeswim_engine.video_io.write_mp4``, so a 4K video is never held in memory
at once and the window stays responsive.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from freeswim_engine import video_io
from freeswim_engine.errors import ExportError, FreeSwimError

logger = logging.getLogger(__name__)



class ExportCancelled(FreeSwimError):
    """Raised inside the export thread when the user cancels; no file is left under the final name."""


def source_metadata(source: Path, fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings stored with `source` (MP4 comment tag, else sidecar JSON, else `fallback`).

    The ``export`` block is dropped because write_mp4 writes a new one for the new file.
    """
    metadata: dict[str, Any] | None = None
    try:
        metadata = video_io.probe_mp4(source).embedded_settings()
    except FreeSwimError as error:
        logger.warning("Cannot read the metadata of %s: %s", source, error)
    if metadata is None:
        sidecar = video_io.sidecar_path_for(source)
        try:
            loaded = json.loads(sidecar.read_text(encoding="utf-8"))
            metadata = loaded if isinstance(loaded, dict) else None
        except (OSError, ValueError):
            metadata = None
    result = dict(metadata or fallback or {})
    result.pop("export", None)
    result["exported_from"] = str(source)
    return result


def stream_frames(source: Path, should_cancel: Callable[[], bool], on_frame: Callable[[int], None]) -> Iterator[np.ndarray]:
    """Yield the frames of `source` one at a time; raises ExportCancelled once `should_cancel()` is true."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(source))
    try:
        meta = next(reader)
        width, height = meta["size"]
        for index, raw in enumerate(reader):
            if should_cancel():
                raise ExportCancelled(f"Export of {source} cancelled.")
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
            on_frame(index + 1)
    finally:
        reader.close()


def export_video(
    source: Path,
    destination: Path,
    *,
    fps: float,
    codec: str,
    crf: int,
    metadata: dict[str, Any],
    should_cancel: Callable[[], bool] = lambda: False,
    on_frame: Callable[[int], None] = lambda _count: None,
) -> Path:
    """Re-encode `source` into `destination` through write_mp4 and return the written path."""
    if Path(source).resolve() == video_io.mp4_path_for(destination).resolve():
        raise ExportError(f"Cannot export {source} onto itself. Choose another destination file.")
    frames = stream_frames(source, should_cancel, on_frame)
    return video_io.write_mp4(frames, destination, fps, codec=codec, crf=crf, metadata=metadata)


class ExportTask(QObject):
    """Runs one export in a Python thread; the signals reach slots in the GUI thread."""

    progress = Signal(int)  # frames encoded so far
    finished = Signal(str)  # written path
    failed = Signal(str)  # message for the user
    cancelled = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, **arguments: Any) -> None:
        self._cancel.clear()
        self._thread = threading.Thread(target=self._run, kwargs=arguments, name="export", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, **arguments: Any) -> None:
        try:
            path = export_video(**arguments, should_cancel=self._cancel.is_set, on_frame=self.progress.emit)
        except ExportCancelled:
            logger.info("Export of %s cancelled", arguments.get("source"))
            self.cancelled.emit()
        except FreeSwimError as error:
            logger.error("Export of %s failed: %s", arguments.get("source"), error)
            self.failed.emit(str(error))
        except (OSError, ValueError, RuntimeError) as error:
            logger.exception("Export of %s failed", arguments.get("source"))
            self.failed.emit(f"Export failed: {error}")
        else:
            self.finished.emit(str(path))


class ExportDialog(QDialog):
    """Codec, CRF, frame rate and destination for re-encoding one finished video."""

    exported = Signal(str)  # path of the written MP4

    def __init__(
        self,
        source: Path,
        fps: float,
        fallback_metadata: dict[str, Any] | None = None,
        num_frames: int | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Export video"))
        self.source = Path(source)
        self._fallback_metadata = fallback_metadata
        self._num_frames = num_frames
        self.task = ExportTask(self)
        self.task.progress.connect(self._on_progress)
        self.task.finished.connect(self._on_finished)
        self.task.failed.connect(self._on_failed)
        self.task.cancelled.connect(self._on_cancelled)
        self._build(fps)

    def _build(self, fps: float) -> None:
        form = QFormLayout()
        form.addRow(self.tr("Source"), QLabel(str(self.source)))
        self.codec_box = QComboBox()
        self.codec_box.addItem(self.tr("H.264 (plays everywhere)"), "h264")
        self.codec_box.addItem(self.tr("H.265 / HEVC (smaller files)"), "h265")
        form.addRow(self.tr("Codec"), self.codec_box)
        self.crf_spin = QSpinBox()
        self.crf_spin.setRange(0, video_io.MAX_CRF)
        self.crf_spin.setValue(18)
        self.crf_spin.setToolTip(self.tr("Constant rate factor: 0 is best quality and largest, 51 is worst"))
        form.addRow(self.tr("CRF"), self.crf_spin)
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, 240)
        self.fps_spin.setValue(max(1, round(fps)))
        self.fps_spin.setSuffix(self.tr(" fps"))
        form.addRow(self.tr("Frame rate"), self.fps_spin)

        self.destination_edit = QLineEdit(str(self.source.with_name(self.source.stem + "-export.mp4")))
        browse = QPushButton(self.tr("Browse..."))
        browse.clicked.connect(self._browse)
        destination_row = QWidget()
        row = QHBoxLayout(destination_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.destination_edit, 1)
        row.addWidget(browse)
        form.addRow(self.tr("Destination"), destination_row)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, self._num_frames or 0)
        self.progress_bar.hide()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton(self.tr("Export"), QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.clicked.connect(self.start_export)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(520)

    def _browse(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(
            self, self.tr("Export to"), self.destination_edit.text(), self.tr("MP4 video (*.mp4)")
        )
        if path:
            self.destination_edit.setText(path)

    def start_export(self) -> None:
        destination = self.destination_edit.text().strip()
        if not destination:
            self.status_label.setText(self.tr("Choose a destination file."))
            return
        self.export_button.setEnabled(False)
        self.progress_bar.show()
        self.status_label.setText(self.tr("Exporting..."))
        self.task.start(
            source=self.source,
            destination=Path(destination),
            fps=float(self.fps_spin.value()),
            codec=self.codec_box.currentData(),
            crf=self.crf_spin.value(),
            metadata=source_metadata(self.source, self._fallback_metadata),
        )

    def _on_progress(self, count: int) -> None:
        self.progress_bar.setValue(count)
        self.status_label.setText(self.tr("Encoded {count} frames").format(count=count))

    def _on_finished(self, path: str) -> None:
        self.status_label.setText(self.tr("Wrote {path}").format(path=path))
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.exported.emit(path)
        self.buttons.clear()
        close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.accept)

    def _on_failed(self, message: str) -> None:
        self.status_label.setText(message)
        self.export_button.setEnabled(True)
        self.progress_bar.hide()

    def _on_cancelled(self) -> None:
        self.status_label.setText(self.tr("Export cancelled; no file was written."))
        self.export_button.setEnabled(True)
        self.progress_bar.hide()

    def reject(self) -> None:
        if self.task.is_running():
            self.task.cancel()
            self.task.wait(30)
        super().reject()
