"""Stage-2 step timing shared by the step, scaling and GPU benchmarks.

A step here is one ``FreeSwimTransformer.predict_noise`` call with
classifier-free guidance, as the pipeline makes it, on a random-weight
``WanTransformer3DModel``. The scheduler update is left out because it costs
a few element-wise operations on the latents.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from freeswim_engine.attention import AttentionMethod, FreeSwimTransformer

WAN_1_3B_BASE = (480, 832)  # training size in pixels; gives the 31x53 token window
PIXELS_PER_TOKEN = 16
TEXT_TOKENS = 512  # UMT5 context length of Wan 2.1
LATENT_CHANNELS = 16
GUIDANCE_SCALE = 5.0
TIMESTEP = 500.0


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """Sizes of the random-weight Wan transformer under test."""

    num_layers: int
    num_heads: int
    head_dim: int
    ffn_dim: int
    text_dim: int

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim


# Wan2.1-T2V-1.3B's transformer (config.json of Wan-AI/Wan2.1-T2V-1.3B-Diffusers).
WAN_1_3B = ModelShape(num_layers=30, num_heads=12, head_dim=128, ffn_dim=8960, text_dim=4096)


def scaled_shape(num_layers: int, num_heads: int, text_dim: int = 64) -> ModelShape:
    """Return a smaller model with Wan 2.1's head size and its FFN-to-width ratio (8960 / 1536)."""
    dim = num_heads * WAN_1_3B.head_dim
    ffn_dim = dim * WAN_1_3B.ffn_dim // WAN_1_3B.dim
    return ModelShape(num_layers=num_layers, num_heads=num_heads, head_dim=WAN_1_3B.head_dim, ffn_dim=ffn_dim, text_dim=text_dim)


@dataclasses.dataclass(frozen=True)
class MethodCase:
    """An attention method with its cache interval; cached methods are timed over one full cycle."""

    label: str
    method: AttentionMethod
    cache_interval: int = 1

    @property
    def steps_per_cycle(self) -> int:
        return self.cache_interval if self.method is AttentionMethod.FREESWIM_CACHED else 1


METHOD_CASES = (
    MethodCase("direct", AttentionMethod.DIRECT),
    MethodCase("window", AttentionMethod.WINDOW),
    MethodCase("freeswim", AttentionMethod.FREESWIM),
    MethodCase("freeswim-cached k=2", AttentionMethod.FREESWIM_CACHED, cache_interval=2),
    MethodCase("freeswim-cached k=5", AttentionMethod.FREESWIM_CACHED, cache_interval=5),
)


def build_transformer(shape: ModelShape, dtype: torch.dtype, device: torch.device, seed: int = 0) -> Any:
    """Build a ``WanTransformer3DModel`` of ``shape`` with seeded random weights, in eval mode."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    transformer: Any = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=shape.num_heads,
        attention_head_dim=shape.head_dim,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        text_dim=shape.text_dim,
        freq_dim=256,
        ffn_dim=shape.ffn_dim,
        num_layers=shape.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    )
    cast_like_from_pretrained(transformer, dtype)
    return transformer.to(device).eval()


def cast_like_from_pretrained(transformer: Any, dtype: torch.dtype) -> None:
    """Cast weights to ``dtype`` except the parts that diffusers keeps in float32 when loading.

    ``from_pretrained(torch_dtype=torch.bfloat16)`` leaves the modules named in
    ``_keep_in_fp32_modules`` (rotary embedding, time embedder, norms,
    scale-shift tables) in float32, and so does this.
    """
    keep = set(getattr(transformer, "_keep_in_fp32_modules", None) or ())
    for name, tensor in [*transformer.named_parameters(), *transformer.named_buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(torch.float32 if keep.intersection(name.split(".")) else dtype)


@dataclasses.dataclass
class StepInputs:
    """Random latents and text embeddings for one video grid."""

    latents: torch.Tensor  # (1, 16, frames, 2 * height_tokens, 2 * width_tokens)
    prompt_embeds: torch.Tensor  # (1, 512, text_dim)
    negative_prompt_embeds: torch.Tensor


def make_inputs(
    grid: tuple[int, int, int], text_dim: int, dtype: torch.dtype, device: torch.device, seed: int = 0
) -> StepInputs:
    """Return inputs for a ``(frames, height, width)`` token grid (patch 1x2x2, so latents are twice the tokens)."""
    generator = torch.Generator().manual_seed(seed)
    frames, height, width = grid
    latents = torch.randn((1, LATENT_CHANNELS, frames, 2 * height, 2 * width), generator=generator)
    prompt = torch.randn((1, TEXT_TOKENS, text_dim), generator=generator)
    negative = torch.randn((1, TEXT_TOKENS, text_dim), generator=generator)
    return StepInputs(latents.to(device, dtype), prompt.to(device, dtype), negative.to(device, dtype))


def make_denoiser(transformer: Any, case: MethodCase) -> FreeSwimTransformer:
    return FreeSwimTransformer(
        transformer,
        method=case.method,
        base_size=WAN_1_3B_BASE,
        pixels_per_token=PIXELS_PER_TOKEN,
        cache_interval=case.cache_interval,
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cycle(transformer: Any, case: MethodCase, inputs: StepInputs, num_steps: int | None = None) -> float:
    """Run ``num_steps`` steps (default: one cache cycle) of ``case`` from step 0 and return seconds per step.

    The cross-attention cache starts empty, so a cycle of a cached method is
    one refresh step followed by ``k - 1`` steps that read the cache.
    """
    steps = case.steps_per_cycle if num_steps is None else num_steps
    device = inputs.latents.device
    denoiser = make_denoiser(transformer, case)
    timestep = torch.tensor(TIMESTEP, device=device)
    with denoiser.installed():
        synchronize(device)
        start = time.perf_counter()
        for step_index in range(steps):
            denoiser.predict_noise(
                inputs.latents,
                timestep,
                step_index=step_index,
                prompt_embeds=inputs.prompt_embeds,
                negative_prompt_embeds=inputs.negative_prompt_embeds,
                guidance_scale=GUIDANCE_SCALE,
            )
        synchronize(device)
        elapsed = time.perf_counter() - start
    return elapsed / steps


def attention_flop_share(shape: ModelShape, grid: tuple[int, int, int], key_fraction: float) -> float:
    """Estimate the share of a transformer pass's FLOPs spent in self-attention.

    Per token and block: self-attention scores and weighted sum ``4 * L * dim * key_fraction``,
    projections ``12 * dim**2`` (q, k, v, out of self-attention and q, out of
    cross-attention), cross-attention over 512 text tokens ``4 * 512 * dim`` and
    the FFN ``4 * dim * ffn_dim``. ``key_fraction`` is 1 for full attention and
    the window's density for window attention.
    """
    frames, height, width = grid
    length = frames * height * width
    dim = shape.dim
    attention = 4.0 * length * dim * key_fraction
    rest = 12.0 * dim * dim + 4.0 * TEXT_TOKENS * dim + 4.0 * dim * shape.ffn_dim
    return attention / (attention + rest)
