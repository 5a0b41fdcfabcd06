"""Set a pipeline up as a memory plan specifies, through diffusers' and accelerate's own offloading."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch

from freeswim_engine.errors import OutOfMemoryError
from freeswim_engine.memory.planner import MemoryPlan, WeightPlacement, next_frugal_plan
from freeswim_engine.memory.sizes import format_size

logger = logging.getLogger(__name__)

# Component names in the order a render uses them (diffusers' Wan pipelines use the
# same order for model CPU offload: text_encoder -> transformer -> vae).
OFFLOAD_ORDER = ("text_encoder", "transformer", "vae")
HOST_DEVICE = torch.device("cpu")
_OUT_OF_MEMORY_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")


class PlanOutOfMemoryError(OutOfMemoryError):
    """A render that ran out of memory under ``plan``; ``suggested_plan`` is a more frugal one, or None."""

    def __init__(self, message: str, plan: MemoryPlan, suggested_plan: MemoryPlan | None) -> None:
        super().__init__(message)
        self.plan = plan
        self.suggested_plan = suggested_plan


def apply_memory_plan(pipe_or_components: Any, plan: MemoryPlan, device: torch.device | str) -> None:
    """Place weights, and set VAE tiling and FFN chunking, as ``plan`` specifies.

    ``pipe_or_components`` is a diffusers pipeline or a mapping with the keys
    ``text_encoder``, ``transformer`` and ``vae`` (other keys are moved to ``device``
    when they are modules). Call it once, on components that no offloading hook has
    touched yet. The cache placement is not applied here: pass
    ``create_cache_store(plan.cache_placement, scratch_dir)`` to the attention code.

    Weight placements map to: all on device -> ``.to(device)``; model CPU offload ->
    ``pipe.enable_model_cpu_offload`` (accelerate's ``cpu_offload_with_hook`` chain for
    a mapping); group offload -> ``transformer.enable_group_offload`` (block level, one
    block per group, CUDA stream on GPUs) and leaf-level ``apply_group_offloading`` for
    the text encoder; sequential offload -> ``pipe.enable_sequential_cpu_offload``
    (accelerate's ``cpu_offload`` for a mapping).
    """
    device = torch.device(device)
    components = _components(pipe_or_components)
    transformer = components.get("transformer")

    # FFN chunking wraps module forwards, so it goes on before any offloading hook.
    if transformer is not None:
        chunk_size = plan.ffn_chunk_size if plan.ffn_chunks > 1 else None
        enable_ffn_chunking(transformer, chunk_size)
    _apply_vae_tiling(components.get("vae"), plan)
    _apply_weight_placement(pipe_or_components, components, plan.weight_placement, device)
    logger.info("Applied memory plan on %s: %s", device, plan.summary())


def enable_ffn_chunking(transformer: torch.nn.Module, chunk_size: int | None) -> None:
    """Run every transformer block's feed-forward on ``chunk_size`` tokens at a time; None turns it off.

    Uses the model's own ``enable_forward_chunking`` where it has one. diffusers 0.42.1's
    WanTransformer3DModel has none, so each block's ``ffn`` gets a forward that splits
    its input along the token axis (dim 1) and concatenates the outputs. The FFN acts
    on each token alone, so only the kernels' shapes change.
    """
    native = getattr(transformer, "enable_forward_chunking", None)
    if callable(native):
        if chunk_size is None:
            getattr(transformer, "disable_forward_chunking")()
        else:
            native(chunk_size=chunk_size, dim=1)
        return

    blocks = getattr(transformer, "blocks", None)
    if blocks is None:
        logger.warning("%s has no blocks to chunk; FFN chunking left off", type(transformer).__name__)
        return
    for block in blocks:
        ffn = getattr(block, "ffn", None)
        if ffn is None:
            continue
        if isinstance(ffn.__dict__.get("forward"), _TokenChunkedForward):
            del ffn.forward  # back to the class's forward before wrapping again
        if chunk_size is not None:
            ffn.forward = _TokenChunkedForward(ffn.forward, chunk_size)


class _TokenChunkedForward:
    """A feed-forward ``forward`` that runs on slices of at most ``chunk_size`` tokens."""

    def __init__(self, forward: Callable[..., torch.Tensor], chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"Invalid FFN chunk size {chunk_size}: it must be 1 or more tokens.")
        self.forward = forward
        self.chunk_size = chunk_size

    def __call__(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if hidden_states.ndim < 3 or hidden_states.shape[1] <= self.chunk_size:
            return self.forward(hidden_states, *args, **kwargs)
        parts = [self.forward(part, *args, **kwargs) for part in hidden_states.split(self.chunk_size, dim=1)]
        return torch.cat(parts, dim=1)


def classify_out_of_memory(error: BaseException, plan: MemoryPlan) -> PlanOutOfMemoryError | None:
    """Turn a torch out-of-memory error into one that names ``plan`` and a more frugal plan; None for other errors.

    Use it as ``raise classify_out_of_memory(error, plan) or error`` in an ``except``
    block. CUDA's ``torch.OutOfMemoryError`` and CPU allocation failures both count.
    """
    if not _is_out_of_memory(error):
        return None
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    where = "GPU" if isinstance(error, torch.OutOfMemoryError) else "machine"
    suggestion = next_frugal_plan(plan)
    lines = [
        f"The {where} ran out of memory ({first_line}).",
        f"Plan used: {plan.summary()}; the estimate was {format_size(plan.required_vram_bytes)} of VRAM "
        "with margin, so the machine needed more than estimated or other programs used memory.",
    ]
    if suggestion is not None:
        lines.append(f"Try the more frugal plan: {suggestion.summary()}.")
    else:
        lines.append(
            "No more frugal placement fits this machine; lower the width, height or frame count, "
            "or use method window."
        )
    logger.error("Out of memory under plan %s", plan.summary())
    return PlanOutOfMemoryError(" ".join(lines), plan, suggestion)


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(marker in text for marker in _OUT_OF_MEMORY_TEXT)


def _components(pipe_or_components: Any) -> dict[str, Any]:
    if isinstance(pipe_or_components, Mapping):
        return dict(pipe_or_components)
    components = getattr(pipe_or_components, "components", None)
    if isinstance(components, Mapping):
        return dict(components)
    raise TypeError(
        f"apply_memory_plan needs a diffusers pipeline or a mapping of components, not {type(pipe_or_components).__name__}."
    )


def _apply_vae_tiling(vae: Any, plan: MemoryPlan) -> None:
    if vae is None:
        return
    if plan.vae_tiling:
        vae.enable_tiling(
            tile_sample_min_height=plan.vae_tile_size,
            tile_sample_min_width=plan.vae_tile_size,
            tile_sample_stride_height=plan.vae_tile_stride,
            tile_sample_stride_width=plan.vae_tile_stride,
        )
    elif callable(getattr(vae, "disable_tiling", None)):
        vae.disable_tiling()


def _apply_weight_placement(
    pipe_or_components: Any, components: dict[str, Any], placement: WeightPlacement, device: torch.device
) -> None:
    is_pipeline = not isinstance(pipe_or_components, Mapping)
    modules = {name: value for name, value in components.items() if isinstance(value, torch.nn.Module)}

    if placement is WeightPlacement.ALL_ON_DEVICE:
        for module in modules.values():
            module.to(device)
    elif placement is WeightPlacement.MODEL_CPU_OFFLOAD:
        if is_pipeline:
            pipe_or_components.enable_model_cpu_offload(device=device)
        else:
            _chain_model_offload(modules, device)
    elif placement is WeightPlacement.GROUP_OFFLOAD:
        _apply_group_offload(modules, device)
    elif is_pipeline:
        pipe_or_components.enable_sequential_cpu_offload(device=device)
    else:
        from accelerate import cpu_offload

        for module in modules.values():
            cpu_offload(module, execution_device=device, offload_buffers=len(module._parameters) > 0)


def _chain_model_offload(modules: dict[str, torch.nn.Module], device: torch.device) -> None:
    from accelerate import cpu_offload_with_hook

    hook = None
    for name in OFFLOAD_ORDER:
        if name in modules:
            _, hook = cpu_offload_with_hook(modules[name], device, prev_module_hook=hook)
    for name, module in modules.items():
        if name not in OFFLOAD_ORDER:
            cpu_offload_with_hook(module, device)


def _apply_group_offload(modules: dict[str, torch.nn.Module], device: torch.device) -> None:
    from diffusers.hooks import apply_group_offloading

    # Streams overlap the next group's copy with this group's compute; they exist on CUDA only.
    use_stream = device.type == "cuda"
    for name, module in modules.items():
        if name.startswith("transformer"):
            module.enable_group_offload(  # type: ignore[operator]
                onload_device=device,
                offload_device=HOST_DEVICE,
                offload_type="block_level",
                num_blocks_per_group=1,
                non_blocking=use_stream,
                use_stream=use_stream,
            )
        elif name.startswith("text_encoder"):
            # Leaf level, because UMT5's blocks sit one level down (encoder.block).
            apply_group_offloading(
                module,
                onload_device=device,
                offload_device=HOST_DEVICE,
                offload_type="leaf_level",
                non_blocking=use_stream,
                use_stream=use_stream,
            )
        else:
            module.to(device)  # the VAE and anything else small stays on the device
