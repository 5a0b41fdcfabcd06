"""The `freeswim` command line: render, upscale, models and doctor.

torch and diffusers are imported only inside the commands that need them, so `freeswim --help`
and argument errors return at once.

Exit status: 0 success, 1 failure, 2 invalid input (a bad option value, a missing or unreadable
input video), 130 cancelled with Ctrl+C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freeswim_engine import __version__
from freeswim_engine.errors import FreeSwimError, InputVideoError, InvalidRequestError, RenderCancelled
from freeswim_engine.request import CODECS, DTYPES, METHODS, RenderRequest

if TYPE_CHECKING:
    from freeswim_engine.api import RenderResult
    from freeswim_engine.models import ModelInfo

logger = logging.getLogger(__name__)

PROGRAM = "freeswim"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_INPUT = 2
EXIT_CANCELLED = 130  # 128 + SIGINT, what shells report for a Ctrl+C

# Request field -> the option that sets it, so an engine error names what the user typed.
OPTION_FOR_FIELD = {
    "prompt": "--prompt",
    "negative_prompt": "--negative-prompt",
    "model": "--model",
    "width": "--width",
    "height": "--height",
    "num_frames": "--frames",
    "fps": "--fps",
    "seed": "--seed",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance",
    "strength": "--strength",
    "flow_shift": "--shift",
    "method": "--method",
    "cache_interval": "--cache-interval",
    "base_height": "--base-size",
    "base_width": "--base-size",
    "device": "--device",
    "dtype": "--dtype",
    "output_path": "--output",
    "input_video": "--input",
    "codec": "--codec",
    "crf": "--crf",
    "save_latents": "--save-latents",
}


# ---------------------------------------------------------------------------------------------
# Subcommand registry


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One `freeswim <name>` command: how it adds its options and the function that runs it.

    ``run`` returns the exit status. It may raise FreeSwimError, which main() turns into one line
    on stderr and exit status 2 or 1.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


@dataclasses.dataclass(frozen=True)
class RenderExtension:
    """Options added to `render` and `upscale`, with a hook that runs after validation.

    ``before_render(args, request)`` receives the validated request. Returning an exit status
    ends the command without rendering (for example a dry run that prints a plan); returning
    None lets the render go ahead.
    """

    add_arguments: Callable[[argparse.ArgumentParser], None]
    before_render: Callable[[argparse.Namespace, RenderRequest], int | None]


_subcommands: dict[str, Subcommand] = {}
_render_extensions: list[RenderExtension] = []


def register_subcommand(subcommand: Subcommand) -> None:
    """Add a subcommand; registering a name again replaces the earlier one."""
    _subcommands[subcommand.name] = subcommand


def register_render_extension(extension: RenderExtension) -> None:
    """Add options and a pre-render hook to `render` and `upscale`."""
    if extension not in _render_extensions:
        _render_extensions.append(extension)


def _register_builtin_commands() -> None:
    register_subcommand(
        Subcommand(
            "render",
            "make a video from a text prompt (stage 1 at the model's size, stage 2 at the target size)",
            _add_render_arguments,
            _run_render,
            description="Render a video from text in two stages: a base video at the model's native size, "
            "then FreeSwim refinement at the target size.",
        )
    )
    register_subcommand(
        Subcommand(
            "upscale",
            "refine an existing video or frame folder at a higher resolution (stage 2 only)",
            _add_upscale_arguments,
            _run_upscale,
            description="Upscale an existing video: resize it to the target size and refine it with FreeSwim "
            "stage 2. A prompt that describes the video gives better detail.",
        )
    )
    register_subcommand(Subcommand("models", "list model presets and what is installed", _add_models_arguments, _run_models))
    register_subcommand(
        Subcommand("doctor", "check the installation: packages, GPU, memory, ffmpeg, compiled attention", _add_doctor_arguments, _run_doctor)
    )
    register_subcommand(
        Subcommand(
            "decode",
            "decode latents saved with --save-latents to an MP4 again",
            _add_decode_arguments,
            _run_decode,
            description="Decode final latents saved by 'render --save-latents' or 'upscale --save-latents' "
            "with the model and frame rate recorded in the file, without denoising again.",
        )
    )
    # `plan` and `--dry-run` on render and upscale; cli_plan imports no torch at module level.
    from freeswim_engine import cli_plan

    cli_plan.register()


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    """Return the `freeswim` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Render 1080p to 4K video with FreeSwim on Wan video diffusion transformers.",
        epilog="Exit status: 0 success, 1 failure, 2 invalid input, 130 cancelled. "
        "Run 'freeswim COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for subcommand in _subcommands.values():
        subparser = commands.add_parser(
            subcommand.name,
            help=subcommand.help,
            description=subcommand.description or subcommand.help,
        )
        subcommand.add_arguments(subparser)
        _add_common_arguments(subparser)
        subparser.set_defaults(subcommand=subcommand)
    return parser


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--verbose", "-v", action="store_true", help="print tracebacks and info messages to stderr")
    group.add_argument(
        "--log-file",
        type=Path,
        metavar="PATH",
        help="log file; default freeswim.log in the user log folder (see 'freeswim doctor')",
    )


