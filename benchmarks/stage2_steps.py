"""Benchmark one stage-2 denoising step per attention method on a scaled-down Wan transformer.

The model keeps Wan 2.1 1.3B's head size (128), its FFN-to-width ratio and
its 31x53 token window, with fewer heads and layers, so that a step finishes
in seconds on a CPU. Each method runs in turn within every round; cached
methods run a full cache cycle (k steps from step 0) and report the mean.

Run from the repository root::

    python -m benchmarks.stage2_steps               # 1080p token grid, 1 latent frame, a few minutes
    python -m benchmarks.stage2_steps --size smoke
"""

from __future__ import annotations

import logging
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.common import add_threads_option, benchmark_parser, start_run, limit_compile_workers, load_average, module_command, summarize, write_results
from benchmarks.stage2_harness import (
    METHOD_CASES,
    WAN_1_3B,
    WAN_1_3B_BASE,
    MethodCase,
    ModelShape,
    attention_flop_share,
    build_transformer,
    StepInputs,
    make_inputs,
    scaled_shape,
    time_cycle,
)
from freeswim_engine.attention import WindowGeometry, compiled_attention_failure

logger = logging.getLogger(__name__)

NAME = "stage2_steps"
CLAIMED_SPEEDUP = 2.0  # the method's claim: cached mode more than 2x faster than uncached
REAL_GRID_1080P = (21, 68, 120)  # 1920x1088, 81 frames

SIZES: dict[str, dict[str, Any]] = {
    # 1080p token grid per frame with the real window; one latent frame keeps a step within seconds.
    "full": {"grid": (1, 68, 120), "shape": scaled_shape(num_layers=1, num_heads=2), "repeats": 3},
    # Grid just larger than the window, so the window path is exercised.
    "smoke": {"grid": (1, 34, 56), "shape": scaled_shape(num_layers=1, num_heads=1), "repeats": 1},
}


def window_density(grid: tuple[int, int, int]) -> float:
    geometry = WindowGeometry.for_grid(grid, WAN_1_3B_BASE, 16)
    window_height = min(2 * geometry.half_height + 1, geometry.height)
    window_width = min(2 * geometry.half_width + 1, geometry.width)
    return window_height * window_width / geometry.tokens_per_frame


def warm_up(transformer: Any, grid: tuple[int, int, int], shape: ModelShape, cases: Sequence[MethodCase] = METHOD_CASES) -> StepInputs:
    """Run one untimed step of every case at ``grid`` and return the inputs for timing.

    On CUDA the first window step compiles flex attention for the grid and
    builds its block mask; on the CPU the engine uses gathered-window SDPA.
    """
    inputs = make_inputs(grid, shape.text_dim, torch.float32, torch.device("cpu"))
    for case in cases:
        time_cycle(transformer, case, inputs, num_steps=1)
    failure = compiled_attention_failure()
    if failure is not None:
        raise RuntimeError(f"compiled flex attention is off in this process ({failure}); window steps would use the fallback")
    return inputs


def measure_steps(
    transformer: Any, grid: tuple[int, int, int], shape: ModelShape, repeats: int, cases: Sequence[MethodCase] = METHOD_CASES
) -> dict[str, list[float]]:
    """Return seconds per step of every case over ``repeats`` interleaved rounds, after one warm-up step each."""
    inputs = warm_up(transformer, grid, shape, cases)
    times: dict[str, list[float]] = {case.label: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            times[case.label].append(time_cycle(transformer, case, inputs))
    return times


def speedups(medians: dict[str, float], times: dict[str, list[float]]) -> dict[str, Any]:
    """Compare cached and uncached FreeSwim, measured and predicted from the direct and window steps.

    A direct step is two full-attention passes (prompt and negative prompt),
    a window step two window passes. An uncached FreeSwim step is both, and a
    cached step with interval k is the window passes plus the full branch on
    one pass in k, so its prediction is ``window + direct / (2 k)``.
    """
    uncached = medians["freeswim"]
    direct = medians["direct"]
    window = medians["window"]
    result: dict[str, Any] = {
        "predicted_freeswim_s": direct + window,
        "claimed_min_speedup": CLAIMED_SPEEDUP,
    }
    for interval in (2, 5):
        label = f"freeswim-cached k={interval}"
        measured = uncached / medians[label]
        # Ratios within each round cancel load that changed between rounds.
        per_round = [freeswim / cached for freeswim, cached in zip(times["freeswim"], times[label])]
        result[f"k={interval}"] = {
            "measured_speedup": measured,
            "per_round_speedups": per_round,
            "median_per_round_speedup": statistics.median(per_round),
            "predicted_step_s": window + direct / (2 * interval),
            "meets_claim": measured > CLAIMED_SPEEDUP,
        }
    return result


def run(size: str = "full", repeats: int | None = None) -> dict[str, Any]:
    """Time every method at the grid of ``size`` (``"full"`` or ``"smoke"``) and return the figures."""
    config = SIZES[size]
    grid: tuple[int, int, int] = config["grid"]
    shape: ModelShape = config["shape"]
    repeats = repeats if repeats is not None else int(config["repeats"])
    compile_threads = limit_compile_workers()
    load_start = load_average()

    transformer = build_transformer(shape, torch.float32, torch.device("cpu"))
    times = measure_steps(transformer, grid, shape, repeats)
    summaries = {label: summarize(values) for label, values in times.items()}
    medians = {label: summary["median_s"] for label, summary in summaries.items()}
    density = window_density(grid)
    return {
        "size": size,
        "dtype": "float32",
        "repeats": repeats,
        "load_average_start": load_start,
        "inductor_compile_threads": compile_threads,
        "grid": {"num_frames": grid[0], "height_tokens": grid[1], "width_tokens": grid[2], "sequence_length": grid[0] * grid[1] * grid[2]},
        "model": {"num_layers": shape.num_layers, "num_heads": shape.num_heads, "head_dim": shape.head_dim, "ffn_dim": shape.ffn_dim, "text_dim": shape.text_dim},
        "window_density": density,
        "attention_flop_share": {
            "this_model_full": attention_flop_share(shape, grid, 1.0),
            "this_model_window": attention_flop_share(shape, grid, density),
            "wan_1_3b_1080p_81_frames_full": attention_flop_share(WAN_1_3B, REAL_GRID_1080P, 1.0),
            "wan_1_3b_1080p_81_frames_window": attention_flop_share(WAN_1_3B, REAL_GRID_1080P, window_density(REAL_GRID_1080P)),
        },
        "seconds_per_step": summaries,
        "speedup_cached_over_uncached": speedups(medians, times),
        "notes": "One step is predict_noise with guidance 5.0 (prompt and negative prompt passes); cached methods are averaged over one cache cycle of k steps from step 0.",
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = benchmark_parser(__doc__, SIZES, "grid and model to run (default: full)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 3, smoke 1)")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    start_run(args)
    figures = run(args.size, args.repeats)
    path = write_results(NAME, figures, module_command(NAME, argv), args.output_dir)
    print(f"wrote {path}")
    for label, summary in figures["seconds_per_step"].items():
        print(f"{label:>20}: {summary['median_s']:.3f} s per step")
    for interval in (2, 5):
        entry = figures["speedup_cached_over_uncached"][f"k={interval}"]
        print(f"cached k={interval} over uncached: {entry['measured_speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
