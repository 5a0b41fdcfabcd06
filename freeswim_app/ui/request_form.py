"""Size rules of the job editor's form: resolution presets and the valid sizes nearest to an invalid one.

Nothing here builds widgets. The rules come from ``RenderRequest.validate`` and the model's figures.
"""

from __future__ import annotations

from typing import Any

from freeswim_engine.errors import InvalidRequestError
from freeswim_engine.presets import PRESETS, ModelPreset
from freeswim_engine.request import RenderRequest

RESOLUTION_PRESETS: list[tuple[str, int, int]] = [
    ("1080p", 1920, 1088),  # 1080 is not a multiple of 16 pixels per token, so 1088
    ("1440p", 2560, 1440),
    ("4K", 3840, 2160),
]
CUSTOM_RESOLUTION = "custom"
MAX_SIZE = 8192
SIZE_FIELDS = ("width", "height", "base_width", "base_height")


def size_suggestions(field: str, request_dict: dict[str, Any], model_info: Any) -> list[int]:
    """Return the valid sizes nearest to the field's value, checked with RenderRequest.validate."""
    value = int(request_dict[field])
    step = _pixels_per_token(request_dict["model"], model_info)
    lower = max(step, value // step * step)
    candidates = sorted({lower, lower + step} | _base_size_candidates(field, request_dict["model"], model_info))
    valid = []
    for candidate in candidates:
        trial = dict(request_dict, **{field: candidate})
        try:
            RenderRequest.from_dict(trial).validate(model_info)
        except InvalidRequestError as error:
            if error.field == field:
                continue
        valid.append(candidate)
    return sorted(valid, key=lambda size: (abs(size - value), size))[:2]


def preset_of(model: str, model_info: Any) -> ModelPreset | None:
    """Return the figures of ``model``: from its ModelInfo, else its preset, else None."""
    preset = getattr(model_info, "preset", None)
    if isinstance(preset, ModelPreset):
        return preset
    if model in PRESETS:
        return PRESETS[model]
    if model == "demo":
        from freeswim_engine.demo_model import DEMO_PRESET

        return DEMO_PRESET
    return None


def _pixels_per_token(model: str, model_info: Any) -> int:
    preset = preset_of(model, model_info)
    return preset.pixels_per_token if preset else 16


def _base_size_candidates(field: str, model: str, model_info: Any) -> set[int]:
    preset = preset_of(model, model_info)
    if preset is None:
        return set()
    if field == "width":
        return {preset.base_width}
    if field == "height":
        return {preset.base_height}
    return set()
