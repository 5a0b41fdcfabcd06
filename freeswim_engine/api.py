"""The engine's public API: render a request in two stages, upscale a video, and list models.

Front ends (the CLI, the desktop app's worker, the tests) build a RenderRequest and call
``render`` or ``upscale`` with callbacks for progress, previews and cancellation.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import torch

from freeswim_engine import __version__, pipeline, video_io
from freeswim_engine.cache_stores import open_cache_store
from freeswim_engine.errors import FreeSwimError, OutOfMemoryError, RenderCancelled
from freeswim_engine.intermediates import Stage1Cache, load_latents, save_latents
from freeswim_engine.latent_preview import preview_frames
from freeswim_engine.memory import (
    DeviceMemory,
    MemoryPlan,
    PlanOutOfMemoryError,
    classify_out_of_memory,
    plan_memory,
    read_device_memory,
)
from freeswim_engine.models import (
    LoadedModel,
    ModelInfo,
    ensure_installed,
    list_models,
    load_model,
    resolve_device,
    resolve_model,
)
from freeswim_engine.request import MAX_SEED, RenderRequest, stage2_step_count

logger = logging.getLogger(__name__)

__all__ = [
    "RenderCallbacks",
    "RenderResult",
    "Stage",
    "decode_latents_file",
    "list_models",
    "render",
    "resolve_model",
    "upscale",
]


class Stage(str, enum.Enum):
    """Phases of a render, in order; ``upscale`` skips ``stage1``."""

    LOADING = "loading"
    ENCODING_PROMPT = "encoding-prompt"
    STAGE1 = "stage1"
    UPSAMPLING = "upsampling"
    STAGE2 = "stage2"
    DECODING = "decoding"
    EXPORTING = "exporting"


@dataclasses.dataclass
class RenderCallbacks:
    """Hooks a front end passes to follow and stop a render. All run on the rendering thread."""

    on_stage: Callable[[Stage], None] | None = None
    on_progress: Callable[[Stage, int, int], None] | None = None  # (stage, step from 1, total steps)
    on_preview: Callable[[Stage, numpy.ndarray], None] | None = None  # uint8 (frames, height, width, 3)
    should_cancel: Callable[[], bool] | None = None  # checked at every step and between stages


@dataclasses.dataclass
class RenderResult:
    """Outputs and resolved settings of a finished render."""

    output_path: Path
    sidecar_path: Path
    seed: int
    request: RenderRequest  # with every default filled in, seed included
    base_video_path: Path | None  # stage-1 video at base size; None for upscale or without a work folder
    latents_path: Path | None
    peak_memory_bytes: int | None  # torch.cuda.max_memory_allocated on CUDA, else None
    seconds: float
    warnings: list[str]
    plan_summary: str | None = None  # MemoryPlan.explain() of the plan the render used


def render(
    request: RenderRequest,
    callbacks: RenderCallbacks | None = None,
    *,
    work_dir: Path | None = None,
    scratch_dir: Path | None = None,
    plan: MemoryPlan | None = None,
) -> RenderResult:
    """Render text to video in two stages, or upscale ``request.input_video`` when it is set.

    ``work_dir`` keeps stage 1's latents, its video (``base.mp4``) and a JSON key of its
    settings. A retry with the same stage-1 settings, a random seed included, skips stage 1.
    ``scratch_dir`` receives the cross-attention cache when the memory plan puts it on
    disk; None uses ``work_dir``, else the system's temporary folder. The cache files are
    removed when stage 2 ends, also on failure or cancellation. ``plan`` is a memory plan
    made for this request with ``plan_memory``; None plans from the machine's free memory
    before the weights load.

    Raises InvalidRequestError, ModelLoadError, PlanRejectedError (before any weights load),
    RenderCancelled (no file is left under the output name), NonFiniteLatentsError,
    OutOfMemoryError (a PlanOutOfMemoryError naming the plan and a more frugal one, once
    the plan exists) or ExportError.
    """
    if request.input_video is not None:
        return upscale(request, callbacks, work_dir=work_dir, scratch_dir=scratch_dir, plan=plan)
    return _Job(request, callbacks, work_dir, scratch_dir, plan).run("render", _render_steps)


def _render_steps(job: _Job) -> RenderResult:
    job.prepare()
    embeddings = job.encode_prompts()
    base_latents = job.stage1(embeddings)

    job.enter(Stage.UPSAMPLING)
    base_video = pipeline.decode_latents(job.model, base_latents, stage="stage-1", plan=job.plan)
    job.check_cancel()
    job.write_base_video(base_video)
    clean_latents = job.upsample_and_encode(base_video)
    del base_video

    return job.finish(job.stage2(embeddings, clean_latents))


def upscale(
    request: RenderRequest,
    callbacks: RenderCallbacks | None = None,
    *,
    work_dir: Path | None = None,
    scratch_dir: Path | None = None,
    plan: MemoryPlan | None = None,
) -> RenderResult:
    """Refine an existing video (an MP4 or a folder of PNG/JPEG frames) at the target size: stage 2 only.

    The frames are resized to (height, width). A clip whose frame count is not 4k+1 loses
    its last frames, with a warning that states how many. The input is read before the
    memory plan is made, so the plan counts the frames actually used. ``scratch_dir`` and
    ``plan`` work as in ``render``.
    """
    if request.input_video is None:
        raise ValueError("upscale() needs request.input_video; use render() for text-to-video")
    return _Job(request, callbacks, work_dir, scratch_dir, plan).run("upscale", _upscale_steps)


def _upscale_steps(job: _Job) -> RenderResult:
    job.enter(Stage.LOADING)
    job.resolve_request()
    frames = job.read_input_video()
    job.load()
    embeddings = job.encode_prompts()

    job.enter(Stage.UPSAMPLING)
    clean_latents = job.upsample_and_encode(pipeline.frames_to_video(frames, job.model.device))
    del frames

    return job.finish(job.stage2(embeddings, clean_latents))


def decode_latents_file(
    latents_path: Path, output_path: Path | None = None, *, device: str = "auto", codec: str = "h264", crf: int = 18
) -> Path:
    """Decode latents saved with ``save_latents`` to an MP4 with the model and fps recorded in the file.

    The MP4 goes to ``output_path``, or next to the latents file with the suffix ``.mp4``.
    """
    latents, metadata = load_latents(latents_path)
    model = load_model(metadata["model"], device=device, dtype="float32")
    video = pipeline.decode_latents(model, latents.to(model.device), stage="saved")
    target = output_path or latents_path.with_suffix(".mp4")
    settings = dict(metadata)
    settings["decoded_from"] = str(latents_path)
    path = video_io.write_mp4(pipeline.video_to_frames(video), target, metadata["fps"], codec, crf, settings)
    logger.info("Decoded %s to %s", latents_path, path)
    return path


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The resolved values of a request's optional fields, for code that needs them set."""

    num_frames: int
    fps: int
    num_inference_steps: int
    guidance_scale: float
    flow_shift: float
    base_height: int
    base_width: int
    seed: int
    output_path: Path

    @classmethod
    def of(cls, request: RenderRequest) -> _Settings:
        values = {field.name: getattr(request, field.name) for field in dataclasses.fields(cls)}
        unset = [name for name, value in values.items() if value is None]
        if unset:
            raise RuntimeError(f"request fields {unset} were not resolved before rendering")
        return cls(**values)


