"""Choose where weights, activations and the cross-attention cache live for one render.

The planner scores every combination of weight placement, cache placement, VAE
tiling and FFN chunking by a rough slowdown cost, estimates each one's peak GPU
memory, host RAM and scratch disk, and keeps the cheapest that fits. When none
fits, it raises PlanRejectedError listing concrete settings that would.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import logging
import math
from typing import Any

from freeswim_engine.cache_store import CachePlacement
from freeswim_engine.errors import PlanRejectedError
from freeswim_engine.memory.device import DeviceMemory, read_device_memory
from freeswim_engine.memory.estimates import (
    VAE_TILE_SIZE,
    VAE_TILE_STRIDE,
    ComponentWeights,
    ModelFigures,
    RenderFigures,
    TransformerActivations,
    cache_entry_bytes,
    component_weights,
    cross_attention_cache_bytes,
    dtype_bytes,
    text_encoder_activation_bytes,
    token_grid,
    transformer_activation_bytes,
    vae_decode_bytes,
    vae_encode_bytes,
)
from freeswim_engine.memory.sizes import GIB, format_size
from freeswim_engine.presets import PRESETS, ModelPreset

logger = logging.getLogger(__name__)

# Safety margin on the estimated VRAM peak: CUDA's caching allocator rounds and
# fragments, and cuBLAS, cuDNN and NCCL keep workspaces the shapes do not show.
# Both numbers are judgement, not measurements.
VRAM_MARGIN_FRACTION = 0.10
VRAM_RESERVE_BYTES = 1 * GIB
# Share of the currently available RAM a plan may take; the rest stays with the OS.
RAM_USABLE_FRACTION = 0.90
# The render process itself with torch, diffusers and the CUDA libraries loaded (estimate).
HOST_BASE_BYTES = 3 * GIB
# Host copies of the video around the VAE: one float32 and one uint8 frame array.
HOST_VIDEO_BYTES_PER_PIXEL = 4 * 3 + 3
DISK_RESERVE_BYTES = 1 * GIB

# Relative slowdown of each choice, used only to order plans (a ranking, not a
# measured time). Block-level group offload with CUDA streams overlaps copies with
# compute, so it costs little more than model offload at 1080p and above. Sequential
# offload moves every layer's weights synchronously on every call and is far slower.
# The disk cache reads the whole cache once per reusing step.
WEIGHT_COSTS = {"all-on-device": 0.0, "model-cpu-offload": 1.0, "group-offload": 2.0, "sequential-offload": 20.0}
CACHE_COSTS = {CachePlacement.DEVICE: 0.0, CachePlacement.PINNED_HOST: 1.5, CachePlacement.DISK: 6.0}
VAE_TILING_COST = 0.5
FFN_CHUNK_COSTS = {1: 0.0, 4: 0.5, 16: 1.0}

# Sizes tried, as a fraction of the requested width and height, when nothing fits.
ALTERNATIVE_SCALES = (0.875, 0.75, 2 / 3, 0.625, 0.5, 0.375, 0.25)
UNLIMITED_BYTES = 1 << 60


class WeightPlacement(str, enum.Enum):
    """Placement of the model weights, from fastest to most frugal; the values name diffusers' mechanisms."""

    ALL_ON_DEVICE = "all-on-device"  # every component on the GPU for the whole render
    MODEL_CPU_OFFLOAD = "model-cpu-offload"  # one whole component on the GPU at a time
    GROUP_OFFLOAD = "group-offload"  # transformer blocks streamed to the GPU one group at a time
    SEQUENTIAL_OFFLOAD = "sequential-offload"  # every layer moved to the GPU when it runs

    @property
    def description(self) -> str:
        return _WEIGHT_DESCRIPTIONS[self]


