"""Model resolution and loading: presets, local diffusers folders and the Hugging Face cache.

A model spec is one of:
- a preset name (``wan2.1-t2v-1.3b`` ...), found in the Hugging Face cache by its repo id;
- ``demo``, the tiny random checkpoint built in code (see ``demo_model``);
- a local folder in the diffusers layout (``model_index.json`` and one folder per component);
- a Hugging Face repo id (``org/name``) that is already in the local cache.

Nothing is ever downloaded here. A model that is not cached raises ModelLoadError with
the command that downloads it.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import gc
import json
import logging
import math
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freeswim_engine import demo_model
from freeswim_engine.errors import ModelLoadError
from freeswim_engine.presets import PRESETS, ModelPreset, TransformerArchitecture

if TYPE_CHECKING:
    import torch

    from freeswim_engine.memory import MemoryPlan

logger = logging.getLogger(__name__)

REQUIRED_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
COMPONENT_CONFIG_FILES = {
    "transformer": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "scheduler": "scheduler_config.json",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
_REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Loaded pipelines kept in memory. One, because a second Wan model rarely fits beside the first.
MAX_LOADED_PIPELINES = 1
# Weight placement of a model loaded without a memory plan: WeightPlacement.ALL_ON_DEVICE's value.
_PLAIN_PLACEMENT = "all-on-device"


class ModelSource(str, enum.Enum):
    """Origin of a model's files."""

    DEMO = "demo"  # built in code and cached under the engine's cache folder
    HUB_CACHE = "hub-cache"  # a snapshot in the Hugging Face cache
    FOLDER = "folder"  # a local diffusers folder given by path


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A resolved model spec: its files and the figures a render plans with. No weights are loaded."""

    name: str  # the spec as given, or the preset name
    label: str
    source: ModelSource
    preset: ModelPreset  # native size, pixels per token, defaults; read from the configs for folders
    path: Path | None  # diffusers folder; None when the model is not installed
    repo_id: str | None = None
    is_installed: bool = False

    @property
    def is_demo(self) -> bool:
        return self.preset.is_demo

    @property
    def tokenizer_path(self) -> Path | None:
        """Tokenizer folder, for counting prompt tokens, or None while the model is not installed."""
        if self.path is None or not self.is_installed:
            return None
        return self.path / "tokenizer"

    def describe(self) -> str:
        """Return one line for listings: label, base size, and where the files are."""
        preset = self.preset
        where = str(self.path) if self.is_installed else f"not installed ({download_hint(self.repo_id)})"
        return (
            f"{self.name}: {self.label}, base {preset.base_width}x{preset.base_height}, "
            f"{preset.pixels_per_token} px per token, {where}"
        )


# -- resolution ------------------------------------------------------------------------------


def resolve_model(spec: str) -> ModelInfo:
    """Resolve a model spec to a ModelInfo without loading weights.

    Raises ModelLoadError when the spec names no preset, no existing folder and no
    repo id, when a folder lacks ``model_index.json`` or a component, or when a repo
    id that is not a preset is missing from the Hugging Face cache.
    """
    spec = spec.strip()
    if spec == demo_model.DEMO_NAME:
        return _demo_info()
    if spec in PRESETS:
        return _preset_info(PRESETS[spec])

    folder = Path(spec).expanduser()
    if folder.exists():
        return folder_info(folder, name=spec, source=ModelSource.FOLDER)
    if _REPO_ID_PATTERN.match(spec) and not spec.startswith((".", "~")):
        return _repo_info(spec)
    if os.sep in spec or spec.startswith((".", "~")):
        raise ModelLoadError(f"Model folder {spec} not found. Check the path, or pass a preset name or repo id.")
    raise ModelLoadError(
        f"Unknown model {spec!r}: it is not a preset, an existing folder or a Hugging Face repo id (org/name). "
        f"Presets: {', '.join([*PRESETS, demo_model.DEMO_NAME])}."
    )


def list_models() -> list[ModelInfo]:
    """List every preset (installed or not), the demo model, and Wan pipelines found in the Hugging Face cache."""
    models = [_listed_preset_info(preset) for preset in PRESETS.values()]
    models.append(_demo_info())
    preset_repos = {preset.repo_id for preset in PRESETS.values()}
    for repo_id, snapshot in _cached_wan_repos():
        if repo_id in preset_repos:
            continue
        try:
            models.append(folder_info(snapshot, name=repo_id, source=ModelSource.HUB_CACHE, repo_id=repo_id))
        except ModelLoadError as error:
            logger.warning("Skipping cached repo %s: %s", repo_id, error)
    return models


def folder_info(
    folder: Path, name: str | None = None, source: ModelSource = ModelSource.FOLDER, repo_id: str | None = None
) -> ModelInfo:
    """Check that ``folder`` is a complete diffusers Wan folder and read its figures from the configs."""
    check_diffusers_folder(folder)
    preset = preset_from_folder(folder)
    return ModelInfo(
        name=name or str(folder),
        label=preset.label,
        source=source,
        preset=preset,
        path=folder,
        repo_id=repo_id or preset.repo_id,
        is_installed=True,
    )


def check_diffusers_folder(folder: Path) -> None:
    """Raise ModelLoadError naming whatever the diffusers layout needs and ``folder`` lacks."""
    if not folder.is_dir():
        raise ModelLoadError(f"Model path {folder} is not a folder. Pass the folder that contains model_index.json.")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelLoadError(
            f"Model folder {folder} has no model_index.json, so it is not a diffusers pipeline folder. "
            "Pass the folder saved by save_pretrained (it contains model_index.json, transformer/, vae/, "
            "text_encoder/, tokenizer/ and scheduler/)."
        )
    index = _read_json(index_path)
    missing: list[str] = []
    for component in REQUIRED_COMPONENTS:
        entry = index.get(component)
        if not entry or entry[0] is None:
            missing.append(f"'{component}' entry in model_index.json")
            continue
        missing.extend(_missing_component_files(folder / component, component))
    if missing:
        raise ModelLoadError(f"Model folder {folder} is incomplete. Missing: {'; '.join(missing)}.")


def _missing_component_files(component_dir: Path, component: str) -> list[str]:
    if not component_dir.is_dir():
        return [f"folder {component}/"]
    missing = []
    config_name = COMPONENT_CONFIG_FILES.get(component)
    if config_name and not (component_dir / config_name).is_file():
        missing.append(f"{component}/{config_name}")
    if component in ("transformer", "vae", "text_encoder"):
        if not any(path.name.endswith(WEIGHT_SUFFIXES) for path in component_dir.iterdir()):
            missing.append(f"weights in {component}/ (*.safetensors or *.bin)")
    if component == "tokenizer" and not any(component_dir.iterdir()):
        missing.append("tokenizer files in tokenizer/")
    return missing


def preset_from_folder(folder: Path) -> ModelPreset:
    """Build the planning figures of a diffusers Wan folder from its configs.

    The pixels per token, latent channels, architecture and stage-1 flow shift come
    from the configs. The native size, fps and step defaults are not stored in a
    checkpoint, so they come from the preset of the same architecture.
    """
    transformer = _read_json(folder / "transformer" / "config.json")
    vae = _read_json(folder / "vae" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")

    architecture = TransformerArchitecture(
        num_layers=int(transformer["num_layers"]),
        num_attention_heads=int(transformer["num_attention_heads"]),
        attention_head_dim=int(transformer["attention_head_dim"]),
        ffn_dim=int(transformer["ffn_dim"]),
        in_channels=int(transformer["in_channels"]),
        text_dim=int(transformer.get("text_dim", 4096)),
        patch_size=tuple(transformer.get("patch_size", (1, 2, 2))),  # type: ignore[arg-type]
    )
    spatial_factor, temporal_factor = _vae_factors(vae)
    template = _matching_preset(architecture, folder)
    return dataclasses.replace(
        template,
        name=folder.name,
        label=template.label if template.is_demo else f"{template.label} layout ({folder.name})",
        pixels_per_token=spatial_factor * architecture.patch_size[1],
        vae_spatial_factor=spatial_factor,
        vae_temporal_factor=temporal_factor,
        latent_channels=int(vae.get("z_dim", 16)),
        transformer=architecture,
        text_encoder_parameters=_count_parameters(folder / "text_encoder") or template.text_encoder_parameters,
        vae_parameters=_count_parameters(folder / "vae") or template.vae_parameters,
        stage1_flow_shift=float(scheduler.get("flow_shift") or template.stage1_flow_shift),
    )


def _vae_factors(vae_config: dict[str, Any]) -> tuple[int, int]:
    """Return (spatial, temporal) compression of a Wan VAE config, computed when older configs lack them."""
    dim_mult = vae_config.get("dim_mult", [1, 2, 4, 4])
    patch = vae_config.get("patch_size") or 1
    spatial = vae_config.get("scale_factor_spatial") or 2 ** (len(dim_mult) - 1) * patch
    temporal = vae_config.get("scale_factor_temporal") or 2 ** sum(vae_config.get("temperal_downsample", []))
    return int(spatial), int(temporal)


def _matching_preset(architecture: TransformerArchitecture, folder: Path) -> ModelPreset:
    """Return the preset (demo included) with the same transformer layout, else Wan 2.1 1.3B's defaults."""
    keys = ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels")
    for preset in (*PRESETS.values(), demo_model.DEMO_PRESET):
        if all(getattr(preset.transformer, key) == getattr(architecture, key) for key in keys):
            return preset
    fallback = PRESETS["wan2.1-t2v-1.3b"]
    # NOTE: a checkpoint of a new layout gets 1.3B's native size, which may be wrong. Pass base_width/base_height.
    logger.warning(
        "The transformer in %s matches no preset; assuming a native size of %dx%d",
        folder,
        fallback.base_width,
        fallback.base_height,
    )
    return fallback


