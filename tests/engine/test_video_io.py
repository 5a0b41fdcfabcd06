"""MP4 export, probing and video reading against the real ffmpeg of imageio-ffmpeg."""

from __future__ import annotations

import errno
import json
import stat
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy
import psutil
import pytest
from PIL import Image

from freeswim_engine import video_io
from freeswim_engine.errors import ExportError, InputVideoError

# Even sizes that are not multiples of 16, so a resize to macroblock multiples would show.
WIDTH, HEIGHT = 202, 114
COLOR = (200, 30, 60)


def make_frames(num_frames: int = 5, width: int = WIDTH, height: int = HEIGHT) -> numpy.ndarray:
    """Return frames whose left half is COLOR and right half is seeded noise that changes per frame."""
    rng = numpy.random.default_rng(0)
    frames = numpy.empty((num_frames, height, width, 3), dtype=numpy.uint8)
    frames[...] = COLOR
    frames[:, :, width // 2 :] = rng.integers(0, 256, (num_frames, height, width - width // 2, 3), dtype=numpy.uint8)
    return frames


def make_testsrc_video(path: Path, size: str = "160x96", rate: int = 12, num_frames: int = 7, codec: str = "libx264") -> Path:
    """Encode ffmpeg's testsrc pattern, the way a user's own clip would arrive."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    command += ["-i", f"testsrc=size={size}:rate={rate}", "-frames:v", str(num_frames)]
    command += ["-c:v", codec, "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True)
    return path


METADATA = {"prompt": 'A "red" fox; a=b #1 \\ end\nin snow', "seed": 1234, "model": "demo", "settings": {"strength": 0.7, "steps": 3}}


@pytest.mark.parametrize(("fps", "codec", "expected_codec"), [(24, "h264", "h264"), (16, "h265", "hevc")])
def test_write_mp4_round_trip(tmp_path: Path, fps: int, codec: str, expected_codec: str) -> None:
    frames = make_frames()
    path = video_io.write_mp4(frames, tmp_path / "clip.mp4", fps=fps, codec=codec, metadata=METADATA)

    info = video_io.probe_mp4(path)
    assert path == tmp_path / "clip.mp4"
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    assert info.num_frames == len(frames)
    assert info.fps == fps
    assert info.codec == expected_codec
    assert info.pix_fmt == "yuv420p"
    assert info.color_range == "tv"
    assert info.color_space == "bt709"
    assert info.color_primaries == "bt709"
    assert info.color_transfer == "bt709"


def test_write_mp4_embeds_metadata(tmp_path: Path) -> None:
    path = video_io.write_mp4(make_frames(), tmp_path / "clip.mp4", fps=24, metadata=METADATA)

    info = video_io.probe_mp4(path)
    embedded = info.embedded_settings()
    sidecar = json.loads(video_io.sidecar_path_for(path).read_text(encoding="utf-8"))
    assert embedded is not None
    assert info.metadata["title"] == METADATA["prompt"]
    assert "seed 1234" in info.metadata["description"]
    for record in (embedded, sidecar):
        assert record["prompt"] == METADATA["prompt"]
        assert record["seed"] == 1234
        assert record["model"] == "demo"
        assert record["settings"] == METADATA["settings"]
        assert record["export"]["width"] == WIDTH
        assert record["export"]["num_frames"] == 5
        assert record["export"]["codec"] == "h264"
        assert record["export"]["crf"] == 18


def test_write_mp4_keeps_colors(tmp_path: Path) -> None:
    # A BT.601 conversion under BT.709 tags shifts this red by more than 10 levels.
    path = video_io.write_mp4(make_frames(), tmp_path / "clip.mp4", fps=24)

    frames, _ = video_io.read_video(path)
    flat_area = frames[:, 20:-20, 20 : WIDTH // 2 - 20].reshape(-1, 3).astype(int)
    assert numpy.abs(flat_area - numpy.array(COLOR)).max() <= 4


def test_write_mp4_fractional_fps(tmp_path: Path) -> None:
    path = video_io.write_mp4(make_frames(3), tmp_path / "ntsc", fps=24000 / 1001)

    info = video_io.probe_mp4(path)
    assert info.fps == pytest.approx(23.98, abs=0.01)


def test_write_mp4_adds_suffix(tmp_path: Path) -> None:
    path = video_io.write_mp4(make_frames(2), tmp_path / "take.v2", fps=16)

    assert path == tmp_path / "take.v2.mp4"
    assert path.is_file()
    assert (tmp_path / "take.v2.json").is_file()


def test_write_mp4_accepts_frame_iterable(tmp_path: Path) -> None:
    frames = make_frames(4)

    path = video_io.write_mp4((frame for frame in frames), tmp_path / "streamed.mp4", fps=16)

    assert video_io.probe_mp4(path).num_frames == 4
    sidecar = json.loads(video_io.sidecar_path_for(path).read_text(encoding="utf-8"))
    assert sidecar["export"]["num_frames"] == 4


def test_write_mp4_creates_missing_folder(tmp_path: Path) -> None:
    path = video_io.write_mp4(make_frames(2), tmp_path / "new" / "nested" / "clip.mp4", fps=16)

    assert path.is_file()


@pytest.mark.parametrize(("width", "height", "nearest"), [(201, 114, "200 or 202"), (202, 113, "112 or 114")])
def test_write_mp4_rejects_odd_size(tmp_path: Path, width: int, height: int, nearest: str) -> None:
    with pytest.raises(ExportError) as raised:
        video_io.write_mp4(make_frames(2, width, height), tmp_path / "odd.mp4", fps=16)

    assert f"{width}x{height}" in str(raised.value)
    assert nearest in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"codec": "vp9"}, "valid codecs are h264, h265"), ({"crf": 60}, "0 to 51"), ({"fps": 0}, "positive")],
)
def test_write_mp4_rejects_bad_settings(tmp_path: Path, arguments: dict, message: str) -> None:
    settings = {"fps": 16, **arguments}
    with pytest.raises(ExportError, match=message):
        video_io.write_mp4(make_frames(2), tmp_path / "clip.mp4", **settings)

    assert list(tmp_path.iterdir()) == []


def test_write_mp4_failing_source_leaves_nothing(tmp_path: Path) -> None:
    final_path = tmp_path / "clip.mp4"
    final_path.write_bytes(b"previous render")

    def frames_then_error():
        yield from make_frames(3)
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        video_io.write_mp4(frames_then_error(), final_path, fps=16)

    assert final_path.read_bytes() == b"previous render"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


def test_write_mp4_killed_ffmpeg_raises(tmp_path: Path) -> None:
    def frames_then_kill_ffmpeg():
        frames = make_frames(2)
        yield frames[0]
        for child in psutil.Process().children():
            if "ffmpeg" in child.name():
                child.kill()
                child.wait(10)
        while True:
            yield frames[1]

    with pytest.raises(ExportError, match="clip.mp4"):
        video_io.write_mp4(frames_then_kill_ffmpeg(), tmp_path / "clip.mp4", fps=16)

    assert list(tmp_path.iterdir()) == []


def test_write_mp4_replaces_existing_on_success(tmp_path: Path) -> None:
    final_path = tmp_path / "clip.mp4"
    final_path.write_bytes(b"previous render")

    video_io.write_mp4(make_frames(2), final_path, fps=16)

    assert video_io.probe_mp4(final_path).num_frames == 2


def test_write_mp4_folder_blocked_by_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")

    with pytest.raises(ExportError, match="Cannot create the output folder"):
        video_io.write_mp4(make_frames(2), tmp_path / "taken" / "clip.mp4", fps=16)


def test_write_mp4_disk_full_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_io.tempfile, "mkstemp", no_space)

    with pytest.raises(ExportError) as raised:
        video_io.write_mp4(make_frames(2), tmp_path / "clip.mp4", fps=16)

    assert "disk is full" in str(raised.value)
    assert "MiB free" in str(raised.value)
    assert str(tmp_path) in str(raised.value)


def test_read_video_from_testsrc_mp4(tmp_path: Path) -> None:
    path = make_testsrc_video(tmp_path / "source.mp4")

    frames, fps = video_io.read_video(path)

    assert frames.shape == (7, 96, 160, 3)
    assert frames.dtype == numpy.uint8
    assert fps == 12
    assert not numpy.array_equal(frames[0], frames[-1])


def test_read_video_max_frames(tmp_path: Path) -> None:
    path = make_testsrc_video(tmp_path / "source.mp4")

    frames, _ = video_io.read_video(path, max_frames=3)

    assert frames.shape[0] == 3


def test_read_video_from_png_folder(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in (1, 2, 10):  # natural order puts 10 last, text order puts it second
        Image.new("RGB", (64, 48), (index, 0, 0)).save(folder / f"frame{index}.png")
    Image.new("RGB", (64, 48), (99, 0, 0)).save(folder / "frame3.jpg", quality=100)
    (folder / "notes.txt").write_text("not a frame")

    frames, fps = video_io.read_video(folder)

    assert frames.shape == (4, 48, 64, 3)
    assert fps is None
    assert [int(frame[0, 0, 0]) for frame in frames[:2]] == [1, 2]
    assert abs(int(frames[2, 0, 0, 0]) - 99) <= 2
    assert int(frames[3, 0, 0, 0]) == 10


def test_read_video_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputVideoError, match="not found"):
        video_io.read_video(tmp_path / "nothing.mp4")


def test_read_video_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputVideoError, match=r"No frames found .*\.png"):
        video_io.read_video(tmp_path)


def test_read_video_mixed_frame_sizes(tmp_path: Path) -> None:
    Image.new("RGB", (64, 48)).save(tmp_path / "a1.png")
    Image.new("RGB", (64, 50)).save(tmp_path / "a2.png")

    with pytest.raises(InputVideoError) as raised:
        video_io.read_video(tmp_path)

    assert "64x48" in str(raised.value)
    assert "a2.png is 64x50" in str(raised.value)


def test_read_video_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"this is not a video" * 100)

    with pytest.raises(InputVideoError, match="broken.mp4"):
        video_io.read_video(path)


def test_probe_mp4_rejects_non_video(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"this is not a video" * 100)

    with pytest.raises(InputVideoError, match="Cannot read .*broken.mp4"):
        video_io.probe_mp4(path)


def test_write_mp4_survives_terminal_interrupt(tmp_path: Path) -> None:
    # A terminal sends Ctrl+C to its whole foreground process group. The child below runs in its
    # own session, records the signal instead of stopping, and signals its group mid-export.
    script = f"""
import os, signal, sys
import numpy
from freeswim_engine import video_io
received = []
signal.signal(signal.SIGINT, lambda *args: received.append(args[0]))
frames = numpy.zeros((6, 64, 96, 3), dtype=numpy.uint8)
def frames_with_interrupt():
    yield frames[0]
    os.killpg(os.getpgrp(), signal.SIGINT)
    yield from frames[1:]
path = video_io.write_mp4(frames_with_interrupt(), {str(tmp_path / "clip.mp4")!r}, fps=16)
print(len(received), video_io.probe_mp4(path).num_frames)
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["1", "6"]


def test_export_files_follow_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = numpy.zeros((1, 16, 16, 3), dtype=numpy.uint8)
    monkeypatch.setattr(video_io, "_UMASK", 0o022)  # the umask read at import

    path = video_io.write_mp4(frames, tmp_path / "shared.mp4", fps=16)

    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(video_io.sidecar_path_for(path).stat().st_mode) == 0o644


def test_output_check_rejects_file_as_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")

    with pytest.raises(ExportError, match="plain-file"):
        video_io.check_output_path(blocker / "video")

    assert video_io.check_output_path(tmp_path / "new" / "video") == tmp_path / "new" / "video.mp4"
    assert list((tmp_path / "new").iterdir()) == []