_WEIGHT_DESCRIPTIONS = {
    WeightPlacement.ALL_ON_DEVICE: "all weights stay on the device",
    WeightPlacement.MODEL_CPU_OFFLOAD: (
        "diffusers' model CPU offload keeps one component (text encoder, transformer or VAE) on the GPU at a time"
    ),
    WeightPlacement.GROUP_OFFLOAD: (
        "diffusers' block-level group offload streams the transformer and text encoder to the GPU one block "
        "ahead on a side CUDA stream, with the VAE kept on the GPU"
    ),
    WeightPlacement.SEQUENTIAL_OFFLOAD: "diffusers' sequential CPU offload moves each layer to the GPU only while it runs",
}

_CACHE_DESCRIPTIONS = {
    CachePlacement.DEVICE: "on the device",
    CachePlacement.PINNED_HOST: "in pinned host memory, with the next block's entry copied ahead on a side CUDA stream",
    CachePlacement.DISK: "in a memory-mapped file in the scratch folder",
}


_CACHE_SHORT = {
    CachePlacement.DEVICE: "on the device",
    CachePlacement.PINNED_HOST: "in pinned host memory",
    CachePlacement.DISK: "on disk",
}


@dataclasses.dataclass(frozen=True)
class PhasePeaks:
    """Estimated peak GPU bytes of each phase of a render (0 when the render runs on CPU)."""

    text_encoding: int
    vae_encoding: int
    denoising: int
    vae_decoding: int

    def largest(self) -> tuple[str, int]:
        """Return the name and bytes of the phase with the highest peak."""
        phases = {
            "text encoding": self.text_encoding,
            "VAE encoding": self.vae_encoding,
            "stage-2 denoising": self.denoising,
            "VAE decoding": self.vae_decoding,
        }
        name = max(phases, key=lambda key: phases[key])
        return name, phases[name]


