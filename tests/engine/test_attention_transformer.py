"""FreeSwimTransformer on tiny Wan transformers: methods, guidance, processor install and the cache."""

from __future__ import annotations

import copy

import pytest
import torch

from freeswim_engine.attention import AttentionMethod, FreeSwimTransformer, freeswim_attention_scale
from freeswim_engine.cache_store import DeviceCacheStore
from freeswim_engine.errors import InvalidRequestError
from tests.engine.conftest import TINY_IMAGE_DIM, TINY_LATENT_CHANNELS, TINY_TEXT_DIM, make_embeds

# A 64x96-pixel training size gives a 4x6-token base grid, so a 5x7-token window.
BASE_SIZE = (64, 96)
PIXELS_PER_TOKEN = 16
TEXT_TOKENS = 512  # image-to-video splits the context at the last 512 tokens
STEP_TIMESTEPS = (900.0, 700.0, 500.0, 300.0)

# Latent shapes (batch, channels, frames, height, width); patch (1, 2, 2) halves height and width.
COVERED_LATENTS = (1, TINY_LATENT_CHANNELS, 2, 10, 14)  # 2x5x7 tokens: the window covers the grid
LARGE_LATENTS = (1, TINY_LATENT_CHANNELS, 2, 18, 26)  # 2x9x13 = 234 tokens, wider than the window


def _inputs(latent_shape: tuple[int, ...], seed: int = 1) -> dict[str, torch.Tensor]:
    return {
        "latents": make_embeds(*latent_shape, seed=seed),
        "prompt_embeds": make_embeds(1, TEXT_TOKENS, TINY_TEXT_DIM, seed=seed + 1),
        "negative_prompt_embeds": make_embeds(1, TEXT_TOKENS, TINY_TEXT_DIM, seed=seed + 2),
    }


def _diffusers_cfg(transformer, latents, timestep, prompt_embeds, negative_prompt_embeds, guidance_scale, image=None):
    """Classifier-free guidance written the way diffusers' Wan pipelines call the transformer."""
    t = torch.tensor(timestep).expand(latents.shape[0])
    noise_cond = transformer(
        hidden_states=latents, timestep=t, encoder_hidden_states=prompt_embeds,
        encoder_hidden_states_image=image, return_dict=False,
    )[0]
    noise_uncond = transformer(
        hidden_states=latents, timestep=t, encoder_hidden_states=negative_prompt_embeds,
        encoder_hidden_states_image=image, return_dict=False,
    )[0]
    return noise_uncond + guidance_scale * (noise_cond - noise_uncond)


def _denoiser(transformer, method, **kwargs) -> FreeSwimTransformer:
    return FreeSwimTransformer(transformer, method=method, base_size=BASE_SIZE, pixels_per_token=PIXELS_PER_TOKEN, **kwargs)


def _predict_steps(denoiser: FreeSwimTransformer, inputs, guidance_scale: float = 5.0, image=None) -> list[torch.Tensor]:
    """Predict the noise at each of STEP_TIMESTEPS for the same latents."""
    predictions = []
    with denoiser.installed():
        for step_index, timestep in enumerate(STEP_TIMESTEPS):
            predictions.append(
                denoiser.predict_noise(
                    inputs["latents"], torch.tensor(timestep), step_index=step_index,
                    prompt_embeds=inputs["prompt_embeds"],
                    negative_prompt_embeds=inputs["negative_prompt_embeds"] if guidance_scale > 1 else None,
                    guidance_scale=guidance_scale,
                    encoder_hidden_states_image=image,
                )
            )
    return predictions


def test_direct_matches_diffusers_calls(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    with torch.no_grad():
        expected = _diffusers_cfg(tiny_wan_transformer, inputs["latents"], 700.0, inputs["prompt_embeds"],
                                  inputs["negative_prompt_embeds"], 5.0)
    denoiser = _denoiser(tiny_wan_transformer, AttentionMethod.DIRECT)
    with denoiser.installed():
        result = denoiser.predict_noise(inputs["latents"], torch.tensor(700.0), step_index=0, **{
            k: inputs[k] for k in ("prompt_embeds", "negative_prompt_embeds")}, guidance_scale=5.0)
    assert result.shape == inputs["latents"].shape
    assert torch.equal(result, expected)


def test_direct_without_guidance_is_one_call(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    with torch.no_grad():
        expected = tiny_wan_transformer(
            hidden_states=inputs["latents"], timestep=torch.tensor([500.0]),
            encoder_hidden_states=inputs["prompt_embeds"], return_dict=False,
        )[0]
    denoiser = _denoiser(tiny_wan_transformer, "direct")
    for negative, guidance in ((None, 5.0), (inputs["negative_prompt_embeds"], 1.0)):
        result = denoiser.predict_noise(inputs["latents"], 500.0, step_index=0, prompt_embeds=inputs["prompt_embeds"],
                                        negative_prompt_embeds=negative, guidance_scale=guidance)
        assert torch.equal(result, expected)
