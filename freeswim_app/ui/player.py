"""Preview player: live latent previews while a job renders, then playback of its MP4 and an A/B view."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QKeySequence, QPainter, QPalette, QPixmap, QPolygonF, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from freeswim_app.ui.ab_view import ABView, CompareMode
from freeswim_app.ui.frame_view import FrameView
from freeswim_app.ui.frames import DEFAULT_CACHE_BYTES, ArrayFrameSource, FrameSource, VideoFrameSource

logger = logging.getLogger(__name__)

VIEW_RESULT = 0
VIEW_SIDE_BY_SIDE = 1
VIEW_SPLIT = 2


class PlayerWidget(QWidget):
    """Plays one frame source, optionally next to a comparison source (the upsampled base)."""

    frame_changed = Signal(int)
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None, max_cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(parent)
        self.max_cache_bytes = max_cache_bytes
        self._source: FrameSource | None = None
        self._compare_source: FrameSource | None = None
        self._index = 0
        self._is_shown = False  # whether the frame at `_index` is on screen (it may still be decoding)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)
        self._build_views()
        self._build_controls()
        self._build_shortcuts()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title_label)
        layout.addWidget(self._stack, 1)
        layout.addWidget(self._controls)
        self._update_controls()

    # -- building --------------------------------------------------------------

    def _build_views(self) -> None:
        self.title_label = QLabel(self.tr("No video"))
        self.title_label.setObjectName("playerTitle")
        self.frame_view = FrameView()
        self.ab_view = ABView()
        self._stack = QStackedWidget()
        self._stack.addWidget(self.frame_view)
        self._stack.addWidget(self.ab_view)
        self.frame_view.zoom_changed.connect(self._on_zoom_changed)
        self.ab_view.zoom_changed.connect(self._on_zoom_changed)

    def _tool_button(self, text: str, tooltip: str, icon: str | None = None) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tooltip)
        if icon is not None:
            button.setIcon(media_icon(icon, self.palette().color(QPalette.ColorRole.ButtonText)))
        button.setAutoRaise(True)
        return button

    def _build_controls(self) -> None:
        self._controls = QWidget()
        self._controls.setObjectName("playerControls")
        row = QHBoxLayout(self._controls)
        row.setContentsMargins(4, 2, 4, 2)
        self.play_button = self._tool_button(self.tr("Play"), self.tr("Play or pause (Space)"), "play")
        self.back_button = self._tool_button(self.tr("Back"), self.tr("One frame back (Left)"), "back")
        self.forward_button = self._tool_button(self.tr("Forward"), self.tr("One frame forward (Right)"), "forward")
        self.loop_box = QCheckBox(self.tr("Loop"))
        self.loop_box.setChecked(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setMinimum(0)
        self.frame_label = QLabel()
        self.frame_label.setMinimumWidth(80)
        self.view_box = QComboBox()
        self.view_box.addItem(self.tr("Result"), VIEW_RESULT)
        self.view_box.addItem(self.tr("A/B side by side"), VIEW_SIDE_BY_SIDE)
        self.view_box.addItem(self.tr("A/B split"), VIEW_SPLIT)
        self.view_box.setToolTip(self.tr("Compare the upsampled stage-1 base (A) with the FreeSwim result (B)"))
        self.fit_button = self._tool_button(self.tr("Fit"), self.tr("Fit the frame in the window (F)"))
        self.actual_size_button = self._tool_button(
            self.tr("100%"), self.tr("One video pixel per screen pixel (1)")
        )
        self.zoom_out_button = self._tool_button(self.tr("-"), self.tr("Zoom out (-)"))
        self.zoom_in_button = self._tool_button(self.tr("+"), self.tr("Zoom in (+)"))
        self.zoom_label = QLabel()
        self.zoom_label.setMinimumWidth(80)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self.play_button.clicked.connect(self.toggle_playback)
        self.back_button.clicked.connect(self.step_back)
        self.forward_button.clicked.connect(self.step_forward)
        self.slider.valueChanged.connect(self._on_slider_moved)
        self.view_box.currentIndexChanged.connect(self._on_view_mode_changed)
        self.fit_button.clicked.connect(self.fit)
        self.actual_size_button.clicked.connect(lambda: self.set_zoom(1.0))
        self.zoom_in_button.clicked.connect(self.zoom_in)
        self.zoom_out_button.clicked.connect(self.zoom_out)

        for widget in (self.play_button, self.back_button, self.forward_button, self.loop_box):
            row.addWidget(widget)
        row.addWidget(self.slider, 1)
        row.addWidget(self.frame_label)
        row.addWidget(self.view_box)
        row.addWidget(self.zoom_label)
        for widget in (self.fit_button, self.actual_size_button, self.zoom_out_button, self.zoom_in_button):
            row.addWidget(widget)

    def _build_shortcuts(self) -> None:
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        bindings = {
            Qt.Key.Key_Space: self.toggle_playback,
            Qt.Key.Key_Left: self.step_back,
            Qt.Key.Key_Right: self.step_forward,
            Qt.Key.Key_F: self.fit,
            Qt.Key.Key_1: lambda: self.set_zoom(1.0),
            Qt.Key.Key_Plus: self.zoom_in,
            Qt.Key.Key_Equal: self.zoom_in,
            Qt.Key.Key_Minus: self.zoom_out,
        }
        for key, slot in bindings.items():
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(context)
            shortcut.activated.connect(slot)

    # -- sources ---------------------------------------------------------------

    def source(self) -> FrameSource | None:
        return self._source

    def compare_source(self) -> FrameSource | None:
        return self._compare_source

    def set_source(self, source: FrameSource | None, title: str = "", compare: FrameSource | None = None) -> None:
        """Play `source`; `compare` is the A side of the A/B view. The player takes ownership of both."""
        self.pause()
        for old in (self._source, self._compare_source):
            if old is not None and old not in (source, compare):
                old.close()
                old.deleteLater()
        self._source = source
        self._compare_source = compare
        for new in (source, compare):
            if new is not None:
                new.setParent(self)
                new.frame_ready.connect(self._on_frame_ready)
                new.frame_count_changed.connect(lambda _count: self._update_controls())
                new.failed.connect(self._on_source_failed)
        self.title_label.setText(title or self.tr("No video"))
        if compare is None and self.view_box.currentData() != VIEW_RESULT:
            self.view_box.setCurrentIndex(0)
        self._index = 0
        # Clear the old frame so that it never shows under the new title while the new one decodes.
        self.frame_view.set_frame(None)
        self.ab_view.set_frames(None, None)
        self._update_controls()
        self.show_frame(0)

    def load_video(self, path: Path, base_video: Path | None = None, title: str = "") -> None:
        """Open a finished render; `base_video` is its stage-1 base for the A/B view."""
        try:
            source = VideoFrameSource(path, self.max_cache_bytes)
            compare = VideoFrameSource(base_video, self.max_cache_bytes // 4) if base_video else None
        except (OSError, RuntimeError, ValueError) as error:
            logger.error("Cannot open %s: %s", path, error)
            self.set_source(None, self.tr("Cannot open {path}: {error}").format(path=path, error=error))
            return
        self.set_source(source, title or path.name, compare)

    def show_preview(self, stage: str, frames: np.ndarray) -> None:
        """Show a latent preview (uint8 frames, height, width, 3) from the running job; keeps the frame position."""
        index = self._index
        was_playing = self.is_playing()
        title = self.tr("Live preview: {stage}").format(stage=stage)
        fps = self._source.fps() if isinstance(self._source, ArrayFrameSource) else 16.0
        self.set_source(ArrayFrameSource(frames, fps), title)
        self.show_frame(min(index, self.frame_count() - 1))
        if was_playing:
            self.play()

    def clear(self) -> None:
        self.set_source(None)

    # -- playback --------------------------------------------------------------

    def frame_count(self) -> int:
        return self._source.frame_count() if self._source is not None else 0

    def current_index(self) -> int:
        return self._index

    def is_playing(self) -> bool:
        return self._timer.isActive()

    def play(self) -> None:
        if self.frame_count() <= 1:
            return
        if self._index >= self.frame_count() - 1 and not self.loop_box.isChecked():
            self.show_frame(0)
        fps = self._source.fps() if self._source is not None else 16.0
        self._timer.start(max(1, round(1000 / max(fps, 1.0))))
        self._update_play_button()

    def pause(self) -> None:
        self._timer.stop()
        self._update_play_button()

    def toggle_playback(self) -> None:
        if self.is_playing():
            self.pause()
        else:
            self.play()

    def step_forward(self) -> None:
        self.pause()
        if self._index < self.frame_count() - 1:
            self.show_frame(self._index + 1)
        elif self.loop_box.isChecked():
            self.show_frame(0)

    def step_back(self) -> None:
        self.pause()
        if self._index > 0:
            self.show_frame(self._index - 1)
        elif self.loop_box.isChecked() and self.frame_count() > 0:
            self.show_frame(self.frame_count() - 1)

    def show_frame(self, index: int) -> None:
        """Move to frame `index`; it appears as soon as it is decoded."""
        count = self.frame_count()
        self._index = max(0, min(index, count - 1)) if count else 0
        self._is_shown = False
        self._render_current()
        if self.slider.value() != self._index:
            self.slider.blockSignals(True)
            self.slider.setValue(self._index)
            self.slider.blockSignals(False)
        self.frame_label.setText(self.tr("{index} / {count}").format(index=self._index + 1 if count else 0, count=count))
        self.frame_changed.emit(self._index)

    def _advance(self) -> None:
        if not self._is_shown:
            return  # the current frame is still decoding: hold instead of skipping it
        if self._index + 1 < self.frame_count():
            self.show_frame(self._index + 1)
        elif self.loop_box.isChecked():
            self.show_frame(0)
        else:
            self.pause()

    def _render_current(self) -> None:
        frame = self._source.frame(self._index) if self._source is not None else None
        mode = self.view_box.currentData()
        if mode == VIEW_RESULT:
            if frame is not None or self._source is None:
                self.frame_view.set_frame(frame)
            self._is_shown = frame is not None or self._source is None
            return
        compare = None
        if self._compare_source is not None and self._compare_source.frame_count() > 0:
            compare_index = min(self._index, self._compare_source.frame_count() - 1)
            compare = self._compare_source.frame(compare_index)
        if frame is not None and compare is not None:
            self.ab_view.set_frames(compare, frame)
        self._is_shown = frame is not None and compare is not None

    def _on_frame_ready(self, index: int) -> None:
        if not self._is_shown:
            self._render_current()

    def _on_source_failed(self, message: str) -> None:
        self.pause()
        self.title_label.setText(self.tr("Cannot decode the video: {message}").format(message=message))

    def _on_slider_moved(self, value: int) -> None:
        if value != self._index:
            self.show_frame(value)

    # -- view and zoom ---------------------------------------------------------

    def set_view_mode(self, mode: int) -> None:
        """Select VIEW_RESULT, VIEW_SIDE_BY_SIDE or VIEW_SPLIT."""
        self.view_box.setCurrentIndex(self.view_box.findData(mode))

    def _on_view_mode_changed(self) -> None:
        mode = self.view_box.currentData()
        if mode != VIEW_RESULT:
            self.ab_view.set_mode(CompareMode.SPLIT if mode == VIEW_SPLIT else CompareMode.SIDE_BY_SIDE)
        self._stack.setCurrentIndex(0 if mode == VIEW_RESULT else 1)
        self._is_shown = False
        self._render_current()
        self._on_zoom_changed(self.zoom())

    def _zoom_target(self) -> FrameView | ABView:
        return self.frame_view if self.view_box.currentData() == VIEW_RESULT else self.ab_view

    def zoom(self) -> float:
        return self._zoom_target().zoom()

    def fit(self) -> None:
        self._zoom_target().fit()

    def set_zoom(self, zoom: float) -> None:
        self._zoom_target().set_zoom(zoom)

    def zoom_in(self) -> None:
        self._zoom_target().zoom_in()

    def zoom_out(self) -> None:
        self._zoom_target().zoom_out()

    def _on_zoom_changed(self, zoom: float) -> None:
        self.zoom_label.setText(self.tr("Zoom {percent}%").format(percent=round(zoom * 100)))
        self.zoom_changed.emit(zoom)

    # -- state -----------------------------------------------------------------

    def _update_play_button(self) -> None:
        playing = self.is_playing()
        color = self.palette().color(QPalette.ColorRole.ButtonText)
        self.play_button.setIcon(media_icon("pause" if playing else "play", color))
        self.play_button.setText(self.tr("Pause") if playing else self.tr("Play"))

    def _update_controls(self) -> None:
        count = self.frame_count()
        has_frames = count > 0
        for widget in (self.play_button, self.back_button, self.forward_button, self.slider):
            widget.setEnabled(has_frames)
        self.slider.setMaximum(max(0, count - 1))
        has_compare = self._compare_source is not None
        model = self.view_box.model()
        for row in (1, 2):
            item = model.item(row)  # type: ignore[attr-defined]
            if item is not None:
                item.setEnabled(has_compare)
        self.frame_label.setText(self.tr("{index} / {count}").format(index=self._index + 1 if count else 0, count=count))
        self._update_play_button()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop playback and the decoder threads."""
        self.pause()
        for source in (self._source, self._compare_source):
            if source is not None:
                source.close()