@dataclasses.dataclass(frozen=True)
class _Options:
    weights: WeightPlacement
    cache: CachePlacement | None
    vae_tiling: bool
    ffn_chunks: int

    @property
    def cost(self) -> float:
        cache_cost = CACHE_COSTS[self.cache] if self.cache is not None else 0.0
        tiling_cost = VAE_TILING_COST if self.vae_tiling else 0.0
        return WEIGHT_COSTS[self.weights.value] + cache_cost + tiling_cost + FFN_CHUNK_COSTS[self.ffn_chunks]


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Placement of one render's weights and cache, with the estimates behind the choice.

    Every byte figure is an estimate from tensor shapes. ``required_vram_bytes`` is
    the peak plus the safety margin, and is what was compared with free VRAM.
    """

    model_name: str
    figures: RenderFigures  # dtype resolved to bfloat16 or float32
    device: DeviceMemory
    weight_placement: WeightPlacement
    cache_placement: CachePlacement | None  # None when the method keeps no cache
    cache_bytes: int
    vae_tiling: bool
    vae_tile_size: int | None  # tile side in pixels when tiling
    vae_tile_stride: int | None
    ffn_chunks: int  # 1 means no chunking
    ffn_chunk_size: int | None  # tokens per FFN chunk when chunking
    phases: PhasePeaks
    peak_vram_bytes: int
    required_vram_bytes: int
    peak_ram_bytes: int
    disk_bytes: int
    weights: ComponentWeights
    activations: TransformerActivations
    cost: float
    notes: tuple[str, ...] = ()
    model: ModelFigures | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return not self.shortfalls()

    def shortfalls(self) -> list[str]:
        """Return a sentence for each resource this plan needs more of than the machine has."""
        device = self.device
        problems = []
        if device.is_cuda and self.required_vram_bytes > device.free_vram_bytes:
            problems.append(
                f"needs an estimated {format_size(self.required_vram_bytes)} of VRAM with margin, "
                f"but {format_size(device.free_vram_bytes)} is free"
            )
        usable_ram = int(device.free_ram_bytes * RAM_USABLE_FRACTION)
        if self.peak_ram_bytes > usable_ram:
            problems.append(
                f"needs an estimated {format_size(self.peak_ram_bytes)} of RAM, "
                f"but {format_size(usable_ram)} of the {format_size(device.free_ram_bytes)} available may be used"
            )
        if device.free_disk_bytes is not None and self.disk_bytes + DISK_RESERVE_BYTES > device.free_disk_bytes:
            problems.append(
                f"needs {format_size(self.disk_bytes)} of scratch disk, "
                f"but {format_size(device.free_disk_bytes)} is free"
            )
        return problems

    def summary(self) -> str:
        """Return one line: the placements and the estimated peaks."""
        parts = [f"weights: {self.weight_placement.value}"]
        if self.cache_placement is not None:
            parts.append(f"cache: {self.cache_placement.value} ({format_size(self.cache_bytes)})")
        parts.append(f"VAE tiling: {'on' if self.vae_tiling else 'off'}")
        if self.ffn_chunks > 1:
            parts.append(f"FFN chunks: {self.ffn_chunks}")
        if self.device.is_cuda:
            parts.append(f"est. peak VRAM {format_size(self.peak_vram_bytes)}")
        parts.append(f"est. peak RAM {format_size(self.peak_ram_bytes)}")
        return ", ".join(parts)

    def explain(self) -> str:
        """Describe in a few sentences what goes where and the estimated peaks."""
        figures = self.figures
        device = self.device
        sentences = [
            f"Plan for {self.model_name} at {figures.width}x{figures.height}, {figures.num_frames} frames, "
            f"method {figures.method} in {figures.dtype} on {device.device_name or device.device_type} "
            f"({_free_text(device)}).",
            f"Weights: {self.weight_placement.description}.",
        ]
        if self.cache_placement is not None:
            sentences.append(
                f"Cross-attention cache: an estimated {format_size(self.cache_bytes)} "
                f"{_CACHE_DESCRIPTIONS[self.cache_placement]}, refreshed every {figures.cache_interval} steps."
            )
        else:
            sentences.append(f"Cross-attention cache: none, because method {figures.method} does not cache.")
        sentences.append(self._explain_chunking())
        sentences.append(self._explain_peaks())
        sentences.extend(self.notes)
        return " ".join(sentences)

    def _explain_chunking(self) -> str:
        if self.vae_tiling:
            vae = f"VAE tiling on ({self.vae_tile_size}x{self.vae_tile_size} pixel tiles, stride {self.vae_tile_stride})"
        else:
            vae = "VAE tiling off"
        if self.ffn_chunks > 1:
            ffn = f"FFN run in {self.ffn_chunks} chunks of {self.ffn_chunk_size} tokens"
        else:
            ffn = "FFN not chunked"
        return f"{vae}; {ffn}."

    def _explain_peaks(self) -> str:
        ram = f"estimated peak RAM {format_size(self.peak_ram_bytes)}"
        disk = f", estimated scratch disk {format_size(self.disk_bytes)}" if self.disk_bytes else ""
        if not self.device.is_cuda:
            return f"Everything runs from host memory: {ram}{disk} (estimates from tensor shapes)."
        phase, _ = self.phases.largest()
        return (
            f"Estimated peak VRAM {format_size(self.peak_vram_bytes)} during {phase} "
            f"({format_size(self.required_vram_bytes)} with the safety margin), {ram}{disk} "
            "(estimates from tensor shapes, not measurements)."
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the plan's choices and estimates as JSON-ready values."""
        return {
            "model": self.model_name,
            "figures": dataclasses.asdict(self.figures),
            "device": dataclasses.asdict(self.device),
            "weight_placement": self.weight_placement.value,
            "cache_placement": self.cache_placement.value if self.cache_placement is not None else None,
            "cache_bytes": self.cache_bytes,
            "vae_tiling": self.vae_tiling,
            "vae_tile_size": self.vae_tile_size,
            "vae_tile_stride": self.vae_tile_stride,
            "ffn_chunks": self.ffn_chunks,
            "ffn_chunk_size": self.ffn_chunk_size,
            "phases": dataclasses.asdict(self.phases),
            "estimated_peak_vram_bytes": self.peak_vram_bytes,
            "estimated_required_vram_bytes": self.required_vram_bytes,
            "estimated_peak_ram_bytes": self.peak_ram_bytes,
            "estimated_disk_bytes": self.disk_bytes,
            "notes": list(self.notes),
        }