def _default(field: str) -> Any:
    return next(f.default for f in dataclasses.fields(RenderRequest) if f.name == field)


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, metavar="TEXT", help="what the video shows (required)")
    _add_shared_render_arguments(parser)
    stage1 = parser.add_argument_group("stage 1 (base video)")
    stage1.add_argument(
        "--base-size",
        type=_parse_size,
        metavar="HxW",
        help="stage-1 size as HEIGHTxWIDTH in pixels, for example 480x832; default: the model's "
        "native size (480x832 for Wan2.1 1.3B, 720x1280 for 14B, 704x1280 for Wan2.2 TI2V-5B)",
    )


def _add_upscale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        metavar="VIDEO_OR_FOLDER",
        help="video file (MP4, MOV, ...) or folder of PNG/JPEG frames in name order (required)",
    )
    parser.add_argument(
        "--prompt",
        default="",
        metavar="TEXT",
        help="what the video shows; optional, but a describing prompt gives better detail; default: empty",
    )
    _add_shared_render_arguments(parser)


def _add_shared_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        help="what to steer away from; default: Wan's own negative prompt (blur, artefacts, static frames, ...)",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="preset name (see 'freeswim models'), local diffusers folder, or Hugging Face repo id; "
        "'demo' is a tiny random model that checks the install (required)",
    )
    parser.add_argument("--output", "-o", required=True, type=Path, metavar="PATH", help="output MP4 (.mp4 is added when missing; required)")
    _add_size_arguments(parser)
    _add_sampling_arguments(parser)
    _add_attention_arguments(parser)
    _add_runtime_arguments(parser)
    _add_export_arguments(parser)
    for extension in _render_extensions:
        extension.add_arguments(parser)


def _add_size_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("size and timing")
    group.add_argument(
        "--width",
        type=int,
        default=_default("width"),
        metavar="W",
        help=f"target width in pixels, a multiple of 16 (32 for Wan2.2 TI2V-5B); default {_default('width')}",
    )
    group.add_argument(
        "--height",
        type=int,
        default=_default("height"),
        metavar="H",
        help=f"target height in pixels, a multiple of 16 (32 for Wan2.2 TI2V-5B); default {_default('height')}",
    )
    group.add_argument(
        "--frames",
        type=int,
        metavar="N",
        help="number of frames, 4k+1 (1, 5, 9, ..., 81); default: 81 for the Wan presets; upscale reads at most "
        "this many frames of the input and by default all of them, dropping the last ones to reach 4k+1",
    )
    group.add_argument(
        "--fps",
        type=int,
        metavar="FPS",
        help="frames per second of the output; default: the model's rate (16 for Wan2.1, 24 for Wan2.2 TI2V-5B), "
        "or for upscale the input's rate rounded to a whole number",
    )


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--seed", type=int, metavar="N", help="random seed, 0 to 4294967295; default: random, printed when done")
    group.add_argument("--steps", type=int, metavar="N", help="scheduled denoising steps per stage; default: the model's (50 for Wan)")
    group.add_argument(
        "--guidance",
        type=float,
        metavar="SCALE",
        help="classifier-free guidance scale, 1 or less turns it off; default: the model's (5.0 for Wan)",
    )
    group.add_argument(
        "--strength",
        type=float,
        default=_default("strength"),
        metavar="S",
        help=f"stage-2 denoise strength in (0, 1]: the last round(steps x S) steps run; default {_default('strength')}",
    )
    group.add_argument("--shift", type=float, metavar="SHIFT", help="stage-2 scheduler flow shift, greater than 0; default 9.0")


