"""MP4 export, video and frame-folder reading, and MP4 probing with the ffmpeg of imageio-ffmpeg.

Writing runs the ffmpeg binary from ``imageio_ffmpeg.get_ffmpeg_exe()`` directly instead of
``imageio_ffmpeg.write_frames``. In imageio-ffmpeg 0.8.1, write_frames ignores ffmpeg's exit status
and sends ffmpeg's stderr to the parent's stderr, so a failed encode (a full disk, for example)
would go unnoticed and its reason would be lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fractions
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import imageio_ffmpeg
import numpy

from freeswim_engine import __version__
from freeswim_engine.errors import ExportError, InputVideoError

logger = logging.getLogger(__name__)

CODECS = {"h264": "libx264", "h265": "libx265"}
MAX_CRF = 51  # libx264 and libx265 both take a CRF of 0 (lossless or near it) to 51 (worst)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Converts RGB to limited-range BT.709 YUV and tags the frames to match. Without
# out_color_matrix, swscale converts with BT.601 and the BT.709 tags would shift the colours.
_BT709_FILTER = (
    "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
    "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"
)
_BT709_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """Facts about a video file as ffmpeg reports them.

    ``color_space``, ``color_primaries`` and ``color_transfer`` are None where the file does not
    tag them. ``metadata`` contains the container tags (title, comment, description and so on).
    """

    width: int
    height: int
    num_frames: int
    fps: float | None
    codec: str
    pix_fmt: str
    metadata: dict[str, str]
    color_range: str | None = None
    color_space: str | None = None
    color_primaries: str | None = None
    color_transfer: str | None = None
    duration_seconds: float | None = None

    def embedded_settings(self) -> dict[str, Any] | None:
        """Return the settings JSON that write_mp4 stores in the comment tag, or None when absent."""
        comment = self.metadata.get("comment")
        if not comment:
            return None
        try:
            settings = json.loads(comment)
        except json.JSONDecodeError:
            return None
        return settings if isinstance(settings, dict) else None


# ---------------------------------------------------------------------------------------------
# Writing


def sidecar_path_for(video_path: str | os.PathLike[str]) -> Path:
    """Return the settings JSON path that belongs to an MP4: ``clip.mp4`` -> ``clip.json``."""
    return Path(video_path).with_suffix(".json")


def mp4_path_for(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` with ``.mp4`` appended unless it already ends in ``.mp4`` (any case)."""
    path = Path(path)
    if path.suffix.lower() == ".mp4":
        return path
    return path.with_name(path.name + ".mp4")


