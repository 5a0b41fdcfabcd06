"""The `freeswim` command line: help, exit statuses, extensions, progress output, doctor and models."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy
import pytest

from freeswim_engine import cli, video_io
from freeswim_engine.progress import TerminalProgress

REPOSITORY = Path(__file__).resolve().parents[2]


def run_cli(tmp_path: Path, *arguments: str) -> int:
    return cli.main([*arguments, "--log-file", str(tmp_path / "freeswim.log")])


def run_module(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m freeswim_engine` the way a user's shell would."""
    return subprocess.run(
        [sys.executable, "-m", "freeswim_engine", *arguments],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_top_level_help_lists_commands() -> None:
    completed = run_module("--help")

    assert completed.returncode == 0
    for command in ("render", "upscale", "models", "doctor"):
        assert command in completed.stdout
    assert "2 invalid input" in completed.stdout


def test_help_skips_torch() -> None:
    code = """
import sys
from freeswim_engine import cli
try:
    cli.main(["render", "--help"])
except SystemExit as exit:
    print(exit.code, "torch" in sys.modules, "diffusers" in sys.modules, file=sys.stderr)
"""
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=True)

    assert "--width" in completed.stdout
    assert completed.stderr.split() == ["0", "False", "False"]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--width", "target width in pixels, a multiple of 16 (32 for Wan2.2 TI2V-5B); default 1920"),
        ("--height", "default 1088"),
        ("--frames", "4k+1"),
        ("--fps", "frames per second"),
        ("--strength", "default 0.7"),
        ("--shift", "default 9.0"),
        ("--cache-interval", "default 2"),
        ("--crf", "0 to 51"),
        ("--base-size", "HEIGHTxWIDTH in pixels"),
        ("--method", "default freeswim-cached"),
        ("--codec", "default h264"),
        ("--work-dir", "folder for intermediates"),
    ],
)
def test_render_help_states_units_and_defaults(capsys: pytest.CaptureFixture[str], option: str, expected: str) -> None:
    with pytest.raises(SystemExit):
        cli.main(["render", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    assert option in help_text
    assert expected in help_text


def test_upscale_help_omits_stage1_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["upscale", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    assert "--input VIDEO_OR_FOLDER" in help_text
    assert "default 1920" in help_text
    assert "--save-latents" in help_text
    assert "--base-size" not in help_text


@pytest.mark.parametrize("command", ["models", "doctor"])
def test_subcommand_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])

    assert exited.value.code == 0
    assert "--log-file" in capsys.readouterr().out


def test_cli_defaults_match_request() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["render", "--prompt", "x", "--model", "demo", "--output", "out.mp4"])
    request = cli.request_from_args(args)
    defaults = cli.RenderRequest(prompt="x", output_path=Path("out.mp4"))

    assert request == defaults


def test_request_from_args_maps_every_option() -> None:
    parser = cli.build_parser()
    arguments = ["render", "--prompt", "a fox", "--negative-prompt", "blur", "--model", "wan2.1-t2v-1.3b"]
    arguments += ["--width", "2560", "--height", "1440", "--frames", "33", "--fps", "24", "--seed", "7"]
    arguments += ["--steps", "20", "--guidance", "4.5", "--strength", "0.6", "--shift", "8", "--method", "window"]
    arguments += ["--cache-interval", "5", "--base-size", "480x832", "--device", "cpu", "--dtype", "float32"]
    arguments += ["--codec", "h265", "--crf", "20", "--save-latents", "l.pt", "--output", "o.mp4"]

    request = cli.request_from_args(parser.parse_args(arguments))

    assert (request.prompt, request.negative_prompt, request.model) == ("a fox", "blur", "wan2.1-t2v-1.3b")
    assert (request.width, request.height, request.num_frames, request.fps, request.seed) == (2560, 1440, 33, 24, 7)
    assert (request.num_inference_steps, request.guidance_scale, request.strength, request.flow_shift) == (20, 4.5, 0.6, 8.0)
    assert (request.method, request.cache_interval, request.base_height, request.base_width) == ("window", 5, 480, 832)
    assert (request.device, request.dtype, request.codec, request.crf) == ("cpu", "float32", "h265", 20)
    assert (request.save_latents, request.output_path, request.input_video) == (Path("l.pt"), Path("o.mp4"), None)