class _Job:
    """State of one render or upscale while it runs: the resolved request, the model and progress reporting."""

    def __init__(
        self,
        request: RenderRequest,
        callbacks: RenderCallbacks | None,
        work_dir: Path | None,
        scratch_dir: Path | None = None,
        plan: MemoryPlan | None = None,
    ) -> None:
        self.original = request
        self.request = request
        self.callbacks = callbacks or RenderCallbacks()
        self.work_dir = work_dir
        # DiskCacheStore makes its own subfolder here and deletes it, so the system's
        # temporary folder is safe to share.
        self.scratch_dir = scratch_dir or work_dir or Path(tempfile.gettempdir())
        self.given_plan = plan
        self._plan: MemoryPlan | None = None
        self.stage1_cache = Stage1Cache(work_dir) if work_dir is not None else None
        self.warnings: list[str] = []
        self.started = time.monotonic()
        self.stage: Stage | None = None
        self.info: ModelInfo | None = None
        self._model: LoadedModel | None = None
        self._settings: _Settings | None = None
        self.base_video_path: Path | None = None
        self.latents_path: Path | None = None

    @property
    def model(self) -> LoadedModel:
        assert self._model is not None, "prepare() loads the model first"
        return self._model

    @property
    def plan(self) -> MemoryPlan:
        assert self._plan is not None, "load() makes the memory plan first"
        return self._plan

    @property
    def settings(self) -> _Settings:
        assert self._settings is not None, "prepare() resolves the settings first"
        return self._settings

    @property
    def seed(self) -> int:
        return self.settings.seed

    def _update(self, **changes: Any) -> None:
        self.request = dataclasses.replace(self.request, **changes)
        self._settings = _Settings.of(self.request)

    # -- progress ------------------------------------------------------------------------------

    def enter(self, stage: Stage) -> None:
        self.check_cancel()
        self.stage = stage
        if self.callbacks.on_stage is not None:
            self.callbacks.on_stage(stage)

    def check_cancel(self) -> None:
        if self.callbacks.should_cancel is not None and self.callbacks.should_cancel():
            logger.info("Render cancelled during %s", self.stage.value if self.stage else "start-up")
            raise RenderCancelled(f"The render was cancelled during {self.stage.value if self.stage else 'start-up'}.")

    def step_callback(self, stage: Stage) -> pipeline.StepCallback:
        def on_step(step: int, total: int, clean_estimate: torch.Tensor) -> None:
            if self.callbacks.on_progress is not None:
                self.callbacks.on_progress(stage, step, total)
            if self.callbacks.on_preview is not None:
                self.callbacks.on_preview(stage, preview_frames(clean_estimate))
            self.check_cancel()

        return on_step

    def run(self, mode: str, steps: Callable[[_Job], RenderResult]) -> RenderResult:
        """Run ``steps`` on this job, log its start and any failure, and raise memory exhaustion as OutOfMemoryError."""
        logger.info("Starting %s of %r with model %s", mode, self.original.prompt[:80], self.original.model)
        try:
            return steps(self)
        except RenderCancelled:
            raise
        except Exception as error:
            out_of_memory = self._out_of_memory_error(error)
            if out_of_memory is not None:
                raise out_of_memory from error
            logger.error("The %s failed during %s: %s", mode, self._stage_name(), error)
            raise

    def _stage_name(self) -> str:
        return self.stage.value if self.stage else "start-up"

    def _out_of_memory_error(self, error: Exception) -> OutOfMemoryError | None:
        """Return the OutOfMemoryError to raise for ``error``, or None when it is not an out-of-memory error."""
        if isinstance(error, FreeSwimError):
            return None
        stage = self._stage_name()
        if self._plan is not None:
            classified = classify_out_of_memory(error, self._plan)
            if classified is not None:
                logger.error("Out of memory during %s: %s", stage, error)
                message = f"{classified} The render stopped during {stage}."
                return PlanOutOfMemoryError(message, classified.plan, classified.suggested_plan)
        if not isinstance(error, torch.cuda.OutOfMemoryError):
            return None
        # Before the plan exists, for example while the device is measured.
        logger.error("Out of GPU memory during %s: %s", stage, error)
        return OutOfMemoryError(
            f"The GPU ran out of memory during {stage} at {self.request.width}x{self.request.height}, "
            f"{self.request.num_frames} frames. Try a smaller size, fewer frames, method freeswim-cached "
            "with a larger cache interval, or device cpu."
        )

    # -- steps ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Validate the request, fill in defaults, plan memory, load the model and choose the seed."""
        self.enter(Stage.LOADING)
        self.resolve_request()
        self.load()

    def resolve_request(self) -> None:
        """Validate the request against the model and fill in the model's defaults. Loads no weights."""
        self.info = resolve_model(self.original.model)
        self.warnings.extend(self.original.validate(self.info))
        for warning in self.warnings:
            logger.warning("%s", warning)
        self.request = self.original.with_defaults(self.info.preset)

    def load(self) -> None:
        """Plan memory, load the model as the plan places it, and choose the seed and output path.

        PlanRejectedError from the planner stops the render here, before any weights load.
        """
        assert self.info is not None, "resolve_request() resolves the model first"
        # Both checks take seconds, and each would otherwise fail only after loading or rendering.
        ensure_installed(self.info)
        self._check_output_folder()
        device = resolve_device(self.request.device)
        self._plan = self._memory_plan(self.info, device)
        self._model = load_model(self.info, self.request.device, self.request.dtype, plan=self._plan)
        if self.model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.model.device)
        seed = self._choose_seed()
        self.request = dataclasses.replace(self.request, seed=seed)
        self._update(output_path=self._output_path())

    def _check_output_folder(self) -> None:
        if self.original.output_path is not None:
            video_io.check_output_path(self.original.output_path)
        elif self.work_dir is not None:
            video_io.check_output_path(self.work_dir / "output-check.mp4")

    def _memory_plan(self, info: ModelInfo, device: torch.device) -> MemoryPlan:
        plan = self.given_plan
        if plan is None:
            # plan_memory logs the plan's summary.
            return plan_memory(self.request, info, self._read_free_memory(device))
        if plan.device.is_cuda != (device.type == "cuda"):
            raise ValueError(
                f"The memory plan was made for a {plan.device.device_type} device, but the request runs on "
                f"{device}. Make the plan with plan_memory for this request, or pass plan=None."
            )
        logger.info("Using the given memory plan for %s: %s", plan.model_name, plan.summary())
        return plan

    def _read_free_memory(self, device: torch.device) -> DeviceMemory:
        memory = read_device_memory(device, scratch_dir=self.scratch_dir)
        if device.type != "cuda":
            return memory
        # The driver counts what this process already holds as used: the model loaded by an
        # earlier render and the caching allocator's free blocks. All of it serves this render,
        # because load_model either reuses that model or releases it before loading another.
        # NOTE: this assumes nothing but the loaded model outlives a render on the GPU.
        reserved = torch.cuda.memory_reserved(device)
        free = min(memory.total_vram_bytes, memory.free_vram_bytes + reserved)
        return dataclasses.replace(memory, free_vram_bytes=free)

    def _choose_seed(self) -> int:
        if self.request.seed is not None:
            return self.request.seed
        seed = None
        if self.stage1_cache is not None and self.request.input_video is None:
            seed = self.stage1_cache.previous_seed(self._stage1_key(seed=None))
            if seed is not None:
                logger.info("Reusing seed %d of the stage 1 saved in %s", seed, self.work_dir)
        if seed is None:
            seed = secrets.randbelow(MAX_SEED + 1)
            logger.info("No seed given; chose random seed %d", seed)
        return seed

    def _output_path(self) -> Path:
        if self.request.output_path is not None:
            return video_io.mp4_path_for(self.request.output_path)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"freeswim-{stamp}-{self.request.seed}.mp4"
        path = (self.work_dir or Path.cwd()) / name
        logger.info("No output path given; writing %s", path)
        return path

    def encode_prompts(self) -> pipeline.PromptEmbeddings:
        self.enter(Stage.ENCODING_PROMPT)
        return pipeline.encode_prompts(
            self.model, self.request.prompt, self.request.negative_prompt, self.settings.guidance_scale
        )

    def stage1(self, embeddings: pipeline.PromptEmbeddings) -> torch.Tensor:
        self.enter(Stage.STAGE1)
        key = self._stage1_key(seed=self.seed)
        if self.stage1_cache is not None:
            cached = self.stage1_cache.load(key)
            if cached is not None:
                logger.info("Reusing stage 1 from %s; skipping its %s steps", self.work_dir, self.request.num_inference_steps)
                return cached.to(self.model.device)

        settings = self.settings
        logger.info(
            "Stage 1: %dx%d, %d frames, %d steps",
            settings.base_width,
            settings.base_height,
            settings.num_frames,
            settings.num_inference_steps,
        )
        latents = pipeline.run_stage1(
            self.model,
            embeddings,
            height=settings.base_height,
            width=settings.base_width,
            num_frames=settings.num_frames,
            num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale,
            flow_shift=self.model.info.preset.stage1_flow_shift,
            generator=pipeline.make_generator(self.seed),
            on_step=self.step_callback(Stage.STAGE1),
        )
        if self.stage1_cache is not None:
            self.stage1_cache.store(key, latents)
        return latents

    def _stage1_key(self, seed: int | None) -> dict[str, Any]:
        """Return every setting that changes stage 1's latents, so a retry reuses them only when all match."""
        request = self.request
        info = self.model.info
        key: dict[str, Any] = {
            "model": info.name,
            "model_path": str(info.path),
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "base_height": request.base_height,
            "base_width": request.base_width,
            "num_frames": request.num_frames,
            "num_inference_steps": request.num_inference_steps,
            "guidance_scale": request.guidance_scale,
            "flow_shift": info.preset.stage1_flow_shift,
            "device_type": self.model.device.type,
            "dtype": str(self.model.transformer_dtype),
        }
        if seed is not None:
            key["seed"] = seed
        return key

    def write_base_video(self, base_video: torch.Tensor) -> None:
        if self.stage1_cache is None:
            return
        frames = pipeline.video_to_frames(base_video)
        metadata = {**self._metadata(), "stage": "stage1"}
        self.base_video_path = video_io.write_mp4(
            frames, self.stage1_cache.video_path, self.settings.fps, self.request.codec, self.request.crf, metadata
        )

    def read_input_video(self) -> numpy.ndarray:
        """Read the input video, trim it to 4k+1 frames and record the frame count and fps used.

        Runs after ``resolve_request`` and before ``load``, so no weights are loaded yet.
        """
        assert self.info is not None, "resolve_request() resolves the model first"
        source = self.original.input_video
        if source is None:
            raise ValueError("read_input_video() needs request.input_video")
        limit = self.original.num_frames
        frames, source_fps = video_io.read_video(source, max_frames=limit)
        if limit is not None and len(frames) < limit:
            self._warn(f"The input has only {len(frames)} frames, fewer than the {limit} requested; using what it has.")
        usable = (len(frames) - 1) // 4 * 4 + 1
        if usable < len(frames):
            dropped = len(frames) - usable
            self._warn(
                f"The input has {len(frames)} frames, which is not 4k+1; dropped the last {dropped} "
                f"frame{'s' if dropped != 1 else ''} and kept {usable}."
            )
            frames = frames[:usable]

        fps = self.original.fps or (round(source_fps) if source_fps else None) or self.info.preset.fps
        if self.original.fps is None and source_fps is None:
            self._warn(f"The input states no frame rate; exporting at the model's {fps} fps.")
        source_height, source_width = frames.shape[1:3]
        if abs(source_width / source_height - self.request.width / self.request.height) > 0.01:
            self._warn(
                f"The input is {source_width}x{source_height}, another aspect ratio than the target "
                f"{self.request.width}x{self.request.height}, so it is stretched."
            )
        self.request = dataclasses.replace(self.request, num_frames=len(frames), fps=int(fps))
        logger.info("Upscaling %s: %d frames of %dx%d", source, len(frames), source_width, source_height)
        return frames

    def _warn(self, message: str) -> None:
        logger.warning("%s", message)
        self.warnings.append(message)

    def upsample_and_encode(self, video: torch.Tensor) -> torch.Tensor:
        resized = pipeline.resize_video(video, self.request.height, self.request.width)
        # NOTE: cancellation is checked before and after each VAE call but not inside one, which
        # takes minutes at 4K on a CPU.
        self.check_cancel()
        return pipeline.encode_video(self.model, resized, plan=self.plan)

    def stage2(self, embeddings: pipeline.PromptEmbeddings, clean_latents: torch.Tensor) -> torch.Tensor:
        self.enter(Stage.STAGE2)
        request = self.request
        settings = self.settings
        logger.info(
            "Stage 2: %dx%d, %d of %d steps, method %s",
            request.width,
            request.height,
            stage2_step_count(settings.num_inference_steps, request.strength),
            settings.num_inference_steps,
            request.method,
        )
        # The store deletes a disk cache's files on exit, also when a step raises RenderCancelled.
        with open_cache_store(self.plan.cache_placement, self.scratch_dir) as cache_store:
            latents = pipeline.run_stage2(
                self.model,
                embeddings,
                clean_latents,
                num_inference_steps=settings.num_inference_steps,
                strength=request.strength,
                guidance_scale=settings.guidance_scale,
                flow_shift=settings.flow_shift,
                method=request.method,
                cache_interval=request.cache_interval,
                base_size=(settings.base_height, settings.base_width),
                # A generator apart from stage 1's, so that stage 2's noise is the same whether stage 1
                # ran or was reused.
                generator=pipeline.make_generator((self.seed + 1) % (MAX_SEED + 1)),
                cache_store=cache_store,
                on_step=self.step_callback(Stage.STAGE2),
            )
        if request.save_latents is not None:
            self.latents_path = save_latents(request.save_latents, latents, self._metadata())
            logger.info("Saved the final latents to %s", self.latents_path)
        return latents

    def finish(self, latents: torch.Tensor) -> RenderResult:
        """Decode the final latents, export the MP4 and build the result."""
        self.enter(Stage.DECODING)
        frames = pipeline.video_to_frames(pipeline.decode_latents(self.model, latents, stage="stage-2", plan=self.plan))

        self.enter(Stage.EXPORTING)
        request = self.request
        output = video_io.write_mp4(
            frames, self.settings.output_path, self.settings.fps, request.codec, request.crf, self._metadata()
        )
        seconds = time.monotonic() - self.started
        peak = torch.cuda.max_memory_allocated(self.model.device) if self.model.device.type == "cuda" else None
        logger.info("Finished %s in %.1f s", output, seconds)
        return RenderResult(
            output_path=output,
            sidecar_path=video_io.sidecar_path_for(output),
            seed=self.seed,
            request=request,
            base_video_path=self.base_video_path,
            latents_path=self.latents_path,
            peak_memory_bytes=peak,
            seconds=seconds,
            warnings=self.warnings,
            plan_summary=self.plan.explain(),
        )

    def _metadata(self) -> dict[str, Any]:
        """Return what the MP4 and latents files record: prompt, seed, model and every setting."""
        request = self.request
        info = self.model.info
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "model": info.name,
            "model_path": str(info.path),
            "mode": "upscale" if request.input_video is not None else "render",
            "width": request.width,
            "height": request.height,
            "num_frames": request.num_frames,
            "fps": request.fps,
            "stage2_steps": stage2_step_count(request.num_inference_steps or 0, request.strength),
            "device": str(self.model.device),
            "transformer_dtype": str(self.model.transformer_dtype),
            "engine_version": __version__,
            "request": request.to_dict(),
        }
