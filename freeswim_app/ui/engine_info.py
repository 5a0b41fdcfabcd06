"""Engine information for the widgets: installed models, model figures, memory plans and versions.

The engine's model listing and memory planning are optional here: when a module or
function is missing the widgets show that the information is not available instead
of failing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import threading
from typing import Any, NamedTuple

from PySide6.QtCore import QObject, Signal

from freeswim_engine.errors import FreeSwimError

logger = logging.getLogger(__name__)


def _models_module() -> Any:
    """Return the engine module with list_models and resolve_model.

    ``freeswim_engine.models`` comes first because it does not import torch, which takes
    seconds and would hold up the window; ``api`` re-exports the same functions.
    """
    for name in ("freeswim_engine.models", "freeswim_engine.api"):
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            logger.debug("%s not available: %s", name, error)
            continue
        if hasattr(module, "list_models") and hasattr(module, "resolve_model"):
            return module
    return None


def listed_models() -> list[tuple[str, str, bool]]:
    """Return (model spec, label, is installed) for each model the engine lists; empty without that API."""
    module = _models_module()
    if module is None:
        return []
    try:
        infos = module.list_models()
    except (FreeSwimError, OSError) as error:
        logger.warning("Listing installed models failed: %s", error)
        return []
    return [(str(info.name), str(info.label), bool(getattr(info, "is_installed", False))) for info in infos]


@functools.lru_cache(maxsize=16)
def model_info(spec: str) -> Any:
    """Return the engine's ModelInfo for `spec` (no weights loaded), or None when resolving fails."""
    module = _models_module()
    if module is None:
        return None
    try:
        return module.resolve_model(spec)
    except (FreeSwimError, OSError, ValueError) as error:
        logger.info("Cannot resolve model %s: %s", spec, error)
        return None


def is_model_usable(spec: str) -> bool:
    """True when ``spec`` can render now: an installed model, or the demo model, which is built on first use.

    Also True when the engine has no model API to ask, so that a broken install does not hide the choice.
    """
    if _models_module() is None:
        return True
    info = model_info(spec)
    if info is None:
        return False
    return bool(getattr(info, "is_installed", False) or getattr(info, "is_demo", False))


def install_hint(spec: str) -> str:
    """Return a sentence saying that ``spec`` is not installed and how to install it, from the engine's ModelInfo."""
    info = model_info(spec)
    if info is None:
        return f"Model {spec} was not found: it is not a preset, an existing folder or a cached repo id."
    label = str(getattr(info, "label", spec))
    download_hint = getattr(_models_module(), "download_hint", None)
    repo_id = getattr(info, "repo_id", None)
    if callable(download_hint) and repo_id:
        install_step = str(download_hint(repo_id))
    else:
        install_step = "put its diffusers folder in the Hugging Face cache"
    return f"{label} is not installed: {install_step}. `freeswim models` lists the installed models."


def memory_plan_summary(request: Any, info: Any) -> str | None:
    """Return the memory plan in words for `request`, or None when the engine has no planner."""
    try:
        memory = importlib.import_module("freeswim_engine.memory")
    except ImportError:
        return None
    plan_memory = getattr(memory, "plan_memory", None)
    if plan_memory is None:
        return None
    try:
        device_memory = _device_memory(request.device)
        preset = getattr(info, "preset", None) or info or _preset_for(request.model)
        if preset is None:
            return None
        plan = plan_memory(request, preset, device_memory)
    except FreeSwimError as error:
        return str(error)
    except (OSError, RuntimeError, ValueError, TypeError) as error:
        logger.warning("Memory planning failed for %s: %s", request.model, error)
        return None
    explain = getattr(plan, "explain", None)
    return str(explain()) if callable(explain) else str(plan)


class RequestAnalysis(NamedTuple):
    """Results of the slow checks of one request, computed off the GUI thread."""

    generation: int
    prompt_tokens: int | None  # counted by the model's tokenizer; None without one
    negative_prompt_tokens: int | None
    warnings: list[str] | None  # RenderRequest.validate warnings with exact token counts; None without a tokenizer
    plan: str | None  # memory plan text; None for an invalid request or without a planner


