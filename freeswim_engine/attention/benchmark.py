"""Time one window-attention call per kernel on this machine.

Run ``python -m freeswim_engine.attention.benchmark --frames 3 --height 68 --width 120``
for the 1080p grid of Wan2.1 1.3B. The first flex call, which compiles, is not timed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from freeswim_engine.attention import kernels
from freeswim_engine.attention.geometry import WindowGeometry, freeswim_attention_scale


def main(argv: list[str] | None = None) -> None:
    """Print the best of ``--repeats`` wall times for flex, gathered and full attention."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3, help="latent frames")
    parser.add_argument("--height", type=int, default=68, help="token rows (pixels / 16)")
    parser.add_argument("--width", type=int, default=120, help="token columns (pixels / 16)")
    parser.add_argument("--base-height", type=int, default=480, help="training height in pixels")
    parser.add_argument("--base-width", type=int, default=832, help="training width in pixels")
    parser.add_argument("--heads", type=int, default=2, help="attention heads")
    parser.add_argument("--head-dim", type=int, default=128, help="channels per head")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per kernel")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)

    base_size = (args.base_height, args.base_width)
    geometry = WindowGeometry.for_grid((args.frames, args.height, args.width), base_size, pixels_per_token=16)
    scale = freeswim_attention_scale(base_size, 16, args.head_dim)
    shape = (1, args.heads, geometry.sequence_length, args.head_dim)
    dtype = getattr(torch, args.dtype)
    query, key, value = (torch.randn(shape, device=args.device, dtype=dtype) for _ in range(3))

    kernels.flex_window_attention(query, key, value, geometry, scale)  # compiles
    kernel_calls: dict[str, Callable[[], torch.Tensor]] = {
        "compiled flex (tiled)": lambda: kernels.flex_window_attention(query, key, value, geometry, scale),
        "gathered-window SDPA": lambda: kernels.gathered_window_attention(query, key, value, geometry, scale),
        "full SDPA": lambda: kernels.full_attention(query, key, value, scale),
    }
    print(f"grid {args.frames}x{args.height}x{args.width}, window {2 * geometry.half_height + 1}x"
          f"{2 * geometry.half_width + 1}, {args.heads} heads of {args.head_dim}, {args.dtype} on {args.device}")
    for name, call in kernel_calls.items():
        print(f"{name}: {_best_time(call, args.repeats, args.device):.3f} s")
    failure = kernels.compiled_attention_failure()
    if failure is not None:
        print(f"compiled flex attention failed, so its row timed the fallback: {failure}")


def _best_time(call: Callable[[], torch.Tensor], repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        call()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
