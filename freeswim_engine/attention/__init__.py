"""FreeSwim attention for diffusers' Wan transformers: sliding window, dual path and cross-attention cache."""

from freeswim_engine.attention.geometry import WindowGeometry, freeswim_attention_scale
from freeswim_engine.attention.kernels import check_compiled_attention, compiled_attention_failure
from freeswim_engine.attention.transformer import AttentionMethod, FreeSwimTransformer

__all__ = [
    "AttentionMethod",
    "FreeSwimTransformer",
    "WindowGeometry",
    "check_compiled_attention",
    "compiled_attention_failure",
    "freeswim_attention_scale",
]
