"""Memory planning: estimate a render's memory, choose placements, and apply them through diffusers.

``plan_memory`` picks where weights and the cross-attention cache live from the
machine's free VRAM, RAM and disk. ``apply_memory_plan`` sets a pipeline up that
way. ``classify_out_of_memory`` turns an out-of-memory error into an error that
names the plan used and a more frugal one.

Names load on first use, so ``freeswim_engine.memory.sizes`` (size parsing for the
command line) works without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from freeswim_engine.memory.apply import (
        PlanOutOfMemoryError,
        apply_memory_plan,
        classify_out_of_memory,
        enable_ffn_chunking,
    )
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

_EXPORTS = {
    "PlanOutOfMemoryError": "apply",
    "apply_memory_plan": "apply",
    "classify_out_of_memory": "apply",
    "enable_ffn_chunking": "apply",
    "DeviceMemory": "device",
    "read_device_memory": "device",
    "RenderFigures": "estimates",
    "cross_attention_cache_bytes": "estimates",
    "token_grid": "estimates",
    "MemoryPlan": "planner",
    "PhasePeaks": "planner",
    "WeightPlacement": "planner",
    "next_frugal_plan": "planner",
    "plan_memory": "planner",
    "resolve_model_figures": "planner",
    "suggest_alternatives": "planner",
    "format_size": "sizes",
    "parse_size": "sizes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