def _add_attention_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("attention")
    group.add_argument(
        "--method",
        choices=METHODS,
        default=_default("method"),
        help="stage-2 attention: freeswim-cached (fast, reuses cross-attention), freeswim (dual path every step), "
        f"window (window only), direct (full attention, the model's own); default {_default('method')}",
    )
    group.add_argument(
        "--cache-interval",
        type=int,
        default=_default("cache_interval"),
        metavar="K",
        help="freeswim-cached: steps between refreshes of the cross-attention cache, 1 or more; "
        f"higher is faster; default {_default('cache_interval')}",
    )


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("device")
    group.add_argument(
        "--device",
        default=_default("device"),
        metavar="DEVICE",
        help=f"auto, cpu, cuda or cuda:N; auto picks the first CUDA GPU, else the CPU; default {_default('device')}",
    )
    group.add_argument(
        "--dtype",
        choices=DTYPES,
        default=_default("dtype"),
        help=f"transformer dtype; auto is bfloat16 on a GPU and float32 on the CPU; default {_default('dtype')}",
    )
    group.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="folder for intermediates (stage-1 latents and base.mp4); a rerun with the same stage-1 "
        "settings skips stage 1; default: none, so nothing is kept",
    )
    group.add_argument(
        "--save-latents",
        type=Path,
        metavar="PATH",
        help="also save the final latents, before decoding, to this torch file; default: not saved",
    )


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("export")
    group.add_argument(
        "--codec",
        choices=CODECS,
        default=_default("codec"),
        help=f"h264 (libx264, plays everywhere) or h265 (libx265, smaller files); default {_default('codec')}",
    )
    group.add_argument(
        "--crf",
        type=int,
        default=_default("crf"),
        metavar="N",
        help=f"quality as constant rate factor, 0 to 51, lower is better and larger; default {_default('crf')}",
    )


def _parse_size(text: str) -> tuple[int, int]:
    """Parse ``HEIGHTxWIDTH`` such as ``480x832`` into (height, width)."""
    parts = text.lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use HEIGHTxWIDTH in pixels, for example 480x832")
    return int(parts[0]), int(parts[1])


def _add_models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")


def _add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="skip the compiled-attention check, which compiles a kernel (a few seconds to a minute)",
    )


def _add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--latents", required=True, type=Path, metavar="PATH", help="latents file written by --save-latents (required)"
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="PATH",
        help="output MP4 (.mp4 is added when missing); default: the latents file's name with .mp4",
    )
    parser.add_argument(
        "--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda or cuda:N for the VAE; default auto"
    )
    _add_export_arguments(parser)


# ---------------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run `freeswim` with ``argv`` (default: sys.argv[1:]) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    log_path = _configure_logging(args)
    logger.info("freeswim %s: %s", __version__, " ".join(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.subcommand.run(args))
    except InvalidRequestError as error:
        option = OPTION_FOR_FIELD.get(error.field)
        suffix = f" (option {option})" if option else ""
        return _fail(args, error, f"{error}{suffix}", EXIT_INVALID_INPUT)
    except InputVideoError as error:
        return _fail(args, error, str(error), EXIT_INVALID_INPUT)
    except (RenderCancelled, KeyboardInterrupt) as error:
        return _fail(args, error, "cancelled; the output video was not written", EXIT_CANCELLED)
    except FreeSwimError as error:
        return _fail(args, error, str(error), EXIT_FAILURE)
    except Exception as error:
        message = f"unexpected {type(error).__name__}: {error}. Details are in {log_path}"
        return _fail(args, error, message, EXIT_FAILURE)


def _fail(args: argparse.Namespace, error: BaseException, message: str, status: int) -> int:
    # The file gets the traceback; stderr gets the one line printed below.
    logger.error("%s (exit status %d)", message, status, exc_info=error, extra={"file_only": True})
    if args.verbose:
        traceback.print_exception(error, file=sys.stderr)
    print(f"{PROGRAM}: error: {message}" if status != EXIT_CANCELLED else f"{PROGRAM}: {message}", file=sys.stderr)
    return status


def _configure_logging(args: argparse.Namespace) -> Path:
    """Send engine logs to the log file, and warnings (everything from info up with --verbose) to stderr.

    Without --verbose, error records stay in the file: an error that ends the command reaches the
    user as the exception's one line, and the engine's own log line about it would repeat it.
    """
    from freeswim_engine.logs import configure_logging

    log_path = configure_logging(logging.DEBUG if args.verbose else logging.INFO, log_file=args.log_file)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter())
    handler.set_name("freeswim-stderr")
    if args.verbose:
        handler.setLevel(logging.INFO)
        handler.addFilter(lambda record: not getattr(record, "file_only", False))
    else:
        handler.setLevel(logging.WARNING)
        handler.addFilter(lambda record: record.levelno == logging.WARNING)
    logger_root = logging.getLogger("freeswim_engine")
    for old in [h for h in logger_root.handlers if h.get_name() == "freeswim-stderr"]:
        logger_root.removeHandler(old)
    logger_root.addHandler(handler)
    return log_path