def media_icon(kind: str, color: QColor, size: int = 32) -> QIcon:
    """Draw a play, pause, back or forward icon in `color`, so it stays visible on light and dark palettes."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    s = float(size)
    if kind == "play":
        painter.drawPolygon(QPolygonF([QPointF(0.25 * s, 0.15 * s), QPointF(0.85 * s, 0.5 * s), QPointF(0.25 * s, 0.85 * s)]))
    elif kind == "pause":
        painter.drawRect(QRectF(0.22 * s, 0.15 * s, 0.2 * s, 0.7 * s))
        painter.drawRect(QRectF(0.58 * s, 0.15 * s, 0.2 * s, 0.7 * s))
    elif kind == "back":
        painter.drawRect(QRectF(0.15 * s, 0.18 * s, 0.12 * s, 0.64 * s))
        painter.drawPolygon(QPolygonF([QPointF(0.85 * s, 0.18 * s), QPointF(0.3 * s, 0.5 * s), QPointF(0.85 * s, 0.82 * s)]))
    elif kind == "forward":
        painter.drawPolygon(QPolygonF([QPointF(0.15 * s, 0.18 * s), QPointF(0.7 * s, 0.5 * s), QPointF(0.15 * s, 0.82 * s)]))
        painter.drawRect(QRectF(0.73 * s, 0.18 * s, 0.12 * s, 0.64 * s))
    painter.end()
    return QIcon(pixmap)