def resolve_model_figures(preset_or_info: Any, model_name: str | None = None) -> ModelFigures:
    """Return the planning figures of a ``ModelPreset``, a ``ModelInfo`` (its ``preset``) or a preset name.

    Raises PlanRejectedError when the model's sizes are unknown, for example a local
    folder whose architecture matches no preset.
    """
    if isinstance(preset_or_info, ModelPreset):
        return preset_or_info
    if preset_or_info is not None and isinstance(getattr(preset_or_info, "preset", None), ModelPreset):
        preset: ModelPreset = preset_or_info.preset
        return preset
    if preset_or_info is not None and hasattr(preset_or_info, "transformer"):
        figures: ModelFigures = preset_or_info
        return figures
    name = preset_or_info if isinstance(preset_or_info, str) else model_name
    if name is None and preset_or_info is not None:
        name = getattr(preset_or_info, "name", None)
    if name in PRESETS:
        return PRESETS[name]
    if name == "demo":
        from freeswim_engine.demo_model import DEMO_PRESET

        return DEMO_PRESET
    raise PlanRejectedError(
        f"Cannot plan memory for model {name!r}: its architecture is unknown. "
        f"Use a preset ({', '.join(PRESETS)}, demo) or a model folder whose figures the engine recognises."
    )


def plan_memory(
    request: Any,
    preset_or_info: Any = None,
    device_memory: DeviceMemory | None = None,
) -> MemoryPlan:
    """Choose the fastest placement of weights and cache that fits the machine.

    ``request`` is a ``RenderRequest`` or a ``RenderFigures``. ``preset_or_info`` is a
    ``ModelPreset``, a ``ModelInfo`` or None (then ``request.model`` names a preset).
    ``device_memory`` describes the machine; None measures this one for ``request.device``.
    Raises PlanRejectedError, listing settings that would fit, when no placement fits.
    """
    model = resolve_model_figures(preset_or_info, getattr(request, "model", None))
    figures = request if isinstance(request, RenderFigures) else RenderFigures.from_request(request, model)
    if device_memory is None:
        device_memory = read_device_memory(getattr(request, "device", "auto"))
    figures = _resolve_dtype(figures, device_memory)

    best = _best_plan(figures, model, device_memory)
    if best is None:
        raise PlanRejectedError(_rejection_message(figures, model, device_memory))
    logger.info("Memory plan for %s: %s", model.name, best.summary())
    return best


def next_frugal_plan(plan: MemoryPlan) -> MemoryPlan | None:
    """Return the cheapest plan whose estimated peak is at least 10% below ``plan``'s, or None.

    The peak compared is VRAM on CUDA and RAM on CPU. It is the suggestion after an
    out-of-memory error, when the estimate proved too optimistic, so on CUDA it is
    checked against the machine's RAM and disk only.
    """
    if plan.model is None:
        return None
    candidates = _all_plans(plan.figures, plan.model, plan.device)
    if plan.device.is_cuda:
        target = plan.required_vram_bytes * 0.9
        candidates = [item for item in candidates if item.required_vram_bytes <= target and _fits_host(item)]
    else:
        target = plan.peak_ram_bytes * 0.9
        candidates = [item for item in candidates if item.peak_ram_bytes <= target and item.fits]
    if not candidates:
        return None
    return min(candidates, key=lambda candidate: (candidate.cost, candidate.required_vram_bytes))


def _resolve_dtype(figures: RenderFigures, device: DeviceMemory) -> RenderFigures:
    if figures.dtype != "auto":
        dtype_bytes(figures.dtype)  # raises ValueError on an unknown dtype
        return figures
    # NOTE: assumes the render resolves "auto" the same way: bfloat16 on CUDA, float32 on CPU.
    return dataclasses.replace(figures, dtype="bfloat16" if device.is_cuda else "float32")


