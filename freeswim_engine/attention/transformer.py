"""``FreeSwimTransformer``: a Wan transformer with FreeSwim attention and classifier-free guidance."""

from __future__ import annotations

import contextlib
import enum
import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import torch

from freeswim_engine.attention.geometry import WindowGeometry, freeswim_attention_scale
from freeswim_engine.attention.processors import (
    CrossAttentionSource,
    ForwardState,
    FreeSwimCrossAttnProcessor,
    FreeSwimSelfAttnProcessor,
)
from freeswim_engine.cache_store import CrossAttentionCacheStore, DeviceCacheStore
from freeswim_engine.errors import InvalidRequestError

if TYPE_CHECKING:
    from diffusers import WanTransformer3DModel

logger = logging.getLogger(__name__)

_PROCESSOR_NAME = re.compile(r"^blocks\.(\d+)\.(attn1|attn2)\.processor$")


class AttentionMethod(str, enum.Enum):
    """Attention method of stage 2."""

    DIRECT = "direct"  # diffusers' own processors: full attention at the default scale
    WINDOW = "window"  # sliding-window self-attention only, at the FreeSwim scale
    FREESWIM = "freeswim"  # window and full branches with cross-attention override, every pass
    FREESWIM_CACHED = "freeswim-cached"  # full branch on every k-th conditional pass, cached in between


