"""Memory planning: estimate a render's memory, choose placements, and apply them through diffusers.

``plan_memory`` picks where weights and the cross-attention cache live from the
machine's free VRAM, RAM and disk; ``apply_memory_plan`` sets the pipeline up that
way; ``classify_out_of_memory`` turns a CUDA out-of-memory error into an error that
names the plan used and a more frugal one.
"""

from freeswim_engine.memory.apply import apply_memory_plan, classify_out_of_memory, enable_ffn_chunking
from freeswim_engine.memory.device import DeviceMemory, read_device_memory
from freeswim_engine.memory.estimates import RenderFigures, cross_attention_cache_bytes, token_grid
from freeswim_engine.memory.planner import (
    MemoryPlan,
    PhasePeaks,
    WeightPlacement,
    next_frugal_plan,
    plan_memory,
    resolve_model_figures,
    suggest_alternatives,
)
from freeswim_engine.memory.sizes import format_size, parse_size

__all__ = [
    "DeviceMemory",
    "MemoryPlan",
    "PhasePeaks",
    "RenderFigures",
    "WeightPlacement",
    "apply_memory_plan",
    "classify_out_of_memory",
    "cross_attention_cache_bytes",
    "enable_ffn_chunking",
    "format_size",
    "next_frugal_plan",
    "parse_size",
    "plan_memory",
    "read_device_memory",
    "resolve_model_figures",
    "suggest_alternatives",
    "token_grid",
]
