"""Byte estimates for one render: weights, activations, the cross-attention cache and the VAE.

Every figure here is an estimate computed from tensor shapes, not a measurement of
a run. The constants below state which tensors are counted and where each number
came from. The planner adds a safety margin on top, because CUDA's caching allocator,
cuBLAS and cuDNN workspaces and fragmentation all add memory that shapes do not show.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

from freeswim_engine.presets import TransformerArchitecture

# Attention methods whose stage 2 runs the window branch W and the full branch F as a
# batch of two (dual path). The cached method still runs both on refresh steps, so its
# peak is the dual-path peak.
DUAL_PATH_METHODS = frozenset({"freeswim", "freeswim-cached"})
CACHED_METHODS = frozenset({"freeswim-cached"})
WINDOW_METHODS = frozenset({"window", "freeswim", "freeswim-cached"})

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
FP32_BYTES = 4
VAE_BYTES = 4  # the VAE runs in float32 on every device, because bf16 decoding shows banding

# Transformer block, per token and channel of the residual stream (L x dim), counted
# from WanTransformerBlock.forward in diffusers 0.42.1. Self-attention holds the block
# input, the modulated norm output, q, k and v in the compute dtype, plus two float32
# temporaries from the float32 norm and the rotary embedding. The FFN phase holds the
# block input and norm output in the compute dtype and two float32 temporaries (the
# upcast residual and the gated FFN output), plus the FFN intermediate counted apart.
ATTENTION_PHASE_TENSORS = 5
ATTENTION_PHASE_FP32_TENSORS = 2
FFN_PHASE_TENSORS = 2
FFN_PHASE_FP32_TENSORS = 2
# The FFN's first projection output and its GELU output are both alive for a moment.
# Check: one 1.3B-sized block in float32 on CPU peaked at 75 kB per token (peak RSS
# slope between 4096 and 8192 tokens, torch 2.13.0), and these counts give 96 kB, so
# the block estimate errs high by about a quarter there.
FFN_INTERMEDIATE_TENSORS = 2

# Flex attention tiles queries and keys in blocks of 128 tokens. Its block mask stores
# four int32 index tables of (query blocks x key blocks) entries.
FLEX_BLOCK_SIZE = 128
FLEX_INDEX_TABLES = 4

# UMT5-XXL, the text encoder of every Wan 2.1 and 2.2 checkpoint (google/umt5-xxl
# config: d_model 4096, d_ff 10240, 64 heads, 24 layers, 256384-token vocabulary).
TEXT_ENCODER_D_MODEL = 4096
TEXT_ENCODER_D_FF = 10240
TEXT_ENCODER_HEADS = 64
TEXT_ENCODER_LAYERS = 24
TEXT_ENCODER_VOCAB = 256_384
# Per token: hidden state, q, k, v, attention output and norm output (6 x d_model),
# and the gated FFN's two projections and product (3 x d_ff). Attention scores and
# the relative position bias are float32 (3 tables of heads x tokens x tokens).
TEXT_ENCODER_HIDDEN_TENSORS = 6
TEXT_ENCODER_FFN_TENSORS = 3
TEXT_ENCODER_SCORE_TABLES = 3

# Wan 2.1 VAE (AutoencoderKLWan, base_dim 96): bytes per pixel of one frame that the
# decoder and encoder keep at full resolution. The figure does not grow with the frame
# count, because both work on one latent frame (4 video frames) at a time and each
# causal 3D convolution caches only its last 2 input frames. Measured as the slope of peak RSS between 128x128 and
# 256x256 (9 frames, random weights, CPU, torch 2.13.0, diffusers 0.42.1): 21.8 kB for
# decoding and 16.6 kB for encoding. cuDNN workspaces on CUDA are not in these
# figures; the planner's margin covers them.
VAE_REFERENCE_PARAMETERS = 127_000_000
VAE_DECODE_BYTES_PER_PIXEL = 22_000
VAE_ENCODE_BYTES_PER_PIXEL = 17_000
# diffusers' Wan VAE tiles: 256x256 pixels with a stride of 192 (its defaults).
VAE_TILE_SIZE = 256
VAE_TILE_STRIDE = 192

# Latents, the noise predictions of both guidance passes and the scheduler's history:
# a few float32 copies of the latent tensor.
LATENT_COPIES = 6


class ModelFigures(Protocol):
    """The sizes of a model that planning needs; ``ModelPreset`` provides all of them."""

    @property
    def name(self) -> str: ...

    @property
    def transformer(self) -> TransformerArchitecture: ...

    @property
    def text_encoder_parameters(self) -> int: ...

    @property
    def vae_parameters(self) -> int: ...

    @property
    def pixels_per_token(self) -> int: ...

    @property
    def vae_spatial_factor(self) -> int: ...

    @property
    def vae_temporal_factor(self) -> int: ...

    @property
    def latent_channels(self) -> int: ...

    @property
    def max_text_tokens(self) -> int: ...

    @property
    def default_num_frames(self) -> int: ...

    @property
    def guidance_scale(self) -> float: ...

    @property
    def base_height(self) -> int: ...

    @property
    def base_width(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class RenderFigures:
    """The parts of a render request that decide its memory.

    ``dtype`` is the transformer's compute dtype (``bfloat16`` or ``float32``);
    ``auto`` is resolved by the planner: bfloat16 on CUDA, float32 on CPU.
    ``is_upscale`` is True when stage 2 starts from an input video. It changes no
    estimate, because stage 2 at the target size sets every peak either way.
    """

    width: int
    height: int
    num_frames: int
    method: str = "freeswim-cached"
    cache_interval: int = 2
    dtype: str = "auto"
    guidance_scale: float = 5.0
    is_upscale: bool = False

    @classmethod
    def from_request(cls, request: Any, model: ModelFigures) -> RenderFigures:
        """Read the figures from a ``RenderRequest`` (or any object with its field names).

        ``None`` fields take the model's defaults, as the render itself does.
        """
        num_frames = getattr(request, "num_frames", None)
        guidance_scale = getattr(request, "guidance_scale", None)
        return cls(
            width=int(request.width),
            height=int(request.height),
            num_frames=int(num_frames) if num_frames is not None else model.default_num_frames,
            method=str(getattr(request, "method", "freeswim-cached")),
            cache_interval=int(getattr(request, "cache_interval", 2)),
            dtype=str(getattr(request, "dtype", "auto")),
            guidance_scale=float(guidance_scale) if guidance_scale is not None else model.guidance_scale,
            is_upscale=getattr(request, "input_video", None) is not None,
        )

    @property
    def uses_dual_path(self) -> bool:
        return self.method in DUAL_PATH_METHODS

    @property
    def uses_cache(self) -> bool:
        return self.method in CACHED_METHODS

    @property
    def uses_window(self) -> bool:
        return self.method in WINDOW_METHODS


@dataclasses.dataclass(frozen=True)
class TokenGrid:
    """Stage-2 latent token grid: ``latent_frames`` frames of ``height`` x ``width`` tokens."""

    latent_frames: int
    height: int
    width: int

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width

    @property
    def sequence_length(self) -> int:
        return self.latent_frames * self.tokens_per_frame


@dataclasses.dataclass(frozen=True)
class ComponentWeights:
    """Weight bytes of each pipeline component in the dtype it runs in."""

    transformer: int
    transformer_block: int  # one WanTransformerBlock
    transformer_outside_blocks: int  # patch and text embeddings, time embedding, output head
    transformer_largest_leaf: int  # the largest single nn.Linear
    text_encoder: int
    text_encoder_block: int
    text_encoder_embedding: int
    vae: int

    @property
    def total(self) -> int:
        return self.transformer + self.text_encoder + self.vae


def dtype_bytes(dtype: str) -> int:
    """Return bytes per element of ``bfloat16``, ``float16`` or ``float32``."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"Invalid dtype {dtype!r}: use one of {', '.join(DTYPE_BYTES)}.") from None


