"""Player widget: exact pixels, stepping, scrubbing, looping, zoom, MP4 decoding and the A/B view."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from freeswim_app.ui.ab_view import CompareMode
from freeswim_app.ui.frame_view import FrameView
from freeswim_app.ui.frames import ArrayFrameSource, FrameImage, VideoFrameSource, qimage_to_array
from freeswim_app.ui.player import VIEW_RESULT, VIEW_SIDE_BY_SIDE, VIEW_SPLIT, PlayerWidget


def random_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, macro_block_size=1, quality=10)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def gradient_frames(count: int, height: int, width: int) -> np.ndarray:
    """Smooth frames that survive H.264 nearly unchanged; frame i has a blue channel of about 20 * i + 10."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        frames[i, ..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
        frames[i, ..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
        frames[i, ..., 2] = min(255, 20 * i + 10)
    return frames


def displayed_pixels(view: FrameView, width: int, height: int) -> np.ndarray:
    """Grab the viewport and cut out the frame's area at its on-screen position."""
    grabbed = qimage_to_array(view.viewport().grab().toImage())
    origin = view.mapFromScene(0, 0)
    return grabbed[origin.y() : origin.y() + height, origin.x() : origin.x() + width]


def make_player(qtbot, width: int = 640, height: int = 480) -> PlayerWidget:
    player = PlayerWidget()
    qtbot.addWidget(player)
    player.resize(width, height)
    player.show()
    qtbot.waitExposed(player)
    return player


@pytest.mark.parametrize("height,width", [(5, 7), (4, 6), (9, 1366), (16, 32)])
def test_player_shows_exact_pixels_at_100_percent(qtbot, height: int, width: int) -> None:
    frames = random_frames(2, height, width)
    player = make_player(qtbot, 1500 if width > 600 else 400, 300)
    player.set_source(ArrayFrameSource(frames))
    player.set_zoom(1.0)
    qtbot.wait(10)

    on_screen = displayed_pixels(player.frame_view, width, height)

    assert on_screen.shape == frames[0].shape
    assert np.array_equal(on_screen, frames[0])
    player.step_forward()
    assert np.array_equal(displayed_pixels(player.frame_view, width, height), frames[1])


def test_frame_image_keeps_array_alive() -> None:
    frame = random_frames(1, 5, 7)[0]
    image = FrameImage(frame[:, :, :])
    del frame
    assert image.image.bytesPerLine() == 21
    assert image.frame.flags["C_CONTIGUOUS"]
    assert np.array_equal(qimage_to_array(image.image), image.frame)


def test_frame_image_rejects_wrong_dtype() -> None:
    with pytest.raises(ValueError, match="uint8"):
        FrameImage(np.zeros((4, 4, 3), dtype=np.float32))


def test_player_step_scrub_and_loop(qtbot) -> None:
    frames = random_frames(5, 8, 8)
    player = make_player(qtbot)
    player.set_source(ArrayFrameSource(frames))
    assert player.current_index() == 0

    player.step_forward()
    player.step_forward()
    assert player.current_index() == 2
    player.step_back()
    assert player.current_index() == 1

    player.slider.setValue(4)
    assert player.current_index() == 4
    assert player.frame_label.text() == "5 / 5"

    player.loop_box.setChecked(True)
    player.step_forward()
    assert player.current_index() == 0
    player.step_back()
    assert player.current_index() == 4

    player.loop_box.setChecked(False)
    player.step_forward()
    assert player.current_index() == 4


def test_player_playback_stops_at_end_without_loop(qtbot) -> None:
    frames = random_frames(4, 8, 8)
    player = make_player(qtbot)
    player.set_source(ArrayFrameSource(frames, fps=100))
    player.loop_box.setChecked(False)
    player.play()
    assert player.is_playing()
    qtbot.waitUntil(lambda: not player.is_playing(), timeout=30000)
    assert player.current_index() == 3


def test_player_playback_loops(qtbot) -> None:
    frames = random_frames(3, 8, 8)
    player = make_player(qtbot)
    player.set_source(ArrayFrameSource(frames, fps=100))
    player.loop_box.setChecked(True)
    seen: list[int] = []
    player.frame_changed.connect(seen.append)
    player.play()
    qtbot.waitUntil(lambda: seen.count(0) >= 2, timeout=30000)
    player.pause()
    assert seen[:4] == [1, 2, 0, 1]


def test_player_zoom_fit_and_steps(qtbot) -> None:
    frames = random_frames(1, 1000, 2000)
    player = make_player(qtbot, 600, 400)
    player.set_source(ArrayFrameSource(frames))
    player.fit()
    assert player.zoom() < 1.0
    player.set_zoom(1.0)
    assert player.zoom() == 1.0
    assert player.zoom_label.text() == "Zoom 100%"
    player.zoom_in()
    assert player.zoom() > 1.0
    player.set_zoom(1.0)
    player.zoom_out()
    assert player.zoom() < 1.0


def test_player_pans_4k_frame_at_100_percent(qtbot) -> None:
    frames = random_frames(1, 2160, 3840)
    player = make_player(qtbot, 640, 480)
    player.set_source(ArrayFrameSource(frames))
    player.set_zoom(1.0)
    view = player.frame_view
    assert view.horizontalScrollBar().maximum() > 3000
    view.set_scroll_position((3000, 1500))
    qtbot.wait(10)
    grabbed = qimage_to_array(view.viewport().grab().toImage())
    origin = view.mapFromScene(0, 0)
    top, left = -origin.y(), -origin.x()
    assert np.array_equal(grabbed[:100, :100], frames[0, top : top + 100, left : left + 100])


def test_player_live_preview_keeps_position(qtbot) -> None:
    player = make_player(qtbot)
    player.show_preview("stage1", random_frames(4, 6, 10, seed=1))
    player.show_frame(2)
    newer = random_frames(4, 6, 10, seed=2)
    player.show_preview("stage2", newer)
    assert player.current_index() == 2
    assert "stage2" in player.title_label.text()
    assert np.array_equal(player.frame_view.current_image().frame, newer[2])


def test_video_source_decodes_all_frames(qtbot, tmp_path: Path) -> None:
    frames = gradient_frames(6, 34, 46)
    path = write_video(tmp_path / "clip.mp4", frames)
    source = VideoFrameSource(path)
    try:
        assert source.size() == (46, 34)
        qtbot.waitUntil(lambda: source.frame(5) is not None, timeout=30000)
        assert source.frame_count() == 6
        for index in range(6):
            decoded = source.frame(index)
            assert decoded is not None
            brightness = int(decoded[..., 2].mean())
            assert abs(brightness - (20 * index + 10)) <= 4, f"frame {index} has blue {brightness}"
    finally:
        source.close()


def test_video_source_seeks_past_cache_cap(qtbot, tmp_path: Path) -> None:
    frames = gradient_frames(12, 32, 48)
    path = write_video(tmp_path / "clip.mp4", frames)
    frame_bytes = 32 * 48 * 3
    source = VideoFrameSource(path, max_cache_bytes=3 * frame_bytes)
    try:
        qtbot.waitUntil(lambda: source.frame(0) is not None, timeout=30000)
        qtbot.waitUntil(lambda: source.frame(9) is not None, timeout=30000)
        decoded = source.frame(9)
        assert decoded is not None
        assert abs(int(decoded[..., 2].mean()) - 190) <= 4
        assert source.cached_bytes <= 4 * frame_bytes
    finally:
        source.close()


def test_player_plays_mp4_in_background(qtbot, tmp_path: Path) -> None:
    frames = gradient_frames(5, 32, 32)
    path = write_video(tmp_path / "clip.mp4", frames)
    player = make_player(qtbot)
    player.load_video(path)
    qtbot.waitUntil(lambda: player.frame_view.current_image() is not None, timeout=30000)
    player.slider.setValue(4)
    qtbot.waitUntil(
        lambda: player.frame_view.current_image() is not None
        and int(player.frame_view.current_image().frame[..., 2].mean()) > 80,
        timeout=30000,
    )
    assert player.frame_count() == 5


def test_ab_view_side_by_side_and_split(qtbot, tmp_path: Path) -> None:
    base = np.zeros((2, 4, 6, 3), dtype=np.uint8)  # dark, quarter size
    result = np.full((2, 16, 24, 3), 255, dtype=np.uint8)  # white, target size
    player = make_player(qtbot, 500, 300)
    player.set_source(ArrayFrameSource(result), "result", compare=ArrayFrameSource(base))
    player.set_view_mode(VIEW_SIDE_BY_SIDE)
    player.set_zoom(1.0)
    qtbot.wait(10)

    ab = player.ab_view
    assert ab.mode() == CompareMode.SIDE_BY_SIDE
    assert ab.view_a.sceneRect().width() == pytest.approx(24)
    assert ab.view_b.sceneRect().width() == pytest.approx(24)
    assert ab.view_a.zoom() == pytest.approx(1.0)
    shown_b = displayed_pixels(ab.view_b, 24, 16)
    assert np.array_equal(shown_b, result[0])
    shown_a = displayed_pixels(ab.view_a, 24, 16)
    assert shown_a.max() == 0

    player.set_view_mode(VIEW_SPLIT)
    assert ab.mode() == CompareMode.SPLIT
    player.set_zoom(1.0)
    ab.split_slider.setValue(500)
    qtbot.wait(10)
    view = ab.split_view
    grabbed = qimage_to_array(view.viewport().grab().toImage())
    origin = view.mapFromScene(0, 0)
    row = grabbed[origin.y() + 8, origin.x() : origin.x() + 24]
    assert row[2].max() == 0, "left of the split shows A"
    assert row[20].min() == 255, "right of the split shows B"

    ab.split_slider.setValue(1000)
    qtbot.wait(10)
    grabbed = qimage_to_array(view.viewport().grab().toImage())
    assert grabbed[origin.y() + 8, origin.x() + 20].max() == 0

    player.set_view_mode(VIEW_RESULT)
    assert player.frame_view.isVisible()


def test_ab_view_scroll_is_shared(qtbot) -> None:
    base = random_frames(1, 270, 480)
    result = random_frames(1, 1080, 1920)
    player = make_player(qtbot, 600, 400)
    player.set_source(ArrayFrameSource(result), "result", compare=ArrayFrameSource(base))
    player.set_view_mode(VIEW_SIDE_BY_SIDE)
    player.set_zoom(2.0)
    player.ab_view.view_b.set_scroll_position((500, 300))
    assert player.ab_view.view_a.scroll_position() == player.ab_view.view_b.scroll_position()
    assert player.ab_view.view_a.zoom() == pytest.approx(2.0)


def test_ab_modes_disabled_without_base(qtbot) -> None:
    player = make_player(qtbot)
    player.set_source(ArrayFrameSource(random_frames(1, 4, 4)))
    model = player.view_box.model()
    assert not model.item(1).isEnabled()
    assert not model.item(2).isEnabled()
    assert model.item(0).isEnabled()


def test_player_drag_pans_view(qtbot) -> None:
    player = make_player(qtbot, 300, 300)
    player.set_source(ArrayFrameSource(random_frames(1, 1000, 1000)))
    player.set_zoom(1.0)
    view = player.frame_view
    before = view.scroll_position()
    start = view.viewport().rect().center()
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view.viewport(), start + QPoint(-40, -30))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=start + QPoint(-40, -30))
    assert view.scroll_position() != before