def write_mp4(
    frames: numpy.ndarray | Iterable[numpy.ndarray],
    path: str | os.PathLike[str],
    fps: float,
    codec: str = "h264",
    crf: int = 18,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Encode RGB frames to an MP4 and write a sidecar JSON of ``metadata`` next to it.

    Args:
        frames: uint8 RGB, either one array of shape (frames, height, width, 3) or an iterable of
            (height, width, 3) arrays, which lets a caller decode and encode in chunks.
        path: output file; ``.mp4`` is appended when the name lacks it and missing folders are
            created.
        fps: frames per second, stored exactly (24000/1001 stays a fraction).
        codec: ``"h264"`` (libx264) or ``"h265"`` (libx265, tagged hvc1 so Apple players open it).
        crf: constant rate factor, 0 to 51; lower is better quality and a larger file.
        metadata: prompt, seed, model and settings. Stored as JSON in the MP4 ``comment`` tag and in
            ``<name>.json``; the prompt also becomes the ``title`` tag.

    Returns:
        The final MP4 path. The sidecar is ``sidecar_path_for(result)``.

    The video is yuv420p, BT.709 limited range, with ``+faststart``, at exactly the frames' size,
    which must be even in both dimensions. ffmpeg writes to a temporary name in the same folder
    that is renamed only after the encode succeeds, so the final name never contains a partial file.
    An existing file of the final name is replaced, and the replacement is logged.

    Raises:
        ExportError: odd frame size, invalid codec, CRF or fps, unwritable folder, full disk or
            ffmpeg failure. No file is left under the final name or the temporary name.
        TypeError, ValueError: a frame that is not uint8 or not (height, width, 3) like the first,
            which is a caller's bug rather than a user's input.
    """
    final_path = mp4_path_for(path)
    encoder = _encoder_for(codec)
    _check_crf(crf, final_path)
    fps_fraction = _fps_fraction(fps, final_path)
    frame_iterator = _iter_frames(frames)
    first_frame = next(frame_iterator, None)
    if first_frame is None:
        raise ExportError(f"Cannot write {final_path}: no frames were given.")
    if not isinstance(first_frame, numpy.ndarray) or first_frame.ndim != 3 or first_frame.shape[2] != 3:
        raise ValueError(f"each frame must be a (height, width, 3) array; got {getattr(first_frame, 'shape', type(first_frame))}")
    height, width = first_frame.shape[:2]
    first_frame = _check_frame(first_frame, width, height, 0)
    _check_even_size(width, height, final_path)

    folder = _prepare_folder(final_path)
    settings = _settings_record(metadata, final_path, width, height, fps_fraction, codec, crf)
    if isinstance(frames, numpy.ndarray):
        settings["export"]["num_frames"] = len(frames)
    temp_path = _create_temp_file(folder, final_path)
    try:
        num_frames = _encode(first_frame, frame_iterator, temp_path, final_path, encoder, fps_fraction, crf, settings)
        _verify_encoded(temp_path, final_path, width, height, num_frames)
        settings["export"]["num_frames"] = num_frames
        _replace(temp_path, final_path)
    except BaseException:
        _remove_quietly(temp_path)
        raise
    _write_json_atomically(sidecar_path_for(final_path), settings, final_path)
    logger.info("Wrote %s (%dx%d, %d frames at %s fps, %s crf %d)", final_path, width, height, num_frames, fps_fraction, codec, crf)
    return final_path


def _encoder_for(codec: str) -> str:
    if codec not in CODECS:
        raise ExportError(f"Invalid codec {codec!r}: valid codecs are {', '.join(CODECS)}. Use h264 for the widest player support.")
    return CODECS[codec]


def _check_crf(crf: int, final_path: Path) -> None:
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= MAX_CRF:
        raise ExportError(
            f"Invalid CRF {crf!r} for {final_path}: it must be a whole number from 0 to {MAX_CRF}. "
            "18 is visually lossless for most videos; higher numbers give smaller files."
        )


def _fps_fraction(fps: float, final_path: Path) -> fractions.Fraction:
    try:
        value = fractions.Fraction(fps).limit_denominator(100_000)
    except (TypeError, ValueError) as error:
        raise ExportError(f"Invalid fps {fps!r} for {final_path}: {error}. Use a positive number such as 16 or 24.") from None
    if value <= 0:
        raise ExportError(f"Invalid fps {fps!r} for {final_path}: it must be positive. Use a number such as 16 or 24.")
    return value


def _iter_frames(frames: numpy.ndarray | Iterable[numpy.ndarray]) -> Iterator[numpy.ndarray]:
    if isinstance(frames, numpy.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (frames, height, width, 3); got {frames.shape}")
        return iter(frames)
    return iter(frames)


def _check_frame(frame: Any, width: int, height: int, index: int) -> numpy.ndarray:
    if not isinstance(frame, numpy.ndarray) or frame.dtype != numpy.uint8:
        raise TypeError(f"frame {index} must be a uint8 numpy array; got {type(frame).__name__} {getattr(frame, 'dtype', '')}")
    if frame.shape != (height, width, 3):
        raise ValueError(f"frame {index} has shape {frame.shape}; every frame must be ({height}, {width}, 3) like the first")
    return numpy.ascontiguousarray(frame)


def _check_even_size(width: int, height: int, final_path: Path) -> None:
    if width % 2 == 0 and height % 2 == 0:
        return
    even_widths = _nearest_even(width)
    even_heights = _nearest_even(height)
    raise ExportError(
        f"Cannot write {final_path}: frame size {width}x{height} (width x height) has an odd side, and "
        f"H.264/H.265 in yuv420p need even sizes. Use width {' or '.join(map(str, even_widths))} "
        f"and height {' or '.join(map(str, even_heights))}."
    )


def _nearest_even(value: int) -> list[int]:
    if value % 2 == 0:
        return [value]
    return [v for v in (value - 1, value + 1) if v > 0]


def _prepare_folder(final_path: Path) -> Path:
    if final_path.is_dir():
        raise ExportError(f"Cannot write {final_path}: it is a folder. Give a file name such as {final_path / 'video.mp4'}.")
    folder = final_path.parent
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportError(f"Cannot create the output folder {folder}: {error.strerror or error}. Choose another output path.") from None
        logger.info("Created output folder %s", folder)
    return folder


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Check before a render that ``path`` (``.mp4`` added when missing) can be written, and return it.

    Creates a missing folder, as ``write_mp4`` would, and writes and removes a
    temporary file there, so that an unwritable path fails in seconds rather than
    after the render. Raises ExportError that names the path and the reason.
    """
    final_path = mp4_path_for(path)
    folder = _prepare_folder(final_path)
    _create_temp_file(folder, final_path).unlink()
    return final_path


def _create_temp_file(folder: Path, final_path: Path) -> Path:
    try:
        handle, name = tempfile.mkstemp(prefix=f".{final_path.stem}.", suffix=".partial.mp4", dir=folder)
    except OSError as error:
        raise _os_error_to_export_error(error, final_path) from None
    os.close(handle)
    _apply_default_mode(Path(name))
    return Path(name)


def _apply_default_mode(path: Path) -> None:
    """Give a file from ``mkstemp`` (mode 0600) the mode a plain ``open`` would, so others can read exports."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~_UMASK)


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any worker thread starts.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _settings_record(
    metadata: Mapping[str, Any] | None,
    final_path: Path,
    width: int,
    height: int,
    fps: fractions.Fraction,
    codec: str,
    crf: int,
) -> dict[str, Any]:
    record: dict[str, Any] = {key: _jsonable(value) for key, value in (metadata or {}).items()}
    record["export"] = {
        "file": final_path.name,
        "width": width,
        "height": height,
        "fps": float(fps) if fps.denominator != 1 else int(fps),
        "codec": codec,
        "crf": crf,
        "pix_fmt": "yuv420p",
        "color": "bt709 limited range",
        "engine_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return record


def _jsonable(value: Any) -> Any:
    """Return ``value`` with paths, enums, numpy scalars and tuples turned into JSON types."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, numpy.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, (str, int)):
        return enum_value
    return str(value)


def _metadata_arguments(settings: Mapping[str, Any]) -> list[str]:
    comment = json.dumps(settings, ensure_ascii=False, separators=(",", ":"))
    arguments = ["-metadata", f"comment={comment}"]
    prompt = settings.get("prompt")
    if isinstance(prompt, str) and prompt:
        arguments += ["-metadata", f"title={prompt}"]
    arguments += ["-metadata", f"description={_describe(settings)}"]
    return arguments


def _describe(settings: Mapping[str, Any]) -> str:
    export = settings["export"]
    parts = [f"FreeSwim Studio {__version__}", f"{export['width']}x{export['height']} at {export['fps']} fps"]
    for key in ("model", "seed", "method"):
        if settings.get(key) is not None:
            parts.append(f"{key} {settings[key]}")
    return ", ".join(parts)


def _encode(
    first_frame: numpy.ndarray,
    frame_iterator: Iterator[numpy.ndarray],
    temp_path: Path,
    final_path: Path,
    encoder: str,
    fps: fractions.Fraction,
    crf: int,
    settings: Mapping[str, Any],
) -> int:
    """Pipe the frames into ffmpeg and return how many were written."""
    height, width = first_frame.shape[:2]
    command = _encode_command(width, height, encoder, fps, crf, settings, temp_path)
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr_file, **_ffmpeg_process_options()
        )
        num_frames = 0
        try:
            assert process.stdin is not None
            for frame in _chain(first_frame, frame_iterator):
                frame = _check_frame(frame, width, height, num_frames)
                process.stdin.write(frame.data.cast("B"))
                num_frames += 1
            process.stdin.close()
            return_code = process.wait()
        except BrokenPipeError:
            return_code = process.wait()
        except BaseException:
            # The frame source raised, or Ctrl+C: stop ffmpeg at once. write_mp4 then removes the temp file.
            process.kill()
            process.wait()
            raise
        finally:
            _close_quietly(process.stdin)
        if return_code != 0:
            raise _ffmpeg_error(stderr_file, return_code, final_path)
    return num_frames


