"""Model presets: where each supported Wan checkpoint comes from and the figures the engine plans with."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TransformerArchitecture:
    """Sizes of a Wan transformer that memory planning and the attention window depend on."""

    num_layers: int
    num_attention_heads: int
    attention_head_dim: int
    ffn_dim: int
    in_channels: int
    text_dim: int = 4096
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (frames, height, width) in latent units

    @property
    def dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def num_parameters(self) -> int:
        """Estimate of the parameter count from the block layout (attention, FFN and embeddings)."""
        dim = self.dim
        attention = 4 * dim * dim  # q, k, v, out
        per_block = 2 * attention + 2 * dim * self.ffn_dim + 6 * dim
        embeddings = self.text_dim * dim + dim * dim + 256 * dim + dim * 6 * dim
        patch = self.in_channels * dim * self.patch_size[0] * self.patch_size[1] * self.patch_size[2] * 2
        return self.num_layers * per_block + embeddings + patch


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """A named model: its source, native size and the defaults a render starts from."""

    name: str
    label: str
    repo_id: str | None  # Hugging Face repo id; None for the demo model built in code
    base_height: int  # training resolution in pixels
    base_width: int
    pixels_per_token: int  # VAE spatial factor x transformer patch size
    vae_spatial_factor: int
    vae_temporal_factor: int
    latent_channels: int
    fps: int
    transformer: TransformerArchitecture
    text_encoder_parameters: int  # UMT5-XXL encoder: about 5.7e9
    vae_parameters: int
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    stage1_flow_shift: float = 3.0
    stage2_flow_shift: float = 9.0
    strength: float = 0.7
    default_num_frames: int = 81
    max_text_tokens: int = 512
    is_demo: bool = False

    @property
    def base_size(self) -> tuple[int, int]:
        """Native (height, width) in pixels."""
        return (self.base_height, self.base_width)


WAN21_T2V_1_3B = ModelPreset(
    name="wan2.1-t2v-1.3b",
    label="Wan2.1 T2V 1.3B",
    repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    base_height=480,
    base_width=832,
    pixels_per_token=16,
    vae_spatial_factor=8,
    vae_temporal_factor=4,
    latent_channels=16,
    fps=16,
    transformer=TransformerArchitecture(
        num_layers=30, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, in_channels=16
    ),
    text_encoder_parameters=5_680_000_000,
    vae_parameters=127_000_000,
    stage1_flow_shift=3.0,
)

WAN21_T2V_14B = ModelPreset(
    name="wan2.1-t2v-14b",
    label="Wan2.1 T2V 14B",
    repo_id="Wan-AI/Wan2.1-T2V-14B-Diffusers",
    base_height=720,
    base_width=1280,
    pixels_per_token=16,
    vae_spatial_factor=8,
    vae_temporal_factor=4,
    latent_channels=16,
    fps=16,
    transformer=TransformerArchitecture(
        num_layers=40, num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, in_channels=16
    ),
    text_encoder_parameters=5_680_000_000,
    vae_parameters=127_000_000,
    stage1_flow_shift=5.0,
)

WAN22_TI2V_5B = ModelPreset(
    name="wan2.2-ti2v-5b",
    label="Wan2.2 TI2V 5B",
    repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    base_height=704,
    base_width=1280,
    pixels_per_token=32,
    vae_spatial_factor=16,
    vae_temporal_factor=4,
    latent_channels=48,
    fps=24,
    transformer=TransformerArchitecture(
        num_layers=30, num_attention_heads=24, attention_head_dim=128, ffn_dim=14336, in_channels=48
    ),
    text_encoder_parameters=5_680_000_000,
    vae_parameters=705_000_000,
    stage1_flow_shift=5.0,
    default_num_frames=121,
)

PRESETS: dict[str, ModelPreset] = {p.name: p for p in (WAN21_T2V_1_3B, WAN21_T2V_14B, WAN22_TI2V_5B)}


def preset_names() -> list[str]:
    """Return every preset name, the demo model included, in display order."""
    return [*PRESETS, "demo"]
