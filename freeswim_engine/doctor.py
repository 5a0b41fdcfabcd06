"""Installation checks behind `freeswim doctor`: Python, packages, devices, memory, ffmpeg, compiled attention."""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import logging
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

MIN_PYTHON = (3, 11)
GIB = 2**30
# The UMT5-XXL text encoder of the Wan presets has about 5.7e9 parameters, about 10.6 GiB in bfloat16.
# Below this much RAM a real model cannot be loaded next to the operating system.
RECOMMENDED_RAM_GIB = 16
REQUIRED_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "imageio-ffmpeg", "psutil", "platformdirs")


class CheckStatus(str, enum.Enum):
    OK = "ok"
    WARNING = "warning"  # works, but renders will be slow or limited
    FAILED = "failed"  # renders will not work until fixed


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of one check, with what to do when it is not ``ok``."""

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""


def iter_checks(include_compiled_attention: bool = True) -> Iterator[CheckResult]:
    """Run each check and yield its result as soon as it is known.

    The compiled-attention check compiles a small flex-attention kernel, which takes from a few
    seconds to about a minute; ``include_compiled_attention=False`` skips it.
    """
    checks: list[Callable[[], list[CheckResult]]] = [
        check_python,
        check_packages,
        check_devices,
        check_memory,
        check_ffmpeg,
    ]
    if include_compiled_attention:
        checks.append(check_attention)
    for check in checks:
        try:
            results = check()
        except Exception as error:  # a broken install can fail in any import; report it as a check
            logger.exception("Check %s raised", check.__name__)
            results = [CheckResult(check.__name__.removeprefix("check_"), CheckStatus.FAILED, f"{type(error).__name__}: {error}", "See the log file for the traceback.")]
        yield from results


def check_python() -> list[CheckResult]:
    """Check the Python version against the minimum in pyproject.toml."""
    version = platform.python_version()
    if sys.version_info[:2] >= MIN_PYTHON:
        return [CheckResult("python", CheckStatus.OK, f"Python {version} ({sys.executable})")]
    required = ".".join(map(str, MIN_PYTHON))
    return [CheckResult("python", CheckStatus.FAILED, f"Python {version}", f"Install Python {required} or newer.")]


def check_packages() -> list[CheckResult]:
    """Report the installed version of every required package."""
    results = []
    for package in REQUIRED_PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            results.append(CheckResult(package, CheckStatus.FAILED, "not installed", f"Run: pip install {package}"))
            continue
        results.append(CheckResult(package, CheckStatus.OK, version))
    return results


def check_devices() -> list[CheckResult]:
    """Import torch and list the CUDA devices with their free and total memory."""
    import torch

    if not torch.cuda.is_available():
        built_with = f"torch {torch.__version__} built with CUDA {torch.version.cuda}" if torch.version.cuda else f"torch {torch.__version__} is a CPU-only build"
        return [
            CheckResult(
                "device",
                CheckStatus.WARNING,
                f"no CUDA GPU found ({built_with}); renders run on the CPU",
                "The CPU is fine for the demo model. For real models install a CUDA build of torch "
                "and an NVIDIA driver, then check that nvidia-smi lists the GPU.",
            )
        ]
    results = []
    for index in range(torch.cuda.device_count()):
        name = torch.cuda.get_device_name(index)
        free, total = torch.cuda.mem_get_info(index)
        detail = f"{name}: {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB (CUDA {torch.version.cuda})"
        results.append(CheckResult(f"cuda:{index}", CheckStatus.OK, detail))
    return results


def check_memory() -> list[CheckResult]:
    """Check total and available RAM."""
    import psutil

    memory = psutil.virtual_memory()
    detail = f"{memory.available / GIB:.1f} GiB available of {memory.total / GIB:.1f} GiB"
    if memory.total < RECOMMENDED_RAM_GIB * GIB:
        fix = (
            f"Real Wan models need at least about {RECOMMENDED_RAM_GIB} GiB of RAM, because the text encoder alone "
            "takes about 10.6 GiB in bfloat16. The demo model runs anywhere."
        )
        return [CheckResult("memory", CheckStatus.WARNING, detail, fix)]
    return [CheckResult("memory", CheckStatus.OK, detail)]


def check_ffmpeg() -> list[CheckResult]:
    """Find imageio-ffmpeg's ffmpeg, report its version and check for the libx264 and libx265 encoders."""
    import imageio_ffmpeg

    try:
        executable = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:
        return [CheckResult("ffmpeg", CheckStatus.FAILED, str(error), "Run: pip install --force-reinstall imageio-ffmpeg")]
    version = imageio_ffmpeg.get_ffmpeg_version()
    results = [CheckResult("ffmpeg", CheckStatus.OK, f"ffmpeg {version} at {executable}")]
    encoders = _list_encoders(executable)
    for encoder, codec in (("libx264", "h264"), ("libx265", "h265")):
        if encoder in encoders:
            results.append(CheckResult(encoder, CheckStatus.OK, f"encoder for --codec {codec} available"))
        else:
            fix = "Use an ffmpeg build with it: imageio-ffmpeg's own binary has it, so unset IMAGEIO_FFMPEG_EXE if it is set."
            results.append(CheckResult(encoder, CheckStatus.FAILED, f"encoder for --codec {codec} missing from {executable}", fix))
    return results


def _list_encoders(executable: str) -> set[str]:
    result = subprocess.run([executable, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False)
    names = set()
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith("V"):
            names.add(fields[1])
    return names


def check_attention() -> list[CheckResult]:
    """Compile flex attention on a small window and compare it with the exact masked reference."""
    from freeswim_engine.attention import check_compiled_attention

    works, message = check_compiled_attention()
    if works:
        return [CheckResult("compiled attention", CheckStatus.OK, message)]
    fix = (
        "Renders still work: GPU renders fall back to gathered-window SDPA, which is slower, and CPU renders use "
        "gathered-window SDPA anyway. torch.compile needs a C++ compiler (gcc or clang) on the CPU and Triton, "
        "which CUDA builds of torch include, on a GPU."
    )
    return [CheckResult("compiled attention", CheckStatus.WARNING, message, fix)]
