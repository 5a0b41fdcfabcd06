"""Benchmark MP4 export with ``write_mp4`` and the player's decode rate for the same file.

The frames are a synthetic test pattern (colour gradients with a moving disc
and moving stripes), made up front so that the encode time counts ffmpeg only.
Random noise would be unrepresentative: it cannot be compressed and makes
x264 many times slower than on rendered video.

Decoding uses the player's reader, ``freeswim_app.ui.frames.read_frames``
(imageio-ffmpeg piping raw RGB frames), over the whole file.

Run from the repository root::

    python -m benchmarks.export_decode              # 81 frames of 3840x2160, H.264 CRF 18
    python -m benchmarks.export_decode --size smoke
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy

from benchmarks.common import benchmark_parser, start_run, load_average, module_command, summarize, write_results

logger = logging.getLogger(__name__)

NAME = "export_decode"
FPS = 16  # Wan 2.1's frame rate

SIZES: dict[str, dict[str, Any]] = {
    "full": {"num_frames": 81, "width": 3840, "height": 2160, "repeats": 2},
    "smoke": {"num_frames": 9, "width": 320, "height": 176, "repeats": 1},
}


def make_frames(num_frames: int, width: int, height: int) -> numpy.ndarray:
    """Return uint8 RGB frames ``(num_frames, height, width, 3)`` of a moving test pattern."""
    ys = numpy.linspace(0.0, 1.0, height, dtype=numpy.float32)[:, None]
    xs = numpy.linspace(0.0, 1.0, width, dtype=numpy.float32)[None, :]
    frames = numpy.empty((num_frames, height, width, 3), dtype=numpy.uint8)
    for index in range(num_frames):
        phase = index / max(1, num_frames - 1)
        centre_x, centre_y = 0.2 + 0.6 * phase, 0.5 + 0.2 * numpy.sin(6.0 * phase)
        disc = ((xs - centre_x) ** 2 * (width / height) ** 2 + (ys - centre_y) ** 2) < 0.02
        stripes = (numpy.sin(40.0 * (xs + 0.3 * ys) - 8.0 * phase) > 0.0).astype(numpy.float32)
        frames[index, ..., 0] = (255 * xs * (1 - 0.3 * stripes)).astype(numpy.uint8)
        frames[index, ..., 1] = numpy.where(disc, 230, 255 * ys).astype(numpy.uint8)
        frames[index, ..., 2] = (255 * (1 - xs) * (0.5 + 0.5 * phase)).astype(numpy.uint8)
    return frames


def decode_all(path: Path) -> int:
    """Decode every frame of ``path`` with the player's reader and return how many there were."""
    from freeswim_app.ui.frames import read_frames
    from freeswim_engine.video_io import probe_mp4

    info = probe_mp4(path)
    fps = float(info.fps or FPS)
    count = 0
    for frame in read_frames(path, 0, fps, info.width, info.height):
        count += 1
        if frame.shape != (info.height, info.width, 3):
            raise RuntimeError(f"decoded frame {count} of {path} has shape {frame.shape}")
    return count


def run(size: str = "full", repeats: int | None = None, work_dir: Path | None = None) -> dict[str, Any]:
    """Encode the test pattern ``repeats`` times, decode the file after each encode, and return the figures."""
    from freeswim_engine.video_io import probe_mp4, write_mp4

    config = SIZES[size]
    repeats = repeats if repeats is not None else int(config["repeats"])
    load_start = load_average()
    start = time.perf_counter()
    frames = make_frames(config["num_frames"], config["width"], config["height"])
    pattern_s = time.perf_counter() - start

    encode_s: list[float] = []
    decode_s: list[float] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as folder:
        path = Path(folder) / "export.mp4"
        for _ in range(repeats):
            start = time.perf_counter()
            written = write_mp4(frames, path, fps=FPS, codec="h264", crf=18, metadata={"prompt": "benchmark pattern"})
            encode_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            decoded = decode_all(written)
            decode_s.append(time.perf_counter() - start)
            if decoded != len(frames):
                raise RuntimeError(f"decoded {decoded} frames from {written}, expected {len(frames)}")
        info = probe_mp4(written)
        file_bytes = written.stat().st_size

    num_frames = len(frames)
    return {
        "size": size,
        "repeats": repeats,
        "load_average_start": load_start,
        "video": {"num_frames": num_frames, "width": info.width, "height": info.height, "fps": FPS, "codec": info.codec, "crf": 18, "pix_fmt": info.pix_fmt},
        "file_bytes": file_bytes,
        "pattern_generation_s": pattern_s,
        "encode": summarize(encode_s),
        "encode_frames_per_s": num_frames / statistics.median(encode_s),
        "decode": summarize(decode_s),
        "decode_frames_per_s": num_frames / statistics.median(decode_s),
        "notes": "Encode time is write_mp4 end to end (ffmpeg libx264 default preset, probe of the result, sidecar JSON). Decode reads every frame as RGB24 through imageio-ffmpeg, as the player does.",
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = benchmark_parser(__doc__, SIZES, "video size (default: full, 81 frames of 3840x2160)")
    parser.add_argument("--repeats", type=int, default=None, help="encode and decode rounds (default: 2, smoke 1)")
    args = parser.parse_args(argv)
    start_run(args)
    figures = run(args.size, args.repeats)
    path = write_results(NAME, figures, module_command(NAME, argv), args.output_dir)
    print(f"wrote {path}")
    print(f"encode {figures['encode']['median_s']:.1f} s ({figures['encode_frames_per_s']:.2f} frames/s), decode {figures['decode_frames_per_s']:.1f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
