"""Shared engine fixtures: tiny seeded Wan transformers that run in milliseconds on a CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from diffusers import WanTransformer3DModel

TINY_TEXT_DIM = 32
TINY_IMAGE_DIM = 24
TINY_LATENT_CHANNELS = 4


def make_tiny_wan_transformer(seed: int = 0, image_conditioned: bool = False, **overrides: Any) -> WanTransformer3DModel:
    """Build a seeded 2-block Wan transformer with 2 heads of 16 dims (model width 32).

    ``image_conditioned`` adds the image embedder and the added key/value
    projections of Wan's image-to-video models.
    """
    config: dict[str, Any] = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=TINY_LATENT_CHANNELS,
        out_channels=TINY_LATENT_CHANNELS,
        text_dim=TINY_TEXT_DIM,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        rope_max_seq_len=64,
    )
    if image_conditioned:
        config.update(image_dim=TINY_IMAGE_DIM, added_kv_proj_dim=32)
    config.update(overrides)
    torch.manual_seed(seed)
    return WanTransformer3DModel(**config).eval()


def make_embeds(*shape: int, seed: int) -> torch.Tensor:
    """Return seeded standard-normal values of ``shape``, independent of the global RNG."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tiny_wan_transformer() -> WanTransformer3DModel:
    """A fresh seeded text-to-video tiny Wan transformer (2 blocks, 2 heads of 16 dims, text_dim 32)."""
    return make_tiny_wan_transformer()


@pytest.fixture
def tiny_wan_i2v_transformer() -> WanTransformer3DModel:
    """A fresh seeded image-to-video tiny Wan transformer (image_dim 24, added key/value projections)."""
    return make_tiny_wan_transformer(image_conditioned=True)


@pytest.fixture
def tiny_wan_factory() -> Callable[..., WanTransformer3DModel]:
    """The ``make_tiny_wan_transformer`` builder, for tests that need other sizes or seeds."""
    return make_tiny_wan_transformer
