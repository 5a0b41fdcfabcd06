"""A/B comparison of the upsampled stage-1 base video (A) against the FreeSwim result (B)."""

from __future__ import annotations

import enum

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from freeswim_app.ui.frame_view import FrameView, SplitFrameView, ZoomableView

SPLIT_STEPS = 1000


class CompareMode(str, enum.Enum):
    SIDE_BY_SIDE = "side-by-side"
    SPLIT = "split"


class ABView(QWidget):
    """Side-by-side views with shared zoom and scrolling, or one view with a split slider.

    A is scaled to B's size with smooth (bilinear) filtering, the way stage 2 saw it.
    """

    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._frames: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        self._syncing = False
        self._build_views()
        self._build_controls()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._controls)
        layout.addWidget(self._stack, 1)
        self.set_mode(CompareMode.SIDE_BY_SIDE)

    def _build_views(self) -> None:
        self.view_a = FrameView()
        self.view_b = FrameView()
        self.split_view = SplitFrameView()
        side_by_side = QWidget()
        row = QHBoxLayout(side_by_side)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        for title, view in ((self.tr("A: upsampled base"), self.view_a), (self.tr("B: FreeSwim"), self.view_b)):
            column = QVBoxLayout()
            label = QLabel(title)
            label.setObjectName("abLabel")
            column.addWidget(label)
            column.addWidget(view, 1)
            row.addLayout(column, 1)
        self._stack = QStackedWidget()
        self._stack.addWidget(side_by_side)
        self._stack.addWidget(self.split_view)

        for source, target in ((self.view_a, self.view_b), (self.view_b, self.view_a)):
            source.zoom_changed.connect(lambda zoom, s=source, t=target: self._sync_zoom(s, t))
            source.viewport_scrolled.connect(lambda s=source, t=target: self._sync_scroll(s, t))
        self.view_b.zoom_changed.connect(self.zoom_changed)
        self.split_view.zoom_changed.connect(self.zoom_changed)

    def _build_controls(self) -> None:
        self._controls = QWidget()
        row = QHBoxLayout(self._controls)
        row.setContentsMargins(0, 0, 0, 0)
        self.side_by_side_button = QRadioButton(self.tr("Side by side"))
        self.split_button = QRadioButton(self.tr("Split"))
        group = QButtonGroup(self)
        group.addButton(self.side_by_side_button)
        group.addButton(self.split_button)
        self.side_by_side_button.toggled.connect(self._on_mode_button_toggled)
        self.split_button.toggled.connect(self._on_mode_button_toggled)
        self.split_slider = QSlider(Qt.Orientation.Horizontal)
        self.split_slider.setRange(0, SPLIT_STEPS)
        self.split_slider.setValue(SPLIT_STEPS // 2)
        self.split_slider.setToolTip(self.tr("Split position: A is left of the line, B right of it"))
        self.split_slider.valueChanged.connect(lambda value: self.split_view.set_split(value / SPLIT_STEPS))
        row.addWidget(self.side_by_side_button)
        row.addWidget(self.split_button)
        row.addWidget(QLabel(self.tr("A | B")))
        row.addWidget(self.split_slider, 1)

    def _on_mode_button_toggled(self, checked: bool) -> None:
        if checked:
            self.set_mode(CompareMode.SPLIT if self.split_button.isChecked() else CompareMode.SIDE_BY_SIDE)

    def mode(self) -> CompareMode:
        return CompareMode.SPLIT if self._stack.currentWidget() is self.split_view else CompareMode.SIDE_BY_SIDE

    def set_mode(self, mode: CompareMode) -> None:
        is_split = mode == CompareMode.SPLIT
        self._stack.setCurrentIndex(1 if is_split else 0)
        self.split_slider.setEnabled(is_split)
        button = self.split_button if is_split else self.side_by_side_button
        if not button.isChecked():
            button.setChecked(True)
        self._show_frames()

    def set_frames(self, frame_a: np.ndarray | None, frame_b: np.ndarray | None) -> None:
        self._frames = (frame_a, frame_b)
        self._show_frames()

    def _show_frames(self) -> None:
        frame_a, frame_b = self._frames
        if self.mode() == CompareMode.SPLIT:
            self.split_view.set_frames(frame_a, frame_b)
            return
        target_size = None
        if frame_b is not None:
            target_size = (int(frame_b.shape[1]), int(frame_b.shape[0]))
        self.view_a.set_frame(frame_a, display_size=target_size)
        self.view_b.set_frame(frame_b)

    def active_views(self) -> list[ZoomableView]:
        if self.mode() == CompareMode.SPLIT:
            return [self.split_view]
        return [self.view_a, self.view_b]

    def zoom(self) -> float:
        return self.active_views()[-1].zoom()

    def fit(self) -> None:
        for view in self.active_views():
            view.fit()

    def set_zoom(self, zoom: float) -> None:
        for view in self.active_views():
            view.set_zoom(zoom)

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom() * 2**0.5)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom() / 2**0.5)

    def _sync_zoom(self, source: ZoomableView, target: ZoomableView) -> None:
        if self._syncing or abs(target.zoom() - source.zoom()) < 1e-9:
            return
        self._syncing = True
        try:
            if source.is_fit():
                target.fit()
            else:
                target.set_zoom(source.zoom())
        finally:
            self._syncing = False

    def _sync_scroll(self, source: ZoomableView, target: ZoomableView) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            target.set_scroll_position(source.scroll_position())
        finally:
            self._syncing = False