def _best_plan(figures: RenderFigures, model: ModelFigures, device: DeviceMemory) -> MemoryPlan | None:
    fitting = [plan for plan in _all_plans(figures, model, device) if plan.fits]
    if not fitting:
        return None
    return min(fitting, key=lambda plan: (plan.cost, plan.required_vram_bytes))


def _all_plans(figures: RenderFigures, model: ModelFigures, device: DeviceMemory) -> list[MemoryPlan]:
    if device.is_cuda:
        weight_options = list(WeightPlacement)
        cache_options: list[CachePlacement | None] = list(CachePlacement)
    else:
        # On CPU the transformer already runs from RAM, so only the disk can take the cache off it.
        weight_options = [WeightPlacement.ALL_ON_DEVICE]
        cache_options = [CachePlacement.DEVICE, CachePlacement.DISK]
    if not figures.uses_cache:
        cache_options = [None]
    combinations = itertools.product(weight_options, cache_options, (False, True), tuple(FFN_CHUNK_COSTS))
    return [_evaluate(_Options(*combination), figures, model, device) for combination in combinations]


def _evaluate(options: _Options, figures: RenderFigures, model: ModelFigures, device: DeviceMemory) -> MemoryPlan:
    compute_bytes = dtype_bytes(figures.dtype)
    weights = component_weights(model, compute_bytes)
    activations = transformer_activation_bytes(model, figures, compute_bytes, options.ffn_chunks)
    cache_bytes = cross_attention_cache_bytes(model, figures, compute_bytes)
    # Off-device placements stage the entry in use and the prefetched next one on the device.
    staged_cache = 2 * cache_entry_bytes(model, figures, compute_bytes) if figures.uses_cache else 0
    cache_on_device = cache_bytes if options.cache == CachePlacement.DEVICE else staged_cache

    text_activations = text_encoder_activation_bytes(model, compute_bytes)
    encode = vae_encode_bytes(model, figures, options.vae_tiling)
    decode = vae_decode_bytes(model, figures, options.vae_tiling) + activations.latents
    denoise = activations.total + cache_on_device
    host_video = figures.num_frames * figures.width * figures.height * HOST_VIDEO_BYTES_PER_PIXEL
    disk_bytes = cache_bytes if options.cache == CachePlacement.DISK else 0

    if device.is_cuda:
        resident = _resident_weights(options.weights, weights)
        phases = PhasePeaks(
            text_encoding=resident["text"] + text_activations,
            vae_encoding=resident["vae"] + encode,
            denoising=resident["denoise"] + denoise,
            vae_decoding=resident["vae"] + decode,
        )
        peak_vram = max(dataclasses.astuple(phases))
        required_vram = int(peak_vram * (1 + VRAM_MARGIN_FRACTION)) + VRAM_RESERVE_BYTES
        host_cache = cache_bytes if options.cache == CachePlacement.PINNED_HOST else 0
        if options.cache == CachePlacement.DISK:
            host_cache = staged_cache
        peak_ram = HOST_BASE_BYTES + _host_weights(options.weights, weights) + host_cache + host_video
    else:
        phases = PhasePeaks(0, 0, 0, 0)
        peak_vram = required_vram = 0
        largest_phase = max(text_activations, encode, denoise, decode)
        peak_ram = HOST_BASE_BYTES + weights.total + largest_phase + host_video

    grid = token_grid(model, figures.width, figures.height, figures.num_frames)
    return MemoryPlan(
        model_name=model.name,
        figures=figures,
        device=device,
        weight_placement=options.weights,
        cache_placement=options.cache,
        cache_bytes=cache_bytes,
        vae_tiling=options.vae_tiling,
        vae_tile_size=VAE_TILE_SIZE if options.vae_tiling else None,
        vae_tile_stride=VAE_TILE_STRIDE if options.vae_tiling else None,
        ffn_chunks=options.ffn_chunks,
        ffn_chunk_size=math.ceil(grid.sequence_length / options.ffn_chunks) if options.ffn_chunks > 1 else None,
        phases=phases,
        peak_vram_bytes=peak_vram,
        required_vram_bytes=required_vram,
        peak_ram_bytes=peak_ram,
        disk_bytes=disk_bytes,
        weights=weights,
        activations=activations,
        cost=options.cost,
        notes=_notes(options, figures, cache_bytes, device),
        model=model,
    )


