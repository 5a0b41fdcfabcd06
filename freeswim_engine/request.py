"""The render request: one dataclass that describes a render, validates itself and round-trips through JSON."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freeswim_engine.errors import InvalidRequestError
from freeswim_engine.presets import PRESETS, ModelPreset

if TYPE_CHECKING:
    from freeswim_engine.models import ModelInfo

logger = logging.getLogger(__name__)

# Wan 2.1's default negative prompt (`sample_neg_prompt` in wan/configs/shared_config.py of
# Wan-Video/Wan2.1). UMT5 is multilingual, so the Chinese original works with English prompts.
DEFAULT_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
    "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

# Values of freeswim_engine.attention.AttentionMethod, kept here so that validating a request
# does not import torch; tests check that both lists agree.
METHODS: tuple[str, ...] = ("direct", "window", "freeswim", "freeswim-cached")
CODECS: tuple[str, ...] = ("h264", "h265")
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16")
MAX_SEED = 2**32 - 1
MAX_CRF = 51
MAX_FPS = 240
MAX_STEPS = 1000
DEFAULT_STAGE2_FLOW_SHIFT = 9.0
FALLBACK_PIXELS_PER_TOKEN = 16  # Wan 2.1, used when the model's own figures are unknown

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_PATH_FIELDS = ("output_path", "input_video", "save_latents")


@dataclasses.dataclass
class RenderRequest:
    """Everything one render needs. ``None`` fields take the model's defaults at render time."""

    prompt: str
    model: str = "demo"  # preset name, local diffusers folder, or Hugging Face repo id
    width: int = 1920  # target size in pixels
    height: int = 1088
    num_frames: int | None = None  # 4k+1; None -> model default
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    fps: int | None = None  # None -> model fps
    seed: int | None = None  # None -> random, chosen at render time and reported in the result
    num_inference_steps: int | None = None  # scheduled steps of each stage; None -> model default
    guidance_scale: float | None = None  # None -> model default; <= 1 turns classifier-free guidance off
    strength: float = 0.7  # stage-2 denoise strength in (0, 1]
    flow_shift: float | None = None  # stage-2 scheduler shift; None -> 9.0
    method: str = "freeswim-cached"  # AttentionMethod value
    cache_interval: int = 2  # steps between refreshes of the cross-attention cache
    base_height: int | None = None  # stage-1 size in pixels; None -> model native size
    base_width: int | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16 (transformer dtype)
    output_path: Path | None = None
    input_video: Path | None = None  # set -> upscale: stage 2 only, from this MP4 or frame folder
    codec: str = "h264"
    crf: int = 18
    save_latents: Path | None = None

    # -- validation ------------------------------------------------------------------------

    def validate(self, model_info: ModelInfo | ModelPreset | None = None) -> list[str]:
        """Check every field against its rule and return warnings.

        Raises InvalidRequestError for the first field that breaks a rule. Without
        ``model_info``, a preset name or ``demo`` uses that preset's figures. Any other
        model is checked against Wan 2.1's 16 pixels per token, and the rules that need
        the model's native size wait for the render, which validates again.
        """
        preset, tokenizer_path = _model_figures(self.model, model_info)
        pixels_per_token = preset.pixels_per_token if preset else FALLBACK_PIXELS_PER_TOKEN

        self._validate_text()
        self._validate_size("width", self.width, pixels_per_token)
        self._validate_size("height", self.height, pixels_per_token)
        self._validate_base_size(preset, pixels_per_token)
        self._validate_frames()
        self._validate_sampling(preset)
        self._validate_attention()
        self._validate_runtime()
        self._validate_export()
        return self._prompt_warnings(preset, tokenizer_path)

    def _validate_text(self) -> None:
        if not isinstance(self.prompt, str):
            raise InvalidRequestError("prompt", self.prompt, "must be text", "Pass a string; an empty prompt is allowed.")
        if not isinstance(self.negative_prompt, str):
            raise InvalidRequestError(
                "negative_prompt", self.negative_prompt, "must be text", "Pass a string, or an empty string for none."
            )
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidRequestError(
                "model", self.model, "must name a model", "Use a preset name, a diffusers folder or a repo id."
            )

    def _validate_size(self, field: str, value: Any, pixels_per_token: int) -> None:
        _require_int(field, value, minimum=pixels_per_token)
        if value % pixels_per_token:
            lower = value // pixels_per_token * pixels_per_token
            higher = lower + pixels_per_token
            raise InvalidRequestError(
                field,
                value,
                f"must be a multiple of {pixels_per_token}, the model's pixels per latent token",
                f"Use {lower} or {higher}.",
            )

    def _validate_base_size(self, preset: ModelPreset | None, pixels_per_token: int) -> None:
        for field, value in (("base_height", self.base_height), ("base_width", self.base_width)):
            if value is not None:
                self._validate_size(field, value, pixels_per_token)
        base_height = self.base_height or (preset.base_height if preset else None)
        base_width = self.base_width or (preset.base_width if preset else None)
        if base_height is not None and self.height < base_height:
            raise InvalidRequestError(
                "height",
                self.height,
                f"must be at least the base height {base_height}, because stage 2 only upscales",
                f"Use a height of {base_height} or more, or lower base_height.",
            )
        if base_width is not None and self.width < base_width:
            raise InvalidRequestError(
                "width",
                self.width,
                f"must be at least the base width {base_width}, because stage 2 only upscales",
                f"Use a width of {base_width} or more, or lower base_width.",
            )

    def _validate_frames(self) -> None:
        if self.num_frames is None:
            return
        _require_int("num_frames", self.num_frames, minimum=1)
        if (self.num_frames - 1) % 4:
            lower = (self.num_frames - 1) // 4 * 4 + 1
            higher = lower + 4
            nearest, other = (lower, higher) if self.num_frames - lower <= higher - self.num_frames else (higher, lower)
            raise InvalidRequestError(
                "num_frames",
                self.num_frames,
                "must be 4k+1 (1, 5, 9, ... 81), because the VAE packs 4 frames into each latent frame after the first",
                f"Use {nearest} (or {other}).",
            )

    def _validate_sampling(self, preset: ModelPreset | None) -> None:
        if self.num_inference_steps is not None:
            _require_int("num_inference_steps", self.num_inference_steps, minimum=1, maximum=MAX_STEPS)
        if self.guidance_scale is not None:
            _require_number("guidance_scale", self.guidance_scale)
            if self.guidance_scale < 0:
                raise InvalidRequestError(
                    "guidance_scale", self.guidance_scale, "must be 0 or more", "Use 5.0, or 1.0 to turn guidance off."
                )
        _require_number("strength", self.strength)
        if not 0 < self.strength <= 1:
            raise InvalidRequestError(
                "strength", self.strength, "must be in (0, 1]", "Use 0.7 (the FreeSwim default) or any value in (0, 1]."
            )
        steps = self.num_inference_steps or (preset.num_inference_steps if preset else None)
        if steps is not None and stage2_step_count(steps, self.strength) < 1:
            minimum_strength = 0.5 / steps
            raise InvalidRequestError(
                "strength",
                self.strength,
                f"leaves no stage-2 step out of {steps} scheduled steps (round(steps x strength) must be 1 or more)",
                f"Use a strength above {minimum_strength:.3g}, or more steps.",
            )
        if self.flow_shift is not None:
            _require_number("flow_shift", self.flow_shift)
            if self.flow_shift <= 0:
                raise InvalidRequestError(
                    "flow_shift", self.flow_shift, "must be greater than 0", f"Use {DEFAULT_STAGE2_FLOW_SHIFT}."
                )
        if self.seed is not None:
            _require_int("seed", self.seed, minimum=0, maximum=MAX_SEED)

    def _validate_attention(self) -> None:
        if self.method not in METHODS:
            raise InvalidRequestError(
                "method", self.method, "is not an attention method", f"Use one of: {', '.join(METHODS)}."
            )
        _require_int("cache_interval", self.cache_interval, minimum=1)

    def _validate_runtime(self) -> None:
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            raise InvalidRequestError("device", self.device, "is not a device name", "Use auto, cpu, cuda or cuda:N.")
        if self.dtype not in DTYPES:
            raise InvalidRequestError("dtype", self.dtype, "is not a supported dtype", f"Use one of: {', '.join(DTYPES)}.")
        if self.fps is not None:
            _require_int("fps", self.fps, minimum=1, maximum=MAX_FPS)
        if self.input_video is not None and not Path(self.input_video).exists():
            raise InvalidRequestError(
                "input_video", str(self.input_video), "does not exist", "Pass an existing MP4 file or folder of frames."
            )

    def _validate_export(self) -> None:
        if self.codec not in CODECS:
            raise InvalidRequestError("codec", self.codec, "is not a supported codec", f"Use one of: {', '.join(CODECS)}.")
        _require_int("crf", self.crf, minimum=0, maximum=MAX_CRF)

    def _prompt_warnings(self, preset: ModelPreset | None, tokenizer_path: Path | None) -> list[str]:
        max_tokens = preset.max_text_tokens if preset else 512
        warnings = []
        for field, text in (("prompt", self.prompt), ("negative_prompt", self.negative_prompt)):
            count, is_estimate = count_prompt_tokens(text, tokenizer_path)
            if count > max_tokens:
                source = "an estimate, since the model's tokenizer is not installed" if is_estimate else "counted"
                warnings.append(
                    f"The {field.replace('_', ' ')} has {count} tokens ({source}). The text encoder reads only the "
                    f"first {max_tokens}, so the rest is ignored. Shorten it."
                )
        return warnings

    # -- resolution and serialisation ---------------------------------------------------------

    def with_defaults(self, preset: ModelPreset) -> RenderRequest:
        """Return a copy with every ``None`` field except ``seed`` filled in from ``preset``."""
        return dataclasses.replace(
            self,
            num_frames=self.num_frames if self.num_frames is not None else preset.default_num_frames,
            fps=self.fps if self.fps is not None else preset.fps,
            num_inference_steps=self.num_inference_steps or preset.num_inference_steps,
            guidance_scale=self.guidance_scale if self.guidance_scale is not None else preset.guidance_scale,
            flow_shift=self.flow_shift if self.flow_shift is not None else preset.stage2_flow_shift,
            base_height=self.base_height or preset.base_height,
            base_width=self.base_width or preset.base_width,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the request as JSON-ready values (paths become strings)."""
        data = dataclasses.asdict(self)
        for name in _PATH_FIELDS:
            if data[name] is not None:
                data[name] = str(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderRequest:
        """Build a request from ``to_dict`` output; unknown keys are ignored and missing ones take defaults."""
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        ignored = sorted(set(data) - known)
        if ignored:
            logger.warning("Ignoring unknown render request keys: %s", ", ".join(ignored))
        for name in _PATH_FIELDS:
            if values.get(name) is not None:
                values[name] = Path(values[name])
        values.setdefault("prompt", "")
        return cls(**values)


def stage2_step_count(num_inference_steps: int, strength: float) -> int:
    """Return how many of the scheduled steps stage 2 runs: the last round(steps x strength)."""
    return min(num_inference_steps, math.floor(num_inference_steps * strength + 0.5))


def count_prompt_tokens(text: str, tokenizer_path: Path | None = None) -> tuple[int, bool]:
    """Return (token count, is_estimate) for ``text``, end-of-sequence token included.

    With ``tokenizer_path`` (a tokenizer folder) the count comes from the model's
    tokenizer. Otherwise it is an estimate for UMT5's SentencePiece vocabulary: about
    1.3 tokens per Latin-script word, one per CJK character and one per punctuation mark.
    """
    if tokenizer_path is not None:
        tokenizer = _load_tokenizer(str(tokenizer_path))
        if tokenizer is not None:
            return len(tokenizer(text, add_special_tokens=True)["input_ids"]), False
    words = len(re.findall(r"[^\W\d_\u3000-\u9fff\uac00-\ud7af]+|\d+", text))
    cjk = len(re.findall(r"[\u3040-\u9fff\uac00-\ud7af]", text))
    punctuation = len(re.findall(r"[^\w\s]", text))
    return math.ceil(1.3 * words) + cjk + punctuation + 1, True


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> Any:
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        logger.warning("Could not load the tokenizer in %s (%s); prompt lengths are estimated", path, error)
        return None


def _model_figures(model: str, model_info: ModelInfo | ModelPreset | None) -> tuple[ModelPreset | None, Path | None]:
    """Return the preset figures and tokenizer folder to validate against, where known."""
    if isinstance(model_info, ModelPreset):
        return model_info, None
    if model_info is not None:
        return model_info.preset, model_info.tokenizer_path
    if model in PRESETS:
        return PRESETS[model], None
    if model == "demo":
        from freeswim_engine.demo_model import DEMO_PRESET

        return DEMO_PRESET, None
    return None, None


def _require_int(field: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(field, value, "must be a whole number", f"Pass {field} as an integer.")
    if minimum is not None and value < minimum:
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise InvalidRequestError(field, value, f"must be {bounds}", f"Use a value {bounds}.")
    if maximum is not None and value > maximum:
        bounds = f"from {minimum} to {maximum}" if minimum is not None else f"{maximum} or less"
        raise InvalidRequestError(field, value, f"must be {bounds}", f"Use a value {bounds}.")


def _require_number(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(field, value, "must be a finite number", f"Pass {field} as a number.")
