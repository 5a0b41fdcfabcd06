"""Frame sources for the player: in-memory arrays and lazily decoded MP4 files.

A frame is a numpy uint8 array of shape (height, width, 3) in RGB order. Sources
cache frames and emit ``frame_ready`` when a requested frame arrives, so decoding
never blocks the GUI thread. Only the short probe of a file's size, frame rate and
frame count runs there, when the file is opened.
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 1536 * 1024 * 1024
DECODE_AHEAD_FRAMES = 24  # frames decoded past a requested one, so playback rarely waits


class FrameImage:
    """A QImage that shares memory with its numpy frame and keeps that frame alive."""

    def __init__(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"Expected a uint8 frame of shape (height, width, 3), got {frame.dtype} {frame.shape}")
        self.frame = np.ascontiguousarray(frame)
        height, width = self.frame.shape[:2]
        # Rows of an RGB888 image are width * 3 bytes. QImage assumes 4-byte aligned
        # rows unless bytesPerLine is given, which would shear odd widths.
        self.image = QImage(self.frame.data, width, height, width * 3, QImage.Format.Format_RGB888)

    @property
    def width(self) -> int:
        return int(self.frame.shape[1])

    @property
    def height(self) -> int:
        return int(self.frame.shape[0])


def qimage_to_array(image: QImage) -> np.ndarray:
    """Copy a QImage into a uint8 (height, width, 3) RGB array (used to check what is on screen)."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    buffer = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=stride * height)
    return buffer.reshape(height, stride)[:, : width * 3].reshape(height, width, 3).copy()


class FrameSource(QObject):
    """Base class of the player's frame sources."""

    frame_ready = Signal(int)  # index of a frame that `frame()` now returns without waiting
    frame_count_changed = Signal(int)
    failed = Signal(str)  # a message for the user when the source cannot be read

    def frame_count(self) -> int:
        raise NotImplementedError

    def fps(self) -> float:
        raise NotImplementedError

    def size(self) -> tuple[int, int]:
        """Frame size as (width, height) in pixels."""
        raise NotImplementedError

    def frame(self, index: int) -> np.ndarray | None:
        """Return the frame at `index` if it is cached; otherwise start decoding it and return None."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop background work. The source returns no new frames afterwards."""


class ArrayFrameSource(FrameSource):
    """Frames already in memory, for example the worker's latent previews."""

    def __init__(self, frames: np.ndarray, fps: float = 16.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"Expected uint8 frames of shape (frames, height, width, 3), got {frames.dtype} {frames.shape}")
        self._frames = frames
        self._fps = fps

    def frame_count(self) -> int:
        return int(self._frames.shape[0])

    def fps(self) -> float:
        return self._fps

    def size(self) -> tuple[int, int]:
        return int(self._frames.shape[2]), int(self._frames.shape[1])

    def frame(self, index: int) -> np.ndarray | None:
        if 0 <= index < self._frames.shape[0]:
            return self._frames[index]
        return None


