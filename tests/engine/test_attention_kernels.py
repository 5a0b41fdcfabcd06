"""Window attention kernels and block masks against dense SDPA with the same boolean mask."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from freeswim_engine.attention import WindowGeometry, check_compiled_attention, kernels
from freeswim_engine.attention.tiles import BLOCK_SIZE, TiledLayout, tiled_block_mask

SCALE = 0.3

# Sequence lengths 234, 231 and 200 are not multiples of 128; 256 is.
KERNEL_GEOMETRIES = {
    "larger-than-window": WindowGeometry(2, 9, 13, half_height=2, half_width=3),
    "no-inward": WindowGeometry(3, 7, 11, half_height=1, half_width=2, use_inward=False),
    "rows-covered-only": WindowGeometry(2, 5, 20, half_height=2, half_width=3),
    "multiple-of-128": WindowGeometry(1, 16, 16, half_height=3, half_width=3),
}

BLOCK_GEOMETRIES = {
    **KERNEL_GEOMETRIES,
    "many-small-frames": WindowGeometry(9, 5, 6, half_height=1, half_width=1),
    "long-rows": WindowGeometry(2, 6, 150, half_height=1, half_width=20),
    "covers-grid": WindowGeometry(3, 5, 7, half_height=2, half_width=3),
}


def _qkv(geometry: WindowGeometry, heads: int = 2, head_dim: int = 16) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(geometry.sequence_length)
    shape = (1, heads, geometry.sequence_length, head_dim)
    return [torch.randn(shape, generator=generator) for _ in range(3)]


def _dense_reference(geometry: WindowGeometry, query, key, value) -> torch.Tensor:
    return F.scaled_dot_product_attention(query, key, value, attn_mask=geometry.dense_mask(), scale=SCALE)


def _listed(counts: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(query blocks, key blocks) booleans of the blocks a BlockMask lists."""
    num_query_blocks, num_kv_blocks = indices.shape[-2:]
    listed = torch.zeros(num_query_blocks, num_kv_blocks, dtype=torch.bool)
    for row in range(num_query_blocks):
        listed[row, indices[0, 0, row, : counts[0, 0, row]].long()] = True
    return listed


def _evaluated_blocks(layout: TiledLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """(visible, full) block tables from the tiled mask_mod at every pair, counting real queries only."""
    length = layout.sequence_length
    indices = torch.arange(length)
    zero = torch.zeros((), dtype=torch.long)
    mask = layout.mask_mod()(zero, zero, indices[:, None], indices[None, :])
    real = (layout.to_tiles(torch.ones(1, 1, layout.geometry.sequence_length, 1)) > 0).flatten()
    num_blocks = length // BLOCK_SIZE
    pairs = mask.view(num_blocks, BLOCK_SIZE, num_blocks, BLOCK_SIZE)
    real_query = real.view(num_blocks, BLOCK_SIZE)[:, :, None, None]
    visible = (pairs & real_query).any(dim=3).any(dim=1)
    full = (pairs | ~real_query).all(dim=3).all(dim=1)
    return visible, full


@pytest.mark.parametrize("name", BLOCK_GEOMETRIES)
def test_tiled_block_mask_matches_rule(name):
    layout = TiledLayout(BLOCK_GEOMETRIES[name])
    built = layout.block_mask(torch.device("cpu"))
    visible, full = _evaluated_blocks(layout)
    built_full = _listed(built.full_kv_num_blocks, built.full_kv_indices)
    built_partial = _listed(built.kv_num_blocks, built.kv_indices)
    assert torch.equal(built_full, full)
    assert torch.equal(built_partial, visible & ~full)


@pytest.mark.parametrize("name", BLOCK_GEOMETRIES)
def test_tiled_mask_mod_matches_rule(name):
    geometry = BLOCK_GEOMETRIES[name]
    layout = TiledLayout(geometry)
    order = layout.to_tiles(torch.arange(geometry.sequence_length, dtype=torch.float64)[None, None, :, None] + 1)
    order = order.flatten().long() - 1  # row-major index of each tiled slot, -1 for padding
    real = order >= 0
    indices = torch.arange(layout.sequence_length)
    zero = torch.zeros((), dtype=torch.long)
    tiled = layout.mask_mod()(zero, zero, indices[:, None], indices[None, :])
    expected = geometry.dense_mask()[order[real]][:, order[real]]
    assert torch.equal(tiled[real][:, real], expected)
    assert not tiled[:, ~real].any()  # padded keys are never visible


@pytest.mark.parametrize("name", BLOCK_GEOMETRIES)
def test_tiles_round_trip(name):
    geometry = BLOCK_GEOMETRIES[name]
    layout = TiledLayout(geometry)
    tokens = torch.randn(2, 3, geometry.sequence_length, 4)
    tiled = layout.to_tiles(tokens)
    assert tiled.shape == (2, 3, layout.sequence_length, 4)
    assert layout.sequence_length % BLOCK_SIZE == 0
    assert torch.equal(layout.from_tiles(tiled), tokens)


def test_block_mask_cached_per_geometry_and_device():
    geometry = KERNEL_GEOMETRIES["larger-than-window"]
    first = tiled_block_mask(geometry, "cpu")
    assert tiled_block_mask(geometry, torch.device("cpu")) is first
    assert tiled_block_mask(KERNEL_GEOMETRIES["no-inward"], "cpu") is not first


@pytest.mark.parametrize("name", KERNEL_GEOMETRIES)
def test_flex_attention_matches_dense_sdpa(name):
    geometry = KERNEL_GEOMETRIES[name]
    query, key, value = _qkv(geometry)
    result = kernels.flex_window_attention(query, key, value, geometry, SCALE)
    assert kernels.compiled_attention_failure() is None
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value), atol=2e-5, rtol=1e-4)


