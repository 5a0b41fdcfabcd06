"""Flex-attention block masks of the sliding window, computed from the geometry.

Evaluating the window rule at every (query, key) pair, as ``create_block_mask``
does, costs time and memory in ``L**2``. Here the block structure comes from
per-axis arithmetic instead: for each query block, count per spatial position
how many of its queries may see that position, then read each key block's
spatial range from prefix sums. Key blocks with at least one allowed pair
are listed. Blocks where every pair is allowed are listed as full, so flex
attention skips evaluating the mask there.
"""

from __future__ import annotations

import logging
import threading

import torch
from torch.nn.attention.flex_attention import BlockMask

from freeswim_engine.attention.geometry import WindowGeometry

logger = logging.getLogger(__name__)

BLOCK_SIZE = 128  # tokens per flex-attention block, along queries and keys
_QUERY_BLOCKS_PER_CHUNK = 64  # bounds the (blocks, 128, height) temporaries

_cache: dict[tuple[WindowGeometry, str], BlockMask] = {}
_cache_lock = threading.Lock()


def window_block_mask(geometry: WindowGeometry, device: torch.device | str) -> BlockMask:
    """Return the block mask of ``geometry`` on ``device``, built once and reused for every step and block."""
    device = torch.device(device)
    key = (geometry, str(device))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    block_mask = build_window_block_mask(geometry, device)
    with _cache_lock:
        _cache.setdefault(key, block_mask)
        logger.info(
            "Built the window block mask for a %dx%dx%d token grid on %s (%.0f%% of blocks visited)",
            geometry.num_frames,
            geometry.height,
            geometry.width,
            device,
            100.0 * block_density(block_mask),
        )
        return _cache[key]


def clear_block_mask_cache() -> None:
    """Drop every cached block mask (and the device memory behind it)."""
    with _cache_lock:
        _cache.clear()


def block_density(block_mask: BlockMask) -> float:
    """Return the fraction of (query block, key block) pairs that the kernel visits."""
    num_query_blocks, num_kv_blocks = block_mask.kv_indices.shape[-2:]
    visited = block_mask.kv_num_blocks.sum()
    if block_mask.full_kv_num_blocks is not None:
        visited = visited + block_mask.full_kv_num_blocks.sum()
    return float(visited) / float(num_query_blocks * num_kv_blocks)


