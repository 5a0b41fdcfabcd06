"""Tiled token order for flex attention: each 128-token block is one 8x16 tile of one frame.

In row-major order a 128-token block is a strip of about one image row, and a
window edge crosses many such strips. Compact tiles put more blocks wholly
inside or outside a window. For a 3x68x120 token grid and a 31x53 window,
row-major order visits 17,663 of 192x192 blocks and tiled order 13,932 of
216x216, padding included. The grid is padded with zeros to whole tiles.
Padded keys are masked out, and the outputs of padded queries are dropped.

Because a tile is a rectangle and the window rule is a product of a row rule
and a column rule, a tile pair is visible when some row pair and some column
pair are, and full when all are. So the block mask comes from two small
per-axis tables instead of ``L**2`` evaluations.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask

from freeswim_engine.attention.geometry import AxisWindow, MaskMod, WindowGeometry

logger = logging.getLogger(__name__)

TILE_HEIGHT = 8  # token rows per tile
TILE_WIDTH = 16  # token columns per tile
BLOCK_SIZE = TILE_HEIGHT * TILE_WIDTH  # flex-attention block: exactly one tile

_cache: dict[tuple[WindowGeometry, str], BlockMask] = {}
_cache_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class TiledLayout:
    """Padded, tile-ordered token layout of a ``WindowGeometry``: ``(frame, tile row, tile column, y, x)``."""

    geometry: WindowGeometry

    @property
    def tile_rows(self) -> int:
        return -(-self.geometry.height // TILE_HEIGHT)

    @property
    def tile_columns(self) -> int:
        return -(-self.geometry.width // TILE_WIDTH)

    @property
    def tiles_per_frame(self) -> int:
        return self.tile_rows * self.tile_columns

    @property
    def sequence_length(self) -> int:
        """Tokens after padding; always a multiple of ``BLOCK_SIZE``."""
        return self.geometry.num_frames * self.tiles_per_frame * BLOCK_SIZE

    def to_tiles(self, tokens: torch.Tensor) -> torch.Tensor:
        """Reorder ``(batch, heads, L, dim)`` row-major tokens into the padded tile order."""
        geometry = self.geometry
        grid = tokens.unflatten(2, (geometry.num_frames, geometry.height, geometry.width))
        pad_height = self.tile_rows * TILE_HEIGHT - geometry.height
        pad_width = self.tile_columns * TILE_WIDTH - geometry.width
        grid = F.pad(grid, (0, 0, 0, pad_width, 0, pad_height))
        batch_size, heads, frames, _, _, dim = grid.shape
        tiles = grid.view(
            batch_size, heads, frames, self.tile_rows, TILE_HEIGHT, self.tile_columns, TILE_WIDTH, dim
        )
        return tiles.permute(0, 1, 2, 3, 5, 4, 6, 7).reshape(batch_size, heads, self.sequence_length, dim)

    def from_tiles(self, tokens: torch.Tensor) -> torch.Tensor:
        """Undo ``to_tiles``: return ``(batch, heads, L, dim)`` in row-major order without padding."""
        geometry = self.geometry
        batch_size, heads, _, dim = tokens.shape
        tiles = tokens.view(
            batch_size, heads, geometry.num_frames, self.tile_rows, self.tile_columns, TILE_HEIGHT, TILE_WIDTH, dim
        )
        grid = tiles.permute(0, 1, 2, 3, 5, 4, 6, 7).reshape(
            batch_size, heads, geometry.num_frames, self.tile_rows * TILE_HEIGHT, self.tile_columns * TILE_WIDTH, dim
        )
        return grid[:, :, :, : geometry.height, : geometry.width].flatten(2, 4)

    def mask_mod(self) -> MaskMod:
        """Return the window rule over tiled indices; padded keys are never visible.

        Integer arithmetic only, so indices past the end are safe and the
        function traces under ``torch.compile``.
        """
        rows, columns = self.geometry.rows, self.geometry.columns
        tiles_per_frame = self.tiles_per_frame
        tile_columns = self.tile_columns

        def position(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            tile = (index // BLOCK_SIZE) % tiles_per_frame
            within = index % BLOCK_SIZE
            y = (tile // tile_columns) * TILE_HEIGHT + within // TILE_WIDTH
            x = (tile % tile_columns) * TILE_WIDTH + within % TILE_WIDTH
            return y, x

        def tiled_window_mask_mod(
            batch: torch.Tensor, head: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
        ) -> torch.Tensor:
            query_y, query_x = position(q_idx)
            key_y, key_x = position(kv_idx)
            centre_y = torch.clamp(query_y, rows.centre_min, rows.centre_max)
            centre_x = torch.clamp(query_x, columns.centre_min, columns.centre_max)
            near_y = (key_y - centre_y).abs() <= rows.half
            near_x = (key_x - centre_x).abs() <= columns.half
            is_key = (key_y < rows.length) & (key_x < columns.length)
            return near_y & near_x & is_key

        return tiled_window_mask_mod

    def block_mask(self, device: torch.device) -> BlockMask:
        """Build the block mask from per-axis tile tables; one block is one tile of one frame."""
        rows_any, rows_all = _axis_tile_pairs(self.geometry.rows, TILE_HEIGHT, self.tile_rows, device)
        columns_any, columns_all = _axis_tile_pairs(self.geometry.columns, TILE_WIDTH, self.tile_columns, device)

        # (query tile, key tile) within one frame, tiles numbered row by row.
        visible = (rows_any[:, None, :, None] & columns_any[None, :, None, :]).reshape(
            self.tiles_per_frame, self.tiles_per_frame
        )
        full = (rows_all[:, None, :, None] & columns_all[None, :, None, :]).reshape(
            self.tiles_per_frame, self.tiles_per_frame
        )
        # Every frame attends to every frame, so the frame-level pattern repeats.
        frames = self.geometry.num_frames
        visible = visible.repeat(frames, frames)
        full = full.repeat(frames, frames)

        kv_num_blocks, kv_indices = _listed_blocks(visible & ~full)
        full_kv_num_blocks, full_kv_indices = _listed_blocks(full)
        return BlockMask.from_kv_blocks(
            kv_num_blocks,
            kv_indices,
            full_kv_num_blocks,
            full_kv_indices,
            BLOCK_SIZE=BLOCK_SIZE,
            mask_mod=self.mask_mod(),
            seq_lengths=(self.sequence_length, self.sequence_length),
            compute_q_blocks=False,  # the transposed lists serve only the backward pass
        )


def tiled_block_mask(geometry: WindowGeometry, device: torch.device | str) -> BlockMask:
    """Return the tiled block mask of ``geometry`` on ``device``, built once and reused for every step and block."""
    device = torch.device(device)
    key = (geometry, str(device))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
    block_mask = TiledLayout(geometry).block_mask(device)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = block_mask
            logger.info(
                "Built the window block mask for a %dx%dx%d token grid on %s (%.0f%% of tile pairs visited)",
                geometry.num_frames,
                geometry.height,
                geometry.width,
                device,
                100.0 * block_density(block_mask),
            )
        return _cache[key]


def clear_block_mask_cache() -> None:
    """Drop every cached block mask and the memory behind it."""
    with _cache_lock:
        _cache.clear()


def block_density(block_mask: BlockMask) -> float:
    """Return the fraction of (query block, key block) pairs that the kernel visits."""
    num_query_blocks, num_kv_blocks = block_mask.kv_indices.shape[-2:]
    visited = block_mask.kv_num_blocks.sum()
    if block_mask.full_kv_num_blocks is not None:
        visited = visited + block_mask.full_kv_num_blocks.sum()
    return float(visited) / float(num_query_blocks * num_kv_blocks)


def _axis_tile_pairs(
    axis: AxisWindow, tile_size: int, num_tiles: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(any, all)``, each ``(query tiles, key tiles)``, of the window rule along one axis.

    ``any`` counts only real (unpadded) queries and keys. ``all`` requires
    every real query to reach every key slot of the key tile, padding
    included, so a key tile with padding is never full. Padded queries may
    then attend to keys outside their window, but their outputs are dropped.
    """
    positions = torch.arange(num_tiles * tile_size, device=device)
    is_real = positions < axis.length
    centres = torch.clamp(positions, axis.centre_min, axis.centre_max)
    near = (positions[None, :] - centres[:, None]).abs() <= axis.half
    near = near & is_real[None, :]  # padded keys are never visible

    # (query tile, query offset, key tile, key offset)
    tiled = near.view(num_tiles, tile_size, num_tiles, tile_size)
    real_query = is_real.view(num_tiles, tile_size)[:, :, None, None]
    any_pair = (tiled & real_query).any(dim=3).any(dim=1)
    all_pair = (tiled | ~real_query).all(dim=3).all(dim=1)
    return any_pair, all_pair


def _listed_blocks(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a ``(query blocks, key blocks)`` selection to flex attention's (counts, indices) form."""
    counts = selected.sum(dim=1, dtype=torch.int32)
    # A stable sort on "not selected" lists the selected key blocks first, in order.
    indices = torch.argsort((~selected).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return counts[None, None], indices[None, None].contiguous()