def token_grid(model: ModelFigures, width: int, height: int, num_frames: int) -> TokenGrid:
    """Return the latent token grid of a ``width`` x ``height`` video of ``num_frames`` frames."""
    latent_frames = 1 + (num_frames - 1) // model.vae_temporal_factor
    return TokenGrid(
        latent_frames=latent_frames,
        height=math.ceil(height / model.pixels_per_token),
        width=math.ceil(width / model.pixels_per_token),
    )


def block_parameters(architecture: TransformerArchitecture) -> int:
    """Count the parameters of one WanTransformerBlock: two attentions, the FFN, norms and modulation."""
    dim = architecture.dim
    attention = 4 * dim * dim + 4 * dim + 2 * dim  # q, k, v, out with biases, q and k RMSNorm weights
    ffn = 2 * dim * architecture.ffn_dim + architecture.ffn_dim + dim
    return 2 * attention + ffn + 2 * dim + 6 * dim  # cross-attention norm and the modulation table


def component_weights(model: ModelFigures, compute_bytes: int) -> ComponentWeights:
    """Return weight bytes: transformer and text encoder in the compute dtype, VAE in float32."""
    architecture = model.transformer
    block = block_parameters(architecture) * compute_bytes
    transformer = max(architecture.num_parameters * compute_bytes, block * architecture.num_layers)
    largest_leaf = max(architecture.dim * architecture.ffn_dim, architecture.text_dim * architecture.dim)

    text_encoder = model.text_encoder_parameters * compute_bytes
    embedding = min(text_encoder, TEXT_ENCODER_VOCAB * TEXT_ENCODER_D_MODEL * compute_bytes)
    return ComponentWeights(
        transformer=transformer,
        transformer_block=block,
        transformer_outside_blocks=transformer - block * architecture.num_layers,
        transformer_largest_leaf=largest_leaf * compute_bytes,
        text_encoder=text_encoder,
        text_encoder_block=(text_encoder - embedding) // TEXT_ENCODER_LAYERS,
        text_encoder_embedding=embedding,
        vae=model.vae_parameters * VAE_BYTES,
    )


