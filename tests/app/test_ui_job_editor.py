"""Job editor: live validation through RenderRequest, size suggestions, token counts and submitting."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from freeswim_app.ui.job_editor import JobEditor


def make_editor(qtbot, **defaults) -> JobEditor:
    editor = JobEditor(defaults={"prompt": "a red fox running through snow", "model": "wan2.1-t2v-1.3b", **defaults})
    qtbot.addWidget(editor)
    editor.show()
    return editor


def test_editor_starts_valid_with_prompt(qtbot) -> None:
    editor = make_editor(qtbot)
    assert editor.is_valid()
    assert editor.add_button.isEnabled()
    assert editor.resolution_box.currentText().startswith("1080p")


def test_editor_rejects_height_1080_and_offers_fixes(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.height_spin.setValue(1080)

    message = editor._messages["height"]
    assert not editor.is_valid()
    assert not editor.add_button.isEnabled()
    assert message.isVisibleTo(editor)
    assert "multiple of 16" in message.label.text()
    assert [button.text() for button in message.suggestion_buttons] == ["1072", "1088"]
    assert editor.resolution_box.currentText() == "Custom"

    message.suggestion_buttons[0].click()
    assert editor.height_spin.value() == 1072
    assert editor.is_valid()
    assert editor.add_button.isEnabled()
    assert not message.isVisibleTo(editor)


def test_editor_offers_base_size_when_too_small(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.width_spin.setValue(640)  # below the 1.3B model's base width of 832
    message = editor._messages["width"]
    assert not editor.is_valid()
    assert "832" in [button.text() for button in message.suggestion_buttons]


def test_editor_error_is_bound_to_its_field(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.frames_spin.setValue(8)
    assert not editor.is_valid()
    assert "4k+1" in editor._messages["num_frames"].label.text()
    assert not editor._messages["height"].isVisibleTo(editor)
    editor.frames_spin.setValue(9)
    assert editor.is_valid()


def test_editor_seed_fixed_and_random(qtbot) -> None:
    editor = make_editor(qtbot)
    assert editor.request_dict()["seed"] is None
    editor.random_seed_box.setChecked(False)
    editor.seed_edit.setText("1234")
    assert editor.request_dict()["seed"] == 1234
    assert editor.is_valid()
    editor.seed_edit.setText("-5")
    assert not editor.is_valid()
    assert editor._messages["seed"].isVisibleTo(editor)
    editor.random_seed_box.setChecked(True)
    assert editor.is_valid()


def test_editor_resolution_presets(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.resolution_box.setCurrentIndex(2)
    assert (editor.width_spin.value(), editor.height_spin.value()) == (3840, 2160)
    editor.resolution_box.setCurrentIndex(1)
    assert (editor.width_spin.value(), editor.height_spin.value()) == (2560, 1440)
    assert editor.is_valid()


def test_editor_token_count_warns_past_512(qtbot) -> None:
    editor = make_editor(qtbot)
    assert "estimate" in editor.prompt_tokens_label.text()
    assert editor.prompt_tokens_label.property("warning") is False
    editor.prompt_edit.setPlainText("word " * 600)
    assert editor.prompt_tokens_label.property("warning") is True
    assert "over 512" in editor.prompt_tokens_label.text()
    assert editor.warnings_label.isVisibleTo(editor)
    assert editor.is_valid(), "a long prompt is a warning, not an error"


def test_editor_empty_prompt_disables_add(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.prompt_edit.setPlainText("   ")
    assert not editor.add_button.isEnabled()
    assert "prompt" in editor.general_message.label.text()


def test_editor_emits_request_on_add(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.steps_spin.setValue(30)
    editor.guidance_spin.setValue(6.0)
    with qtbot.waitSignal(editor.add_requested) as blocker:
        editor.add_button.click()
    request = blocker.args[0]
    assert request["prompt"] == "a red fox running through snow"
    assert request["num_inference_steps"] == 30
    assert request["guidance_scale"] == 6.0
    assert request["height"] == 1088
    assert request["model"] == "wan2.1-t2v-1.3b"


def test_editor_model_default_values_are_none(qtbot) -> None:
    editor = make_editor(qtbot)
    request = editor.request_dict()
    assert request["num_frames"] is None
    assert request["fps"] is None
    assert request["num_inference_steps"] is None
    assert request["guidance_scale"] is None


def test_editor_edit_mode_saves_to_job(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.edit_job("abcdef0123456789", {"prompt": "old prompt", "model": "demo", "width": 448, "height": 256})
    assert editor.add_button.text() == "Save changes"
    assert editor.width_spin.value() == 448
    editor.prompt_edit.setPlainText("new prompt")
    with qtbot.waitSignal(editor.save_requested) as blocker:
        editor.add_button.click()
    assert blocker.args[0] == "abcdef0123456789"
    assert blocker.args[1]["prompt"] == "new prompt"
    assert editor.add_button.text() == "Add to queue"


def test_editor_template_shows_used_seed(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.use_as_template({"prompt": "again", "model": "demo", "width": 448, "height": 256, "seed": 77}, used_seed=77)
    assert "77" in editor.last_seed_label.text()
    assert editor.request_dict()["seed"] == 77


def test_editor_cache_interval_only_for_cached_method(qtbot) -> None:
    editor = make_editor(qtbot)
    assert editor.cache_interval_spin.isEnabled()
    editor.method_box.setCurrentIndex(editor.method_box.findData("freeswim"))
    assert not editor.cache_interval_spin.isEnabled()


def test_editor_memory_plan_or_unavailable(qtbot) -> None:
    editor = make_editor(qtbot)
    qtbot.waitUntil(editor.is_analysis_done, timeout=60000)
    text = editor.memory_view.toPlainText()
    assert text, "the memory row is never empty"
    assert "wan2.1-t2v-1.3b" in text or text == "memory plan not available"


def test_editor_memory_plan_waits_for_valid_request(qtbot) -> None:
    editor = make_editor(qtbot)
    editor.height_spin.setValue(1080)
    assert editor.memory_view.toPlainText() == "Fix the request to see the memory plan."


@pytest.mark.parametrize("model", ["demo", "wan2.1-t2v-14b", "wan2.2-ti2v-5b"])
def test_editor_accepts_each_preset(qtbot, model: str) -> None:
    editor = make_editor(qtbot, model=model)
    assert editor.current_model() == model
    if model == "wan2.2-ti2v-5b":
        editor.resolution_box.setCurrentIndex(1)  # 1440p: multiples of 32 pixels per token
    assert editor.is_valid(), editor.general_message.label.text()


def test_editor_counts_with_model_tokenizer(qtbot, tmp_path, monkeypatch) -> None:
    import dataclasses

    from freeswim_app.ui import engine_info
    from freeswim_engine.demo_model import DEMO_PRESET, build_demo_tokenizer

    tokenizer = build_demo_tokenizer()
    tokenizer.save_pretrained(str(tmp_path / "tokenizer"))

    @dataclasses.dataclass
    class TokenizerInfo:
        preset: object
        tokenizer_path: object

    info = TokenizerInfo(DEMO_PRESET, tmp_path / "tokenizer")
    monkeypatch.setattr(engine_info, "model_info", lambda spec: info)
    prompt = "the city light " * 200
    expected = len(tokenizer(prompt, add_special_tokens=True)["input_ids"])

    editor = make_editor(qtbot, model="demo", width=448, height=256, prompt=prompt)
    assert editor.prompt_tokens_label.text().startswith("about"), "an estimate until the tokenizer has counted"
    qtbot.waitUntil(editor.is_analysis_done, timeout=60000)

    assert editor.prompt_tokens_label.text().startswith(f"{expected} tokens")
    assert editor.prompt_tokens_label.property("warning") is (expected > 512)
    assert editor.is_valid()


@pytest.fixture
def empty_model_caches(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so no preset is installed, and fresh engine_info look-ups."""
    from freeswim_app.ui import engine_info

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    engine_info.model_info.cache_clear()
    yield
    engine_info.model_info.cache_clear()