def _count_parameters(component_dir: Path) -> int | None:
    """Count parameters from the safetensors headers in ``component_dir``; None without safetensors files."""
    files = sorted(component_dir.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with path.open("rb") as stream:
            (header_size,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(header_size))
        total += sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    return total


def _demo_info() -> ModelInfo:
    path = demo_model.demo_checkpoint_dir()
    return ModelInfo(
        name=demo_model.DEMO_NAME,
        label=demo_model.DEMO_LABEL,
        source=ModelSource.DEMO,
        preset=demo_model.DEMO_PRESET,
        path=path,
        is_installed=demo_model.is_demo_cached(),
    )


def _preset_info(preset: ModelPreset) -> ModelInfo:
    assert preset.repo_id is not None  # every preset but the demo names its repo
    snapshot = find_cached_snapshot(preset.repo_id)
    if snapshot is not None:
        check_diffusers_folder(snapshot)
    return ModelInfo(
        name=preset.name,
        label=preset.label,
        source=ModelSource.HUB_CACHE,
        preset=preset,
        path=snapshot,
        repo_id=preset.repo_id,
        is_installed=snapshot is not None,
    )


def _listed_preset_info(preset: ModelPreset) -> ModelInfo:
    """Return a preset's info for listings, where an incomplete download shows as not installed."""
    try:
        return _preset_info(preset)
    except ModelLoadError as error:
        logger.warning("Listing %s as not installed: %s", preset.name, error)
        return ModelInfo(preset.name, preset.label, ModelSource.HUB_CACHE, preset, None, preset.repo_id, False)


def _repo_info(repo_id: str) -> ModelInfo:
    for preset in PRESETS.values():
        if preset.repo_id == repo_id:
            return dataclasses.replace(_preset_info(preset), name=repo_id)
    snapshot = find_cached_snapshot(repo_id)
    if snapshot is None:
        raise ModelLoadError(
            f"Model {repo_id} is not in the Hugging Face cache ({hf_cache_dir()}) and the engine never downloads. "
            f"{_sentence_start(download_hint(repo_id))}, or pass a local diffusers folder."
        )
    return folder_info(snapshot, name=repo_id, source=ModelSource.HUB_CACHE, repo_id=repo_id)


# -- Hugging Face cache ------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """Return the Hugging Face hub cache folder from HF_HUB_CACHE, HF_HOME or the default.

    Read on every call, because huggingface_hub reads these variables only once, at import.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg_cache).expanduser() / "huggingface" / "hub"