def cross_attention_cache_bytes(model: ModelFigures, figures: RenderFigures, compute_bytes: int) -> int:
    """Return the cache size: blocks x latent frames x tokens per frame x dim x bytes per element.

    The cache holds one ``(1, L, dim)`` cross-attention output per transformer block,
    whatever the cache interval, and nothing for methods that do not cache.
    """
    if not figures.uses_cache:
        return 0
    grid = token_grid(model, figures.width, figures.height, figures.num_frames)
    architecture = model.transformer
    return architecture.num_layers * grid.latent_frames * grid.tokens_per_frame * architecture.dim * compute_bytes


def cache_entry_bytes(model: ModelFigures, figures: RenderFigures, compute_bytes: int) -> int:
    """Return the size of one block's cache entry, ``(1, L, dim)``."""
    grid = token_grid(model, figures.width, figures.height, figures.num_frames)
    return grid.sequence_length * model.transformer.dim * compute_bytes


def text_encoder_activation_bytes(model: ModelFigures, compute_bytes: int) -> int:
    """Estimate the text encoder's peak activations for one prompt of ``max_text_tokens`` tokens.

    Uses UMT5-XXL's sizes, so it is an upper bound for the smaller encoder of the demo model.
    """
    tokens = model.max_text_tokens
    per_token = TEXT_ENCODER_HIDDEN_TENSORS * TEXT_ENCODER_D_MODEL + TEXT_ENCODER_FFN_TENSORS * TEXT_ENCODER_D_FF
    scores = TEXT_ENCODER_SCORE_TABLES * TEXT_ENCODER_HEADS * tokens * tokens * FP32_BYTES
    return tokens * per_token * compute_bytes + scores


@dataclasses.dataclass(frozen=True)
class TransformerActivations:
    """Peak activation bytes of one stage-2 transformer call, split by the tensors that make them up."""

    residual_streams: int  # hidden states of every branch between blocks
    rotary_embedding: int  # cos and sin tables, float32
    latents: int
    attention_phase: int  # self-attention of one block, every branch
    attention_workspace: int  # kernel workspace (flex block mask or flash log-sum-exp) and output
    ffn_phase: int  # feed-forward of one block, every branch, FFN intermediate included
    ffn_intermediate: int  # the part of ffn_phase that chunking divides

    @property
    def block_peak(self) -> int:
        return max(self.attention_phase + self.attention_workspace, self.ffn_phase)

    @property
    def total(self) -> int:
        return self.residual_streams + self.rotary_embedding + self.latents + self.block_peak