@pytest.mark.parametrize(
    ("arguments", "field", "option"),
    [
        (["--width", "1000"], "width", "--width"),
        (["--frames", "80"], "num_frames", "--frames"),
        (["--strength", "1.5"], "strength", "--strength"),
        (["--base-size", "100x832"], "base_height", "--base-size"),
        (["--device", "gpu"], "device", "--device"),
        (["--crf", "70"], "crf", "--crf"),
    ],
)
def test_invalid_value_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], field: str, option: str
) -> None:
    status = run_cli(tmp_path, "render", "--prompt", "x", "--model", "demo", "--output", str(tmp_path / "o.mp4"), *arguments)
    error = capsys.readouterr().err

    assert status == 2
    assert f"Invalid {field}" in error
    assert f"(option {option})" in error
    assert "Traceback" not in error
    assert error.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists()


def test_malformed_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["render", "--prompt", "x", "--model", "demo", "--output", "o.mp4", "--base-size", "big"])

    assert exited.value.code == 2
    assert "invalid size 'big'" in capsys.readouterr().err


def test_upscale_missing_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "upscale", "--input", str(tmp_path / "none.mp4"), "--model", "demo", "--output", str(tmp_path / "o.mp4"))
    error = capsys.readouterr().err

    assert status == 2
    assert "none.mp4" in error
    assert "(option --input)" in error


def test_render_extension_can_stop_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[cli.RenderRequest] = []

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")

    def before_render(args: argparse.Namespace, request: cli.RenderRequest) -> int | None:
        seen.append(request)
        return 0 if args.dry_run else None

    monkeypatch.setattr(cli, "_render_extensions", [cli.RenderExtension(add_arguments, before_render)])

    status = run_cli(tmp_path, "upscale", "--input", str(tmp_path), "--model", "demo", "--output", str(tmp_path / "o"), "--dry-run")

    assert status == 0
    assert [request.input_video for request in seen] == [tmp_path]
    assert not (tmp_path / "o.mp4").exists()


def test_registered_subcommand_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_subcommands", dict(cli._subcommands))
    received: list[str] = []

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", required=True)

    def run(args: argparse.Namespace) -> int:
        received.append(args.model)
        return 3

    cli.register_subcommand(cli.Subcommand("plan", "print a memory plan", add_arguments, run))

    assert run_cli(tmp_path, "plan", "--model", "demo") == 3
    assert received == ["demo"]


def test_interrupt_sets_cancel_then_raises() -> None:
    with cli._cancel_on_interrupt() as cancel_event:
        os.kill(os.getpid(), signal.SIGINT)
        assert cancel_event.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_progress_without_terminal_prints_stage_lines() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, is_tty=False)

    progress.on_stage("loading")
    for step in range(1, 4):
        progress.on_progress("stage1", step, 3)
    progress.on_stage("exporting")
    progress.close()

    lines = stream.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["Loading model", "Stage 1: base video", "Exporting"]


def test_progress_on_terminal_draws_bar() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, is_tty=True)

    progress.on_stage("stage2")
    for step in range(1, 6):
        progress.on_progress("stage2", step, 5)
    progress.close()

    output = stream.getvalue()
    assert "Stage 2: refining" in output
    assert "5/5" in output


def test_doctor_quick_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "doctor", "--quick")
    output = capsys.readouterr().out

    assert status == 0
    for name in ("python", "torch", "diffusers", "transformers", "device", "memory", "ffmpeg", "libx264", "libx265"):
        assert f" {name}: " in output
    assert "compiled attention" not in output


@pytest.mark.slow
def test_doctor_checks_compiled_attention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "doctor")
    output = capsys.readouterr().out

    assert status == 0
    assert "compiled attention: " in output


def test_models_lists_presets_and_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "models")
    output = capsys.readouterr().out

    assert status == 0
    for name in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b", "demo"):
        assert name in output
    assert "480x832" in output


