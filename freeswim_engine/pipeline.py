"""The two FreeSwim stages, built from the pieces of a loaded diffusers WanPipeline.

Stage 1 denoises from pure noise at the model's native size. Between the stages the
video is decoded, resized bilinearly to the target size and encoded again. Stage 2
adds noise for the request's strength and denoises the last steps of the schedule
with FreeSwim attention. ``freeswim_engine.api`` strings these steps together.

Latents are float32 with shape (1, channels, latent frames, latent height, latent
width) and normalised with the VAE's ``latents_mean``/``latents_std``, as in diffusers'
Wan pipelines. Videos are float32 tensors of shape (1, 3, frames, height, width) in [-1, 1].
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from freeswim_engine.attention import AttentionMethod, FreeSwimTransformer
from freeswim_engine.cache_store import CrossAttentionCacheStore
from freeswim_engine.errors import NonFiniteLatentsError
from freeswim_engine.memory.estimates import VAE_TILE_SIZE, VAE_TILE_STRIDE
from freeswim_engine.models import LoadedModel
from freeswim_engine.request import stage2_step_count

if TYPE_CHECKING:
    from freeswim_engine.memory import MemoryPlan

logger = logging.getLogger(__name__)

# Called after every denoising step with (step, total steps, estimate of the clean latents).
StepCallback = Callable[[int, int, torch.Tensor], None]

# Without a memory plan, frames larger than this many pixels go through the VAE in tiles,
# because untiled the VAE's memory grows with the frame area and its mid-block attention
# with its square. With a plan, the plan decides on CUDA. On a CPU this rule still applies
# when the plan leaves tiling off (see choose_vae_tiling).
# On a CPU, tiling costs time: PyTorch 2.13 runs 3D convolutions over small inputs with
# its slow unfold-based kernel, and 1024-pixel tiles made a 1920x1088 decode of the demo
# VAE 1.75x slower than untiled (2-core CPU). So the CPU tiles only above 1080p, in large tiles.
# NOTE: the CPU threshold and tile size are not measured at 4K, where tiling also bounds the attention.
VAE_TILING_MIN_PIXELS = {"cuda": 1280 * 720, "cpu": 1920 * 1088}
CPU_VAE_TILE = 1024  # pixels; tiles overlap by a quarter
RESIZE_CHUNK_FRAMES = 8
PROMPT_CACHE_SIZE = 4


@dataclasses.dataclass
class PromptEmbeddings:
    """Text embeddings of the prompt and negative prompt, each (1, max tokens, text dim)."""

    prompt: torch.Tensor
    negative: torch.Tensor | None  # None when guidance is off

    @property
    def uses_guidance(self) -> bool:
        return self.negative is not None


def encode_prompts(model: LoadedModel, prompt: str, negative_prompt: str, guidance_scale: float) -> PromptEmbeddings:
    """Encode both prompts with the pipeline's tokenizer and text encoder (the negative only when guidance is on).

    The last few results are kept on ``model``, so a queue of renders with one prompt encodes it once.
    """
    uses_guidance = guidance_scale > 1.0
    key = (prompt, negative_prompt, uses_guidance)
    cached = model.prompt_cache.get(key)
    if cached is not None:
        model.prompt_cache.move_to_end(key)
        return cached

    with torch.no_grad():
        prompt_embeds, negative_embeds = model.pipeline.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=uses_guidance,
            max_sequence_length=model.info.preset.max_text_tokens,
            device=model.device,
            dtype=model.transformer_dtype,
        )
    embeddings = PromptEmbeddings(prompt_embeds, negative_embeds if uses_guidance else None)
    model.prompt_cache[key] = embeddings
    while len(model.prompt_cache) > PROMPT_CACHE_SIZE:
        model.prompt_cache.popitem(last=False)
    return embeddings


def make_generator(seed: int) -> torch.Generator:
    """Return a CPU generator, so that a seed gives the same noise on every device."""
    return torch.Generator(device="cpu").manual_seed(seed)


def latent_shape(model: LoadedModel, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
    preset = model.info.preset
    return (
        1,
        int(model.pipeline.transformer.config.in_channels),
        (num_frames - 1) // preset.vae_temporal_factor + 1,
        height // preset.vae_spatial_factor,
        width // preset.vae_spatial_factor,
    )


def run_stage1(
    model: LoadedModel,
    embeddings: PromptEmbeddings,
    *,
    height: int,
    width: int,
    num_frames: int,
    num_inference_steps: int,
    guidance_scale: float,
    flow_shift: float,
    generator: torch.Generator,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Generate latents at (height, width) from noise, with full attention and every scheduled step."""
    pipeline = model.pipeline
    scheduler = _scheduler(model, flow_shift)
    scheduler.set_timesteps(num_inference_steps, device=model.device)
    scheduler.set_begin_index(0)

    # Noise is drawn on the CPU from the CPU generator, then moved, so it is the same on every device.
    latents = pipeline.prepare_latents(
        1,
        int(pipeline.transformer.config.in_channels),
        height,
        width,
        num_frames,
        dtype=torch.float32,
        device=torch.device("cpu"),
        generator=generator,
    ).to(model.device)

    denoiser = FreeSwimTransformer(
        pipeline.transformer,
        method=AttentionMethod.DIRECT,
        base_size=model.info.preset.base_size,
        pixels_per_token=model.info.preset.pixels_per_token,
    )
    return _denoise(denoiser, scheduler, scheduler.timesteps, 0, latents, embeddings, guidance_scale, on_step)