def transformer_activation_bytes(
    model: ModelFigures, figures: RenderFigures, compute_bytes: int, ffn_chunks: int = 1
) -> TransformerActivations:
    """Estimate one stage-2 transformer call's peak activations at the target size.

    Dual-path methods count both branches, because W and F run as a batch of two.
    Classifier-free guidance runs its two passes one after the other, so it adds no
    activations. ``ffn_chunks`` splits the FFN intermediate along the tokens.
    """
    architecture = model.transformer
    grid = token_grid(model, figures.width, figures.height, figures.num_frames)
    length = grid.sequence_length
    dim = architecture.dim
    branches = 2 if figures.uses_dual_path else 1

    residual = branches * length * dim * compute_bytes
    rotary = 2 * length * architecture.attention_head_dim * FP32_BYTES
    latent_elements = model.latent_channels * grid.latent_frames * grid.height * grid.width * 4  # patch 2x2
    latents = LATENT_COPIES * latent_elements * FP32_BYTES

    per_token_attention = ATTENTION_PHASE_TENSORS * compute_bytes + ATTENTION_PHASE_FP32_TENSORS * FP32_BYTES
    attention_phase = branches * length * dim * per_token_attention
    workspace = branches * _attention_workspace_bytes(architecture, length, compute_bytes, figures.uses_window)

    chunk_tokens = math.ceil(length / max(1, ffn_chunks))
    intermediate = branches * FFN_INTERMEDIATE_TENSORS * chunk_tokens * architecture.ffn_dim * compute_bytes
    per_token_ffn = FFN_PHASE_TENSORS * compute_bytes + FFN_PHASE_FP32_TENSORS * FP32_BYTES
    ffn_phase = branches * length * dim * per_token_ffn + intermediate

    return TransformerActivations(
        residual_streams=residual,
        rotary_embedding=rotary,
        latents=latents,
        attention_phase=attention_phase,
        attention_workspace=workspace,
        ffn_phase=ffn_phase,
        ffn_intermediate=intermediate,
    )


def _attention_workspace_bytes(
    architecture: TransformerArchitecture, length: int, compute_bytes: int, uses_window: bool
) -> int:
    output = length * architecture.dim * compute_bytes
    log_sum_exp = length * architecture.num_attention_heads * FP32_BYTES
    if not uses_window:
        # Flash and memory-efficient SDPA keep no L x L scores.
        return output + log_sum_exp
    blocks = math.ceil(length / FLEX_BLOCK_SIZE)
    block_mask = FLEX_INDEX_TABLES * blocks * blocks * 4
    return output + log_sum_exp + block_mask


def vae_channel_scale(model: ModelFigures) -> float:
    """Return how much wider the model's VAE is than the Wan 2.1 VAE, from the parameter counts.

    Convolution parameters grow with the square of the channel count, so the width
    ratio is the square root of the parameter ratio (Wan 2.2's VAE: about 2.4).
    """
    return math.sqrt(model.vae_parameters / VAE_REFERENCE_PARAMETERS)


def video_bytes(width: int, height: int, num_frames: int) -> int:
    """Return the size of a float32 RGB video tensor."""
    return num_frames * 3 * height * width * VAE_BYTES


def vae_decode_bytes(model: ModelFigures, figures: RenderFigures, tiled: bool) -> int:
    """Estimate VAE decoding's peak at the target size, the decoded video included.

    Untiled, the decoder works on the whole frame and grows its output with
    ``torch.cat`` (two copies at the end). Tiled, it keeps every overlapping tile of
    every frame until it blends them, then the blended rows and the final video.
    """
    pixels = figures.width * figures.height
    output = video_bytes(figures.width, figures.height, figures.num_frames)
    per_pixel = VAE_DECODE_BYTES_PER_PIXEL * vae_channel_scale(model)
    if not tiled:
        return int(pixels * per_pixel) + 2 * output
    tile_pixels = min(pixels, VAE_TILE_SIZE * VAE_TILE_SIZE)
    overlap = (VAE_TILE_SIZE / VAE_TILE_STRIDE) ** 2 if pixels > tile_pixels else 1.0
    return int(tile_pixels * per_pixel + output * (overlap + 2))


def vae_encode_bytes(model: ModelFigures, figures: RenderFigures, tiled: bool) -> int:
    """Estimate VAE encoding's peak for stage 2's input video at the target size, the input included."""
    pixels = figures.width * figures.height
    video = video_bytes(figures.width, figures.height, figures.num_frames)
    per_pixel = VAE_ENCODE_BYTES_PER_PIXEL * vae_channel_scale(model)
    working_pixels = min(pixels, VAE_TILE_SIZE * VAE_TILE_SIZE) if tiled else pixels
    return int(working_pixels * per_pixel) + video
