"""Shared helpers of the benchmark scripts: machine facts, interleaved timing and the results JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, else what ``platform`` reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """Return the 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Return the facts that a reader needs to compare results between machines."""
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    return info


def interleaved_times(
    functions: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time each function ``repeats`` times in rounds (a, b, c, a, b, c, ...) after ``warmup`` untimed rounds.

    Running the candidates in turn within each round spreads load from other
    processes over all of them, so ratios of their medians stay comparable.
    Returns the seconds of every timed call, per name.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Return the median, minimum and maximum of a list of timings, plus the raw list."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "runs_s": [round(value, 6) for value in seconds],
    }


def fit_power_law(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Return the exponent ``p`` of ``seconds ~ c * sizes**p`` fitted by least squares on log-log axes."""
    if len(sizes) != len(seconds) or len(sizes) < 2:
        raise ValueError(f"a power-law fit needs at least two (size, time) pairs, got {len(sizes)} and {len(seconds)}")
    xs = [math.log(size) for size in sizes]
    ys = [math.log(value) for value in seconds]
    mean_x = statistics.fmean(xs)
    mean_y = statistics.fmean(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    variance = sum((x - mean_x) ** 2 for x in xs)
    return covariance / variance


def write_results(
    name: str, figures: Mapping[str, Any], command: Sequence[str], output_dir: Path | None = None
) -> Path:
    """Write ``<output_dir>/<name>.json`` with the figures, the machine, the load and the command line.

    ``command`` is the argument list that reproduces the run, for example
    ``["python", "-m", "benchmarks.window_attention"]``. ``output_dir``
    defaults to ``benchmarks/results``. Returns the path written.
    """
    folder = RESULTS_DIR if output_dir is None else Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command),
        "machine": machine_info(),
        "load_average_end": load_average(),
        **figures,
    }
    path = folder / f"{name}.json"
    temp_path = path.with_suffix(".json.tmp")
    temp_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    temp_path.replace(path)
    return path


def module_command(module: str, argv: Sequence[str]) -> list[str]:
    """Return the command line that reruns ``benchmarks.<module>`` from the repository root."""
    return ["python", "-m", f"benchmarks.{module}", *argv]


def peak_rss_bytes() -> int:
    """Return this process's peak resident memory so far, in bytes (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


SMALL_MACHINE_CORES = 4


def limit_compile_workers() -> int | None:
    """Compile Inductor kernels in this process on machines with few cores, and return the setting.

    Inductor's default pool of compile worker processes took about two minutes
    to start a flex-attention compile on a loaded 2-core machine, against about
    15 s with ``compile_threads = 1`` (torch 2.13.0). The benchmarks time
    kernels, not the pool start, so they use one thread there.
    """
    import torch._inductor.config as inductor_config

    if (os.cpu_count() or 1) <= SMALL_MACHINE_CORES:
        inductor_config.compile_threads = 1
    threads: int | None = inductor_config.compile_threads
    return threads


def benchmark_parser(doc: str | None, sizes: Iterable[str], size_help: str) -> argparse.ArgumentParser:
    """Return a parser with the ``--size`` and ``--output-dir`` options that every benchmark script takes.

    ``doc`` is the script's module docstring; its first line becomes the description.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--size", choices=tuple(sizes), default="full", help=size_help)
    parser.add_argument("--output-dir", type=Path, default=None, help="folder for the JSON (default: benchmarks/results)")
    return parser


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice, the core count)"
    )


def start_run(args: argparse.Namespace) -> None:
    """Apply ``--threads`` when the parser has it, and send benchmark progress logs to stderr."""
    threads = getattr(args, "threads", None)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