def find_cached_snapshot(repo_id: str) -> Path | None:
    """Return the cached snapshot folder of ``repo_id`` at its ``main`` ref, or None when it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=hf_cache_dir(), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def ensure_installed(info: ModelInfo) -> None:
    """Raise ModelLoadError with the download command when ``info``'s weights are not on this machine.

    The demo model passes, because it is built in code on first use.
    """
    if info.is_demo or (info.path is not None and info.is_installed):
        return
    raise ModelLoadError(
        f"Model {info.name} ({info.repo_id}) is not in the Hugging Face cache ({hf_cache_dir()}). "
        f"{_sentence_start(download_hint(info.repo_id))}, or pass a local diffusers folder."
    )


def _sentence_start(text: str) -> str:
    # str.capitalize() would lowercase the rest, repo id included.
    return text[:1].upper() + text[1:]


def download_hint(repo_id: str | None) -> str:
    """Return the command that fetches ``repo_id`` into the Hugging Face cache."""
    if repo_id is None:
        return "built in code on first use"
    return f"download it with `hf download {repo_id}` on a machine with internet access"


def _cached_wan_repos() -> list[tuple[str, Path]]:
    """Return (repo id, snapshot) of every cached model repo whose model_index.json names a Wan pipeline."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hf_cache_dir())
    except CacheNotFound:
        return []
    found = []
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        snapshot = find_cached_snapshot(repo.repo_id)
        if snapshot is None or not (snapshot / "model_index.json").is_file():
            continue
        if str(_read_json(snapshot / "model_index.json").get("_class_name", "")).startswith("Wan"):
            found.append((repo.repo_id, snapshot))
    return found


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"Failed to read {path}: {error}. Re-download or re-save the model.") from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not contain a JSON object. Re-download or re-save the model.")
    return data