class RequestAnalysisWorker(QObject):
    """Counts prompt tokens with the model's tokenizer and plans memory in a background thread.

    Both import torch or transformers and read files or the device, which takes seconds the
    first time. Only the newest request is analysed, and `analysis_ready` carries its
    generation number so that the caller can drop results of older requests.
    """

    analysis_ready = Signal(object)  # RequestAnalysis

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._condition = threading.Condition()
        self._pending: tuple[int, Any, Any, bool] | None = None
        self._is_stopped = False
        self._thread = threading.Thread(target=self._run, name="request-analysis", daemon=True)
        self._thread.start()

    def analyse(self, generation: int, request: Any, info: Any, is_valid: bool) -> None:
        """Queue `request` (a RenderRequest) for analysis; `is_valid` sets whether to plan its memory."""
        with self._condition:
            self._pending = (generation, request, info, is_valid)
            self._condition.notify()

    def stop(self) -> None:
        with self._condition:
            self._is_stopped = True
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._is_stopped:
                    self._condition.wait()
                if self._is_stopped:
                    return
                pending, self._pending = self._pending, None
            if pending is None:
                continue
            analysis = analyse_request(*pending)
            try:
                self.analysis_ready.emit(analysis)
            except RuntimeError:
                return  # the editor that owned this worker was deleted


def analyse_request(generation: int, request: Any, info: Any, is_valid: bool) -> RequestAnalysis:
    """Count tokens with the model's tokenizer (when installed) and plan memory (when `is_valid`)."""
    from freeswim_engine.request import count_prompt_tokens

    tokenizer_path = getattr(info, "tokenizer_path", None)
    prompt_tokens = negative_tokens = None
    warnings = None
    if tokenizer_path is not None:
        prompt_count, prompt_is_estimate = count_prompt_tokens(request.prompt, tokenizer_path)
        negative_count, negative_is_estimate = count_prompt_tokens(request.negative_prompt, tokenizer_path)
        if not (prompt_is_estimate or negative_is_estimate):
            prompt_tokens, negative_tokens = prompt_count, negative_count
            if is_valid:
                try:
                    warnings = request.validate(info)
                except FreeSwimError as error:
                    logger.info("Validation with the tokenizer failed: %s", error)
    plan = memory_plan_summary(request, info) if is_valid else None
    return RequestAnalysis(generation, prompt_tokens, negative_tokens, warnings, plan)


@functools.lru_cache(maxsize=4)
def _device_memory(device: str) -> Any:
    memory = importlib.import_module("freeswim_engine.memory")
    read_device_memory = getattr(memory, "read_device_memory", None)
    if read_device_memory is None:
        read_device_memory = importlib.import_module("freeswim_engine.memory.device").read_device_memory
    return read_device_memory(device)


def _preset_for(model: str) -> Any:
    from freeswim_engine.presets import PRESETS

    if model in PRESETS:
        return PRESETS[model]
    if model == "demo":
        from freeswim_engine.demo_model import DEMO_PRESET

        return DEMO_PRESET
    return None


def package_versions() -> dict[str, str]:
    """Return the versions of the packages the About box lists; missing ones read "not installed"."""
    versions = {}
    for name in ("freeswim-studio", "torch", "diffusers", "transformers", "PySide6", "numpy", "imageio-ffmpeg"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = _module_version(name)
    return versions


def _module_version(name: str) -> str:
    module_name = {"freeswim-studio": "freeswim_app", "imageio-ffmpeg": "imageio_ffmpeg"}.get(name, name)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))


def device_description() -> str:
    """Describe the compute device torch reports, for example ``NVIDIA H100 (80.0 GiB, CUDA 12.8)``."""
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        gib = properties.total_memory / 1024**3
        return f"{properties.name} ({gib:.1f} GiB, CUDA {torch.version.cuda}), {torch.cuda.device_count()} GPU(s)"
    return "CPU only (no CUDA device found)"
