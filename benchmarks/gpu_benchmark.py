"""Benchmark stage 2 of Wan 2.1 1.3B at 1920x1088 x 81 frames on one CUDA GPU, in one command.

With ``--size real`` (the default when CUDA is available) it builds the real
1.3B transformer shape (30 blocks, 12 heads of 128, FFN 8960) with random
weights in bf16 and measures, at the 21 x 68 x 120 token grid:

1. the card's dense bf16 rate from a large matmul, as the reference;
2. one attention call over all 12 heads: dense SDPA and the engine's window
   attention, in seconds and TFLOP/s, plus the block-mask build;
3. seconds per stage-2 step (guidance 5.0) and peak memory for direct,
   window, freeswim and freeswim-cached with k=2 and k=5 (a full cycle each).

A time budget (``--budget-s``, default 420 s) skips the remaining methods
rather than run past it; skipped methods are listed in the JSON. With
``--size tiny`` (the default without CUDA) everything runs on a small model
and grid in float32, which is how the script is tested on CPU.

Run from the repository root::

    python -m benchmarks.gpu_benchmark           # writes benchmarks/results/gpu_benchmark.json
    python -m benchmarks.gpu_benchmark --size tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import limit_compile_workers, load_average, module_command, summarize, write_results
from benchmarks.stage2_harness import (
    METHOD_CASES,
    PIXELS_PER_TOKEN,
    MethodCase,
    WAN_1_3B,
    WAN_1_3B_BASE,
    ModelShape,
    build_transformer,
    make_inputs,
    scaled_shape,
    synchronize,
    time_cycle,
)
from benchmarks.window_attention import attention_flops, exact_density
from freeswim_engine.attention import (
    AttentionMethod,
    WindowGeometry,
    compiled_attention_failure,
    freeswim_attention_scale,
)
from freeswim_engine.attention.tiles import TiledLayout, block_density
from freeswim_engine.attention.kernels import full_attention, window_attention

logger = logging.getLogger(__name__)

NAME = "gpu_benchmark"
DEFAULT_BUDGET_S = 420.0
BUDGET_MARGIN = 1.3  # expected step times are estimates; skip a method unless it fits with this margin


@dataclasses.dataclass(frozen=True)
class SizeConfig:
    grid: tuple[int, int, int]  # (latent frames, height tokens, width tokens)
    shape: ModelShape
    dtype: torch.dtype
    matmul_size: int
    matmul_repeats: int


SIZES = {
    # 1920x1088, 81 frames: 1 + 80 / 4 = 21 latent frames of 68 x 120 tokens.
    "real": SizeConfig(grid=(21, 68, 120), shape=WAN_1_3B, dtype=torch.bfloat16, matmul_size=8192, matmul_repeats=50),
    # Larger than the 31x53 window along both axes, so the window path runs.
    "tiny": SizeConfig(grid=(1, 34, 56), shape=scaled_shape(num_layers=1, num_heads=1), dtype=torch.float32, matmul_size=512, matmul_repeats=5),
}


def timed(function: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    """Return the seconds of ``repeats`` calls, synchronizing the device around each."""
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_matmul(size: int, repeats: int, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """Measure the dense matmul rate of ``size x size`` matrices, the reference for attention's rate."""
    left = torch.randn((size, size), device=device, dtype=dtype)
    right = torch.randn((size, size), device=device, dtype=dtype)
    left @ right  # warm-up (library handles, kernel selection)
    seconds = timed(lambda: left @ right, device, repeats)
    median = statistics.median(seconds)
    return {"size": size, "dtype": str(dtype), "time": summarize(seconds), "tflops": 2.0 * size**3 / median / 1e12}


def measure_attention(config: SizeConfig, device: torch.device, repeats: int) -> dict[str, Any]:
    """Time one self-attention call over all heads: dense SDPA against the engine's window attention."""
    shape = config.shape
    geometry = WindowGeometry.for_grid(config.grid, WAN_1_3B_BASE, PIXELS_PER_TOKEN)
    length = geometry.sequence_length
    scale = freeswim_attention_scale(WAN_1_3B_BASE, PIXELS_PER_TOKEN, shape.head_dim)

    synchronize(device)
    start = time.perf_counter()
    block_mask = TiledLayout(geometry).block_mask(device)
    synchronize(device)
    build_s = time.perf_counter() - start

    generator = torch.Generator(device=device).manual_seed(0)
    tensor_shape = (1, shape.num_heads, length, shape.head_dim)
    query, key, value = (torch.randn(tensor_shape, generator=generator, device=device, dtype=config.dtype) for _ in range(3))
    start = time.perf_counter()
    window_attention(query, key, value, geometry, scale)  # on CUDA, compiles flex attention for this shape
    synchronize(device)
    first_window_call_s = time.perf_counter() - start
    failure = compiled_attention_failure()
    if failure is not None:
        raise RuntimeError(f"compiled flex attention is off in this process ({failure})")
    full_attention(query, key, value, scale)  # warm-up

    full_s = timed(lambda: full_attention(query, key, value, scale), device, repeats)
    window_s = timed(lambda: window_attention(query, key, value, geometry, scale), device, repeats)
    dense_flops = attention_flops(length, shape.num_heads, shape.head_dim)
    density = exact_density(geometry)
    visited = block_density(block_mask)
    # The kernel runs over the padded, tiled sequence.
    visited_flops = attention_flops(TiledLayout(geometry).sequence_length, shape.num_heads, shape.head_dim) * visited
    full_median = statistics.median(full_s)
    window_median = statistics.median(window_s)
    return {
        "sequence_length": length,
        "num_heads": shape.num_heads,
        "block_mask_build_s": build_s,
        "first_window_call_s": first_window_call_s,
        "exact_density": density,
        "block_density": visited,
        "full": summarize(full_s),
        "window": summarize(window_s),
        "full_tflops": dense_flops / full_median / 1e12,
        "window_useful_tflops": dense_flops * density / window_median / 1e12,
        "window_visited_tflops": visited_flops / window_median / 1e12,
        "window_over_full_time": window_median / full_median,
    }