# -- loading -----------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadedModel:
    """A WanPipeline on its device, with the dtypes the render uses."""

    info: ModelInfo
    pipeline: Any  # diffusers WanPipeline, whose attributes are registered at run time
    device: torch.device
    transformer_dtype: torch.dtype
    vae_dtype: torch.dtype
    # Prompt embeddings of recent renders, keyed by (prompt, negative prompt, guidance on).
    prompt_cache: collections.OrderedDict[tuple[str, str, bool], Any] = dataclasses.field(
        default_factory=collections.OrderedDict
    )


# Keyed by (model folder, device, transformer dtype, weight placement), because offloading
# hooks change the pipeline, so a model loaded for one placement cannot serve another.
_loaded: collections.OrderedDict[tuple[str, str, str, str], LoadedModel] = collections.OrderedDict()


def resolve_device(device: str) -> torch.device:
    """Turn ``auto`` into ``cuda`` when a GPU is present, else ``cpu``; pass other names through."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device} was requested but CUDA is not available. Use device cpu or auto.")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Return the transformer dtype: ``auto`` is bfloat16 on GPU and float32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def load_model(
    spec: str | ModelInfo, device: str = "auto", dtype: str = "auto", plan: MemoryPlan | None = None
) -> LoadedModel:
    """Load a model's pipeline onto ``device``, or return the one already loaded for the same arguments.

    The transformer uses ``dtype`` (bfloat16 on GPU by default). The VAE always runs in
    float32, and the text encoder follows the transformer on GPU and stays float32 on CPU.
    With ``plan``, ``apply_memory_plan`` places the weights as the plan specifies, offloading
    included, and sets FFN chunking. Without one, every component moves to ``device``. A
    pipeline loaded earlier for the same weight placement is reused, with the FFN chunking
    of ``plan`` set again.
    """
    info = spec if isinstance(spec, ModelInfo) else resolve_model(spec)
    torch_device = resolve_device(device)
    transformer_dtype = resolve_dtype(dtype, torch_device)
    placement = plan.weight_placement.value if plan is not None else _PLAIN_PLACEMENT
    key = (str(info.path or info.name), str(torch_device), str(transformer_dtype), placement)
    if key in _loaded:
        _loaded.move_to_end(key)
        loaded = _loaded[key]
        if plan is not None:
            _set_ffn_chunking(loaded.pipeline, plan)
        return loaded

    if _loaded:
        # Release the previous model before the next one needs its memory. Collecting now frees
        # tensors that only reference cycles keep alive, instead of at some later GC pass.
        _loaded.clear()
        gc.collect()
    folder = _installed_folder(info)
    logger.info(
        "Loading model %s from %s on %s (%s, weights: %s)",
        info.name,
        folder,
        torch_device,
        transformer_dtype,
        placement,
    )
    pipeline = _load_pipeline(folder, torch_device, transformer_dtype)
    _place_pipeline(pipeline, torch_device, plan)
    loaded = LoadedModel(info, pipeline, torch_device, transformer_dtype, pipeline.vae.dtype)
    _loaded[key] = loaded
    while len(_loaded) > MAX_LOADED_PIPELINES:
        _loaded.popitem(last=False)
    logger.info("Loaded model %s", info.name)
    return loaded


def _place_pipeline(pipeline: Any, device: torch.device, plan: MemoryPlan | None) -> None:
    if plan is None:
        pipeline.to(device)
        return
    from freeswim_engine.memory import apply_memory_plan

    apply_memory_plan(pipeline, plan, device)


def _set_ffn_chunking(pipeline: Any, plan: MemoryPlan) -> None:
    from freeswim_engine.memory import enable_ffn_chunking

    enable_ffn_chunking(pipeline.transformer, plan.ffn_chunk_size if plan.ffn_chunks > 1 else None)


def unload_models() -> None:
    """Drop every cached pipeline so that its memory can be freed."""
    _loaded.clear()


def _installed_folder(info: ModelInfo) -> Path:
    if info.source is ModelSource.DEMO:
        return demo_model.ensure_demo_checkpoint()
    ensure_installed(info)
    assert info.path is not None  # ensure_installed checked it
    return info.path


def _load_pipeline(folder: Path, device: torch.device, transformer_dtype: torch.dtype) -> Any:
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    text_encoder_dtype = transformer_dtype if device.type == "cuda" else torch.float32
    try:
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32)
        transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=transformer_dtype)
        text_encoder = UMT5EncoderModel.from_pretrained(folder / "text_encoder", dtype=text_encoder_dtype)
        pipeline = WanPipeline.from_pretrained(
            folder, vae=vae, transformer=transformer, text_encoder=text_encoder, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ModelLoadError(
            f"Failed to load the model in {folder}: {error}. Check that the folder is complete and was saved "
            "by diffusers' save_pretrained for a Wan pipeline."
        ) from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