def _encode_command(
    width: int,
    height: int,
    encoder: str,
    fps: fractions.Fraction,
    crf: int,
    settings: Mapping[str, Any],
    temp_path: Path,
) -> list[str]:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0"]
    command += ["-an", "-vf", _BT709_FILTER, "-c:v", encoder, "-crf", str(crf), "-preset", "medium"]
    if encoder == "libx265":
        command += ["-tag:v", "hvc1", "-x265-params", "log-level=error"]
    command += _BT709_TAGS + ["-r", str(fps), "-movflags", "+faststart"]
    command += _metadata_arguments(settings)
    command += ["-f", "mp4", str(temp_path)]
    return command


def _ffmpeg_process_options() -> dict[str, Any]:
    """Return Popen options that keep a terminal's Ctrl+C away from ffmpeg.

    Ctrl+C reaches every process of the terminal's foreground group. The command line turns the
    first one into a cancel request for the render, and ffmpeg must not die from it mid-export.
    On Windows the flags also stop a console window from flashing up under the desktop app.
    """
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _chain(first: numpy.ndarray, rest: Iterator[numpy.ndarray]) -> Iterator[numpy.ndarray]:
    yield first
    yield from rest


def _ffmpeg_error(stderr_file: IO[bytes], return_code: int, final_path: Path) -> ExportError:
    stderr_file.seek(0)
    message = stderr_file.read().decode("utf-8", errors="replace").strip()
    logger.error("ffmpeg exited with status %d while writing %s: %s", return_code, final_path, message)
    if "No space left on device" in message:
        return ExportError(_disk_full_message(final_path))
    last_line = message.splitlines()[-1] if message else f"exit status {return_code}"
    return ExportError(f"Could not write {final_path}: ffmpeg failed ({last_line}). The log file has ffmpeg's full output.")