def run_stage2(
    model: LoadedModel,
    embeddings: PromptEmbeddings,
    clean_latents: torch.Tensor,
    *,
    num_inference_steps: int,
    strength: float,
    guidance_scale: float,
    flow_shift: float,
    method: AttentionMethod | str,
    cache_interval: int,
    base_size: tuple[int, int],
    generator: torch.Generator,
    cache_store: CrossAttentionCacheStore | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Refine ``clean_latents`` SDEdit-style: noise them to the strength's timestep and denoise the rest.

    Of ``num_inference_steps`` scheduled steps the last round(steps x strength) run.
    """
    scheduler = _scheduler(model, flow_shift)
    scheduler.set_timesteps(num_inference_steps, device=model.device)
    first_index = num_inference_steps - stage2_step_count(num_inference_steps, strength)
    timesteps = scheduler.timesteps[first_index:]
    scheduler.set_begin_index(first_index)

    noise = randn_tensor(tuple(clean_latents.shape), generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    latents = scheduler.add_noise(clean_latents, noise.to(model.device), timesteps[:1])

    denoiser = FreeSwimTransformer(
        model.pipeline.transformer,
        method=method,
        base_size=base_size,
        pixels_per_token=model.info.preset.pixels_per_token,
        cache_interval=cache_interval,
        cache_store=cache_store,
    )
    return _denoise(denoiser, scheduler, timesteps, first_index, latents, embeddings, guidance_scale, on_step)


def _scheduler(model: LoadedModel, flow_shift: float) -> Any:
    """Return a fresh copy of the checkpoint's scheduler with ``flow_shift``, so renders never share state."""
    scheduler = model.pipeline.scheduler
    return type(scheduler).from_config(scheduler.config, flow_shift=flow_shift)


def _denoise(
    denoiser: FreeSwimTransformer,
    scheduler: Any,
    timesteps: torch.Tensor,
    first_index: int,
    latents: torch.Tensor,
    embeddings: PromptEmbeddings,
    guidance_scale: float,
    on_step: StepCallback | None,
) -> torch.Tensor:
    total = len(timesteps)
    with torch.no_grad(), denoiser.installed():
        for step, timestep in enumerate(timesteps):
            # 1. Predict the flow velocity, guidance included.
            velocity = denoiser.predict_noise(
                latents,
                timestep,
                step_index=step,
                prompt_embeds=embeddings.prompt,
                negative_prompt_embeds=embeddings.negative,
                guidance_scale=guidance_scale,
            ).float()

            # 2. Estimate the clean latents for the preview: x_t = (1 - sigma) x_0 + sigma noise, v = noise - x_0.
            sigma = float(scheduler.sigmas[first_index + step])
            clean_estimate = latents - sigma * velocity

            # 3. Advance the scheduler, then report, which may raise RenderCancelled.
            latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
            if on_step is not None:
                on_step(step + 1, total, clean_estimate)
    return latents


# -- VAE and resizing --------------------------------------------------------------------------


def check_finite(latents: torch.Tensor, stage: str) -> None:
    """Raise NonFiniteLatentsError when ``latents`` contain NaN or infinity."""
    if not bool(torch.isfinite(latents).all()):
        bad = int((~torch.isfinite(latents)).sum())
        raise NonFiniteLatentsError(
            f"The {stage} latents contain {bad} NaN or infinite values, so the decoded video would be black or "
            "noise. Retry with dtype float32, a lower guidance scale, or another seed."
        )


def decode_latents(
    model: LoadedModel, latents: torch.Tensor, stage: str = "final", plan: MemoryPlan | None = None
) -> torch.Tensor:
    """Decode normalised latents to a video tensor (1, 3, frames, height, width) in [-1, 1].

    ``plan`` sets the VAE tiling (see ``choose_vae_tiling``). Raises NonFiniteLatentsError
    before decoding when the latents are not finite.
    """
    check_finite(latents, stage)
    vae = model.pipeline.vae
    mean, std = _latent_statistics(vae, latents.device)
    raw = (latents.float() * std + mean).to(device=model.device, dtype=vae.dtype)
    height = raw.shape[3] * model.info.preset.vae_spatial_factor
    width = raw.shape[4] * model.info.preset.vae_spatial_factor
    with torch.no_grad(), _vae_tiling(vae, choose_vae_tiling(height, width, model.device, plan)):
        video = vae.decode(raw, return_dict=False)[0]
    return video.float().clamp(-1.0, 1.0)


def encode_video(model: LoadedModel, video: torch.Tensor, plan: MemoryPlan | None = None) -> torch.Tensor:
    """Encode a video tensor in [-1, 1] to normalised latents, using the latent distribution's mode.

    ``plan`` sets the VAE tiling (see ``choose_vae_tiling``).
    """
    vae = model.pipeline.vae
    pixels = video.to(device=model.device, dtype=vae.dtype)
    tiling = choose_vae_tiling(video.shape[3], video.shape[4], model.device, plan)
    with torch.no_grad(), _vae_tiling(vae, tiling):
        raw = vae.encode(pixels).latent_dist.mode()
    mean, std = _latent_statistics(vae, raw.device)
    return ((raw.float() - mean) / std).float()


def _latent_statistics(vae: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    channels = int(vae.config.z_dim)
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=device).view(1, channels, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=device).view(1, channels, 1, 1, 1)
    return mean, std


@dataclasses.dataclass(frozen=True)
class VaeTiling:
    """Tile side and stride of one tiled VAE call, in pixels; diffusers 0.42.1 runs frames up to one tile untiled."""

    tile_size: int
    stride: int


def choose_vae_tiling(
    height: int, width: int, device: torch.device, plan: MemoryPlan | None = None
) -> VaeTiling | None:
    """Return the tiles for a VAE call on frames of ``height`` x ``width`` pixels, or None to run it untiled.

    A plan with tiling on gets its own tiles on every device and for every VAE call of
    the render, because its memory estimate assumes them, and an untiled stage-1 decode
    at the base size can need more memory than tiles at the target size. On CUDA a plan
    with tiling off runs untiled. On a CPU the planner tiles only when RAM is short, so a
    plan with tiling off keeps the measured CPU rule of VAE_TILING_MIN_PIXELS. That rule
    only adds tiling, which lowers memory. Without a plan, VAE_TILING_MIN_PIXELS decides.
    """
    is_cuda = device.type == "cuda"
    if plan is not None and plan.vae_tiling:
        return VaeTiling(plan.vae_tile_size or VAE_TILE_SIZE, plan.vae_tile_stride or VAE_TILE_STRIDE)
    if plan is not None and is_cuda:
        return None
    if height * width <= VAE_TILING_MIN_PIXELS["cuda" if is_cuda else "cpu"]:
        return None
    if is_cuda:
        return VaeTiling(VAE_TILE_SIZE, VAE_TILE_STRIDE)
    return VaeTiling(CPU_VAE_TILE, CPU_VAE_TILE * 3 // 4)


@contextlib.contextmanager
def _vae_tiling(vae: Any, tiling: VaeTiling | None) -> Iterator[None]:
    """Run the block with the VAE tiled in ``tiling``'s tiles (None: untiled), and leave the VAE untiled after it.

    Tiling is set on every call, because a memory plan applied at load time may have left it on.
    """
    if tiling is None:
        vae.disable_tiling()
    else:
        vae.enable_tiling(
            tile_sample_min_height=tiling.tile_size,
            tile_sample_min_width=tiling.tile_size,
            tile_sample_stride_height=tiling.stride,
            tile_sample_stride_width=tiling.stride,
        )
    try:
        yield
    finally:
        vae.disable_tiling()


def resize_video(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize every frame of (1, 3, frames, H, W) to (height, width) with bilinear interpolation.

    Frames go through in chunks so that the float copy of a 4K clip is never made twice.
    Downscaling uses antialiasing, upscaling plain bilinear interpolation.
    """
    frames = video[0].transpose(0, 1)  # (frames, 3, H, W)
    if frames.shape[2:] == (height, width):
        return video
    antialias = height < frames.shape[2] or width < frames.shape[3]
    resized = torch.empty((frames.shape[0], 3, height, width), dtype=video.dtype, device=video.device)
    for start in range(0, frames.shape[0], RESIZE_CHUNK_FRAMES):
        chunk = frames[start : start + RESIZE_CHUNK_FRAMES]
        resized[start : start + RESIZE_CHUNK_FRAMES] = F.interpolate(
            chunk, size=(height, width), mode="bilinear", align_corners=False, antialias=antialias
        )
    return resized.transpose(0, 1).unsqueeze(0)


def video_to_frames(video: torch.Tensor) -> numpy.ndarray:
    """Convert a video tensor in [-1, 1] to uint8 RGB frames of shape (frames, height, width, 3)."""
    pixels = ((video[0].float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).cpu().numpy()


def frames_to_video(frames: numpy.ndarray, device: torch.device) -> torch.Tensor:
    """Convert uint8 RGB frames (frames, height, width, 3) to a float32 video tensor in [-1, 1]."""
    pixels = torch.from_numpy(numpy.ascontiguousarray(frames)).to(device)
    return (pixels.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0).contiguous()