class _StderrFormatter(logging.Formatter):
    """Format records as ``freeswim: warning: message``, like the command's own error lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROGRAM}: {record.levelname.lower()}: {record.getMessage()}"


# ---------------------------------------------------------------------------------------------
# render and upscale


def request_from_args(args: argparse.Namespace) -> RenderRequest:
    """Build the render request that `render` or `upscale` options describe."""
    values: dict[str, Any] = {
        "prompt": args.prompt,
        "model": args.model,
        "width": args.width,
        "height": args.height,
        "num_frames": args.frames,
        "fps": args.fps,
        "seed": args.seed,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "strength": args.strength,
        "flow_shift": args.shift,
        "method": args.method,
        "cache_interval": args.cache_interval,
        "device": args.device,
        "dtype": args.dtype,
        "output_path": args.output,
        "codec": args.codec,
        "crf": args.crf,
        "save_latents": args.save_latents,
    }
    if args.negative_prompt is not None:
        values["negative_prompt"] = args.negative_prompt
    if getattr(args, "base_size", None) is not None:
        values["base_height"], values["base_width"] = args.base_size
    if getattr(args, "input", None) is not None:
        values["input_video"] = args.input
    return RenderRequest(**values)


def _run_render(args: argparse.Namespace) -> int:
    return _render_or_upscale(args, is_upscale=False)


def _run_upscale(args: argparse.Namespace) -> int:
    return _render_or_upscale(args, is_upscale=True)


def _render_or_upscale(args: argparse.Namespace, is_upscale: bool) -> int:
    from freeswim_engine.errors import ModelLoadError
    from freeswim_engine.models import resolve_model

    request = request_from_args(args)
    try:
        model_info = resolve_model(request.model)
    except ModelLoadError as error:
        # Raised before any weights load, so it is the --model value that is wrong.
        raise InvalidRequestError("model", request.model, "cannot be resolved", str(error)) from None
    # The engine validates again and logs these warnings itself, so they are shown here only when
    # an extension stops the command before the engine runs.
    warnings = request.validate(model_info)
    if is_upscale and not request.prompt.strip():
        logger.warning("No --prompt given, so stage 2 refines without text guidance. A prompt that describes the video gives better detail.")
    for extension in _render_extensions:
        status = extension.before_render(args, request)
        if status is not None:
            for warning in warnings:
                logger.warning("%s", warning)
            return status
    output = args.output if args.output.suffix.lower() == ".mp4" else args.output.with_name(args.output.name + ".mp4")
    if output.exists():
        logger.warning("%s exists and will be replaced when the render succeeds", output)

    from freeswim_engine import api
    from freeswim_engine.progress import TerminalProgress

    _hide_library_progress_bars()
    progress = TerminalProgress(sys.stderr)
    try:
        with _cancel_on_interrupt() as cancel_event:
            callbacks = api.RenderCallbacks(
                on_stage=progress.on_stage,
                on_progress=progress.on_progress,
                should_cancel=cancel_event.is_set,
            )
            engine_call = api.upscale if is_upscale else api.render
            result = engine_call(request, callbacks, work_dir=args.work_dir)
    finally:
        progress.close()
    _print_result(result)
    return EXIT_OK


def _hide_library_progress_bars() -> None:
    """Turn off the loading bars of diffusers, transformers and huggingface_hub, so only the stage bar shows."""
    import diffusers.utils.logging
    import huggingface_hub.utils
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


@contextlib.contextmanager
def _cancel_on_interrupt() -> Iterator[threading.Event]:
    """Turn the first Ctrl+C into a cancel request that the engine checks at every step.

    A second Ctrl+C raises KeyboardInterrupt at once. Outside the main thread, where Python
    cannot install signal handlers, Ctrl+C keeps its default behaviour.
    """
    cancel_event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel_event
        return

    def handle_interrupt(signum: int, frame: Any) -> None:
        if cancel_event.is_set():
            raise KeyboardInterrupt
        cancel_event.set()
        print(f"\n{PROGRAM}: cancelling after the current step; press Ctrl+C again to stop at once", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handle_interrupt)
    try:
        yield cancel_event
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_result(result: RenderResult) -> None:
    request = result.request
    frames = f"{request.num_frames} frame{'' if request.num_frames == 1 else 's'}"
    print(
        f"Wrote {result.output_path} ({request.width}x{request.height}, {frames} at {request.fps} fps, "
        f"seed {result.seed}, {result.seconds:.1f} s)"
    )
    print(f"Settings: {result.sidecar_path}")
    if result.base_video_path is not None:
        print(f"Base video: {result.base_video_path}")
    if result.latents_path is not None:
        print(f"Latents: {result.latents_path}")
    if result.peak_memory_bytes is not None:
        print(f"Peak GPU memory: {result.peak_memory_bytes / 2**30:.1f} GiB")
    if result.plan_summary:
        print(f"Memory plan: {result.plan_summary}")


# ---------------------------------------------------------------------------------------------
# models and doctor


def _run_decode(args: argparse.Namespace) -> int:
    from freeswim_engine.api import decode_latents_file

    if not args.latents.is_file():
        raise InputVideoError(f"Latents file {args.latents} not found. Pass a file written by --save-latents.")
    from freeswim_engine.video_io import mp4_path_for

    target = mp4_path_for(args.output or args.latents.with_suffix(".mp4"))
    if target.exists():
        logger.warning("%s exists and will be replaced when decoding succeeds", target)
    path = decode_latents_file(args.latents, target, device=args.device, codec=args.codec, crf=args.crf)
    print(path)
    return EXIT_OK


def _run_models(args: argparse.Namespace) -> int:
    from freeswim_engine.models import list_models

    models = list_models()
    if args.json:
        print(json.dumps([_model_record(model) for model in models], indent=2))
        return EXIT_OK
    header = ("NAME", "BASE HxW", "FPS", "INSTALLED", "WHERE")
    rows = [header, *(_model_row(model) for model in models)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        print("  ".join([*cells, row[-1]]))
    return EXIT_OK


def _model_record(model: ModelInfo) -> dict[str, Any]:
    preset = model.preset
    return {
        "name": model.name,
        "label": model.label,
        "source": model.source.value,
        "base_height": preset.base_height,
        "base_width": preset.base_width,
        "pixels_per_token": preset.pixels_per_token,
        "fps": preset.fps,
        "is_installed": model.is_installed,
        "path": str(model.path) if model.path is not None else None,
        "repo_id": model.repo_id,
    }


def _model_row(model: ModelInfo) -> tuple[str, str, str, str, str]:
    from freeswim_engine.models import download_hint

    preset = model.preset
    if model.is_installed:
        where = str(model.path)
    elif model.is_demo:
        where = "built on first use"
    else:
        where = download_hint(model.repo_id)
    installed = "yes" if model.is_installed else "no"
    return (model.name, f"{preset.base_height}x{preset.base_width}", str(preset.fps), installed, where)


def _run_doctor(args: argparse.Namespace) -> int:
    from freeswim_engine.doctor import CheckStatus, iter_checks
    from freeswim_engine.logs import log_dir

    status = EXIT_OK
    if not args.quick:
        print("The last check compiles a small attention kernel, which takes a few seconds to a minute.", file=sys.stderr)
    for result in iter_checks(include_compiled_attention=not args.quick):
        print(f"{result.status.value.upper():8} {result.name}: {result.detail}", flush=True)
        if result.fix:
            print(f"{'':8} fix: {result.fix}")
        if result.status is CheckStatus.FAILED:
            status = EXIT_FAILURE
    print(f"{'INFO':8} log folder: {args.log_file.parent if args.log_file else log_dir()}")
    return status


_register_builtin_commands()