def _resident_weights(placement: WeightPlacement, weights: ComponentWeights) -> dict[str, int]:
    """Return the weight bytes on the GPU during the text, VAE and denoising phases."""
    if placement is WeightPlacement.ALL_ON_DEVICE:
        return {"text": weights.total, "vae": weights.total, "denoise": weights.total}
    if placement is WeightPlacement.MODEL_CPU_OFFLOAD:
        # accelerate's hook chain (text encoder -> transformer -> VAE) leaves the VAE on
        # the GPU after stage 1's decode until the chain starts again.
        return {
            "text": weights.text_encoder,
            "vae": weights.vae,
            "denoise": weights.transformer + weights.vae,
        }
    if placement is WeightPlacement.GROUP_OFFLOAD:
        # Two groups are on the GPU at once: the one running and the one prefetched.
        text = weights.text_encoder_embedding + 2 * weights.text_encoder_block
        transformer = weights.transformer_outside_blocks + 2 * weights.transformer_block
        outside = weights.transformer_outside_blocks
        return {"text": text + outside + weights.vae, "vae": outside + weights.vae, "denoise": transformer + weights.vae}
    return {
        "text": weights.text_encoder_embedding,
        "vae": weights.vae,
        "denoise": weights.transformer_largest_leaf,
    }


def _host_weights(placement: WeightPlacement, weights: ComponentWeights) -> int:
    if placement is WeightPlacement.ALL_ON_DEVICE:
        return 0
    if placement is WeightPlacement.GROUP_OFFLOAD:
        return weights.transformer + weights.text_encoder  # pinned copies; the VAE stays on the GPU
    return weights.total


def _notes(options: _Options, figures: RenderFigures, cache_bytes: int, device: DeviceMemory) -> tuple[str, ...]:
    notes = []
    if options.cache == CachePlacement.DISK:
        notes.append(
            f"Each step that reuses the cache reads about {format_size(cache_bytes)} from disk, "
            "so a fast SSD matters."
        )
        if device.free_disk_bytes is None:
            notes.append("Free scratch disk space was not measured.")
    if options.weights is WeightPlacement.SEQUENTIAL_OFFLOAD:
        notes.append("Sequential offload is many times slower than the other placements.")
    if options.ffn_chunks > 1:
        notes.append("FFN chunking may change the last bits of results, because matrix kernels see other shapes.")
    return tuple(notes)


def _fits_host(plan: MemoryPlan) -> bool:
    return not [problem for problem in plan.shortfalls() if "VRAM" not in problem]


def _free_text(device: DeviceMemory) -> str:
    ram = f"{format_size(device.free_ram_bytes)} free RAM"
    if device.is_cuda:
        return f"{format_size(device.free_vram_bytes)} free VRAM, {ram}"
    return ram


# -- rejection ----------------------------------------------------------------------------------


def _rejection_message(figures: RenderFigures, model: ModelFigures, device: DeviceMemory) -> str:
    plans = _all_plans(figures, model, device)
    lines = [
        f"No memory plan fits {model.name} at {figures.width}x{figures.height}, {figures.num_frames} frames, "
        f"method {figures.method} on {device.device_name or device.device_type} ({_free_text(device)}).",
    ]
    # One plan per cache placement, the one closest to fitting, because each placement fails for its own reason.
    for placement in dict.fromkeys(plan.cache_placement for plan in plans):
        same_cache = [plan for plan in plans if plan.cache_placement == placement]
        frugal = min(same_cache, key=lambda plan: (len(plan.shortfalls()), plan.required_vram_bytes, plan.cost))
        label = "The most frugal plan" if placement is None else f"With the cache {_CACHE_SHORT[placement]}, the most frugal plan"
        lines.append(f"{label} ({frugal.summary()}) {'; it '.join(frugal.shortfalls())}.")
    alternatives = suggest_alternatives(figures, model, device)
    if alternatives:
        lines.append("These settings would fit (estimates):")
        lines.extend(f"- {alternative}" for alternative in alternatives)
    else:
        lines.append("No smaller size, frame count or method fits either; use a machine with more memory.")
    return "\n".join(lines)


