"""Benchmark the engine's window attention against dense SDPA, with and without a boolean mask.

For each token grid it times four kernels on the same random query, key and
value tensors, in interleaved rounds:

- ``full``: dense ``scaled_dot_product_attention`` over every key;
- ``masked``: dense SDPA with the exact boolean window mask, over chunks of
  query rows so the mask stays near 64 MiB (same FLOPs as ``full``);
- ``window``: ``flex_window_attention``, compiled flex attention over tokens
  reordered into 8x16 tiles with the tiled block mask (the engine's path on
  GPUs);
- ``gathered``: ``gathered_window_attention``, SDPA over each query tile's
  gathered key window with the exact mask (the engine's path on the CPU, and
  its fallback when compilation fails).

It also times the one-time block-mask build and reports the mask's size.
The time ratio window/full sits next to two shares of full attention's
FLOPs: the share that the window needs (the exact mask's density) and the
share that the flex kernel visits (block density over the padded, tiled
sequence).

Run from the repository root::

    python -m benchmarks.window_attention            # 720p to 4K grids, a few minutes on 2 cores
    python -m benchmarks.window_attention --size smoke
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.common import (
    benchmark_parser,
    start_run,
    interleaved_times,
    limit_compile_workers,
    load_average,
    module_command,
    peak_rss_bytes,
    summarize,
    write_results,
)
from freeswim_engine.attention import WindowGeometry, compiled_attention_failure, freeswim_attention_scale
from freeswim_engine.attention.kernels import flex_window_attention, full_attention, gathered_window_attention
from freeswim_engine.attention.tiles import TiledLayout, block_density, tiled_block_mask

logger = logging.getLogger(__name__)

NAME = "window_attention"
HEAD_DIM = 128  # Wan 2.1 1.3B and 14B
MASK_ELEMENTS_PER_CHUNK = 1 << 26  # booleans per chunk of the dense masked SDPA: 64 MiB
WAN_1_3B_BASE = (480, 832)  # training size in pixels, which gives the 31x53 token window
PIXELS_PER_TOKEN = 16


@dataclasses.dataclass(frozen=True)
class GridCase:
    """One token grid to time: ``num_frames`` latent frames of ``height`` x ``width`` tokens."""

    label: str
    num_frames: int
    height: int
    width: int
    num_heads: int
    base_size: tuple[int, int] = WAN_1_3B_BASE

    def geometry(self) -> WindowGeometry:
        return WindowGeometry.for_grid((self.num_frames, self.height, self.width), self.base_size, PIXELS_PER_TOKEN)


# One head of the model's 12, and one or two latent frames, so that one dense
# call stays within seconds on a 2-core CPU. The ratios compare kernels on the
# same tensors, so the cut changes the absolute seconds only.
FULL_CASES = (
    GridCase("720p", num_frames=2, height=45, width=80, num_heads=1),
    GridCase("1080p", num_frames=2, height=68, width=120, num_heads=1),
    GridCase("1440p", num_frames=1, height=90, width=160, num_heads=1),
    GridCase("4K", num_frames=1, height=135, width=240, num_heads=1),
)
# A grid larger than its (smaller) window, so the compiled flex path runs, in seconds.
SMOKE_CASES = (GridCase("smoke", num_frames=2, height=12, width=20, num_heads=1, base_size=(160, 256)),)


def attention_flops(sequence_length: int, num_heads: int, head_dim: int) -> float:
    """Return the multiply-add FLOPs of dense attention: ``Q K^T`` and ``P V``, 2 FLOPs per multiply-add each."""
    return 4.0 * sequence_length * sequence_length * head_dim * num_heads


def exact_density(geometry: WindowGeometry) -> float:
    """Return the fraction of (query, key) pairs that the window allows.

    Every query sees the same number of positions per frame (the window is
    shifted inward at borders) and every frame, so the fraction is the
    window's area over the frame's.
    """
    rows, columns = geometry.rows, geometry.columns
    window_height = min(2 * rows.half + 1, geometry.height)
    window_width = min(2 * columns.half + 1, geometry.width)
    return window_height * window_width / geometry.tokens_per_frame


def block_mask_bytes(block_mask: Any) -> int:
    """Return the bytes of every index tensor that a BlockMask keeps."""
    names = (
        "kv_num_blocks",
        "kv_indices",
        "full_kv_num_blocks",
        "full_kv_indices",
        "q_num_blocks",
        "q_indices",
        "full_q_num_blocks",
        "full_q_indices",
    )
    total = 0
    for name in names:
        tensor = getattr(block_mask, name, None)
        if isinstance(tensor, torch.Tensor):
            total += tensor.numel() * tensor.element_size()
    return total


def measure_block_mask(case: GridCase, repeats: int) -> dict[str, Any]:
    """Time the block-mask build from the geometry and report its density and size."""
    geometry = case.geometry()
    rss_before = peak_rss_bytes()
    seconds = []
    block_mask = None
    for _ in range(repeats):
        start = time.perf_counter()
        block_mask = TiledLayout(geometry).block_mask(torch.device("cpu"))
        seconds.append(time.perf_counter() - start)
    assert block_mask is not None
    return {
        "build": summarize(seconds),
        "block_density": block_density(block_mask),
        "exact_density": exact_density(geometry),
        "block_mask_tensor_bytes": block_mask_bytes(block_mask),
        "peak_rss_increase_bytes": peak_rss_bytes() - rss_before,
        "dense_bool_mask_bytes": geometry.sequence_length**2,
        "tiled_sequence_length": TiledLayout(geometry).sequence_length,
    }


def masked_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, geometry: WindowGeometry, scale: float
) -> torch.Tensor:
    """Return dense SDPA with the boolean window mask, over chunks of query rows to bound the mask's memory."""
    length = geometry.sequence_length
    mask_mod = geometry.mask_mod()
    rows_per_chunk = max(1, MASK_ELEMENTS_PER_CHUNK // length)
    key_indices = torch.arange(length, device=query.device)
    zero = torch.zeros((), dtype=torch.long, device=query.device)
    outputs = []
    for start in range(0, length, rows_per_chunk):
        query_indices = key_indices[start : start + rows_per_chunk]
        mask = mask_mod(zero, zero, query_indices[:, None], key_indices[None, :])
        chunk = query[:, :, start : start + rows_per_chunk]
        outputs.append(torch.nn.functional.scaled_dot_product_attention(chunk, key, value, attn_mask=mask, scale=scale))
    return torch.cat(outputs, dim=2)


def measure_kernels(case: GridCase, repeats: int) -> dict[str, Any]:
    """Time full, masked, window and gathered attention on one grid and derive FLOP rates and ratios."""
    geometry = case.geometry()
    length = geometry.sequence_length
    scale = freeswim_attention_scale(case.base_size, PIXELS_PER_TOKEN, HEAD_DIM)
    generator = torch.Generator().manual_seed(0)
    shape = (1, case.num_heads, length, HEAD_DIM)
    query, key, value = (torch.randn(shape, generator=generator) for _ in range(3))

    # The first window call compiles flex attention for this shape (and builds
    # the cached block mask); it is timed apart from the steady state.
    start = time.perf_counter()
    window_output = flex_window_attention(query, key, value, geometry, scale)
    first_window_call_s = time.perf_counter() - start
    failure = compiled_attention_failure()
    if failure is not None:
        raise RuntimeError(f"compiled flex attention is off in this process ({failure}); the window column would time the gathered fallback")
    masked_output = masked_attention(query, key, value, geometry, scale)
    gathered_output = gathered_window_attention(query, key, value, geometry, scale)
    max_difference = float((window_output - masked_output).abs().max())
    gathered_difference = float((gathered_output - masked_output).abs().max())
    del window_output, masked_output, gathered_output

    times = interleaved_times(
        {
            "full": lambda: full_attention(query, key, value, scale),
            "masked": lambda: masked_attention(query, key, value, geometry, scale),
            "window": lambda: flex_window_attention(query, key, value, geometry, scale),
            "gathered": lambda: gathered_window_attention(query, key, value, geometry, scale),
        },
        repeats=repeats,
        warmup=0,
    )
    full_s = summarize(times["full"])["median_s"]
    window_s = summarize(times["window"])["median_s"]
    masked_s = summarize(times["masked"])["median_s"]
    gathered_s = summarize(times["gathered"])["median_s"]

    dense_flops = attention_flops(length, case.num_heads, HEAD_DIM)
    density = exact_density(geometry)
    visited = block_density(tiled_block_mask(geometry, query.device))
    # The kernel runs over the padded, tiled sequence, so its visited FLOPs use that length.
    tiled_length = TiledLayout(geometry).sequence_length
    visited_flops = attention_flops(tiled_length, case.num_heads, HEAD_DIM) * visited
    return {
        "first_window_call_s": first_window_call_s,
        "window_vs_masked_max_abs_difference": max_difference,
        "gathered_vs_masked_max_abs_difference": gathered_difference,
        "times": {name: summarize(values) for name, values in times.items()},
        "dense_flops": dense_flops,
        "flops_per_s": {
            "full": dense_flops / full_s,
            "window_useful": dense_flops * density / window_s,
            "window_visited_blocks": visited_flops / window_s,
            "masked_performed": dense_flops / masked_s,
            "masked_useful": dense_flops * density / masked_s,
            "gathered_useful": dense_flops * density / gathered_s,
        },
        "ratios": {
            "window_over_full_time": window_s / full_s,
            "masked_over_full_time": masked_s / full_s,
            "gathered_over_full_time": gathered_s / full_s,
            "exact_density": density,
            "block_density": visited,
            "visited_flops_over_full_flops": visited_flops / dense_flops,
            # How far the window kernel is from doing only the FLOPs the exact mask needs.
            "window_time_over_exact_flops_share": window_s / full_s / density,
        },
    }


def run(size: str = "full", repeats: int | None = None) -> dict[str, Any]:
    """Measure every grid of ``size`` (``"full"`` or ``"smoke"``) and return the figures."""
    cases = FULL_CASES if size == "full" else SMOKE_CASES
    if repeats is None:
        repeats = 3 if size == "full" else 1
    compile_threads = limit_compile_workers()
    load_start = load_average()
    results = []
    # Masks first, smallest grid first, so each build's peak memory shows in the process peak.
    masks = {case.label: measure_block_mask(case, repeats=3 if size == "full" else 1) for case in cases}
    for case in cases:
        logger.info("Timing %s: %d frames of %dx%d tokens, %d heads", case.label, case.num_frames, case.height, case.width, case.num_heads)
        geometry = case.geometry()
        row = {
            "grid": case.label,
            "num_frames": case.num_frames,
            "height_tokens": case.height,
            "width_tokens": case.width,
            "sequence_length": geometry.sequence_length,
            "num_heads": case.num_heads,
            "head_dim": HEAD_DIM,
            "window": [min(2 * geometry.half_height + 1, case.height), min(2 * geometry.half_width + 1, case.width)],
            "block_mask": masks[case.label],
            **measure_kernels(case, repeats),
        }
        results.append(row)
        gc.collect()
    return {
        "size": size,
        "dtype": "float32",
        "repeats": repeats,
        "load_average_start": load_start,
        "inductor_compile_threads": compile_threads,
        "notes": (
            "One head of Wan 2.1 1.3B's 12 to keep each call within seconds on CPU; "
            "ratios are per call on the same tensors. FLOPs count 4*L*L*head_dim per head; "
            "visited FLOPs use the padded tiled length."
        ),
        "grids": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = benchmark_parser(__doc__, ("full", "smoke"), "grids to run (default: full)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per grid (default: 3, smoke 1)")
    args = parser.parse_args(argv)
    start_run(args)
    figures = run(args.size, args.repeats)
    path = write_results(NAME, figures, module_command(NAME, argv), args.output_dir)
    print(f"wrote {path}")
    for row in figures["grids"]:
        ratios = row["ratios"]
        print(
            f"{row['grid']:>6}: full {row['times']['full']['median_s']:.3f} s, "
            f"masked {row['times']['masked']['median_s']:.3f} s, window {row['times']['window']['median_s']:.3f} s, "
            f"gathered {row['times']['gathered']['median_s']:.3f} s; "
            f"window/full {ratios['window_over_full_time']:.2f}, block density {ratios['block_density']:.2f}, "
            f"exact density {ratios['exact_density']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