class _FrameCache:
    """Least-recently-used frames, bounded by their total size in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._frames: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, index: int) -> np.ndarray | None:
        with self._lock:
            frame = self._frames.get(index)
            if frame is not None:
                self._frames.move_to_end(index)
            return frame

    def contains(self, index: int) -> bool:
        with self._lock:
            return index in self._frames

    def put(self, index: int, frame: np.ndarray, keep: int) -> None:
        """Store a frame, evicting the least recently used ones except `keep` until under the cap."""
        with self._lock:
            if index in self._frames:
                return
            self._frames[index] = frame
            self._bytes += frame.nbytes
            for old in list(self._frames):
                if self._bytes <= self.max_bytes:
                    break
                if old in (index, keep):
                    continue
                self._bytes -= self._frames.pop(old).nbytes

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes


class VideoFrameSource(FrameSource):
    """Frames of an MP4 file, decoded by ffmpeg in a background thread and cached up to a byte cap.

    The first frames are decoded right away. A request for a frame that is not cached
    restarts decoding at that frame with an input seek, so scrubbing through a 4K file
    never loads the whole file into memory.
    """

    def __init__(self, path: Path, max_cache_bytes: int = DEFAULT_CACHE_BYTES, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self._cache = _FrameCache(max_cache_bytes)
        self._width, self._height, self._fps, self._count = _probe(self.path)
        self._condition = threading.Condition()
        self._requested_index: int | None = None  # newest frame the GUI requested that is not cached
        self._latest_request = 0
        self._stop = False
        self._thread = threading.Thread(target=self._decode_loop, name=f"decode {self.path.name}", daemon=True)
        self._thread.start()

    def frame_count(self) -> int:
        return self._count

    def fps(self) -> float:
        return self._fps

    def size(self) -> tuple[int, int]:
        return self._width, self._height

    @property
    def cached_bytes(self) -> int:
        return self._cache.total_bytes

    def frame(self, index: int) -> np.ndarray | None:
        if not 0 <= index < self._count:
            return None
        frame = self._cache.get(index)
        if frame is None:
            self._request(index)
        return frame

    def close(self) -> None:
        with self._condition:
            self._stop = True
            self._condition.notify_all()
        self._thread.join(timeout=10)

    def _request(self, index: int) -> None:
        with self._condition:
            self._latest_request = index
            self._requested_index = index
            self._condition.notify_all()

    def _decode_loop(self) -> None:
        start: int | None = 0  # the first pass starts at once and counts the frames
        while True:
            if start is not None and not self._cache.contains(start):
                try:
                    self._decode_from(start)
                except (OSError, RuntimeError) as error:
                    logger.error("Decoding %s from frame %d failed: %s", self.path, start, error)
                    self.failed.emit(str(error))
            with self._condition:
                while self._requested_index is None and not self._stop:
                    self._condition.wait()
                if self._stop:
                    return
                start = self._requested_index
                self._requested_index = None

    def _should_restart(self, index: int) -> bool:
        """Check after decoding frame `index` whether a newer request needs a seek elsewhere."""
        with self._condition:
            if self._stop:
                return True
            requested = self._requested_index
            if requested is None:
                return False
            if self._cache.contains(requested) or index < requested <= index + DECODE_AHEAD_FRAMES:
                # Cached already or coming soon in this pass: no seek needed.
                self._requested_index = None
                return False
            return True

    def _decode_from(self, start: int) -> None:
        decoded = 0
        for offset, frame in enumerate(read_frames(self.path, start, self._fps, self._width, self._height)):
            index = start + offset
            self._cache.put(index, frame, keep=self._latest_request)
            self.frame_ready.emit(index)
            decoded += 1
            if self._should_restart(index):
                return
            ahead = index - self._latest_request
            if ahead >= DECODE_AHEAD_FRAMES and self._cache.total_bytes >= self._cache.max_bytes:
                return
        if start == 0 and decoded != self._count:
            # The container's duration only estimates the frame count; a full pass is exact.
            logger.info("%s has %d frames, not the estimated %d", self.path.name, decoded, self._count)
            self._count = decoded
            self.frame_count_changed.emit(decoded)


def _probe(path: Path) -> tuple[int, int, float, int]:
    """Return (width, height, fps, frame count) of a video, preferring the engine's probe."""
    if not path.is_file():
        raise FileNotFoundError(f"Video not found: {path}")
    try:
        from freeswim_engine import video_io
    except ImportError:
        video_io = None  # type: ignore[assignment]
    if video_io is not None:
        info = video_io.probe_mp4(path)
        if info.fps and info.num_frames:
            return int(info.width), int(info.height), float(info.fps), int(info.num_frames)

    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    reader.close()
    width, height = meta["size"]
    fps = float(meta["fps"])
    count = max(1, round(float(meta["duration"]) * fps))
    return int(width), int(height), fps, count


def read_frames(path: Path, start: int, fps: float, width: int, height: int) -> Iterator[np.ndarray]:
    """Decode ``path`` from frame ``start`` on, yielding ``(height, width, 3)`` uint8 RGB frames as the player shows them."""
    import imageio_ffmpeg

    input_params: list[str] = []
    if start > 0:
        # Seek half a frame early: ffmpeg drops frames before the seek time, so frame `start`
        # is the first one kept even when its timestamp is rounded down.
        input_params = ["-ss", f"{(start - 0.5) / fps:.6f}"]
    reader = imageio_ffmpeg.read_frames(str(path), input_params=input_params)
    try:
        reader.__next__()  # metadata
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()