def test_models_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "models", "--json")
    records = {record["name"]: record for record in json.loads(capsys.readouterr().out)}

    assert status == 0
    assert records["wan2.2-ti2v-5b"]["pixels_per_token"] == 32
    assert records["wan2.2-ti2v-5b"]["fps"] == 24
    assert records["demo"]["source"] == "demo"


def test_unknown_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "render", "--prompt", "x", "--model", "no-such-model", "--output", str(tmp_path / "o.mp4"))
    error = capsys.readouterr().err

    assert status == 2
    assert "no-such-model" in error
    assert "(option --model)" in error


# -- end to end with the demo model ---------------------------------------------------------------


@pytest.fixture
def demo_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the engine's cache, where the demo checkpoint is built once, at a folder shared by this module's tests."""
    cache = tmp_path_factory.getbasetemp() / "freeswim-cli-cache"
    monkeypatch.setenv("FREESWIM_CACHE_DIR", str(cache))
    return cache


@pytest.mark.slow
def test_render_demo_end_to_end(tmp_path: Path, demo_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out" / "fox"
    arguments = ["render", "--prompt", "a red fox in snow", "--model", "demo", "--width", "256", "--height", "144"]
    arguments += ["--frames", "5", "--fps", "24", "--seed", "11", "--method", "direct", "--codec", "h265", "--crf", "23"]
    arguments += ["--work-dir", str(tmp_path / "work"), "--save-latents", str(tmp_path / "latents.pt"), "--output", str(output)]

    status = run_cli(tmp_path, *arguments)
    captured = capsys.readouterr()

    assert status == 0, captured.err
    path = tmp_path / "out" / "fox.mp4"
    info = video_io.probe_mp4(path)
    assert (info.width, info.height, info.num_frames, info.fps) == (256, 144, 5, 24)
    assert info.codec == "hevc"
    settings = info.embedded_settings()
    assert settings is not None
    assert settings["prompt"] == "a red fox in snow"
    assert settings["seed"] == 11
    assert settings["model"] == "demo"
    assert settings["request"]["method"] == "direct"
    assert settings["export"]["crf"] == 23
    assert json.loads((tmp_path / "out" / "fox.json").read_text(encoding="utf-8"))["seed"] == 11
    assert (tmp_path / "work" / "base.mp4").is_file()
    assert (tmp_path / "latents.pt").is_file()
    assert f"Wrote {path}" in captured.out
    assert "seed 11" in captured.out
    assert "[0:" in captured.err  # one line per stage, since stderr is not a terminal here

    # The saved latents decode again to the same video, without denoising.
    redecoded = tmp_path / "again.mp4"
    decode_arguments = ["decode", "--latents", str(tmp_path / "latents.pt"), "--codec", "h265", "--crf", "23"]
    status = run_cli(tmp_path, *decode_arguments, "--output", str(redecoded))
    decode_output = capsys.readouterr()

    assert status == 0, decode_output.err
    assert str(redecoded) in decode_output.out
    again = video_io.probe_mp4(redecoded)
    assert (again.width, again.height, again.num_frames, again.fps) == (256, 144, 5, 24)
    assert again.embedded_settings()["seed"] == 11
    first_frames, _ = video_io.read_video(path)
    second_frames, _ = video_io.read_video(redecoded)
    # Same decoded pixels through the same encoder settings give the same frames.
    assert numpy.array_equal(first_frames, second_frames)


def test_decode_missing_latents_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "decode", "--latents", str(tmp_path / "missing.pt"))
    error = capsys.readouterr().err

    assert status == 2
    assert "missing.pt not found" in error
    assert "--save-latents" in error


def test_render_cancel_exits_130(
    tmp_path: Path, demo_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from freeswim_engine import progress

    show_progress = progress.TerminalProgress.on_progress

    def progress_then_interrupt(self: progress.TerminalProgress, stage: object, step: int, total: int) -> None:
        show_progress(self, stage, step, total)
        signal.raise_signal(signal.SIGINT)  # a first Ctrl+C requests a stop after this step

    monkeypatch.setattr(progress.TerminalProgress, "on_progress", progress_then_interrupt)
    output = tmp_path / "cancelled.mp4"
    arguments = ["render", "--prompt", "x", "--model", "demo", "--width", "224", "--height", "128", "--frames", "1"]
    arguments += ["--steps", "2", "--method", "direct", "--output", str(output)]

    status = run_cli(tmp_path, *arguments)
    error = capsys.readouterr().err

    assert status == 130
    assert "cancelling after the current step" in error
    assert "cancelled; the output video was not written" in error
    assert "Traceback" not in error
    assert not output.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def make_testsrc_mp4(path: Path, size: str, rate: int, num_frames: int) -> Path:
    """Encode ffmpeg's testsrc pattern as H.264, like a user's own low-resolution clip."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi"]
    command += ["-i", f"testsrc=size={size}:rate={rate}", "-frames:v", str(num_frames)]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True)
    return path


