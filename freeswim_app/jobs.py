"""Render jobs: one queued request, its state, progress and result.

A job stores its render request as a plain dict (``RenderRequest.to_dict()``),
so this module and the project file never import the engine. The worker turns
the dict back into a ``RenderRequest`` with ``from_dict`` when the job runs,
which also fills fields that an older project file lacks with their defaults.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QCoreApplication

T = TypeVar("T")


class JobState(str, enum.Enum):
    """Lifecycle state of a job, stored in ``project.json`` by value."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the app closed or crashed while the job was running

    @property
    def is_finished(self) -> bool:
        """True for states that the worker will not change again without a retry."""
        return self not in (JobState.QUEUED, JobState.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self in (JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)

    @property
    def label(self) -> str:
        """The state's display name, translated in the Qt context "JobState"."""
        labels = {
            JobState.QUEUED: QCoreApplication.translate("JobState", "Queued"),
            JobState.RUNNING: QCoreApplication.translate("JobState", "Running"),
            JobState.DONE: QCoreApplication.translate("JobState", "Done"),
            JobState.FAILED: QCoreApplication.translate("JobState", "Failed"),
            JobState.CANCELLED: QCoreApplication.translate("JobState", "Cancelled"),
            JobState.INTERRUPTED: QCoreApplication.translate("JobState", "Interrupted"),
        }
        return labels[self]


class JobKind(str, enum.Enum):
    """Kind of engine run a job makes: text-to-video render or upscale."""

    RENDER = "render"  # text to video: stage 1 at the base size, then stage 2 at the target size
    UPSCALE = "upscale"  # stage 2 only, from ``request["input_video"]``


@dataclasses.dataclass
class JobProgress:
    """Progress of a running job; kept in memory only, never written to the project file."""

    stage: str | None = None  # freeswim_engine.api.Stage value, for example "stage2"
    step: int = 0  # 1-based step within the stage; 0 before the first step
    total: int = 0  # steps in the stage; 0 when the stage has no steps
    eta_seconds: float | None = None  # estimate of the seconds left in the current stage

    @property
    def fraction(self) -> float:
        """Share of the current stage that is done, from 0.0 to 1.0."""
        if self.total <= 0:
            return 0.0
        return min(1.0, self.step / self.total)


@dataclasses.dataclass
class JobResult:
    """Outputs of a finished render, with absolute paths in memory."""

    output_path: Path | None = None  # the MP4
    sidecar_path: Path | None = None  # JSON with the resolved request next to the MP4
    base_video_path: Path | None = None  # stage-1 video at the base size; None for upscale jobs
    latents_path: Path | None = None
    seed: int | None = None  # the seed the render used, also when the request left it empty
    peak_memory_bytes: int | None = None  # CUDA peak allocation; None on CPU
    seconds: float | None = None  # wall time of the render
    warnings: list[str] = dataclasses.field(default_factory=list)
    plan_summary: str | None = None  # memory plan in words, when the engine made one
    # The engine's request with every default filled in (seed, frames, steps). The job's own
    # request keeps what the user entered, so a duplicate of a random-seed job gets a new seed.
    resolved_request: dict[str, Any] | None = None


@dataclasses.dataclass
class Job:
    """One entry of the render queue."""

    request: dict[str, Any]  # RenderRequest.to_dict(), JSON-safe (paths as strings)
    kind: JobKind = JobKind.RENDER
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    state: JobState = JobState.QUEUED
    progress: JobProgress = dataclasses.field(default_factory=JobProgress)
    result: JobResult = dataclasses.field(default_factory=JobResult)
    error: str | None = None  # message shown to the user when the job failed
    created_at: float = dataclasses.field(default_factory=time.time)  # seconds since the epoch
    started_at: float | None = None
    finished_at: float | None = None
    thumbnail_path: Path | None = None  # PNG of the output's middle frame, written after the job is done
    source_job_id: str | None = None  # the render an "upscale this" job was made from

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def prompt(self) -> str:
        return str(self.request.get("prompt", ""))

    @property
    def size(self) -> tuple[int, int] | None:
        """Target (width, height) in pixels, or None when the request does not set both."""
        width = self.request.get("width")
        height = self.request.get("height")
        if isinstance(width, int) and isinstance(height, int):
            return (width, height)
        return None

    @property
    def input_video(self) -> Path | None:
        value = self.request.get("input_video")
        return Path(value) if value else None

    def describe(self) -> str:
        """Return a short label for messages, for example ``job 1a2b3c4d ("a fox in snow")``."""
        prompt = self.prompt if len(self.prompt) <= 40 else self.prompt[:37] + "..."
        return f'job {self.short_id} ("{prompt}")'

    def reset_for_retry(self) -> None:
        """Put the job back in the queue, keeping its id so its work folder (stage-1 results) is reused."""
        self.state = JobState.QUEUED
        self.progress = JobProgress()
        self.result = JobResult()
        self.error = None
        self.started_at = None
        self.finished_at = None
        self.thumbnail_path = None

    def to_dict(self, base_dir: Path | None = None) -> dict[str, Any]:
        """Return the job as JSON-safe data; paths under ``base_dir`` are stored relative to it."""
        result = self.result
        return {
            "id": self.id,
            "kind": self.kind.value,
            "state": self.state.value,
            "request": jsonable(self.request),
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "thumbnail_path": _store_path(self.thumbnail_path, base_dir),
            "source_job_id": self.source_job_id,
            "result": {
                "output_path": _store_path(result.output_path, base_dir),
                "sidecar_path": _store_path(result.sidecar_path, base_dir),
                "base_video_path": _store_path(result.base_video_path, base_dir),
                "latents_path": _store_path(result.latents_path, base_dir),
                "seed": result.seed,
                "peak_memory_bytes": result.peak_memory_bytes,
                "seconds": result.seconds,
                "warnings": list(result.warnings),
                "plan_summary": result.plan_summary,
                "resolved_request": jsonable(result.resolved_request),
            },
        }

    @classmethod
    def from_dict(cls, data: Any, base_dir: Path | None = None) -> Job:
        """Build a job from ``to_dict`` output.

        Missing fields take their defaults and unknown fields are ignored, so
        project files from other versions load. A field of the wrong type, or
        an unknown state or kind, raises ``ValueError`` naming the field.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a job entry should be a JSON object, got {type(data).__name__}")
        request = _field(data, "request", dict, {})
        result_data = _field(data, "result", dict, {})
        job_id = _field(data, "id", str, "") or uuid.uuid4().hex
        job = cls(
            request=dict(request),
            kind=_enum_field(data, "kind", JobKind, JobKind.RENDER),
            id=job_id,
            state=_enum_field(data, "state", JobState, JobState.QUEUED),
            error=_field(data, "error", str, None),
            created_at=_number_field(data, "created_at", None) or time.time(),
            started_at=_number_field(data, "started_at", None),
            finished_at=_number_field(data, "finished_at", None),
            thumbnail_path=_load_path(_field(data, "thumbnail_path", str, None), base_dir),
            source_job_id=_field(data, "source_job_id", str, None),
        )
        job.result = JobResult(
            output_path=_load_path(_field(result_data, "output_path", str, None), base_dir),
            sidecar_path=_load_path(_field(result_data, "sidecar_path", str, None), base_dir),
            base_video_path=_load_path(_field(result_data, "base_video_path", str, None), base_dir),
            latents_path=_load_path(_field(result_data, "latents_path", str, None), base_dir),
            seed=_field(result_data, "seed", int, None),
            peak_memory_bytes=_field(result_data, "peak_memory_bytes", int, None),
            seconds=_number_field(result_data, "seconds", None),
            warnings=[str(w) for w in _field(result_data, "warnings", list, [])],
            plan_summary=_field(result_data, "plan_summary", str, None),
            resolved_request=_field(result_data, "resolved_request", dict, None),
        )
        return job


def jsonable(value: Any) -> Any:
    """Return ``value`` with paths turned into strings and tuples into lists, recursively."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _store_path(path: Path | None, base_dir: Path | None) -> str | None:
    # Relative paths keep a project usable after its folder is moved or copied.
    if path is None:
        return None
    if base_dir is not None:
        try:
            return Path(path).relative_to(base_dir).as_posix()
        except ValueError:
            pass
    return str(path)


def _load_path(value: str | None, base_dir: Path | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if base_dir is not None and not path.is_absolute():
        return base_dir / path
    return path


def _field(data: dict[str, Any], key: str, expected: type[T], default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    # bool is an int subclass, but True is never a valid seed or byte count.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"field {key!r} should be {expected.__name__}, got {value!r}")
    return value


def _number_field(data: dict[str, Any], key: str, default: float | None) -> float | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"field {key!r} should be a number, got {value!r}")
    return float(value)


E = TypeVar("E", bound=enum.Enum)


def _enum_field(data: dict[str, Any], key: str, kind: type[E], default: E) -> E:
    value = data.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise ValueError(f"field {key!r} is {value!r}, expected one of: {choices}") from None