def test_window_attention_on_cpu_is_gathered(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("flex attention must not run for CPU tensors")

    monkeypatch.setattr(kernels, "flex_window_attention", fail)
    geometry = KERNEL_GEOMETRIES["larger-than-window"]
    query, key, value = _qkv(geometry)
    result = kernels.window_attention(query, key, value, geometry, SCALE)
    assert torch.equal(result, kernels.gathered_window_attention(query, key, value, geometry, SCALE))
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value))


@pytest.mark.parametrize("name", ["equal-to-window", "smaller-than-window"])
def test_window_attention_covering_grid_is_full_attention(name):
    geometry = {
        "equal-to-window": WindowGeometry(2, 5, 7, half_height=2, half_width=3),
        "smaller-than-window": WindowGeometry(2, 3, 4, half_height=2, half_width=3),
    }[name]
    query, key, value = _qkv(geometry)
    result = kernels.window_attention(query, key, value, geometry, SCALE)
    assert torch.equal(result, F.scaled_dot_product_attention(query, key, value, scale=SCALE))
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value))


@pytest.mark.parametrize("name", BLOCK_GEOMETRIES)
def test_gathered_attention_matches_dense_sdpa(name):
    geometry = BLOCK_GEOMETRIES[name]
    query, key, value = _qkv(geometry)
    result = kernels.gathered_window_attention(query, key, value, geometry, SCALE)
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value))


def test_gathered_attention_small_chunks(monkeypatch):
    monkeypatch.setattr(kernels, "QUERY_TILE", (2, 3))
    monkeypatch.setattr(kernels, "_GATHERED_SCORE_ELEMENTS", 1000)  # one frame of queries per SDPA call
    geometry = WindowGeometry(3, 9, 13, half_height=2, half_width=3)
    query, key, value = _qkv(geometry)
    result = kernels.gathered_window_attention(query, key, value, geometry, SCALE)
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value))


def test_gathered_attention_transposed_inputs():
    geometry = KERNEL_GEOMETRIES["larger-than-window"]
    query, key, value = (tensor.transpose(1, 2).contiguous().transpose(1, 2) for tensor in _qkv(geometry))
    assert not query.is_contiguous()
    result = kernels.gathered_window_attention(query, key, value, geometry, SCALE)
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value))


def test_compile_failure_falls_back_once(monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(kernels, "_compile_failure", None)
    monkeypatch.setattr(kernels, "_compiled_window_attention", fail)
    geometry = KERNEL_GEOMETRIES["larger-than-window"]
    query, key, value = _qkv(geometry)
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        first = kernels.flex_window_attention(query, key, value, geometry, SCALE)
        second = kernels.flex_window_attention(query, key, value, geometry, SCALE)

    assert "no C compiler" in kernels.compiled_attention_failure()
    assert len([record for record in caplog.records if "Compiled flex attention failed" in record.message]) == 1
    expected = _dense_reference(geometry, query, key, value)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)


def test_check_compiled_attention_on_cpu():
    works, message = check_compiled_attention("cpu")
    assert works, message
    assert "cpu" in message


def test_repeated_geometry_compiles_once():
    geometry = KERNEL_GEOMETRIES["larger-than-window"]
    query, key, value = _qkv(geometry)
    kernels.flex_window_attention(query, key, value, geometry, SCALE)
    compiled_frames = dict(torch._dynamo.utils.counters["frames"])

    for heads_seed in range(3):
        generator = torch.Generator().manual_seed(heads_seed)
        fresh = [torch.randn(query.shape, generator=generator) for _ in range(3)]
        kernels.flex_window_attention(*fresh, geometry, SCALE)

    assert dict(torch._dynamo.utils.counters["frames"]) == compiled_frames
    assert kernels.compiled_attention_failure() is None


def test_recompile_limit_falls_back(monkeypatch):
    monkeypatch.setattr(kernels, "_compile_failure", None)
    monkeypatch.setattr(kernels, "_RECOMPILE_LIMIT", 1)
    for geometry in (WindowGeometry(1, 9, 11, half_height=1, half_width=2),
                     WindowGeometry(1, 10, 11, half_height=1, half_width=2)):
        query, key, value = _qkv(geometry)
        result = kernels.flex_window_attention(query, key, value, geometry, SCALE)
        torch.testing.assert_close(result, _dense_reference(geometry, query, key, value), atol=2e-5, rtol=1e-4)

    assert "FailOnRecompileLimitHit" in kernels.compiled_attention_failure()
