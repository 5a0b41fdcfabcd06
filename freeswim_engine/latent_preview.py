"""Cheap previews of latents during denoising: a fixed linear map of latent channels to RGB.

The map is not fitted to any VAE, so colours are arbitrary. It shows layout and motion
without decoding, at the latent resolution (1/8 of the pixels for Wan 2.1), at a cost
of one small matrix product per step.
"""

from __future__ import annotations

import functools

import numpy
import torch

MAX_PREVIEW_SIDE = 256  # pixels; larger latents are strided down to this


def preview_frames(latents: torch.Tensor, max_side: int = MAX_PREVIEW_SIDE) -> numpy.ndarray:
    """Map ``latents`` of shape (1, channels, frames, height, width) to uint8 RGB of shape (frames, h, w, 3)."""
    sample = latents[0].detach()
    channels, _, height, width = sample.shape
    stride = max(1, -(-max(height, width) // max_side))  # ceiling division
    sample = sample[:, :, ::stride, ::stride].float().cpu()

    rgb = torch.einsum("cfhw,cr->fhwr", sample, _projection(channels))
    # Stretch each colour channel to the full range over the whole clip, so brightness stays comparable across frames.
    low = rgb.amin(dim=(0, 1, 2), keepdim=True)
    high = rgb.amax(dim=(0, 1, 2), keepdim=True)
    scaled = (rgb - low) / (high - low).clamp_min(1e-6)
    scaled = torch.nan_to_num(scaled, nan=0.0)
    return (scaled * 255).round().to(torch.uint8).numpy()


@functools.lru_cache(maxsize=4)
def _projection(channels: int) -> torch.Tensor:
    """Return a fixed (channels, 3) matrix with unit-norm columns, the same on every run."""
    generator = torch.Generator().manual_seed(channels)
    matrix = torch.randn(channels, 3, generator=generator)
    return matrix / matrix.norm(dim=0, keepdim=True)