def expected_step_s(case: MethodCase, measured: dict[str, float]) -> float:
    """Estimate a method's seconds per step from the steps measured so far, for the time budget.

    A FreeSwim step is about a direct step plus a window step, and a cached
    step with interval k about a window step plus a direct step over 2k.
    Returns 0 before anything is measured.
    """
    direct = measured.get("direct", 0.0)
    window = measured.get("window", direct)
    if case.method is AttentionMethod.FREESWIM:
        return direct + window
    if case.method is AttentionMethod.FREESWIM_CACHED:
        return window + direct / (2 * case.cache_interval)
    return max(measured.values(), default=0.0)


def measure_steps(config: SizeConfig, device: torch.device, deadline: float) -> dict[str, Any]:
    """Time one cache cycle of every method and its peak memory, skipping methods once ``deadline`` nears."""
    transformer = build_transformer(config.shape, config.dtype, device)
    inputs = make_inputs(config.grid, config.shape.text_dim, config.dtype, device)
    results: dict[str, Any] = {}
    skipped: list[str] = []
    measured: dict[str, float] = {}
    for case in METHOD_CASES:
        expected_s = BUDGET_MARGIN * expected_step_s(case, measured) * case.steps_per_cycle
        if time.perf_counter() + expected_s > deadline:
            skipped.append(case.label)
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds_per_step = time_cycle(transformer, case, inputs)
        measured[case.label] = seconds_per_step
        results[case.label] = {
            "seconds_per_step": seconds_per_step,
            "steps_timed": case.steps_per_cycle,
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        }
    speedups = {}
    if "freeswim" in results:
        for interval in (2, 5):
            label = f"freeswim-cached k={interval}"
            if label in results:
                speedups[f"k={interval}"] = results["freeswim"]["seconds_per_step"] / results[label]["seconds_per_step"]
    return {"methods": results, "skipped_for_time_budget": skipped, "speedup_cached_over_uncached": speedups}


def run(size: str, budget_s: float = DEFAULT_BUDGET_S) -> dict[str, Any]:
    """Run the three measurements at ``size`` (``"real"`` or ``"tiny"``) and return the figures."""
    config = SIZES[size]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        limit_compile_workers()
    start = time.perf_counter()
    deadline = start + budget_s
    load_start = load_average()
    matmul = measure_matmul(config.matmul_size, config.matmul_repeats, config.dtype, device)
    attention = measure_attention(config, device, repeats=3)
    attention["window_useful_over_matmul_rate"] = attention["window_useful_tflops"] / matmul["tflops"]
    attention["full_over_matmul_rate"] = attention["full_tflops"] / matmul["tflops"]
    steps = measure_steps(config, device, deadline)
    shape = config.shape
    return {
        "size": size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(config.dtype),
        "load_average_start": load_start,
        "grid": {"num_frames": config.grid[0], "height_tokens": config.grid[1], "width_tokens": config.grid[2]},
        "model": {"num_layers": shape.num_layers, "num_heads": shape.num_heads, "head_dim": shape.head_dim, "ffn_dim": shape.ffn_dim, "text_dim": shape.text_dim},
        "budget_s": budget_s,
        "matmul": matmul,
        "attention": attention,
        "steps": steps,
        "total_s": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", choices=tuple(SIZES), default=None, help="real (Wan 2.1 1.3B at 1080p x 81 frames) or tiny; default: real with CUDA, else tiny"
    )
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="seconds after which remaining methods are skipped (default: 420)")
    parser.add_argument("--output-dir", type=Path, default=None, help="folder for the JSON (default: benchmarks/results)")
    args = parser.parse_args(argv)
    size = args.size or ("real" if torch.cuda.is_available() else "tiny")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    figures = run(size, args.budget_s)
    name = NAME if size == "real" else f"{NAME}_{size}"
    path = write_results(name, figures, module_command(NAME, argv), args.output_dir)
    print(f"wrote {path}")
    attention = figures["attention"]
    print(
        f"matmul {figures['matmul']['tflops']:.3f} TFLOP/s; attention over {attention['sequence_length']} tokens: "
        f"full {attention['full_tflops']:.3f} TFLOP/s, window {attention['window_useful_tflops']:.3f} TFLOP/s useful "
        f"({attention['window_visited_tflops']:.3f} on visited blocks)"
    )
    for label, entry in figures["steps"]["methods"].items():
        peak = entry["peak_memory_bytes"]
        peak_text = f", peak {peak / 2**30:.1f} GiB" if peak is not None else ""
        print(f"{label:>20}: {entry['seconds_per_step']:.2f} s per step{peak_text}")
    if figures["steps"]["skipped_for_time_budget"]:
        print("skipped for the time budget: " + ", ".join(figures["steps"]["skipped_for_time_budget"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
