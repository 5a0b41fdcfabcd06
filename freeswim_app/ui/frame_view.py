"""Zoomable, pannable views that show frames with their exact decoded pixels.

Zoom 1.0 ("100%") maps one video pixel to one device pixel, so on a screen with
device pixel ratio 2 a 4K frame is not blurred by an implicit 2x upscale.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap, QTransform, QWheelEvent
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsLineItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

from freeswim_app.ui.frames import FrameImage

MIN_ZOOM = 1 / 16
MAX_ZOOM = 32.0
ZOOM_STEP = math.sqrt(2)


def frame_pixmap(frame: np.ndarray, device_pixel_ratio: float) -> tuple[QPixmap, FrameImage]:
    """Convert a frame into a pixmap drawn at one frame pixel per device pixel.

    The FrameImage is returned too because it keeps the numpy array alive for as long as
    the caller keeps it.
    """
    # NOTE: the tests run at device pixel ratio 1; ratio 2 relies on Qt drawing a pixmap of
    # that ratio at one pixel per device pixel and has not been checked on a high-DPI screen.
    image = FrameImage(frame)
    pixmap = QPixmap.fromImage(image.image)
    pixmap.setDevicePixelRatio(device_pixel_ratio)
    return pixmap, image


class ZoomableView(QGraphicsView):
    """A graphics view with fit-to-window, fixed zoom levels and hand-drag panning."""

    zoom_changed = Signal(float)  # device pixels per frame pixel; 1.0 is 100%
    viewport_scrolled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setBackgroundBrush(QColor(24, 24, 24))
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self._zoom = 1.0
        self._is_fit = True
        # Qt replaces a null scene rect with the items' bounding rect, so the last rect set here is kept apart.
        self._content_rect = QRectF()
        self.horizontalScrollBar().valueChanged.connect(self.viewport_scrolled)
        self.verticalScrollBar().valueChanged.connect(self.viewport_scrolled)

    def zoom(self) -> float:
        return self._zoom

    def is_fit(self) -> bool:
        return self._is_fit

    def fit(self) -> None:
        self._is_fit = True
        self._apply_fit()

    def set_zoom(self, zoom: float) -> None:
        self._is_fit = False
        self._apply_zoom(min(MAX_ZOOM, max(MIN_ZOOM, zoom)))

    def zoom_in(self) -> None:
        self.set_zoom(self._zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self._zoom / ZOOM_STEP)

    def set_content_rect(self, rect: QRectF) -> None:
        """Set the scene area that fit-to-window shows, in scene units."""
        self._content_rect = QRectF(rect)
        self.setSceneRect(rect)
        if self._is_fit:
            self._apply_fit()

    def _apply_fit(self) -> None:
        rect = self.sceneRect()
        viewport = self.viewport().rect()
        if rect.isEmpty() or viewport.isEmpty():
            return
        scale = min(viewport.width() / rect.width(), viewport.height() / rect.height())
        self._set_transform_scale(scale)
        self.centerOn(rect.center())

    def _apply_zoom(self, zoom: float) -> None:
        self._set_transform_scale(zoom)

    def _set_transform_scale(self, scale: float) -> None:
        # The pixmaps carry the device pixel ratio, so a transform scale of 1 is already
        # one frame pixel per device pixel.
        self._zoom = scale
        self.setTransform(QTransform.fromScale(scale, scale))
        smooth = scale < 1.0
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        self._update_transformation_mode(smooth)
        self.zoom_changed.emit(scale)

    def _update_transformation_mode(self, smooth: bool) -> None:
        mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        for item in self.scene().items():
            if isinstance(item, QGraphicsPixmapItem) and not getattr(item, "always_smooth", False):
                item.setTransformationMode(mode)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if self._is_fit:
            self._apply_fit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 (Qt override)
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if event.angleDelta().y() > 0:
                self.zoom_in()
            elif event.angleDelta().y() < 0:
                self.zoom_out()
            event.accept()
            return
        super().wheelEvent(event)

    def scroll_position(self) -> tuple[int, int]:
        return self.horizontalScrollBar().value(), self.verticalScrollBar().value()

    def set_scroll_position(self, position: tuple[int, int]) -> None:
        self.horizontalScrollBar().setValue(position[0])
        self.verticalScrollBar().setValue(position[1])


class FrameView(ZoomableView):
    """Shows one frame at a time."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._item = QGraphicsPixmapItem()
        self._item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self.scene().addItem(self._item)
        self._image: FrameImage | None = None

    def set_frame(self, frame: np.ndarray | None, display_size: tuple[int, int] | None = None) -> None:
        """Show `frame`; `display_size` (width, height) scales it, as the A side of an A/B view needs."""
        if frame is None:
            self._item.setPixmap(QPixmap())
            self._image = None
            self.set_content_rect(QRectF())
            return
        pixmap, self._image = frame_pixmap(frame, self.devicePixelRatioF())
        self._item.setPixmap(pixmap)
        scale = 1.0
        if display_size is not None and display_size[0] != frame.shape[1]:
            scale = display_size[0] / frame.shape[1]
        self._item.setScale(scale)
        self._item.always_smooth = scale != 1.0  # type: ignore[attr-defined]
        if scale != 1.0:
            self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        else:
            self._update_transformation_mode(self._zoom < 1.0)
        rect = self._item.mapRectToScene(self._item.boundingRect())
        if rect != self._content_rect:
            self.set_content_rect(rect)

    def current_image(self) -> FrameImage | None:
        return self._image

    def frame_origin(self) -> QPointF:
        """Position of the frame's top-left pixel in viewport coordinates."""
        return QPointF(self.mapFromScene(QPointF(0, 0)))


