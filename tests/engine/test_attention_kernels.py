"""Window attention kernels and block masks against dense SDPA with the same boolean mask."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask

from freeswim_engine.attention import WindowGeometry, check_compiled_attention, kernels
from freeswim_engine.attention.block_mask import BLOCK_SIZE, build_window_block_mask, window_block_mask

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
    "several-frames-per-block": WindowGeometry(9, 5, 6, half_height=1, half_width=1),
    "long-rows": WindowGeometry(2, 6, 150, half_height=1, half_width=20),
    "covers-grid": WindowGeometry(3, 5, 7, half_height=2, half_width=3),
}


def _qkv(geometry: WindowGeometry, heads: int = 2, head_dim: int = 16) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(geometry.sequence_length)
    shape = (1, heads, geometry.sequence_length, head_dim)
    return [torch.randn(shape, generator=generator) for _ in range(3)]


def _dense_reference(geometry: WindowGeometry, query, key, value) -> torch.Tensor:
    return F.scaled_dot_product_attention(query, key, value, attn_mask=geometry.dense_mask(), scale=SCALE)


def _listed(counts: torch.Tensor | None, indices: torch.Tensor | None, num_kv_blocks: int) -> torch.Tensor:
    """(query blocks, key blocks) booleans of the blocks a BlockMask lists."""
    num_query_blocks = indices.shape[-2]
    listed = torch.zeros(num_query_blocks, num_kv_blocks, dtype=torch.bool)
    for row in range(num_query_blocks):
        listed[row, indices[0, 0, row, : counts[0, 0, row]].long()] = True
    return listed


@pytest.mark.parametrize("name", BLOCK_GEOMETRIES)
def test_block_mask_matches_rule_evaluation(name):
    geometry = BLOCK_GEOMETRIES[name]
    length = geometry.sequence_length
    built = build_window_block_mask(geometry, torch.device("cpu"))
    evaluated = create_block_mask(geometry.mask_mod(), None, None, length, length, device="cpu", _compile=False)
    num_blocks = -(-length // BLOCK_SIZE)

    assert torch.equal(built.to_dense()[0, 0].bool(), evaluated.to_dense()[0, 0].bool())

    # Blocks that touch the padded sequence end are kept partial on purpose; compare the rest.
    whole = length // BLOCK_SIZE
    built_full = _listed(built.full_kv_num_blocks, built.full_kv_indices, num_blocks)
    evaluated_full = _listed(evaluated.full_kv_num_blocks, evaluated.full_kv_indices, num_blocks)
    assert torch.equal(built_full[:whole, :whole], evaluated_full[:whole, :whole])


def test_block_mask_cached_per_geometry_and_device():
    geometry = KERNEL_GEOMETRIES["larger-than-window"]
    first = window_block_mask(geometry, "cpu")
    assert window_block_mask(geometry, torch.device("cpu")) is first
    assert window_block_mask(KERNEL_GEOMETRIES["no-inward"], "cpu") is not first


@pytest.mark.parametrize("name", KERNEL_GEOMETRIES)
def test_window_attention_matches_dense_sdpa(name):
    geometry = KERNEL_GEOMETRIES[name]
    query, key, value = _qkv(geometry)
    result = kernels.window_attention(query, key, value, geometry, SCALE)
    assert kernels.compiled_attention_failure() is None
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value), atol=2e-5, rtol=1e-4)


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
def test_gathered_fallback_matches_dense_sdpa(name):
    geometry = BLOCK_GEOMETRIES[name]
    query, key, value = _qkv(geometry)
    result = kernels.gathered_window_attention(query, key, value, geometry, SCALE)
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value))


def test_gathered_fallback_in_small_chunks(monkeypatch):
    monkeypatch.setattr(kernels, "QUERY_TILE", (2, 3))
    monkeypatch.setattr(kernels, "_FALLBACK_SCORE_ELEMENTS", 1000)  # one frame of queries per SDPA call
    geometry = WindowGeometry(3, 9, 13, half_height=2, half_width=3)
    query, key, value = _qkv(geometry)
    result = kernels.gathered_window_attention(query, key, value, geometry, SCALE)
    torch.testing.assert_close(result, _dense_reference(geometry, query, key, value))


def test_gathered_fallback_accepts_transposed_inputs():
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
        first = kernels.window_attention(query, key, value, geometry, SCALE)
        second = kernels.window_attention(query, key, value, geometry, SCALE)

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
    kernels.window_attention(query, key, value, geometry, SCALE)
    compiled_frames = dict(torch._dynamo.utils.counters["frames"])

    for heads_seed in range(3):
        generator = torch.Generator().manual_seed(heads_seed)
        fresh = [torch.randn(query.shape, generator=generator) for _ in range(3)]
        kernels.window_attention(*fresh, geometry, SCALE)

    assert dict(torch._dynamo.utils.counters["frames"]) == compiled_frames
    assert kernels.compiled_attention_failure() is None
