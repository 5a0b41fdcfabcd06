"""Benchmark how the stage-2 step time of each attention method grows with the token count.

Every grid has one latent frame and the real 31x53 token window, so the
window's density falls as the grid grows: full attention should approach
time ~ L**2 and window attention time ~ L. The exponent is fitted by least
squares on log(time) against log(L) for each method.

Run from the repository root::

    python -m benchmarks.scaling                # four grids from 36x64 to 68x120 tokens
    python -m benchmarks.scaling --size smoke
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.common import add_threads_option, benchmark_parser, start_run, fit_power_law, limit_compile_workers, load_average, module_command, summarize, write_results
from benchmarks.stage2_harness import METHOD_CASES, ModelShape, build_transformer, scaled_shape, time_cycle
from benchmarks.stage2_steps import warm_up, window_density

logger = logging.getLogger(__name__)

NAME = "scaling"

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "grids": ((1, 36, 64), (1, 45, 80), (1, 56, 100), (1, 68, 120)),
        "shape": scaled_shape(num_layers=1, num_heads=2),
        "repeats": 2,
    },
    # Each grid is larger than the 31x53 window along both axes, so the window path runs.
    "smoke": {
        "grids": ((1, 32, 54), (1, 33, 56)),
        "shape": scaled_shape(num_layers=1, num_heads=1),
        "repeats": 1,
    },
}


def run(size: str = "full", repeats: int | None = None) -> dict[str, Any]:
    """Time every method at each grid of ``size`` and fit the exponent of time against tokens."""
    config = SIZES[size]
    shape: ModelShape = config["shape"]
    repeats = repeats if repeats is not None else int(config["repeats"])
    compile_threads = limit_compile_workers()
    load_start = load_average()
    transformer = build_transformer(shape, torch.float32, torch.device("cpu"))

    grids: list[tuple[int, int, int]] = list(config["grids"])
    inputs = {}
    for grid in grids:
        logger.info("Warming up at a %dx%dx%d token grid", *grid)
        inputs[grid] = warm_up(transformer, grid, shape)
    # Every round visits every grid, so load that drifts during the run
    # shifts all grids alike instead of bending the fitted exponent.
    times: dict[tuple[int, int, int], dict[str, list[float]]] = {grid: {case.label: [] for case in METHOD_CASES} for grid in grids}
    for _ in range(repeats):
        for grid in grids:
            for case in METHOD_CASES:
                times[grid][case.label].append(time_cycle(transformer, case, inputs[grid]))

    rows: list[dict[str, Any]] = [
        {
            "grid": list(grid),
            "sequence_length": grid[0] * grid[1] * grid[2],
            "window_density": window_density(grid),
            "seconds_per_step": {label: summarize(values) for label, values in times[grid].items()},
        }
        for grid in grids
    ]

    lengths = [row["sequence_length"] for row in rows]
    exponents = {
        case.label: fit_power_law(lengths, [row["seconds_per_step"][case.label]["median_s"] for row in rows])
        for case in METHOD_CASES
    }
    return {
        "size": size,
        "dtype": "float32",
        "repeats": repeats,
        "load_average_start": load_start,
        "inductor_compile_threads": compile_threads,
        "model": {"num_layers": shape.num_layers, "num_heads": shape.num_heads, "head_dim": shape.head_dim, "ffn_dim": shape.ffn_dim, "text_dim": shape.text_dim},
        "grids": rows,
        "fitted_exponent": exponents,
        "notes": "Exponent p of seconds_per_step ~ c * L**p, least squares on log-log medians. Steps use guidance 5.0; cached methods average one cache cycle.",
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = benchmark_parser(__doc__, SIZES, "grids to run (default: full)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds over all grids (default: 2, smoke 1)")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    start_run(args)
    figures = run(args.size, args.repeats)
    path = write_results(NAME, figures, module_command(NAME, argv), args.output_dir)
    print(f"wrote {path}")
    for label, exponent in figures["fitted_exponent"].items():
        print(f"{label:>20}: time ~ L^{exponent:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