def suggest_alternatives(figures: RenderFigures, model: ModelFigures, device: DeviceMemory) -> list[str]:
    """Return settings that would fit, each with the plan it gets: a smaller size, fewer frames, another method, more memory."""
    suggestions = []

    smaller = _largest_fitting_size(figures, model, device)
    if smaller is not None:
        suggestions.append(f"width {smaller.figures.width} and height {smaller.figures.height}: {smaller.summary()}")

    fewer = _largest_fitting_frame_count(figures, model, device)
    if fewer is not None:
        suggestions.append(f"{fewer.figures.num_frames} frames: {fewer.summary()}")

    for method in _lighter_methods(figures.method):
        plan = _best_plan(dataclasses.replace(figures, method=method), model, device)
        if plan is not None:
            suggestions.append(f"method {method}: {plan.summary()}")

    suggestions.extend(_more_memory_suggestions(figures, model, device))
    return suggestions


def _lighter_methods(method: str) -> list[str]:
    if method == "freeswim-cached":
        return ["freeswim", "window"]  # freeswim keeps no cache; window runs one branch
    if method == "freeswim":
        return ["window"]
    return []


def _largest_fitting_size(figures: RenderFigures, model: ModelFigures, device: DeviceMemory) -> MemoryPlan | None:
    step = model.pixels_per_token
    for scale in ALTERNATIVE_SCALES:
        width = max(step, int(figures.width * scale) // step * step)
        height = max(step, int(figures.height * scale) // step * step)
        if width < model.base_width or height < model.base_height:
            break
        plan = _best_plan(dataclasses.replace(figures, width=width, height=height), model, device)
        if plan is not None:
            return plan
    return None


def _largest_fitting_frame_count(
    figures: RenderFigures, model: ModelFigures, device: DeviceMemory
) -> MemoryPlan | None:
    step = model.vae_temporal_factor
    for num_frames in range(figures.num_frames - step, 0, -step):
        plan = _best_plan(dataclasses.replace(figures, num_frames=num_frames), model, device)
        if plan is not None:
            return plan
    return None


def _more_memory_suggestions(figures: RenderFigures, model: ModelFigures, device: DeviceMemory) -> list[str]:
    suggestions = []
    more_ram = dataclasses.replace(device, free_ram_bytes=UNLIMITED_BYTES, free_disk_bytes=UNLIMITED_BYTES)
    plan = _best_plan(figures, model, more_ram)
    if plan is not None:
        ram_needed = math.ceil(plan.peak_ram_bytes / RAM_USABLE_FRACTION)
        disk = f" and {format_size(plan.disk_bytes)} of scratch disk" if plan.disk_bytes else ""
        suggestions.append(
            f"at least {format_size(ram_needed)} of available RAM{disk} (now {format_size(device.free_ram_bytes)}): "
            f"{plan.summary()}"
        )
    if device.is_cuda and plan is None:
        more_vram = dataclasses.replace(device, free_vram_bytes=UNLIMITED_BYTES, total_vram_bytes=UNLIMITED_BYTES)
        host_fitting = [candidate for candidate in _all_plans(figures, model, more_vram) if candidate.fits]
        if host_fitting:
            plan = min(host_fitting, key=lambda candidate: (candidate.required_vram_bytes, candidate.cost))
            suggestions.append(
                f"a GPU with at least {format_size(plan.required_vram_bytes)} free "
                f"(now {format_size(device.free_vram_bytes)}): {plan.summary()}"
            )
    return suggestions