def build_window_block_mask(geometry: WindowGeometry, device: torch.device) -> BlockMask:
    """Build the block mask of ``geometry`` from its axes, without evaluating all ``L**2`` pairs."""
    length = geometry.sequence_length
    num_blocks = -(-length // BLOCK_SIZE)
    kv_segments = _kv_block_segments(geometry, num_blocks, device)

    any_allowed = []
    all_allowed = []
    for first in range(0, num_blocks, _QUERY_BLOCKS_PER_CHUNK):
        last = min(first + _QUERY_BLOCKS_PER_CHUNK, num_blocks)
        some, every = _block_pairs(geometry, first, last, kv_segments, device)
        any_allowed.append(some)
        all_allowed.append(every)
    visible = torch.cat(any_allowed)
    full = torch.cat(all_allowed)

    # Blocks at the sequence end hold padding positions; keep them partial so
    # the kernel evaluates the mask there instead of trusting a full-block flag.
    tail_blocks = length % BLOCK_SIZE != 0
    if tail_blocks:
        full[-1, :] = False
        full[:, -1] = False
    partial = visible & ~full

    kv_num_blocks, kv_indices = _listed_blocks(partial)
    full_kv_num_blocks, full_kv_indices = _listed_blocks(full)
    return BlockMask.from_kv_blocks(
        kv_num_blocks,
        kv_indices,
        full_kv_num_blocks,
        full_kv_indices,
        BLOCK_SIZE=BLOCK_SIZE,
        mask_mod=geometry.mask_mod(),
        seq_lengths=(length, length),
        compute_q_blocks=False,  # the transposed lists serve only the backward pass
    )


def _kv_block_segments(geometry: WindowGeometry, num_blocks: int, device: torch.device) -> torch.Tensor:
    """Return ``(num_blocks, 4)`` spatial index ranges ``[a1, b1) + [a2, b2)`` that each key block covers.

    A block of consecutive tokens covers one spatial range, or two when it
    wraps past a frame end, or every position when it spans a whole frame.
    """
    length = geometry.sequence_length
    tokens_per_frame = geometry.tokens_per_frame
    start = torch.arange(num_blocks, device=device, dtype=torch.long) * BLOCK_SIZE
    end = torch.clamp(start + BLOCK_SIZE, max=length)  # exclusive
    first = start % tokens_per_frame
    last = (end - 1) % tokens_per_frame  # inclusive
    spans_frame = (end - start) >= tokens_per_frame
    wraps = ~spans_frame & (first > last)
    zero = torch.zeros_like(start)

    a1 = torch.where(spans_frame, zero, first)
    b1 = torch.where(spans_frame, zero + tokens_per_frame, torch.where(wraps, zero + tokens_per_frame, last + 1))
    a2 = zero
    b2 = torch.where(wraps, last + 1, zero)
    return torch.stack([a1, b1, a2, b2], dim=1)


def _block_pairs(
    geometry: WindowGeometry,
    first_block: int,
    last_block: int,
    kv_segments: torch.Tensor,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(any_allowed, all_allowed)``, each ``(query blocks, key blocks)``, for a range of query blocks."""
    rows, columns = geometry.rows, geometry.columns
    num_query_blocks = last_block - first_block

    tokens = torch.arange(first_block * BLOCK_SIZE, last_block * BLOCK_SIZE, device=device)
    is_query = tokens < geometry.sequence_length
    spatial = tokens % geometry.tokens_per_frame
    centre_y = torch.clamp(spatial // geometry.width, rows.centre_min, rows.centre_max)
    centre_x = torch.clamp(spatial % geometry.width, columns.centre_min, columns.centre_max)

    ys = torch.arange(geometry.height, device=device)
    xs = torch.arange(geometry.width, device=device)
    near_y = ((ys[None, :] - centre_y[:, None]).abs() <= rows.half) & is_query[:, None]
    near_x = (xs[None, :] - centre_x[:, None]).abs() <= columns.half

    # counts[b, y, x]: how many queries of block b may attend to spatial position (y, x).
    # Exact in float32 because a count never exceeds BLOCK_SIZE.
    near_y = near_y.view(num_query_blocks, BLOCK_SIZE, geometry.height).to(torch.float32)
    near_x = near_x.view(num_query_blocks, BLOCK_SIZE, geometry.width).to(torch.float32)
    counts = torch.bmm(near_y.transpose(1, 2), near_x).flatten(1)
    queries_per_block = is_query.view(num_query_blocks, BLOCK_SIZE).sum(dim=1, keepdim=True)

    seen_by_some = _range_sums(counts > 0, kv_segments)
    missed_by_some = _range_sums(counts < queries_per_block, kv_segments)
    return seen_by_some > 0, missed_by_some == 0


def _range_sums(flags: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Sum ``flags`` (``(blocks, positions)``) over each key block's segments; returns ``(blocks, key blocks)``."""
    prefix = torch.nn.functional.pad(torch.cumsum(flags.to(torch.int32), dim=1), (1, 0))
    a1, b1, a2, b2 = segments.unbind(dim=1)
    first = prefix[:, b1] - prefix[:, a1]
    second = prefix[:, b2] - prefix[:, a2]
    return first + second


def _listed_blocks(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a ``(query blocks, key blocks)`` selection to flex attention's (counts, indices) form."""
    counts = selected.sum(dim=1, dtype=torch.int32)
    # A stable sort on "not selected" lists the selected key blocks first, in order.
    indices = torch.argsort((~selected).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return counts[None, None], indices[None, None].contiguous()
