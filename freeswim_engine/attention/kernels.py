"""Attention kernels: full attention, and window attention by gathered SDPA or compiled flex attention.

On the CPU, window attention runs SDPA over each query tile's gathered key
window. Elsewhere it runs compiled flex attention over tokens reordered into
8x16 tiles. Compilation can fail, for example without a C compiler, on an
unsupported GPU or at the recompile limit. The engine then logs it once and
switches to the gathered SDPA path, which is exact and needs no compiler.
Flex attention is never run uncompiled, because its eager form materialises
every score and runs out of memory at video sizes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from freeswim_engine.attention.geometry import AxisWindow, WindowGeometry
from freeswim_engine.attention.tiles import TiledLayout, tiled_block_mask

logger = logging.getLogger(__name__)

# Distinct compiled shapes allowed for flex attention before Dynamo raises
# instead of falling back to eager flex attention. A render compiles one
# shape per grid size and dtype, because flex attention always gets batch 1.
_RECOMPILE_LIMIT = 64
# Query tile of the gathered path, in tokens (rows, columns): 128 positions per frame.
QUERY_TILE = (8, 16)
# Scores per SDPA call in the gathered path: 2**26 float32 scores are 256 MiB.
_GATHERED_SCORE_ELEMENTS = 1 << 26

# Errors that mean the compiled kernel is unusable here, as opposed to bad inputs.
_COMPILE_ERRORS = (
    RuntimeError,
    AssertionError,
    torch._dynamo.exc.TorchDynamoException,
    torch._dynamo.exc.FailOnRecompileLimitHit,
)

# Machines with at most this many cores compile in-process (see _limit_compile_workers).
SMALL_MACHINE_CORES = 4

_compiled_flex: Callable[..., Any] | None = None
_compile_failure: str | None = None
_state_lock = threading.Lock()


def full_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Scaled dot-product attention over every key; tensors are ``(batch, heads, tokens, head_dim)``."""
    return F.scaled_dot_product_attention(query, key, value, scale=scale)


def window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    geometry: WindowGeometry,
    scale: float | None,
) -> torch.Tensor:
    """Self-attention restricted to the sliding window of ``geometry``.

    Tensors are ``(batch, heads, L, head_dim)`` with ``L = geometry.sequence_length``.
    CPU tensors use gathered-window SDPA because it was the fastest there. On
    a shared 2-core CPU (fp32, 3x68x120 tokens, 31x53 window, 2 heads of 128)
    one call took 12.4 s, against 28.3 s for compiled flex attention and
    15.2 s for full SDPA (``python -m freeswim_engine.attention.benchmark``).
    Other devices use compiled flex attention.
    """
    _check_length(query, geometry)
    if geometry.covers_grid:
        return full_attention(query, key, value, scale)
    if query.device.type == "cpu":
        return gathered_window_attention(query, key, value, geometry, scale)
    # NOTE: the test suite has no GPU, so this path was verified only with the
    # same kernel on CPU tensors. check_compiled_attention("cuda") runs it on a GPU.
    return flex_window_attention(query, key, value, geometry, scale)


def flex_window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    geometry: WindowGeometry,
    scale: float | None,
) -> torch.Tensor:
    """Window attention with compiled flex attention over tiled tokens, on any device.

    Falls back to ``gathered_window_attention`` for the rest of the process
    when compilation fails, and logs that once.
    """
    _check_length(query, geometry)
    if _compile_failure is None:
        try:
            return _compiled_window_attention(query, key, value, geometry, scale)
        except torch.OutOfMemoryError:
            raise
        except _COMPILE_ERRORS as error:
            _record_compile_failure(error)
    return gathered_window_attention(query, key, value, geometry, scale)


def _check_length(query: torch.Tensor, geometry: WindowGeometry) -> None:
    if query.shape[-2] != geometry.sequence_length:
        raise ValueError(
            f"window attention got {query.shape[-2]} tokens but the geometry has {geometry.sequence_length}"
        )