@pytest.mark.slow
def test_upscale_testsrc_doubles_size(tmp_path: Path, demo_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = make_testsrc_mp4(tmp_path / "low.mp4", "224x128", rate=12, num_frames=7)
    output = tmp_path / "up.mp4"
    arguments = ["upscale", "--input", str(source), "--prompt", "a test pattern", "--model", "demo"]
    arguments += ["--width", "448", "--height", "256", "--seed", "4", "--method", "direct", "--output", str(output)]

    status = run_cli(tmp_path, *arguments)
    captured = capsys.readouterr()

    assert status == 0, captured.err
    info = video_io.probe_mp4(output)
    assert (info.width, info.height) == (448, 256)
    assert info.num_frames == 5  # 7 input frames, trimmed to 4k+1
    assert info.fps == 12  # the input's rate
    settings = info.embedded_settings()
    assert settings is not None
    assert settings["mode"] == "upscale"
    assert settings["seed"] == 4
    assert "dropped the last 2 frames" in captured.err


@pytest.mark.slow
def test_upscale_testsrc_to_1080p(tmp_path: Path, demo_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One output frame keeps the 1080p VAE passes affordable on a CPU; the default method runs.
    source = make_testsrc_mp4(tmp_path / "low.mp4", "224x128", rate=12, num_frames=2)
    output = tmp_path / "up.mp4"
    arguments = ["upscale", "--input", str(source), "--prompt", "a test pattern", "--model", "demo"]
    arguments += ["--width", "1920", "--height", "1088", "--seed", "4", "--output", str(output)]

    status = run_cli(tmp_path, *arguments)
    captured = capsys.readouterr()

    assert status == 0, captured.err
    info = video_io.probe_mp4(output)
    assert (info.width, info.height) == (1920, 1088)
    assert info.num_frames == 1  # 2 input frames, trimmed to 4k+1
    assert info.fps == 12
    assert info.pix_fmt == "yuv420p"
    settings = info.embedded_settings()
    assert settings is not None
    assert settings["request"]["method"] == "freeswim-cached"
    assert "dropped the last 1 frame " in captured.err


def test_unreadable_input_prints_one_line(tmp_path: Path, demo_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "broken.mp4"
    source.write_bytes(b"not a video" * 100)

    status = run_cli(tmp_path, "upscale", "--input", str(source), "--model", "demo", "--width", "224", "--height", "128",
                     "--prompt", "x", "--output", str(tmp_path / "o.mp4"))
    error = capsys.readouterr().err

    assert status == 2
    assert error.count("freeswim: error:") == 1
    assert "broken.mp4" in error
    assert "Traceback" not in error
    assert "The upscale failed" in (tmp_path / "freeswim.log").read_text(encoding="utf-8")


def test_decode_rejects_non_latents_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)

    status = run_cli(tmp_path, "decode", "--latents", str(video), "--output", str(tmp_path / "z.mp4"))
    error = capsys.readouterr().err

    assert status == 2
    assert "is not a FreeSwim latents file" in error
    assert "Traceback" not in error
    assert not (tmp_path / "z.mp4").exists()
