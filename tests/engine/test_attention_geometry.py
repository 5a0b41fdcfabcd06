"""Window geometry: the inward sliding-window rule, its mask_mod and the FreeSwim scale."""

from __future__ import annotations

import math

import pytest
import torch

from freeswim_engine.attention import WindowGeometry, freeswim_attention_scale
from freeswim_engine.errors import InvalidRequestError


def _reference_mask(geometry: WindowGeometry) -> torch.Tensor:
    """The window rule written out with Python loops, independent of the mask_mod."""
    f, h, w = geometry.num_frames, geometry.height, geometry.width
    dh, dw = geometry.half_height, geometry.half_width
    tokens = [(t, y, x) for t in range(f) for y in range(h) for x in range(w)]
    mask = torch.zeros(len(tokens), len(tokens), dtype=torch.bool)
    for q, (_, qy, qx) in enumerate(tokens):
        if geometry.use_inward:
            cy = qy if h <= 2 * dh + 1 else min(max(qy, dh), h - 1 - dh)
            cx = qx if w <= 2 * dw + 1 else min(max(qx, dw), w - 1 - dw)
            reach_y = h if h <= 2 * dh + 1 else dh
            reach_x = w if w <= 2 * dw + 1 else dw
        else:
            cy, cx, reach_y, reach_x = qy, qx, dh, dw
        for k, (_, ky, kx) in enumerate(tokens):
            mask[q, k] = abs(ky - cy) <= reach_y and abs(kx - cx) <= reach_x
    return mask


GEOMETRIES = {
    "smaller-than-window": WindowGeometry(2, 3, 4, half_height=2, half_width=3),
    "equal-to-window": WindowGeometry(2, 5, 7, half_height=2, half_width=3),
    "larger-than-window": WindowGeometry(2, 9, 13, half_height=2, half_width=3),
    "rows-covered-only": WindowGeometry(1, 4, 11, half_height=2, half_width=1),
    "no-inward": WindowGeometry(2, 9, 13, half_height=2, half_width=3, use_inward=False),
}


@pytest.mark.parametrize("name", GEOMETRIES)
def test_dense_mask_matches_rule(name):
    geometry = GEOMETRIES[name]
    assert torch.equal(geometry.dense_mask(), _reference_mask(geometry))


def test_every_query_sees_full_window():
    geometry = WindowGeometry(3, 9, 13, half_height=2, half_width=3)
    per_frame = geometry.dense_mask().view(geometry.sequence_length, geometry.num_frames, -1).sum(dim=2)
    assert torch.all(per_frame == 5 * 7)


def test_corner_query_window_is_shifted_inward():
    geometry = WindowGeometry(1, 9, 13, half_height=2, half_width=3)
    corner_row = geometry.dense_mask()[0].view(9, 13)
    assert torch.all(corner_row[:5, :7])
    assert int(corner_row.sum()) == 5 * 7


def test_window_spans_short_axis():
    geometry = WindowGeometry(2, 5, 7, half_height=2, half_width=3)
    assert geometry.covers_grid
    assert torch.all(geometry.dense_mask())


def test_no_inward_cuts_border_windows():
    geometry = WindowGeometry(2, 9, 13, half_height=2, half_width=3, use_inward=False)
    per_frame = geometry.dense_mask().view(geometry.sequence_length, 2, -1).sum(dim=2)
    spatial = per_frame[:, 0].view(2, 9, 13)[0]
    assert int(spatial[0, 0]) == 3 * 4  # corner: (d_h + 1) * (d_w + 1)
    assert int(spatial[4, 6]) == 5 * 7  # centre: the whole window
    assert int(spatial.min()) < 5 * 7


def test_mask_mod_accepts_padding_indices():
    geometry = WindowGeometry(2, 9, 13, half_height=2, half_width=3)
    padded = torch.arange(256)  # two 128-token blocks; the sequence has 234 tokens
    zero = torch.zeros((), dtype=torch.long)
    mask = geometry.mask_mod()(zero, zero, padded[:, None], padded[None, :])
    assert mask.shape == (256, 256)
    assert mask.dtype == torch.bool


def test_for_grid_half_sizes_of_presets():
    wan_1_3b = WindowGeometry.for_grid((21, 68, 120), (480, 832), pixels_per_token=16)
    wan_14b = WindowGeometry.for_grid((21, 135, 240), (720, 1280), pixels_per_token=16)
    assert (wan_1_3b.half_height, wan_1_3b.half_width) == (15, 26)
    assert (wan_14b.half_height, wan_14b.half_width) == (22, 40)
    assert wan_1_3b.sequence_length == 21 * 68 * 120


def test_freeswim_scale_of_wan_1_3b():
    scale = freeswim_attention_scale((480, 832), pixels_per_token=16, head_dim=128)
    assert scale * math.sqrt(128) == pytest.approx(1.0461, abs=1e-4)


@pytest.mark.parametrize("base_size", [(488, 832), (0, 832), (480, -16)])
def test_invalid_base_size_raises(base_size):
    with pytest.raises(InvalidRequestError, match="base_"):
        WindowGeometry.for_grid((1, 30, 52), base_size, pixels_per_token=16)