def gathered_window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    geometry: WindowGeometry,
    scale: float | None,
) -> torch.Tensor:
    """Exact window attention with SDPA, one spatial tile of queries at a time.

    For each ``QUERY_TILE`` of query positions (all frames), only the keys
    inside the union of their windows are gathered, and SDPA runs with the
    exact boolean mask over that key set. No compiler is needed, and memory
    stays near ``_GATHERED_SCORE_ELEMENTS`` scores per SDPA call.
    """
    batch_size, heads, _, head_dim = query.shape
    grid = (geometry.num_frames, geometry.height, geometry.width)
    queries = query.unflatten(2, grid)
    keys = key.unflatten(2, grid)
    values = value.unflatten(2, grid)
    output = torch.empty_like(queries)

    tile_height, tile_width = QUERY_TILE
    for y_start in range(0, geometry.height, tile_height):
        y_stop = min(y_start + tile_height, geometry.height)
        key_rows, near_y = _axis_key_range(geometry.rows, y_start, y_stop, query.device)
        for x_start in range(0, geometry.width, tile_width):
            x_stop = min(x_start + tile_width, geometry.width)
            key_columns, near_x = _axis_key_range(geometry.columns, x_start, x_stop, query.device)

            # spatial_mask[query position in tile, key position in the gathered range]
            spatial_mask = (near_y[:, None, :, None] & near_x[None, :, None, :]).flatten(2).flatten(0, 1)
            tile_keys = keys[:, :, :, key_rows, key_columns].flatten(2, 4)
            tile_values = values[:, :, :, key_rows, key_columns].flatten(2, 4)
            key_mask = spatial_mask.repeat(1, geometry.num_frames)

            frames_per_call = max(1, _GATHERED_SCORE_ELEMENTS // (heads * key_mask.numel()))
            for frame_start in range(0, geometry.num_frames, frames_per_call):
                frame_stop = min(frame_start + frames_per_call, geometry.num_frames)
                tile_queries = queries[:, :, frame_start:frame_stop, y_start:y_stop, x_start:x_stop]
                mask = key_mask.repeat(frame_stop - frame_start, 1)
                attended = F.scaled_dot_product_attention(
                    tile_queries.flatten(2, 4), tile_keys, tile_values, attn_mask=mask, scale=scale
                )
                output[:, :, frame_start:frame_stop, y_start:y_stop, x_start:x_stop] = attended.view(
                    batch_size, heads, frame_stop - frame_start, y_stop - y_start, x_stop - x_start, head_dim
                )
    return output.flatten(2, 4)


def _axis_key_range(
    axis: AxisWindow, start: int, stop: int, device: torch.device
) -> tuple[slice, torch.Tensor]:
    """Return the key slice that the windows of queries ``start..stop-1`` reach, and their ``(queries, keys)`` mask."""
    centre_first = min(max(start, axis.centre_min), axis.centre_max)
    centre_last = min(max(stop - 1, axis.centre_min), axis.centre_max)
    key_start = max(0, centre_first - axis.half)
    key_stop = min(axis.length, centre_last + axis.half + 1)

    centres = torch.clamp(torch.arange(start, stop, device=device), axis.centre_min, axis.centre_max)
    positions = torch.arange(key_start, key_stop, device=device)
    near = (positions[None, :] - centres[:, None]).abs() <= axis.half
    return slice(key_start, key_stop), near


def compiled_attention_failure() -> str | None:
    """Return why compiled flex attention was switched off in this process, or None while it is in use."""
    return _compile_failure


def check_compiled_attention(device: torch.device | str | None = None) -> tuple[bool, str]:
    """Compile flex attention on a small window and compare it with gathered-window SDPA.

    Returns ``(works, message)``. ``device`` defaults to the first CUDA device
    when there is one, else the CPU. Takes seconds to minutes, because it
    compiles a kernel.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    geometry = WindowGeometry(num_frames=2, height=9, width=15, half_height=2, half_width=3)
    generator = torch.Generator().manual_seed(0)
    shape = (1, 2, geometry.sequence_length, 16)
    query, key, value = (torch.randn(shape, generator=generator).to(device) for _ in range(3))
    # CPU renders never call flex attention, so the message states that the result does not affect them.
    cpu_note = " CPU renders use gathered-window SDPA, which needs no compiler." if device.type == "cpu" else ""
    try:
        result = _compiled_window_attention(query, key, value, geometry, scale=None)
    except torch.OutOfMemoryError:
        raise
    except _COMPILE_ERRORS as error:
        return False, f"compiled flex attention failed on {device}: {type(error).__name__}: {error}.{cpu_note}"
    expected = gathered_window_attention(query, key, value, geometry, scale=None)
    difference = float((result - expected).abs().max())
    if difference > 1e-4:
        return False, f"compiled flex attention on {device} differs from gathered SDPA by {difference:.2e}.{cpu_note}"
    return True, (
        f"compiled flex attention works on {device} (largest difference from gathered SDPA {difference:.1e}).{cpu_note}"
    )


def _compiled_window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    geometry: WindowGeometry,
    scale: float | None,
) -> torch.Tensor:
    layout = TiledLayout(geometry)
    block_mask = tiled_block_mask(geometry, query.device)
    flex = _get_compiled_flex()
    query, key, value = (layout.to_tiles(tensor) for tensor in (query, key, value))
    # Raising on the recompile limit, rather than Dynamo's default of running
    # the function eagerly, keeps eager flex attention off video-size inputs.
    with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True):
        output = flex(query, key, value, block_mask=block_mask, scale=scale)
    assert isinstance(output, torch.Tensor)
    return layout.from_tiles(output)


def _get_compiled_flex() -> Callable[..., Any]:
    global _compiled_flex
    with _state_lock:
        if _compiled_flex is None:
            _limit_compile_workers()
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        return _compiled_flex


def _limit_compile_workers() -> None:
    """Compile in this process on machines with few cores, unless TORCHINDUCTOR_COMPILE_THREADS is set.

    On a loaded 2-core CPU, Inductor's pool of compile workers made the first flex-attention
    compile take 132 s against 15.5 s with one thread (benchmarks/README.md, torch 2.13.0).
    """
    if "TORCHINDUCTOR_COMPILE_THREADS" in os.environ or (os.cpu_count() or 1) > SMALL_MACHINE_CORES:
        return
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1


def _record_compile_failure(error: BaseException) -> None:
    global _compile_failure
    with _state_lock:
        if _compile_failure is not None:
            return
        _compile_failure = f"{type(error).__name__}: {error}"
    logger.warning(
        "Compiled flex attention failed (%s); window attention now uses SDPA over gathered key windows, "
        "which gives the same result without a compiler",
        _compile_failure,
    )