def test_engine_lists_presets_not_installed(empty_model_caches) -> None:
    from freeswim_engine.api import list_models

    listed = {info.name: info for info in list_models()}

    assert listed["wan2.1-t2v-1.3b"].is_installed is False
    assert listed["wan2.1-t2v-1.3b"].repo_id == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert listed["demo"].is_demo


def test_default_model_not_installed_uses_demo(qtbot, empty_model_caches) -> None:
    editor = JobEditor()
    qtbot.addWidget(editor)
    editor.show()

    editor.set_new_job_defaults({"model": "wan2.1-t2v-1.3b", "width": 448, "height": 256})

    assert editor.current_model() == "demo"
    assert editor.request_dict()["model"] == "demo"
    hint = editor.model_hint_label.text()
    assert editor.model_hint_label.isVisibleTo(editor)
    assert "demo model" in hint
    assert "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in hint
    assert "freeswim models" in hint


def test_default_model_installed_is_kept(qtbot, monkeypatch) -> None:
    from freeswim_app.ui import engine_info

    monkeypatch.setattr(engine_info, "is_model_usable", lambda spec: True)
    editor = JobEditor()
    qtbot.addWidget(editor)
    editor.show()

    editor.set_new_job_defaults({"model": "wan2.1-t2v-1.3b"})

    assert editor.current_model() == "wan2.1-t2v-1.3b"
    assert not editor.model_hint_label.isVisibleTo(editor)


def test_chosen_model_not_installed_shows_hint(qtbot, empty_model_caches) -> None:
    editor = make_editor(qtbot, model="demo", width=448, height=256)
    assert not editor.model_hint_label.isVisibleTo(editor)

    editor.model_box.setCurrentIndex(editor.model_box.findData("wan2.1-t2v-14b"))

    assert editor.model_hint_label.isVisibleTo(editor)
    assert "fail until it is installed" in editor.model_hint_label.text()
    assert "hf download Wan-AI/Wan2.1-T2V-14B-Diffusers" in editor.model_hint_label.text()
    assert editor.current_model() == "wan2.1-t2v-14b", "an explicit choice is kept"


def test_template_keeps_its_model(qtbot, empty_model_caches) -> None:
    editor = JobEditor()
    qtbot.addWidget(editor)
    editor.set_new_job_defaults({"model": "wan2.1-t2v-1.3b"})

    editor.use_as_template({"prompt": "again", "model": "wan2.1-t2v-1.3b"})

    assert editor.current_model() == "wan2.1-t2v-1.3b"
    assert "demo model" not in editor.model_hint_label.text()