def _verify_encoded(temp_path: Path, final_path: Path, width: int, height: int, num_frames: int) -> None:
    """Raise ExportError unless the encoded file contains every frame at the requested size."""
    try:
        info = probe_mp4(temp_path)
    except InputVideoError as error:
        raise ExportError(f"Could not write {final_path}: the encoded file cannot be read back ({error}).") from None
    if (info.width, info.height, info.num_frames) != (width, height, num_frames):
        raise ExportError(
            f"Could not write {final_path}: ffmpeg produced {info.width}x{info.height} with {info.num_frames} frames "
            f"instead of {width}x{height} with {num_frames} frames."
        )


def _replace(source: Path, destination: Path) -> None:
    existed = destination.exists()
    try:
        os.replace(source, destination)
    except PermissionError as error:
        # On Windows, replacing a file that a video player has open fails with a permission error.
        raise ExportError(
            f"Could not replace {destination}: {error.strerror}. Close any program that has it open, "
            "check that the folder is writable, or choose another output name."
        ) from None
    except OSError as error:
        raise _os_error_to_export_error(error, destination) from None
    if existed:
        logger.info("Replaced the existing file %s", destination)


def _write_json_atomically(path: Path, record: Mapping[str, Any], video_path: Path) -> None:
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.json", dir=path.parent)
    except OSError as error:
        raise _os_error_to_export_error(error, path) from None
    temp_path = Path(name)
    _apply_default_mode(temp_path)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except OSError as error:
        _remove_quietly(temp_path)
        raise ExportError(
            f"{video_path} was written, but its settings file {path} was not: {_os_error_text(error, path)}"
        ) from None


def _os_error_to_export_error(error: OSError, path: Path) -> ExportError:
    return ExportError(f"Could not write {path}: {_os_error_text(error, path)}")


def _os_error_text(error: OSError, path: Path) -> str:
    if error.errno == errno.ENOSPC:
        return _disk_full_message(path)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
        return f"the folder {path.parent} is not writable ({error.strerror}). Choose a folder you can write to."
    return f"{error.strerror or error}. Choose another output path."


def _disk_full_message(path: Path) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
        free_text = f"{free / 2**20:.0f} MiB free"
    except OSError:
        free_text = "free space unknown"
    return f"Could not write {path}: the disk is full ({free_text} in {path.parent}). Free some space or choose another folder."


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is None:
        return
    with contextlib.suppress(OSError):
        stream.close()


# ---------------------------------------------------------------------------------------------
# Probing


