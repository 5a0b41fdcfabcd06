"""FreeSwimTransformer on tiny Wan transformers: methods, guidance, processor install and the cache."""

from __future__ import annotations

import copy

import pytest
import torch

from freeswim_engine.attention import AttentionMethod, FreeSwimTransformer, freeswim_attention_scale, kernels, processors
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


def test_direct_casts_latents_to_transformer_dtype(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    denoiser = _denoiser(tiny_wan_transformer, AttentionMethod.DIRECT)
    as_float32 = denoiser.predict_noise(inputs["latents"], 300.0, step_index=0, prompt_embeds=inputs["prompt_embeds"])
    as_float64 = denoiser.predict_noise(inputs["latents"].double(), 300.0, step_index=0,
                                        prompt_embeds=inputs["prompt_embeds"].double())
    assert as_float64.dtype == torch.float32
    assert torch.equal(as_float64, as_float32)


def _scaled_reference(transformer, head_dim: int = 16):
    """A copy whose diffusers self-attention runs at the FreeSwim scale: queries scaled through norm_q."""
    reference = copy.deepcopy(transformer)
    factor = freeswim_attention_scale(BASE_SIZE, PIXELS_PER_TOKEN, head_dim) * head_dim**0.5
    with torch.no_grad():
        for block in reference.blocks:
            block.attn1.norm_q.weight.mul_(factor)
    return reference


# The cache is refreshed every step here, because reused cross-attention from an
# earlier timestep is an approximation that full attention does not make.
@pytest.mark.parametrize("method", ["window", "freeswim", "freeswim-cached"])
def test_covering_window_equals_scaled_full_attention(tiny_wan_transformer, method):
    inputs = _inputs(COVERED_LATENTS)
    expected = _predict_steps(_denoiser(_scaled_reference(tiny_wan_transformer), "direct"), inputs)
    result = _predict_steps(_denoiser(tiny_wan_transformer, method, cache_interval=1), inputs)
    for step_result, step_expected in zip(result, expected):
        torch.testing.assert_close(step_result, step_expected, atol=1e-5, rtol=1e-4)


def test_freeswim_differs_from_window_on_large_grid(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    freeswim = _predict_steps(_denoiser(tiny_wan_transformer, "freeswim"), inputs, guidance_scale=1.0)
    window = _predict_steps(_denoiser(tiny_wan_transformer, "window"), inputs, guidance_scale=1.0)
    assert not torch.allclose(freeswim[0], window[0], atol=1e-4)


def test_cached_interval_1_equals_uncached_cond(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    uncached = _predict_steps(_denoiser(tiny_wan_transformer, "freeswim"), inputs, guidance_scale=1.0)
    cached = _predict_steps(_denoiser(tiny_wan_transformer, "freeswim-cached", cache_interval=1), inputs,
                            guidance_scale=1.0)
    for step_cached, step_uncached in zip(cached, uncached):
        assert torch.equal(step_cached, step_uncached)


def test_cached_negative_pass_is_window_only(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    cond = _predict_steps(_denoiser(tiny_wan_transformer, "freeswim"), inputs, guidance_scale=1.0)
    negative_inputs = {**inputs, "prompt_embeds": inputs["negative_prompt_embeds"]}
    uncond = _predict_steps(_denoiser(tiny_wan_transformer, "window"), negative_inputs, guidance_scale=1.0)
    cached = _predict_steps(_denoiser(tiny_wan_transformer, "freeswim-cached", cache_interval=1), inputs,
                            guidance_scale=5.0)
    for step, step_cached in enumerate(cached):
        expected = uncond[step] + 5.0 * (cond[step] - uncond[step])
        torch.testing.assert_close(step_cached, expected, atol=1e-5, rtol=1e-4)


def test_cache_reuse_matches_full_branch(tiny_wan_transformer):
    """With the same latents and timestep every step, the cached output is what F would compute again."""
    inputs = _inputs(LARGE_LATENTS)
    denoisers = [_denoiser(tiny_wan_transformer, "freeswim"), _denoiser(tiny_wan_transformer, "freeswim-cached",
                                                                          cache_interval=3)]
    predictions = []
    for denoiser in denoisers:
        with denoiser.installed():
            predictions.append([
                denoiser.predict_noise(inputs["latents"], 800.0, step_index=step,
                                       prompt_embeds=inputs["prompt_embeds"], guidance_scale=1.0)
                for step in range(4)
            ])
    uncached, cached = predictions
    for step in range(4):
        torch.testing.assert_close(cached[step], uncached[step], atol=1e-6, rtol=1e-5)


class _RecordingStore(DeviceCacheStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def put(self, block_index, value):
        self.calls.append(("put", block_index))
        super().put(block_index, value)

    def get(self, block_index, device, dtype):
        self.calls.append(("get", block_index))
        return super().get(block_index, device, dtype)

    def prefetch(self, block_index, device):
        self.calls.append(("prefetch", block_index))


def _batch_sizes_seen(transformer, denoiser, inputs) -> list[int]:
    sizes: list[int] = []
    hook = transformer.blocks[0].attn1.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        _predict_steps(denoiser, inputs)
    finally:
        hook.remove()
    return sizes


def test_cached_mode_skips_full_branch(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    store = _RecordingStore()
    cached = _denoiser(tiny_wan_transformer, "freeswim-cached", cache_interval=2, cache_store=store)
    # Per step: conditional pass, then negative pass. Steps 0 and 2 refresh the cache.
    assert _batch_sizes_seen(tiny_wan_transformer, cached, inputs) == [2, 1, 1, 1, 2, 1, 1, 1]
    assert _batch_sizes_seen(tiny_wan_transformer, _denoiser(tiny_wan_transformer, "freeswim"), inputs) == [2] * 8
    assert _batch_sizes_seen(tiny_wan_transformer, _denoiser(tiny_wan_transformer, "window"), inputs) == [1] * 8


def test_cached_mode_store_calls(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    store = _RecordingStore()
    denoiser = _denoiser(tiny_wan_transformer, "freeswim-cached", cache_interval=2, cache_store=store)
    with denoiser.installed():
        for step in range(2):
            denoiser.predict_noise(inputs["latents"], 900.0, step_index=step, prompt_embeds=inputs["prompt_embeds"],
                                   negative_prompt_embeds=inputs["negative_prompt_embeds"])
            if step == 0:
                assert len(store) == 2
                assert store._entries[0].shape == (1, 9 * 13 * 2, 32)
        assert store.calls == [("put", 0), ("put", 1), ("prefetch", 0), ("get", 0), ("prefetch", 1), ("get", 1)]
    assert len(store) == 0  # cleared on exit


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_device_cache_store_round_trip_is_exact(dtype):
    value = make_embeds(1, 234, 32, seed=5).to(dtype)
    store = DeviceCacheStore()
    store.put(3, value)
    restored = store.get(3, torch.device("cpu"), dtype)
    assert restored.dtype == dtype
    assert torch.equal(restored, value)
    assert store.nbytes == value.numel() * value.element_size()


def test_installed_restores_processors(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    originals = dict(tiny_wan_transformer.attn_processors)
    with torch.no_grad():
        before = tiny_wan_transformer(hidden_states=inputs["latents"], timestep=torch.tensor([900.0]),
                                      encoder_hidden_states=inputs["prompt_embeds"], return_dict=False)[0]
    _predict_steps(_denoiser(tiny_wan_transformer, "freeswim-cached"), inputs)
    restored = tiny_wan_transformer.attn_processors
    assert restored.keys() == originals.keys()
    assert all(restored[name] is originals[name] for name in originals)
    with torch.no_grad():
        after = tiny_wan_transformer(hidden_states=inputs["latents"], timestep=torch.tensor([900.0]),
                                     encoder_hidden_states=inputs["prompt_embeds"], return_dict=False)[0]
    assert torch.equal(after, before)


def test_installed_restores_processors_on_error(tiny_wan_transformer):
    originals = dict(tiny_wan_transformer.attn_processors)
    denoiser = _denoiser(tiny_wan_transformer, "freeswim")
    with pytest.raises(KeyError, match="boom"):
        with denoiser.installed():
            assert tiny_wan_transformer.attn_processors["blocks.0.attn1.processor"] is not originals[
                "blocks.0.attn1.processor"]
            raise KeyError("boom")
    assert all(tiny_wan_transformer.attn_processors[name] is originals[name] for name in originals)


def test_predict_outside_installed_raises(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    denoiser = _denoiser(tiny_wan_transformer, "freeswim")
    with pytest.raises(RuntimeError, match="installed"):
        denoiser.predict_noise(inputs["latents"], 900.0, step_index=0, prompt_embeds=inputs["prompt_embeds"])


def test_invalid_method_lists_choices(tiny_wan_transformer):
    with pytest.raises(InvalidRequestError, match="'freeswim-cached'"):
        _denoiser(tiny_wan_transformer, "sliding")


def test_invalid_cache_interval_raises(tiny_wan_transformer):
    with pytest.raises(InvalidRequestError, match="cache_interval"):
        _denoiser(tiny_wan_transformer, "freeswim-cached", cache_interval=0)


def _image_inputs(latent_shape):
    inputs = _inputs(latent_shape)
    return inputs, make_embeds(1, 5, TINY_IMAGE_DIM, seed=9)


def test_image_conditioned_direct_matches_diffusers(tiny_wan_i2v_transformer):
    inputs, image = _image_inputs(LARGE_LATENTS)
    with torch.no_grad():
        expected = _diffusers_cfg(tiny_wan_i2v_transformer, inputs["latents"], 700.0, inputs["prompt_embeds"],
                                  inputs["negative_prompt_embeds"], 5.0, image=image)
    denoiser = _denoiser(tiny_wan_i2v_transformer, "direct")
    result = denoiser.predict_noise(inputs["latents"], 700.0, step_index=0, prompt_embeds=inputs["prompt_embeds"],
                                    negative_prompt_embeds=inputs["negative_prompt_embeds"],
                                    encoder_hidden_states_image=image)
    assert torch.equal(result, expected)


@pytest.mark.parametrize("method", ["freeswim", "freeswim-cached"])
def test_image_conditioned_covering_window(tiny_wan_i2v_transformer, method):
    inputs, image = _image_inputs(COVERED_LATENTS)
    reference = _denoiser(_scaled_reference(tiny_wan_i2v_transformer), "direct")
    expected = _predict_steps(reference, inputs, image=image)
    result = _predict_steps(_denoiser(tiny_wan_i2v_transformer, method, cache_interval=1), inputs, image=image)
    for step_result, step_expected in zip(result, expected):
        torch.testing.assert_close(step_result, step_expected, atol=1e-5, rtol=1e-4)


def test_image_conditioned_large_grid_runs(tiny_wan_i2v_transformer):
    inputs, image = _image_inputs(LARGE_LATENTS)
    result = _predict_steps(_denoiser(tiny_wan_i2v_transformer, "freeswim-cached"), inputs, image=image)
    without_image = _predict_steps(_denoiser(tiny_wan_i2v_transformer, "freeswim-cached"), inputs,
                                   image=torch.zeros_like(image))
    assert all(torch.isfinite(step).all() for step in result)
    assert not torch.allclose(result[0], without_image[0])


def test_flex_kernel_matches_gathered_in_transformer(tiny_wan_transformer, monkeypatch):
    """The dual path gives the same prediction with the GPU kernel (compiled flex) as with the CPU one."""
    inputs = _inputs(LARGE_LATENTS)
    gathered = _predict_steps(_denoiser(tiny_wan_transformer, "freeswim"), inputs)[:2]
    monkeypatch.setattr(processors, "window_attention", kernels.flex_window_attention)
    flex = _predict_steps(_denoiser(tiny_wan_transformer, "freeswim"), inputs)[:2]
    assert kernels.compiled_attention_failure() is None
    for step_flex, step_gathered in zip(flex, gathered):
        torch.testing.assert_close(step_flex, step_gathered, atol=1e-5, rtol=1e-4)


def test_direct_per_token_timesteps(tiny_wan_transformer):
    inputs = _inputs(LARGE_LATENTS)
    per_token = torch.full((2 * 9 * 13,), 600.0)
    per_token[: 9 * 13] = 0.0  # first latent frame already clean, as in Wan2.2 TI2V
    with torch.no_grad():
        expected = tiny_wan_transformer(
            hidden_states=inputs["latents"], timestep=per_token.unsqueeze(0),
            encoder_hidden_states=inputs["prompt_embeds"], return_dict=False,
        )[0]
    denoiser = _denoiser(tiny_wan_transformer, "direct")
    result = denoiser.predict_noise(inputs["latents"], per_token, step_index=0, prompt_embeds=inputs["prompt_embeds"])
    assert torch.equal(result, expected)


def test_freeswim_per_token_timesteps(tiny_wan_transformer):
    inputs = _inputs(COVERED_LATENTS)
    per_token = torch.full((2 * 5 * 7,), 600.0)
    per_token[: 5 * 7] = 0.0
    reference = _denoiser(_scaled_reference(tiny_wan_transformer), "direct")
    expected = reference.predict_noise(inputs["latents"], per_token, step_index=0,
                                       prompt_embeds=inputs["prompt_embeds"])
    denoiser = _denoiser(tiny_wan_transformer, "freeswim")
    with denoiser.installed():
        result = denoiser.predict_noise(inputs["latents"], per_token, step_index=0,
                                        prompt_embeds=inputs["prompt_embeds"])
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-4)
