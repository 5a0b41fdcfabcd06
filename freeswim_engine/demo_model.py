"""The built-in demo model: a tiny Wan checkpoint of random weights, built in code.

It exists to check an installation end to end (loading, both stages, attention,
export) without downloading anything. Its videos are coloured noise, not content.
The checkpoint is saved in the diffusers folder layout, so it loads through the
same code as a real model, and is cached after the first build.
"""

from __future__ import annotations

import logging
import os
import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

import platformdirs

from freeswim_engine.logs import APP_NAME
from freeswim_engine.presets import ModelPreset, TransformerArchitecture

logger = logging.getLogger(__name__)

DEMO_NAME = "demo"
DEMO_LABEL = "Demo (tiny random weights: checks the install, not a real model)"
# Bump when the demo's architecture or weights change, so that old caches are not reused.
DEMO_VERSION = 2
DEMO_SEED = 0

# Sizes of the tiny networks. The transformer keeps Wan 2.1's layout (16 latent
# channels, patch (1, 2, 2), rotary embeddings over frames, height and width).
TEXT_DIM = 32
TRANSFORMER = TransformerArchitecture(
    num_layers=2, num_attention_heads=2, attention_head_dim=16, ffn_dim=64, in_channels=16, text_dim=TEXT_DIM
)
# The VAE dominates a CPU render at 4K because its convolutions run at full resolution;
# With 2 base channels, encoding and decoding one 1920x1088 frame took about 40% less time
# than with 4 (measured on a shared 2-core CPU).
VAE_BASE_DIM = 2
MAX_TEXT_TOKENS = 512

DEMO_PRESET = ModelPreset(
    name=DEMO_NAME,
    label=DEMO_LABEL,
    repo_id=None,
    base_height=128,
    base_width=224,
    pixels_per_token=16,
    vae_spatial_factor=8,
    vae_temporal_factor=4,
    latent_channels=16,
    fps=16,
    transformer=TRANSFORMER,
    text_encoder_parameters=27_296,  # counted from the built model
    vae_parameters=51_477,
    num_inference_steps=6,
    guidance_scale=5.0,
    stage1_flow_shift=3.0,
    stage2_flow_shift=9.0,
    strength=0.7,
    default_num_frames=5,
    max_text_tokens=MAX_TEXT_TOKENS,
    is_demo=True,
)


def cache_root() -> Path:
    """Return the engine's cache folder: FREESWIM_CACHE_DIR, else the platform's user cache folder."""
    override = os.environ.get("FREESWIM_CACHE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def demo_checkpoint_dir(root: Path | None = None) -> Path:
    """Return where the demo checkpoint is (or will be) saved."""
    return (root or cache_root()) / "models" / f"demo-v{DEMO_VERSION}"


def is_demo_cached(root: Path | None = None) -> bool:
    return (demo_checkpoint_dir(root) / "model_index.json").is_file()


def ensure_demo_checkpoint(root: Path | None = None) -> Path:
    """Return the demo checkpoint folder, building and saving it first if it is not cached."""
    target = demo_checkpoint_dir(root)
    if (target / "model_index.json").is_file():
        return target
    logger.info("Building the demo model in %s", target)
    save_demo_checkpoint(target)
    logger.info("Built the demo model in %s", target)
    return target


def save_demo_checkpoint(target: Path, seed: int = DEMO_SEED) -> Path:
    """Build the demo pipeline and save it to ``target`` in the diffusers folder layout.

    The folder is written under a temporary name and renamed, so an interrupted build
    never leaves a half-written checkpoint that later looks complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build_demo_pipeline(seed).save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same build first; its copy is identical.
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_demo_pipeline(seed: int = DEMO_SEED) -> Any:
    """Build the tiny WanPipeline in memory, with weights drawn from ``seed``."""
    import torch
    from diffusers import WanPipeline

    components: dict[str, Any] = {"tokenizer": build_demo_tokenizer(), "scheduler": build_demo_scheduler()}
    torch.manual_seed(seed)
    components["text_encoder"] = _build_text_encoder(len(components["tokenizer"]))
    torch.manual_seed(seed + 1)
    components["vae"] = _build_vae()
    torch.manual_seed(seed + 2)
    components["transformer"] = _build_transformer()
    for name in ("text_encoder", "vae", "transformer"):
        components[name].eval()
    return WanPipeline(**components)


def build_demo_tokenizer() -> Any:
    """Build a small Unigram T5 tokenizer (tokenizers-backed in transformers 5) in code: ASCII characters and a few common words.

    Characters outside its vocabulary (accents, CJK) become ``<unk>``, which is enough
    for a model of random weights.
    """
    from transformers import T5Tokenizer

    characters = string.ascii_letters + string.digits + string.punctuation
    words = ("the", "a", "an", "of", "in", "on", "and", "with", "at", "to", "is", "video", "light", "sky", "city")
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(character, -5.0) for character in characters]
    pieces += [("\u2581" + character, -4.0) for character in characters]
    pieces += [("\u2581" + word, -3.0) for word in words]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=MAX_TEXT_TOKENS)


def build_demo_scheduler() -> Any:
    """Build a UniPC flow-matching scheduler configured like Wan 2.1's own."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=DEMO_PRESET.stage1_flow_shift,
        solver_order=2,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="linspace",
    )


def _build_text_encoder(vocab_size: int) -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=TEXT_DIM,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config)


def _build_vae() -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=VAE_BASE_DIM,
        z_dim=DEMO_PRESET.latent_channels,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _build_transformer() -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=TRANSFORMER.patch_size,
        num_attention_heads=TRANSFORMER.num_attention_heads,
        attention_head_dim=TRANSFORMER.attention_head_dim,
        in_channels=TRANSFORMER.in_channels,
        out_channels=TRANSFORMER.in_channels,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=TRANSFORMER.ffn_dim,
        num_layers=TRANSFORMER.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    )