_STREAM_PATTERN = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: (?P<details>.*)$", re.MULTILINE)
_DURATION_PATTERN = re.compile(r"^\s*Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", re.MULTILINE)
_FRAME_COUNT_PATTERN = re.compile(r"frame=\s*(\d+)")
_SIZE_PATTERN = re.compile(r"^(\d+)x(\d+)\b")
_RATE_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)(k?) (fps|tbr)$")


def probe_mp4(path: str | os.PathLike[str]) -> VideoInfo:
    """Return size, exact frame count, fps, codec, pixel format, colour tags and container tags.

    Counts frames by remuxing the first video stream to a null output, which reads every packet
    but decodes none, so it is exact and fast even for 4K files.

    Raises:
        InputVideoError: the file is missing, is not a video, or ffmpeg cannot read it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputVideoError(f"Video not found: {path}. Check the path.")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    command += ["-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    # A second output sends the container tags to stdout: ffmpeg's own header dump cuts long values.
    command += ["-f", "ffmetadata", "pipe:1"]
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False, **_ffmpeg_process_options())
    output = result.stderr.decode("utf-8", errors="replace")
    stream = _STREAM_PATTERN.search(output)
    if result.returncode != 0 or stream is None:
        reason = output.strip().splitlines()[-1] if output.strip() else f"ffmpeg exit status {result.returncode}"
        raise InputVideoError(f"Cannot read {path} as a video: {reason}. Check that it is an MP4, MOV or similar video file.")
    frame_counts = _FRAME_COUNT_PATTERN.findall(output)
    fields = _split_top_level(stream.group("details"))
    return VideoInfo(
        metadata=_parse_ffmetadata(result.stdout.decode("utf-8", errors="replace")),
        num_frames=int(frame_counts[-1]) if frame_counts else 0,
        duration_seconds=_parse_duration(output),
        **_parse_stream_fields(fields),
    )


def _split_top_level(text: str) -> list[str]:
    """Split ffmpeg's stream description at commas that are outside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for character in text:
        if character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
        if character == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += character
    parts.append(current.strip())
    return parts


def _parse_stream_fields(fields: list[str]) -> dict[str, Any]:
    """Read codec, pixel format, colour tags, size and frame rate from a ``Video:`` stream line.

    The line reads like ``h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive),
    1928x1090 [SAR 1:1 DAR 964:545], 96 kb/s, 24 fps, 24 tbr, 12288 tbn``.
    """
    values: dict[str, Any] = {"codec": fields[0].split()[0], "pix_fmt": "", "width": 0, "height": 0, "fps": None}
    pix_field = fields[1] if len(fields) > 1 else ""
    values["pix_fmt"] = pix_field.split("(")[0].strip()
    if "(" in pix_field:
        values.update(_parse_color(pix_field[pix_field.index("(") + 1 : pix_field.rindex(")")]))
    rates: dict[str, float] = {}
    for field in fields[2:]:
        size = _SIZE_PATTERN.match(field)
        if size and not values["width"]:
            values["width"], values["height"] = int(size.group(1)), int(size.group(2))
        rate = _RATE_PATTERN.match(field)
        if rate:
            rates[rate.group(3)] = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    values["fps"] = rates.get("fps", rates.get("tbr"))
    return values


def _parse_color(text: str) -> dict[str, str | None]:
    """Parse ``tv, bt709, progressive`` or ``tv, bt709/unknown/unknown`` (space/primaries/transfer)."""
    color: dict[str, str | None] = {}
    for token in (part.strip() for part in text.split(",")):
        if token in ("tv", "pc"):
            color["color_range"] = token
        elif "/" in token:
            space, primaries, transfer = (token.split("/") + [None, None])[:3]
            color["color_space"], color["color_primaries"], color["color_transfer"] = space, primaries, transfer
        elif token and token not in ("progressive", "top first", "bottom first", "top coded first (swapped)"):
            color["color_space"] = color["color_primaries"] = color["color_transfer"] = token
    return {key: (None if value in ("unknown", "reserved") else value) for key, value in color.items()}


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """Parse the global section of ffmpeg's FFMETADATA1 output into a dict.

    In that format a backslash escapes ``=``, ``;``, ``#``, a backslash or a newline, so a value may
    span lines. The global section ends at the first ``[STREAM]`` or ``[CHAPTER]`` header.
    """
    metadata: dict[str, str] = {}
    key: str | None = None
    current = ""
    escaped = False
    for character in text + "\n":
        if escaped:
            current += character
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "=" and key is None:
            key, current = current, ""
        elif character == "\n":
            if key is None and current.startswith("["):
                break
            if key is not None and not key.startswith((";", "#")):
                metadata[key] = current
            key, current = None, ""
        else:
            current += character
    return metadata


