"""Attention processors that diffusers' ``WanTransformer3DModel`` calls in place of its own.

Each transformer block gets one self-attention and one cross-attention
processor that know the block's index. A shared ``ForwardState``, set before
every transformer call, describes the batch layout:

- ``dual``: the batch is ``[window branch W, full branch F]`` built from the same
  latents. W's self-attention uses the sliding window, F's is full; the
  cross-attention output is computed once from F and used by both.
- otherwise: the batch is W alone, whose cross-attention is its own or read
  from the cross-attention cache.

Both branches' self-attention use the FreeSwim softmax scale; cross-attention
keeps the default ``1 / sqrt(head_dim)``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import torch
import torch.nn.functional as F

from freeswim_engine.attention.geometry import WindowGeometry
from freeswim_engine.attention.kernels import full_attention, window_attention
from freeswim_engine.cache_store import CrossAttentionCacheStore

# Wan's text encoder (UMT5) context is 512 tokens. In image-to-video models
# the image tokens come first in encoder_hidden_states, so everything before
# the last 512 tokens is image context, as in diffusers' WanAttnProcessor.
TEXT_CONTEXT_LENGTH = 512


class CrossAttentionSource(enum.Enum):
    """Source of a block's cross-attention output in one transformer call."""

    OWN = "own"  # each batch element attends to its own text
    FULL_BRANCH = "full-branch"  # dual batch: computed from F and shared with W
    CACHE = "cache"  # read from the cross-attention cache of the last refresh step


@dataclasses.dataclass
class ForwardState:
    """Per-call settings that ``FreeSwimTransformer`` writes and every processor reads.

    Attributes:
        geometry: token grid and window of the latents in this call.
        dual: the batch is ``[W, F]`` (two copies of the latents) rather than W alone.
        cross_attention: where the cross-attention output comes from.
        write_cache: store F's cross-attention outputs in the cache store (dual calls only).
        is_conditional: True for the prompt pass, False for the negative-prompt pass.
        step_index: denoising step, 0-based.
    """

    geometry: WindowGeometry | None = None
    dual: bool = False
    cross_attention: CrossAttentionSource = CrossAttentionSource.OWN
    write_cache: bool = False
    is_conditional: bool = True
    step_index: int = 0

    def require_geometry(self) -> WindowGeometry:
        if self.geometry is None:
            raise RuntimeError("FreeSwim processors were called outside FreeSwimTransformer.predict_noise")
        return self.geometry


class FreeSwimSelfAttnProcessor:
    """Self-attention of one block: window attention for W, full attention for F."""

    def __init__(self, state: ForwardState, block_index: int, scale: float) -> None:
        self.state = state
        self.block_index = block_index
        self.scale = scale

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        geometry = self.state.require_geometry()
        query, key, value = _project_qkv(attn, hidden_states, hidden_states)
        if rotary_emb is not None:
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)

        # (batch, tokens, heads, head_dim) -> (batch, heads, tokens, head_dim) for SDPA and flex attention.
        query, key, value = (tensor.transpose(1, 2) for tensor in (query, key, value))
        if self.state.dual:
            window_output = window_attention(query[:1], key[:1], value[:1], geometry, self.scale)
            full_output = full_attention(query[1:], key[1:], value[1:], self.scale)
            output = torch.cat([window_output, full_output], dim=0)
        else:
            output = window_attention(query, key, value, geometry, self.scale)

        output = output.transpose(1, 2).flatten(2, 3).type_as(query)
        return _project_out(attn, output)


class FreeSwimCrossAttnProcessor:
    """Cross-attention of one block, with the full branch's output overriding the window branch's."""

    def __init__(
        self, state: ForwardState, block_index: int, num_blocks: int, cache_store: CrossAttentionCacheStore
    ) -> None:
        self.state = state
        self.block_index = block_index
        self.num_blocks = num_blocks
        self.cache_store = cache_store

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("cross-attention needs encoder_hidden_states (the text embeddings)")
        batch_size = hidden_states.shape[0]
        source = self.state.cross_attention

        if source is CrossAttentionSource.OWN:
            return _project_out(attn, text_attention(attn, hidden_states, encoder_hidden_states))

        if source is CrossAttentionSource.FULL_BRANCH:
            # Dual batch [W, F]: attend from F only, store it, and give W the same output.
            shared = text_attention(attn, hidden_states[1:], encoder_hidden_states[1:])
            if self.state.write_cache:
                self.cache_store.put(self.block_index, shared)
        else:
            shared = self.cache_store.get(self.block_index, hidden_states.device, hidden_states.dtype)
            if self.block_index + 1 < self.num_blocks:
                self.cache_store.prefetch(self.block_index + 1, hidden_states.device)

        # The output projection acts per token, so one projection serves every batch element.
        return _project_out(attn, shared).expand(batch_size, -1, -1)


def text_attention(
    attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor
) -> torch.Tensor:
    """Return the cross-attention output before the output projection, shape ``(batch, L, dim)``.

    Adds the attention to image tokens for image-conditioned models.
    """
    image_context = None
    if attn.add_k_proj is not None:
        image_length = encoder_hidden_states.shape[1] - TEXT_CONTEXT_LENGTH
        image_context = encoder_hidden_states[:, :image_length]
        encoder_hidden_states = encoder_hidden_states[:, image_length:]

    query, key, value = _project_qkv(attn, hidden_states, encoder_hidden_states)
    query = query.transpose(1, 2)
    output = F.scaled_dot_product_attention(query, key.transpose(1, 2), value.transpose(1, 2))

    if image_context is not None:
        image_key, image_value = _project_added_kv(attn, image_context)
        image_output = F.scaled_dot_product_attention(query, image_key.transpose(1, 2), image_value.transpose(1, 2))
        output = output + image_output

    return output.transpose(1, 2).flatten(2, 3).type_as(hidden_states)


def _project_qkv(
    attn: Any, hidden_states: torch.Tensor, context: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return normalised query, key and value, each ``(batch, tokens, heads, head_dim)``."""
    if getattr(attn, "fused_projections", False):
        if attn.is_cross_attention:
            query = attn.to_q(hidden_states)
            key, value = attn.to_kv(context).chunk(2, dim=-1)
        else:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        query = attn.to_q(hidden_states)
        key = attn.to_k(context)
        value = attn.to_v(context)

    query = attn.norm_q(query)
    key = attn.norm_k(key)
    heads = attn.heads
    return query.unflatten(2, (heads, -1)), key.unflatten(2, (heads, -1)), value.unflatten(2, (heads, -1))


def _project_added_kv(attn: Any, image_context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if getattr(attn, "fused_projections", False):
        key, value = attn.to_added_kv(image_context).chunk(2, dim=-1)
    else:
        key = attn.add_k_proj(image_context)
        value = attn.add_v_proj(image_context)
    key = attn.norm_added_k(key)
    return key.unflatten(2, (attn.heads, -1)), value.unflatten(2, (attn.heads, -1))


def _apply_rotary_emb(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs ``(2i, 2i+1)`` by Wan's 3D rotary angles."""
    even, odd = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    rotated = torch.empty_like(hidden_states)
    rotated[..., 0::2] = even * cos - odd * sin
    rotated[..., 1::2] = even * sin + odd * cos
    return rotated.type_as(hidden_states)


def _project_out(attn: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    hidden_states = attn.to_out[0](hidden_states)
    return attn.to_out[1](hidden_states)
