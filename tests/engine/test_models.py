"""Tests of model resolution and loading on tiny random checkpoints saved in the diffusers layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from freeswim_engine import models
from freeswim_engine.demo_model import DEMO_PRESET
from freeswim_engine.errors import ModelLoadError
from freeswim_engine.models import ModelSource, list_models, load_model, resolve_model
from freeswim_engine.request import RenderRequest
from tests.engine.tiny_checkpoints import FAKE_REVISION, add_to_hf_cache, copy_checkpoint, save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-wan")


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face and engine caches at empty temporary folders."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("FREESWIM_CACHE_DIR", str(tmp_path / "engine-cache"))
    models.unload_models()
    return tmp_path / "hf-home" / "hub"


def test_folder_resolves_with_demo_figures(checkpoint: Path) -> None:
    info = resolve_model(str(checkpoint))
    assert info.source is ModelSource.FOLDER
    assert info.is_installed
    assert info.path == checkpoint
    assert info.preset.base_size == DEMO_PRESET.base_size
    assert info.preset.pixels_per_token == 16
    assert info.preset.latent_channels == 16
    assert info.preset.transformer.num_layers == DEMO_PRESET.transformer.num_layers
    assert info.tokenizer_path == checkpoint / "tokenizer"


def test_folder_parameter_counts_from_safetensors(checkpoint: Path) -> None:
    info = resolve_model(str(checkpoint))
    assert info.preset.vae_parameters == DEMO_PRESET.vae_parameters
    assert info.preset.text_encoder_parameters == DEMO_PRESET.text_encoder_parameters


def test_folder_loads_on_cpu_in_float32(checkpoint: Path) -> None:
    loaded = load_model(str(checkpoint), device="cpu")
    assert loaded.device == torch.device("cpu")
    assert loaded.transformer_dtype == torch.float32
    assert loaded.pipeline.vae.dtype == torch.float32
    assert loaded.pipeline.transformer.dtype == torch.float32
    assert type(loaded.pipeline.scheduler).__name__ == "UniPCMultistepScheduler"
    assert loaded.pipeline.scheduler.config.prediction_type == "flow_prediction"


def test_loaded_model_is_cached(checkpoint: Path) -> None:
    first = load_model(str(checkpoint), device="cpu")
    assert load_model(str(checkpoint), device="cpu") is first
    assert load_model(str(checkpoint), device="cpu", dtype="bfloat16") is not first


def test_bfloat16_transformer_keeps_float32_vae(checkpoint: Path) -> None:
    loaded = load_model(str(checkpoint), device="cpu", dtype="bfloat16")
    assert loaded.pipeline.transformer.dtype == torch.bfloat16
    assert loaded.pipeline.vae.dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_rejected(checkpoint: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(checkpoint), device="cuda")
    assert "CUDA is not available" in str(caught.value)


def test_repo_id_resolves_from_hf_cache(checkpoint: Path, isolated_caches: Path) -> None:
    snapshot = add_to_hf_cache(isolated_caches, "tiny-org/tiny-wan", checkpoint)
    info = resolve_model("tiny-org/tiny-wan")
    assert info.source is ModelSource.HUB_CACHE
    assert info.repo_id == "tiny-org/tiny-wan"
    assert info.path == snapshot
    assert info.path.name == FAKE_REVISION
    loaded = load_model("tiny-org/tiny-wan", device="cpu")
    assert loaded.pipeline.transformer.config.num_layers == DEMO_PRESET.transformer.num_layers


def test_hf_hub_cache_variable_wins(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "elsewhere"
    add_to_hf_cache(hub, "tiny-org/tiny-wan", checkpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert resolve_model("tiny-org/tiny-wan").path == hub / "models--tiny-org--tiny-wan" / "snapshots" / FAKE_REVISION


def test_preset_installed_from_hf_cache(checkpoint: Path, isolated_caches: Path) -> None:
    assert not resolve_model("wan2.1-t2v-1.3b").is_installed
    add_to_hf_cache(isolated_caches, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", checkpoint)
    info = resolve_model("wan2.1-t2v-1.3b")
    assert info.is_installed
    assert info.preset.base_size == (480, 832)
    assert resolve_model("Wan-AI/Wan2.1-T2V-1.3B-Diffusers").is_installed


def test_uncached_repo_names_download_command() -> None:
    with pytest.raises(ModelLoadError) as caught:
        resolve_model("someone/not-cached")
    message = str(caught.value)
    assert "someone/not-cached" in message
    assert "hf download someone/not-cached" in message


def test_uninstalled_preset_load_names_repo() -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_model("wan2.1-t2v-14b", device="cpu")
    assert "Wan-AI/Wan2.1-T2V-14B-Diffusers" in str(caught.value)
    assert "hf download" in str(caught.value)


def test_missing_model_index_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(checkpoint, tmp_path / "broken")
    (broken / "model_index.json").unlink()
    with pytest.raises(ModelLoadError) as caught:
        resolve_model(str(broken))
    assert "model_index.json" in str(caught.value)
    assert str(broken) in str(caught.value)


def test_missing_component_folder_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(checkpoint, tmp_path / "broken")
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelLoadError) as caught:
        resolve_model(str(broken))
    assert "vae/" in str(caught.value)


def test_missing_weights_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(checkpoint, tmp_path / "broken")
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as caught:
        resolve_model(str(broken))
    assert "weights in transformer/" in str(caught.value)


def test_missing_index_entry_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(checkpoint, tmp_path / "broken")
    index = json.loads((broken / "model_index.json").read_text())
    del index["scheduler"]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError) as caught:
        resolve_model(str(broken))
    assert "'scheduler' entry" in str(caught.value)


def test_missing_path_and_unknown_name_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        resolve_model(str(tmp_path / "nope" / "model"))
    assert "not found" in str(caught.value)
    with pytest.raises(ModelLoadError) as caught:
        resolve_model("wan-nonsense")
    assert "wan2.1-t2v-1.3b" in str(caught.value)


def test_vae_factors_computed_for_old_configs(checkpoint: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(checkpoint, tmp_path / "old-config")
    config_path = folder / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    del config["scale_factor_spatial"]
    del config["scale_factor_temporal"]
    config_path.write_text(json.dumps(config))
    info = resolve_model(str(folder))
    assert info.preset.vae_spatial_factor == 8
    assert info.preset.vae_temporal_factor == 4
    assert info.preset.pixels_per_token == 16


def test_demo_built_once_into_cache(tmp_path: Path) -> None:
    info = resolve_model("demo")
    assert info.is_demo
    assert not info.is_installed
    assert info.path is not None
    assert info.path.is_relative_to(tmp_path / "engine-cache")
    loaded = load_model("demo", device="cpu")
    assert (info.path / "model_index.json").is_file()
    assert resolve_model("demo").is_installed
    assert "not a real model" in loaded.info.label


def test_list_models_shows_presets_demo_and_cache(checkpoint: Path, isolated_caches: Path) -> None:
    add_to_hf_cache(isolated_caches, "tiny-org/tiny-wan", checkpoint)
    listed = {info.name: info for info in list_models()}
    assert set(listed) >= {"wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b", "demo", "tiny-org/tiny-wan"}
    assert listed["tiny-org/tiny-wan"].is_installed
    assert not listed["wan2.1-t2v-14b"].is_installed
    assert "hf download" in listed["wan2.1-t2v-14b"].describe()


def test_validate_counts_tokens_with_model_tokenizer(checkpoint: Path) -> None:
    info = resolve_model(str(checkpoint))
    request = RenderRequest(prompt="x " * 600, model=str(checkpoint), width=256, height=128)
    warnings = request.validate(info)
    assert len(warnings) == 1
    assert "601 tokens (counted)" in warnings[0]
