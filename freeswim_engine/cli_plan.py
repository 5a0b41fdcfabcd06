"""`freeswim plan` and `render --dry-run`: print the memory plan of a render without rendering.

``register()`` adds both to the `freeswim` command line. Like the rest of the
command line, this module imports torch only inside the commands that run.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freeswim_engine.errors import InvalidRequestError, ModelLoadError
from freeswim_engine.memory.sizes import format_size, parse_size
from freeswim_engine.request import DTYPES, METHODS, RenderRequest

if TYPE_CHECKING:
    from freeswim_engine.memory.device import DeviceMemory
    from freeswim_engine.memory.planner import MemoryPlan
    from freeswim_engine.models import ModelInfo

logger = logging.getLogger(__name__)

_DEFAULTS = RenderRequest(prompt="")


def register() -> None:
    """Add the `plan` subcommand and the `--dry-run` option of `render` and `upscale`."""
    from freeswim_engine.cli import RenderExtension, Subcommand, register_render_extension, register_subcommand

    register_subcommand(
        Subcommand(
            "plan",
            "print where a render's weights and cache would go, and its estimated peak memory",
            add_plan_arguments,
            run_plan,
            description="Plan a render's memory without loading the model: weight offloading, VAE tiling, "
            "FFN chunking and where the cross-attention cache goes, with estimated peak VRAM and RAM. "
            "--vram and --ram plan for another machine.",
        )
    )
    register_render_extension(RenderExtension(add_dry_run_argument, run_dry_run))


def size_argument(text: str) -> int:
    """Parse a byte size option such as ``24GiB``; argparse shows the message on a bad value."""
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the render options that decide memory, and the machine options, to `freeswim plan`."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="preset name (see 'freeswim models'), local diffusers folder, or Hugging Face repo id (required)",
    )
    render = parser.add_argument_group("render")
    render.add_argument("--width", type=int, default=_DEFAULTS.width, metavar="W", help=f"target width in pixels; default {_DEFAULTS.width}")
    render.add_argument("--height", type=int, default=_DEFAULTS.height, metavar="H", help=f"target height in pixels; default {_DEFAULTS.height}")
    render.add_argument("--frames", type=int, metavar="N", help="number of frames, 4k+1; default: the model's (81 for Wan)")
    render.add_argument("--method", choices=METHODS, default=_DEFAULTS.method, help=f"stage-2 attention method; default {_DEFAULTS.method}")
    render.add_argument(
        "--cache-interval",
        type=int,
        default=_DEFAULTS.cache_interval,
        metavar="K",
        help=f"freeswim-cached: steps between cache refreshes; default {_DEFAULTS.cache_interval}",
    )
    render.add_argument(
        "--dtype", choices=DTYPES, default=_DEFAULTS.dtype, help="transformer dtype; auto is bfloat16 on a GPU, float32 on the CPU"
    )
    render.add_argument("--upscale", action="store_true", help="plan an upscale (stage 2 only, from an input video)")

    machine = parser.add_argument_group(
        "machine", "Without these options the plan uses this machine's free memory, measured now."
    )
    machine.add_argument("--device", default=_DEFAULTS.device, metavar="DEVICE", help="auto, cpu, cuda or cuda:N; default auto")
    machine.add_argument(
        "--vram", type=size_argument, metavar="SIZE", help="free GPU memory to plan for, for example 24GiB or 80GB"
    )
    machine.add_argument("--ram", type=size_argument, metavar="SIZE", help="available host RAM to plan for, for example 64GiB")
    machine.add_argument(
        "--disk", type=size_argument, metavar="SIZE", help="free scratch disk space for a disk cache, for example 500GB"
    )
    machine.add_argument(
        "--scratch-dir", type=Path, metavar="DIR", help="folder a disk cache would use; its free space is measured"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run_plan(args: argparse.Namespace) -> int:
    """Plan the render that ``args`` describe and print it; PlanRejectedError carries what would fit."""
    import dataclasses

    from freeswim_engine.memory.estimates import RenderFigures
    from freeswim_engine.memory.planner import plan_memory

    request = RenderRequest(
        prompt="",
        model=args.model,
        width=args.width,
        height=args.height,
        num_frames=args.frames,
        method=args.method,
        cache_interval=args.cache_interval,
        device=args.device,
        dtype=args.dtype,
    )
    model_info = _resolve(request.model)
    request.validate(model_info)
    figures = dataclasses.replace(RenderFigures.from_request(request, model_info.preset), is_upscale=args.upscale)
    machine = describe_machine(args)

    plan = plan_memory(figures, model_info, machine)
    _print_plan(plan, as_json=args.json)
    return 0


def describe_machine(args: argparse.Namespace) -> DeviceMemory:
    """Return the machine to plan for: the sizes given on the command line, the rest measured here."""
    from freeswim_engine.memory.device import DeviceMemory, read_device_memory

    wants_cpu = args.device == "cpu"
    if wants_cpu and args.vram is not None:
        raise InvalidRequestError(
            "device", args.device, "cannot be combined with --vram", "Drop --vram to plan for a CPU-only machine."
        )
    # With --vram there is no need to touch a GPU here, so only RAM and disk are measured.
    measure_device = "cpu" if args.vram is not None else args.device
    try:
        measured = read_device_memory(measure_device, scratch_dir=args.scratch_dir)
    except ValueError as error:
        raise InvalidRequestError("device", args.device, "is not usable here", f"{error} Or pass --vram.") from None

    sizes_given = [args.vram, args.ram, args.disk]
    if all(size is None for size in sizes_given):
        return measured
    vram = args.vram
    if vram is None and measured.is_cuda:
        vram = measured.free_vram_bytes
    ram = args.ram if args.ram is not None else measured.free_ram_bytes
    disk = args.disk if args.disk is not None else measured.free_disk_bytes
    if vram is None:
        name = "the planned CPU-only machine"
    else:
        name = "the planned GPU" if args.vram is not None else measured.device_name
    return DeviceMemory.for_machine(vram, ram, disk, name)


def add_dry_run_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--dry-run` to `render` and `upscale`."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the memory plan for this machine and exit without loading the model or rendering",
    )


def run_dry_run(args: argparse.Namespace, request: RenderRequest) -> int | None:
    """Print the plan of the validated ``request`` and return 0 with --dry-run; return None otherwise."""
    if not getattr(args, "dry_run", False):
        return None
    from freeswim_engine.memory.device import read_device_memory
    from freeswim_engine.memory.planner import plan_memory

    model_info = _resolve(request.model)
    machine = read_device_memory(request.device, scratch_dir=getattr(args, "work_dir", None))
    plan = plan_memory(request, model_info, machine)
    _print_plan(plan, as_json=False)
    return 0


def _resolve(model: str) -> ModelInfo:
    from freeswim_engine.models import resolve_model

    try:
        return resolve_model(model)
    except ModelLoadError as error:
        raise InvalidRequestError("model", model, "cannot be resolved", str(error)) from None


def _print_plan(plan: MemoryPlan, as_json: bool) -> None:
    if as_json:
        print(json.dumps(plan.to_dict(), indent=2))
        return
    print(plan.explain())
    print()
    for label, value in _plan_rows(plan):
        print(f"{label + ':':<28} {value}")


def _plan_rows(plan: MemoryPlan) -> list[tuple[str, Any]]:
    device = plan.device
    rows: list[tuple[str, Any]] = [("Weights", plan.weight_placement.value)]
    if plan.cache_placement is not None:
        rows.append(("Cross-attention cache", f"{plan.cache_placement.value}, {format_size(plan.cache_bytes)} (estimate)"))
    else:
        rows.append(("Cross-attention cache", "none"))
    rows.append(("VAE tiling", f"{plan.vae_tile_size} px tiles" if plan.vae_tiling else "off"))
    rows.append(("FFN chunks", plan.ffn_chunks))
    if device.is_cuda:
        rows.append(
            (
                "Estimated peak VRAM",
                f"{format_size(plan.peak_vram_bytes)} ({format_size(plan.required_vram_bytes)} with margin) "
                f"of {format_size(device.free_vram_bytes)} free",
            )
        )
    rows.append(("Estimated peak RAM", f"{format_size(plan.peak_ram_bytes)} of {format_size(device.free_ram_bytes)} available"))
    if plan.disk_bytes:
        free = format_size(device.free_disk_bytes) if device.free_disk_bytes is not None else "not measured"
        rows.append(("Estimated scratch disk", f"{format_size(plan.disk_bytes)} (free: {free})"))
    return rows