class FreeSwimTransformer:
    """Wrap a diffusers ``WanTransformer3DModel`` to predict noise with a FreeSwim attention method.

    Args:
        transformer: the Wan transformer; its processors are replaced only inside ``installed()``.
        method: an ``AttentionMethod`` or its value.
        base_size: ``(height, width)`` in pixels of the model's training size, which sets the window.
        pixels_per_token: pixels per token side (VAE factor times patch size; 16 for Wan2.1).
        cache_interval: refresh the cross-attention cache every this many steps (``freeswim-cached``).
        cache_store: where cached cross-attention outputs live; None keeps them on the device.
        use_inward: clamp windows inside the grid; False is the ablation that cuts them at borders.
    """

    def __init__(
        self,
        transformer: WanTransformer3DModel,
        method: AttentionMethod | str = AttentionMethod.FREESWIM_CACHED,
        base_size: tuple[int, int] = (480, 832),
        pixels_per_token: int = 16,
        cache_interval: int = 2,
        cache_store: CrossAttentionCacheStore | None = None,
        use_inward: bool = True,
    ) -> None:
        # Typed Any: diffusers' config and submodules are dynamic attributes.
        self.transformer: Any = cast(Any, transformer)
        self.method = _parse_method(method)
        if cache_interval < 1:
            raise InvalidRequestError(
                "cache_interval", cache_interval, "must be at least 1 step", "Use 2 (the default) or 5 for more speed."
            )
        self.base_size = base_size
        self.pixels_per_token = pixels_per_token
        self.cache_interval = cache_interval
        self.cache_store: CrossAttentionCacheStore = cache_store if cache_store is not None else DeviceCacheStore()
        self.use_inward = use_inward

        head_dim = int(self.transformer.config.attention_head_dim)
        # Checks base_size and pixels_per_token, so a bad request fails here rather than mid-render.
        self.attention_scale = freeswim_attention_scale(base_size, pixels_per_token, head_dim)
        self._state = ForwardState()
        self._is_installed = False
        self._cached_geometry: WindowGeometry | None = None
        self._last_refresh_step: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[FreeSwimTransformer]:
        """Install this method's processors on the transformer, and restore the previous ones on exit.

        The previous processor objects are put back even when the block raises.
        The cross-attention cache is cleared on entry and exit.
        """
        if self._is_installed:
            raise RuntimeError("FreeSwimTransformer.installed() is already active")
        originals = dict(self.transformer.attn_processors)
        self._reset_cache()
        if self.method is not AttentionMethod.DIRECT:
            self.transformer.set_attn_processor(self._build_processors(originals))
        self._is_installed = True
        try:
            yield self
        finally:
            self._is_installed = False
            if self.method is not AttentionMethod.DIRECT:
                self.transformer.set_attn_processor(originals)
            self._reset_cache()
            self._state.geometry = None

    @torch.no_grad()
    def predict_noise(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float,
        *,
        step_index: int,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        guidance_scale: float = 5.0,
        encoder_hidden_states_image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (flow velocity) of ``latents`` at ``timestep``, with classifier-free guidance.

        Args:
            latents: ``(1, channels, frames, height, width)`` in latent units, any dtype.
            timestep: the scheduler's timestep for this step: a scalar, or one value
                per token (shape ``(L,)``) for Wan2.2 TI2V's per-token timesteps.
            step_index: 0-based index of this step in the denoising loop; sets the cache refreshes.
            prompt_embeds: ``(1, 512, text_dim)`` text embeddings of the prompt.
            negative_prompt_embeds: embeddings of the negative prompt; None disables guidance.
            guidance_scale: guidance weight; 1 or less disables guidance as in diffusers' pipelines.
            encoder_hidden_states_image: image embeddings of image-to-video models, else None.

        Returns:
            ``noise_uncond + guidance_scale * (noise_cond - noise_uncond)`` in the
            transformer's dtype, shaped like ``latents``.
        """
        if self.method is not AttentionMethod.DIRECT:
            self._check_ready(latents)
        dtype = self.transformer.dtype
        latent_model_input = latents.to(dtype)
        if not torch.is_tensor(timestep):
            timestep = torch.tensor(timestep, device=latents.device)
        prompt_embeds = prompt_embeds.to(dtype)
        if encoder_hidden_states_image is not None:
            encoder_hidden_states_image = encoder_hidden_states_image.to(dtype)
        self._state.geometry = self._geometry_of(latents)
        self._state.step_index = step_index

        noise_pred = self._run_pass(
            latent_model_input, timestep, prompt_embeds, encoder_hidden_states_image, is_conditional=True
        )
        if negative_prompt_embeds is None or guidance_scale <= 1.0:
            return noise_pred

        noise_uncond = self._run_pass(
            latent_model_input,
            timestep,
            negative_prompt_embeds.to(dtype),
            encoder_hidden_states_image,
            is_conditional=False,
        )
        return noise_uncond + guidance_scale * (noise_pred - noise_uncond)

    def _run_pass(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        embeds: torch.Tensor,
        image_embeds: torch.Tensor | None,
        is_conditional: bool,
    ) -> torch.Tensor:
        """Run the transformer once for the prompt or the negative prompt, returning W's prediction."""
        self._configure_pass(is_conditional)
        batch_size = 2 if self._state.dual else latents.shape[0]
        if self._state.dual:
            # Branches W and F start from the same latents; only W's prediction is kept.
            latents = latents.expand(2, -1, -1, -1, -1)
            embeds = embeds.expand(2, -1, -1)
            if image_embeds is not None:
                image_embeds = image_embeds.expand(2, *image_embeds.shape[1:])

        with self._cache_context("cond" if is_conditional else "uncond"):
            output = self.transformer(
                hidden_states=latents,
                timestep=_batch_timestep(timestep, batch_size),
                encoder_hidden_states=embeds,
                encoder_hidden_states_image=image_embeds,
                return_dict=False,
            )[0]
        return output[:1] if self._state.dual else output

    def _configure_pass(self, is_conditional: bool) -> None:
        """Set the batch layout and cross-attention source of the next transformer call."""
        state = self._state
        state.is_conditional = is_conditional
        state.dual = False
        state.cross_attention = CrossAttentionSource.OWN
        state.write_cache = False

        if self.method is AttentionMethod.FREESWIM:
            state.dual = True
            state.cross_attention = CrossAttentionSource.FULL_BRANCH
        elif self.method is AttentionMethod.FREESWIM_CACHED and is_conditional:
            if self._needs_refresh():
                state.dual = True
                state.cross_attention = CrossAttentionSource.FULL_BRANCH
                state.write_cache = True
                self._cached_geometry = state.geometry
                self._last_refresh_step = state.step_index
            else:
                state.cross_attention = CrossAttentionSource.CACHE
                self.cache_store.prefetch(0, self.transformer.device)

    def _needs_refresh(self) -> bool:
        """Refresh on steps 0, k, 2k, ..., and whenever the cache does not match this call."""
        step_index = self._state.step_index
        if step_index % self.cache_interval == 0:
            return True
        # A first call at an odd step, a new grid or a restarted loop finds no usable cache.
        return (
            self._last_refresh_step is None
            or self._cached_geometry != self._state.geometry
            or step_index < self._last_refresh_step
        )

    def _build_processors(self, originals: dict[str, Any]) -> dict[str, Any]:
        num_blocks = len(self.transformer.blocks)
        processors: dict[str, Any] = {}
        for name in originals:
            match = _PROCESSOR_NAME.match(name)
            if match is None:
                raise ValueError(
                    f"unexpected attention processor {name!r}: FreeSwim supports diffusers' WanTransformer3DModel"
                )
            block_index = int(match.group(1))
            if match.group(2) == "attn1":
                processors[name] = FreeSwimSelfAttnProcessor(self._state, block_index, self.attention_scale)
            else:
                processors[name] = FreeSwimCrossAttnProcessor(self._state, block_index, num_blocks, self.cache_store)
        return processors

    def _geometry_of(self, latents: torch.Tensor) -> WindowGeometry:
        patch_frames, patch_height, patch_width = self.transformer.config.patch_size
        _, _, frames, height, width = latents.shape
        grid = (frames // patch_frames, height // patch_height, width // patch_width)
        return WindowGeometry.for_grid(grid, self.base_size, self.pixels_per_token, self.use_inward)

    def _check_ready(self, latents: torch.Tensor) -> None:
        if not self._is_installed:
            raise RuntimeError(
                f"FreeSwimTransformer.predict_noise with method {self.method.value!r} must run inside installed()"
            )
        if latents.ndim != 5 or latents.shape[0] != 1:
            raise ValueError(
                f"latents must have shape (1, channels, frames, height, width), got {tuple(latents.shape)}; "
                f"method {self.method.value!r} renders one video at a time"
            )

    def _cache_context(self, name: str) -> contextlib.AbstractContextManager[Any]:
        # diffusers' Wan pipelines name each call so that cache hooks (for example
        # FirstBlockCache) keep separate state for the prompt and negative prompt.
        cache_context = getattr(self.transformer, "cache_context", None)
        return cache_context(name) if cache_context is not None else contextlib.nullcontext()

    def _reset_cache(self) -> None:
        self.cache_store.clear()
        self._cached_geometry = None
        self._last_refresh_step = None


def _batch_timestep(timestep: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Expand a scalar timestep to ``(batch,)`` and a per-token one to ``(batch, L)``, as diffusers' Wan pipelines do."""
    if timestep.ndim == 1 and timestep.numel() > 1:
        return timestep.unsqueeze(0).expand(batch_size, -1)
    return timestep.expand(batch_size)


def _parse_method(method: AttentionMethod | str) -> AttentionMethod:
    try:
        return AttentionMethod(method)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in AttentionMethod)
        raise InvalidRequestError(
            "method", method, f"is not an attention method; valid methods are {choices}", "Use 'freeswim-cached'."
        ) from None