def _parse_duration(output: str) -> float | None:
    match = _DURATION_PATTERN.search(output)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# ---------------------------------------------------------------------------------------------
# Reading


def read_video(path: str | os.PathLike[str], max_frames: int | None = None) -> tuple[numpy.ndarray, float | None]:
    """Read a video file or a folder of PNG/JPEG frames as uint8 RGB frames.

    Args:
        path: a video file ffmpeg can decode (MP4, MOV, MKV, WebM, ...) or a folder whose
            ``.png``/``.jpg``/``.jpeg`` files are the frames, in natural order (``frame2`` before
            ``frame10``).
        max_frames: read at most this many frames from the start; None reads all.

    Returns:
        ``(frames, fps)``: frames of shape (frames, height, width, 3); fps is None for a folder
        or when the file does not state a frame rate.

    Raises:
        InputVideoError: missing path, empty folder, frames of different sizes, or a file that
            cannot be decoded.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise InputVideoError(f"Invalid max_frames {max_frames}: it must be at least 1, or None for every frame.")
    if not path.exists():
        raise InputVideoError(f"Input video not found: {path}. Check the path, or give a folder of PNG/JPEG frames.")
    if path.is_dir():
        return _read_frame_folder(path, max_frames), None
    return _read_video_file(path, max_frames)


def _read_video_file(path: Path, max_frames: int | None) -> tuple[numpy.ndarray, float | None]:
    output_params = ["-frames:v", str(max_frames)] if max_frames is not None else None
    reader = imageio_ffmpeg.read_frames(str(path), output_params=output_params)
    try:
        meta = next(reader)
        width, height = meta["size"]
        frames = [numpy.frombuffer(data, dtype=numpy.uint8).reshape(height, width, 3) for data in reader]
    except (OSError, RuntimeError, StopIteration) as error:
        details = str(error).strip().splitlines()
        reason = details[-1] if details else type(error).__name__
        logger.error("Cannot decode %s: %s", path, error)
        raise InputVideoError(f"Cannot read {path} as a video: {reason}. Check that it is a video file ffmpeg can decode.") from None
    finally:
        reader.close()
    if not frames:
        raise InputVideoError(f"Cannot read {path}: it contains no video frames. Use a file with a video stream.")
    fps = float(meta["fps"]) if meta.get("fps") else None
    logger.info("Read %s: %d frames of %dx%d at %s fps", path, len(frames), width, height, fps)
    return numpy.stack(frames), fps


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frame_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Return the PNG/JPEG files of a folder in natural order (``frame2`` before ``frame10``)."""
    files = [item for item in Path(folder).iterdir() if item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=_natural_key)


def _read_frame_folder(folder: Path, max_frames: int | None) -> numpy.ndarray:
    from PIL import Image  # Pillow is a dependency of diffusers

    files = list_frame_files(folder)
    if not files:
        raise InputVideoError(f"No frames found in {folder}: it has no .png, .jpg or .jpeg files. Put the frames there or give a video file.")
    files = files[:max_frames] if max_frames is not None else files
    frames: list[numpy.ndarray] = []
    for file in files:
        try:
            with Image.open(file) as image:
                if image.mode in ("RGBA", "LA", "PA"):
                    logger.warning("Dropping the alpha channel of %s", file)
                frame = numpy.asarray(image.convert("RGB"), dtype=numpy.uint8)
        except OSError as error:
            raise InputVideoError(f"Cannot read frame {file}: {error}. Replace or remove that file.") from None
        if frames and frame.shape != frames[0].shape:
            first_height, first_width = frames[0].shape[:2]
            raise InputVideoError(
                f"Frames in {folder} differ in size: {files[0].name} is {first_width}x{first_height} but "
                f"{file.name} is {frame.shape[1]}x{frame.shape[0]}. Resize them to one size."
            )
        frames.append(frame)
    logger.info("Read %d frames of %dx%d from %s", len(frames), frames[0].shape[1], frames[0].shape[0], folder)
    return numpy.stack(frames)