class ClippedPixmapItem(QGraphicsPixmapItem):
    """A pixmap item drawn only right of a split position, for the A/B split view."""

    def __init__(self) -> None:
        super().__init__()
        self.split_x = 0.0  # in item coordinates

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        rect = self.boundingRect()
        painter.save()
        painter.setClipRect(QRectF(self.split_x, rect.top(), rect.width() - self.split_x, rect.height()))
        super().paint(painter, option, widget)  # type: ignore[arg-type]
        painter.restore()


class SplitFrameView(ZoomableView):
    """Two frames on top of each other: A left of a vertical split line, B right of it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._item_a = QGraphicsPixmapItem()
        self._item_a.always_smooth = True  # type: ignore[attr-defined]
        self._item_a.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._item_b = ClippedPixmapItem()
        self._line = QGraphicsLineItem()
        pen = QPen(QColor(255, 255, 255, 200))
        pen.setCosmetic(True)
        pen.setWidth(1)
        self._line.setPen(pen)
        self._line.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, False)
        for z, item in enumerate((self._item_a, self._item_b, self._line)):
            item.setZValue(z)
            self.scene().addItem(item)
        self._images: tuple[FrameImage | None, FrameImage | None] = (None, None)
        self._split = 0.5

    def set_split(self, fraction: float) -> None:
        """Move the split line; 0 shows only B, 1 shows only A."""
        self._split = min(1.0, max(0.0, fraction))
        self._layout_split()

    def split(self) -> float:
        return self._split

    def set_frames(self, frame_a: np.ndarray | None, frame_b: np.ndarray | None) -> None:
        """Show A scaled to B's size (bilinear) under B; without B, A sets the size."""
        dpr = self.devicePixelRatioF()
        image_a = image_b = None
        if frame_b is not None:
            pixmap_b, image_b = frame_pixmap(frame_b, dpr)
            self._item_b.setPixmap(pixmap_b)
        else:
            self._item_b.setPixmap(QPixmap())
        if frame_a is not None:
            pixmap_a, image_a = frame_pixmap(frame_a, dpr)
            self._item_a.setPixmap(pixmap_a)
            target_width = frame_b.shape[1] if frame_b is not None else frame_a.shape[1]
            self._item_a.setScale(target_width / frame_a.shape[1])
        else:
            self._item_a.setPixmap(QPixmap())
        self._images = (image_a, image_b)
        if frame_b is not None:
            rect = self._item_b.boundingRect()
        else:
            rect = self._item_a.mapRectToScene(self._item_a.boundingRect())
        if rect != self._content_rect:
            self.set_content_rect(rect)
        self._layout_split()

    def _layout_split(self) -> None:
        rect = self.sceneRect()
        x = rect.left() + rect.width() * self._split
        self._item_b.split_x = x
        self._item_b.update()
        self._line.setLine(x, rect.top(), x, rect.bottom())
