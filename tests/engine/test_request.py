"""Tests of RenderRequest validation and its JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from freeswim_engine.demo_model import DEMO_PRESET, build_demo_tokenizer
from freeswim_engine.errors import InvalidRequestError
from freeswim_engine.presets import PRESETS
from freeswim_engine.request import (
    DEFAULT_NEGATIVE_PROMPT,
    METHODS,
    RenderRequest,
    count_prompt_tokens,
    stage2_step_count,
)

WAN_1_3B = PRESETS["wan2.1-t2v-1.3b"]
WAN_5B = PRESETS["wan2.2-ti2v-5b"]


def make(**changes: Any) -> RenderRequest:
    return dataclasses.replace(RenderRequest(prompt="a fox in the snow", model="wan2.1-t2v-1.3b"), **changes)


def rejected(request: RenderRequest, model_info: object = None) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        request.validate(model_info)  # type: ignore[arg-type]
    return caught.value


def test_default_request_is_valid() -> None:
    assert make().validate() == []
    assert RenderRequest(prompt="").validate() == []


def test_height_1080_suggests_neighbours() -> None:
    error = rejected(make(height=1080))
    assert error.field == "height"
    assert error.value == 1080
    assert "multiple of 16" in error.rule
    assert "1072" in error.fix
    assert "1088" in error.fix


def test_width_not_multiple_rejected() -> None:
    error = rejected(make(width=1930))
    assert error.field == "width"
    assert "1920" in error.fix
    assert "1936" in error.fix


def test_size_multiple_depends_on_model() -> None:
    request = make(model="wan2.2-ti2v-5b", width=1920, height=1072)
    assert make(width=1920, height=1072).validate() == []
    error = rejected(request, WAN_5B)
    assert error.field == "height"
    assert "multiple of 32" in error.rule
    assert "1056" in error.fix
    assert "1088" in error.fix


def test_size_must_be_positive() -> None:
    assert rejected(make(width=0)).field == "width"
    assert rejected(make(height=-16)).field == "height"


def test_size_must_be_integer() -> None:
    assert rejected(make(width=1920.0)).field == "width"
    assert rejected(make(height="1088")).field == "height"
    assert rejected(make(width=True)).field == "width"


@pytest.mark.parametrize(("frames", "nearest"), [(80, "81"), (82, "81"), (84, "85"), (2, "1"), (40, "41")])
def test_frames_not_4k_plus_1_suggest_nearest(frames: int, nearest: str) -> None:
    error = rejected(make(num_frames=frames))
    assert error.field == "num_frames"
    assert "4k+1" in error.rule
    assert error.fix.startswith(f"Use {nearest} ")


@pytest.mark.parametrize("frames", [1, 5, 81, 121])
def test_frames_4k_plus_1_accepted(frames: int) -> None:
    assert make(num_frames=frames).validate() == []


def test_frames_zero_rejected() -> None:
    assert rejected(make(num_frames=0)).field == "num_frames"


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.01, float("nan")])
def test_strength_out_of_range_rejected(strength: float) -> None:
    assert rejected(make(strength=strength)).field == "strength"


def test_strength_one_accepted() -> None:
    assert make(strength=1.0).validate() == []


def test_strength_leaving_no_step_rejected() -> None:
    error = rejected(make(num_inference_steps=4, strength=0.1))
    assert error.field == "strength"
    assert "no stage-2 step" in error.rule
    assert make(num_inference_steps=4, strength=0.125).validate() == []


def test_strength_rule_uses_model_default_steps() -> None:
    # 50 steps x 0.009 rounds to 0 steps; 50 x 0.01 rounds to 1.
    assert rejected(make(strength=0.009)).field == "strength"
    assert make(strength=0.01).validate() == []


def test_stage2_step_count_rounds() -> None:
    assert stage2_step_count(50, 0.7) == 35
    assert stage2_step_count(6, 0.7) == 4
    assert stage2_step_count(10, 1.0) == 10
    assert stage2_step_count(4, 0.1) == 0


def test_steps_range() -> None:
    assert rejected(make(num_inference_steps=0)).field == "num_inference_steps"
    assert rejected(make(num_inference_steps=1001)).field == "num_inference_steps"


def test_target_smaller_than_base_rejected() -> None:
    error = rejected(make(width=640, height=480))
    assert error.field == "width"
    assert "832" in error.rule
    error = rejected(make(width=1920, height=464))
    assert error.field == "height"


def test_target_against_custom_base() -> None:
    assert make(width=640, height=480, base_width=320, base_height=240).validate() == []
    assert rejected(make(base_width=330)).field == "base_width"
    assert rejected(make(width=1920, base_width=2048)).field == "width"


def test_method_lists_choices() -> None:
    error = rejected(make(method="sliding"))
    assert error.field == "method"
    for method in METHODS:
        assert method in error.fix


def test_methods_match_attention_enum() -> None:
    from freeswim_engine.attention import AttentionMethod

    assert {method.value for method in AttentionMethod} == set(METHODS)


def test_cache_interval_must_be_positive() -> None:
    assert rejected(make(cache_interval=0)).field == "cache_interval"
    assert make(cache_interval=5).validate() == []


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5])
def test_seed_out_of_range_rejected(seed: object) -> None:
    assert rejected(make(seed=seed)).field == "seed"


@pytest.mark.parametrize("seed", [None, 0, 2**32 - 1])
def test_seed_in_range_accepted(seed: int | None) -> None:
    assert make(seed=seed).validate() == []


def test_codec_lists_choices() -> None:
    error = rejected(make(codec="vp9"))
    assert error.field == "codec"
    assert "h264" in error.fix
    assert "h265" in error.fix


@pytest.mark.parametrize(("crf", "valid"), [(-1, False), (0, True), (51, True), (52, False)])
def test_crf_range(crf: int, valid: bool) -> None:
    if valid:
        assert make(crf=crf).validate() == []
    else:
        assert rejected(make(crf=crf)).field == "crf"


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_accepted(device: str) -> None:
    assert make(device=device).validate() == []


def test_device_and_dtype_rejected() -> None:
    assert rejected(make(device="gpu")).field == "device"
    assert rejected(make(dtype="float16")).field == "dtype"


def test_guidance_and_flow_shift_rules() -> None:
    assert rejected(make(guidance_scale=-1.0)).field == "guidance_scale"
    assert rejected(make(flow_shift=0.0)).field == "flow_shift"
    assert rejected(make(fps=0)).field == "fps"
    assert make(guidance_scale=1.0, flow_shift=9.0, fps=24).validate() == []


def test_missing_input_video_rejected(tmp_path: Path) -> None:
    error = rejected(make(input_video=tmp_path / "missing.mp4"))
    assert error.field == "input_video"


def test_error_message_names_value_rule_and_fix() -> None:
    message = str(rejected(make(height=1080)))
    assert "height" in message
    assert "1080" in message
    assert "1072" in message


def test_long_prompt_warns_with_estimate() -> None:
    warnings = make(prompt="word " * 600).validate()
    assert len(warnings) == 1
    assert "prompt" in warnings[0]
    assert "estimate" in warnings[0]
    assert "781 tokens" in warnings[0]  # ceil(1.3 x 600) + end-of-sequence


def test_long_prompt_counted_with_tokenizer(tmp_path: Path) -> None:
    build_demo_tokenizer().save_pretrained(tmp_path)
    count, is_estimate = count_prompt_tokens("x " * 600, tmp_path)
    assert not is_estimate
    assert count == 601  # 600 pieces "\u2581x" and the end-of-sequence token


def test_long_negative_prompt_warns() -> None:
    warnings = make(negative_prompt="bad, " * 400).validate()
    assert len(warnings) == 1
    assert "negative prompt" in warnings[0]


def test_default_negative_prompt_fits() -> None:
    count, _ = count_prompt_tokens(DEFAULT_NEGATIVE_PROMPT)
    assert count < 512


def test_demo_preset_used_without_model_info() -> None:
    request = RenderRequest(prompt="", model="demo", width=DEMO_PRESET.base_width, height=DEMO_PRESET.base_height)
    assert request.validate() == []
    assert rejected(dataclasses.replace(request, width=DEMO_PRESET.base_width - 16)).field == "width"


def test_unknown_model_checked_with_wan21_multiple() -> None:
    request = make(model="/nonexistent/folder", width=256, height=256)
    assert request.validate() == []
    assert rejected(dataclasses.replace(request, height=250)).field == "height"


def test_with_defaults_fills_from_preset() -> None:
    resolved = RenderRequest(prompt="x", model="wan2.1-t2v-1.3b").with_defaults(WAN_1_3B)
    assert resolved.num_frames == 81
    assert resolved.fps == 16
    assert resolved.num_inference_steps == 50
    assert resolved.guidance_scale == 5.0
    assert resolved.flow_shift == 9.0
    assert (resolved.base_height, resolved.base_width) == (480, 832)
    assert resolved.seed is None


def test_json_round_trip(tmp_path: Path) -> None:
    request = make(
        seed=7,
        output_path=tmp_path / "out.mp4",
        input_video=None,
        save_latents=tmp_path / "latents.pt",
        guidance_scale=4.5,
    )
    data = json.loads(json.dumps(request.to_dict()))
    assert data["output_path"] == str(tmp_path / "out.mp4")
    assert RenderRequest.from_dict(data) == request


def test_from_dict_ignores_unknown_and_defaults_missing() -> None:
    request = RenderRequest.from_dict({"prompt": "p", "width": 1280, "colour": "blue"})
    assert request.width == 1280
    assert request.height == 1088
    assert request.model == "demo"
    assert request.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert RenderRequest.from_dict({}).prompt == ""
