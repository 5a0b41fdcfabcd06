"""The engine worker thread and the runner that feeds it jobs from the queue.

``EngineWorker`` is a QObject moved to its own QThread. It imports the engine
(torch, diffusers) on that thread when the first job runs, so the window opens
without waiting for them. It renders one job at a time and reports through
signals that carry NamedTuples of plain data (numpy arrays for previews, never
QImages), so only the GUI thread builds images and touches widgets.

``RenderRunner`` lives on the GUI thread. It takes the next queued job when
the queue is started and the worker is free, records what the worker reports
in the ``JobQueue``, and stops the thread cleanly on ``shutdown()``.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread, QTimer, Signal, Slot

from freeswim_app.jobs import JobKind, JobProgress, JobResult, JobState, jsonable
from freeswim_app.queue_model import JobQueue
from freeswim_engine.errors import FreeSwimError, RenderCancelled

logger = logging.getLogger(__name__)

MAX_PREVIEW_FRAMES = 16  # frames of a preview sent to the GUI thread, evenly spaced over the clip
THUMBNAIL_WIDTH = 320  # pixels; the height follows the aspect ratio
THUMBNAIL_FILE = "thumbnail.png"
THUMBNAIL_TIMEOUT_S = 60

EngineLoader = Callable[[], ModuleType]


class RenderTask(NamedTuple):
    """One job as the worker receives it: a copy, so the GUI thread may change the job meanwhile."""

    job_id: str
    kind: str  # JobKind value
    request: dict[str, Any]  # RenderRequest.to_dict()
    work_dir: str  # the job's folder for stage-1 intermediates
    outputs_dir: str  # where the MP4 goes when the request names no output_path
    want_previews: bool
    preview_every_steps: int = 1  # send the previews of every Nth denoising step and of the last one
    copy_dir: str | None = None  # folder that also receives the finished MP4 and its sidecar
    scratch_dir: str | None = None  # folder for a disk cross-attention cache; None: the engine's default, work_dir


class ProgressMessage(NamedTuple):
    job_id: str
    stage: str  # freeswim_engine.api.Stage value
    step: int  # 1-based; 0 when a stage starts
    total: int  # steps in the stage; 0 for stages without steps
    eta_seconds: float | None  # estimate of the seconds left in this stage


class PreviewMessage(NamedTuple):
    job_id: str
    stage: str
    frames: numpy.ndarray  # uint8 (frames, height, width, 3) RGB, a copy owned by the message


class FinishedMessage(NamedTuple):
    job_id: str
    result: JobResult
    thumbnail_path: str | None
    finished_at: float


class StoppedMessage(NamedTuple):
    """A job that ended without a video."""

    job_id: str
    state: JobState  # FAILED, CANCELLED or INTERRUPTED
    message: str
    finished_at: float


def load_engine() -> ModuleType:
    """Import ``freeswim_engine.api``; called on the worker thread because it imports torch."""
    return importlib.import_module("freeswim_engine.api")


class EngineWorker(QObject):
    """Renders the tasks it receives, one at a time, on the thread it was moved to."""

    job_started = Signal(str)  # job id
    progress_changed = Signal(object)  # ProgressMessage
    preview_ready = Signal(object)  # PreviewMessage
    job_finished = Signal(object)  # FinishedMessage
    job_stopped = Signal(object)  # StoppedMessage

    def __init__(self, engine_loader: EngineLoader = load_engine) -> None:
        super().__init__()
        self._engine_loader = engine_loader
        self._lock = threading.Lock()
        self._stop_requests: dict[str, JobState] = {}  # job id -> state to end in

    def request_stop(self, job_id: str, state: JobState = JobState.CANCELLED) -> None:
        """Ask the render of ``job_id`` to stop at its next step; safe to call from any thread.

        The first request wins, so a cancel followed by closing the app still ends as cancelled.
        """
        with self._lock:
            self._stop_requests.setdefault(job_id, state)

    def _stop_state(self, job_id: str) -> JobState | None:
        with self._lock:
            return self._stop_requests.get(job_id)

    @Slot(object)
    def run_task(self, task: RenderTask) -> None:
        """Render one task and emit ``job_finished`` or ``job_stopped``; any Exception becomes a failed job."""
        self.job_started.emit(task.job_id)
        try:
            message: FinishedMessage | StoppedMessage = self._render(task)
        except RenderCancelled:
            state = self._stop_state(task.job_id) or JobState.CANCELLED
            logger.info("Job %s stopped: %s", task.job_id, state.value)
            text = "Cancelled." if state is JobState.CANCELLED else "The app closed while this job was running."
            message = StoppedMessage(task.job_id, state, text, time.time())
        except FreeSwimError as error:
            logger.error("Job %s failed: %s", task.job_id, error, exc_info=True)
            message = StoppedMessage(task.job_id, JobState.FAILED, str(error), time.time())
        except Exception as error:  # noqa: BLE001 (any bug in a render must fail the job, not the app)
            logger.exception("Job %s failed with an unexpected error", task.job_id)
            text = (
                f"Unexpected error: {type(error).__name__}: {error}. "
                "The log file has the traceback; please report it with the log."
            )
            message = StoppedMessage(task.job_id, JobState.FAILED, text, time.time())
        with self._lock:
            self._stop_requests.pop(task.job_id, None)
        if isinstance(message, FinishedMessage):
            self.job_finished.emit(message)
        else:
            self.job_stopped.emit(message)

    def _render(self, task: RenderTask) -> FinishedMessage:
        api = self._engine_loader()
        from freeswim_engine.request import RenderRequest

        request = RenderRequest.from_dict(task.request)
        if request.output_path is None:
            request.output_path = output_path_for(Path(task.outputs_dir), task.job_id, request.prompt)
        work_dir = Path(task.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        callbacks = self._callbacks(api, task)

        options: dict[str, Any] = {"work_dir": work_dir}
        if task.scratch_dir:
            options["scratch_dir"] = Path(task.scratch_dir)

        logger.info("Job %s: rendering %s to %s", task.job_id, task.kind, request.output_path)
        if task.kind == JobKind.UPSCALE.value:
            result = api.upscale(request, callbacks, **options)
        else:
            result = api.render(request, callbacks, **options)
        logger.info("Job %s: wrote %s in %.1f s", task.job_id, result.output_path, result.seconds)
        warnings = list(result.warnings)
        if task.copy_dir:
            copy_warning = copy_output(Path(result.output_path), Path(result.sidecar_path), Path(task.copy_dir))
            if copy_warning:
                warnings.append(copy_warning)

        resolved = jsonable(result.request.to_dict())
        thumbnail = write_thumbnail(Path(result.output_path), work_dir / THUMBNAIL_FILE, resolved)
        job_result = JobResult(
            output_path=Path(result.output_path),
            sidecar_path=Path(result.sidecar_path) if result.sidecar_path else None,
            base_video_path=Path(result.base_video_path) if result.base_video_path else None,
            latents_path=Path(result.latents_path) if result.latents_path else None,
            seed=result.seed,
            peak_memory_bytes=result.peak_memory_bytes,
            seconds=result.seconds,
            warnings=warnings,
            plan_summary=result.plan_summary,
            resolved_request=resolved,
        )
        return FinishedMessage(task.job_id, job_result, str(thumbnail) if thumbnail else None, time.time())

    def _callbacks(self, api: ModuleType, task: RenderTask) -> Any:
        clock = _StageClock()
        every = max(1, task.preview_every_steps)

        def on_stage(stage: Any) -> None:
            clock.start(str(_value(stage)))
            self.progress_changed.emit(ProgressMessage(task.job_id, str(_value(stage)), 0, 0, None))

        def on_progress(stage: Any, step: int, total: int) -> None:
            eta = clock.estimate(str(_value(stage)), step, total)
            clock.step, clock.total = step, total
            self.progress_changed.emit(ProgressMessage(task.job_id, str(_value(stage)), step, total, eta))

        def on_preview(stage: Any, frames: numpy.ndarray) -> None:
            # The engine reports a step's progress before its preview, so the clock holds this step.
            if clock.step % every != 0 and clock.step != clock.total:
                return
            self.preview_ready.emit(PreviewMessage(task.job_id, str(_value(stage)), preview_frames(frames)))

        def should_cancel() -> bool:
            return self._stop_state(task.job_id) is not None

        return api.RenderCallbacks(
            on_stage=on_stage,
            on_progress=on_progress,
            on_preview=on_preview if task.want_previews else None,
            should_cancel=should_cancel,
        )


class _StageClock:
    """Timing of the current stage, for the estimate of the time it has left."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.started_at = time.monotonic()
        self.step = 0  # last step reported in the current stage
        self.total = 0

    def start(self, stage: str) -> None:
        self.stage = stage
        self.started_at = time.monotonic()
        self.step = self.total = 0

    def estimate(self, stage: str, step: int, total: int) -> float | None:
        if stage != self.stage:
            self.start(stage)
            return None
        if step <= 0 or total <= 0:
            return None
        per_step = (time.monotonic() - self.started_at) / step
        return per_step * max(0, total - step)


def _value(stage: Any) -> Any:
    return getattr(stage, "value", stage)


def preview_frames(frames: numpy.ndarray) -> numpy.ndarray:
    """Return a contiguous uint8 copy of at most MAX_PREVIEW_FRAMES evenly spaced frames."""
    array = numpy.asarray(frames)
    if array.ndim == 3:  # a single (height, width, 3) frame
        array = array[None]
    if len(array) > MAX_PREVIEW_FRAMES:
        indices = numpy.linspace(0, len(array) - 1, MAX_PREVIEW_FRAMES).round().astype(int)
        array = array[indices]
    return numpy.array(array, dtype=numpy.uint8, copy=True, order="C")


def output_path_for(outputs_dir: Path, job_id: str, prompt: str) -> Path:
    """Return ``outputs/<UTC time>-<prompt words>-<job id>.mp4``, unique for each run of a job."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].rstrip("-") or "video"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return outputs_dir / f"{stamp}-{slug}-{job_id[:8]}.mp4"


def copy_output(video: Path, sidecar: Path | None, folder: Path) -> str | None:
    """Copy a finished MP4 and its JSON sidecar into ``folder`` and return a warning when that failed, else None.

    Each file is written under a temporary name and renamed, so the folder never shows a
    partial video. A failed copy leaves the render done, because the project keeps its own MP4.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for source in (video, sidecar):
            if source is None or not source.is_file():
                continue
            target = folder / source.name
            partial = folder / f".{source.name}.partial"
            shutil.copyfile(source, partial)
            os.replace(partial, target)
    except OSError as error:
        logger.warning("Copying %s to the output folder %s failed: %s", video, folder, error)
        return (
            f"Copying the video to the output folder {folder} failed: {error}. The video is in {video}; "
            "choose a writable output folder in Settings."
        )
    logger.info("Copied %s to the output folder %s", video.name, folder)
    return None


def write_thumbnail(video: Path, target: Path, request: dict[str, Any]) -> Path | None:
    """Write the middle frame of ``video`` as a PNG THUMBNAIL_WIDTH pixels wide; returns None on failure.

    A missing thumbnail is not worth failing a finished render, so errors are logged, not raised.
    """
    import imageio_ffmpeg

    num_frames = request.get("num_frames") or 1
    fps = request.get("fps") or 16
    middle_s = (int(num_frames) // 2) / float(fps)
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v", "error", "-y",
        "-ss", f"{middle_s:.3f}",
        "-i", str(video),
        "-frames:v", "1",
        "-vf", f"scale={THUMBNAIL_WIDTH}:-2",
        str(target),
    ]  # fmt: skip
    try:
        completed = subprocess.run(command, capture_output=True, timeout=THUMBNAIL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.warning("Cannot write the thumbnail of %s: %s", video, error)
        return None
    if completed.returncode != 0 or not target.is_file():
        stderr = completed.stderr.decode("utf-8", "replace").strip()
        logger.warning("Cannot write the thumbnail of %s: ffmpeg exited with %d: %s", video, completed.returncode, stderr)
        return None
    return target


class RenderRunner(QObject):
    """Runs the queue's jobs on an ``EngineWorker`` thread, one at a time; lives on the GUI thread.

    Signals are emitted on the GUI thread after the queue has recorded the change.
    """

    job_started = Signal(str)  # job id
    job_finished = Signal(str)  # job id of a job that is now done
    job_stopped = Signal(str, str)  # job id, message: failed, cancelled or interrupted
    preview_ready = Signal(object)  # PreviewMessage
    queue_drained = Signal()  # once each time a started queue runs out of queued jobs
    _task_ready = Signal(object)  # RenderTask, delivered to the worker's thread

    def __init__(
        self,
        queue: JobQueue,
        *,
        engine_loader: EngineLoader = load_engine,
        want_previews: bool = True,
        preview_every_steps: int = 1,
        output_dir: Path | None = None,
        scratch_dir: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._queue = queue
        # Read when a job starts, so changes apply from the next job on.
        self.want_previews = want_previews
        self.preview_every_steps = preview_every_steps
        self.output_dir = output_dir  # also receives each finished MP4; None: no copy
        # Receives a disk cross-attention cache (AppSettings.cache_dir); None: the job's folder.
        self.scratch_dir = scratch_dir
        self._current_job_id: str | None = None
        self._is_shut_down = False
        self._dispatch_scheduled = False
        self._is_drained_reported = False

        self._thread = QThread()
        self._thread.setObjectName("freeswim-engine")
        self._worker = EngineWorker(engine_loader)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._task_ready.connect(self._worker.run_task)
        self._worker.progress_changed.connect(self._on_progress)
        self._worker.preview_ready.connect(self._on_preview)
        self._worker.job_finished.connect(self._on_finished)
        self._worker.job_stopped.connect(self._on_stopped)
        self._thread.start()

        queue.running_changed.connect(self._on_running_changed)
        queue.job_added.connect(self._schedule_dispatch)
        queue.job_changed.connect(self._schedule_dispatch)
        queue.job_moved.connect(self._schedule_dispatch)
        queue.cancel_requested.connect(self._on_cancel_requested)
        self._schedule_dispatch()

    @property
    def queue(self) -> JobQueue:
        return self._queue

    @property
    def engine_thread(self) -> QThread:
        return self._thread

    @property
    def current_job_id(self) -> str | None:
        """Id of the job the worker is rendering, or None when it is free."""
        return self._current_job_id

    @property
    def is_busy(self) -> bool:
        return self._current_job_id is not None

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Stop the running job as ``interrupted`` (unless the user cancelled it) and end the thread.

        Blocks until the render stops at its next step and the thread ends, or
        until ``timeout_s`` passes. Returns True when the thread has ended; only
        then may the runner and its QThread be destroyed. Calling it again is harmless.
        """
        self._is_shut_down = True
        if self._thread.isFinished():
            return True
        job_id = self._current_job_id
        if job_id is not None:
            logger.info("Shutting down: interrupting job %s", job_id)
            self._worker.request_stop(job_id, JobState.INTERRUPTED)
        self._thread.quit()
        # NOTE: the engine checks for cancellation at every denoising step only. Loading a model
        # or encoding a video is not interrupted, so this can block for as long as that takes.
        finished = self._thread.wait() if timeout_s is None else self._thread.wait(int(timeout_s * 1000))
        if not finished:
            logger.warning("The engine thread did not stop within %.1f s", timeout_s)
            return False
        # The worker's last report is still queued for this thread: deliver it now.
        QCoreApplication.sendPostedEvents(self, QEvent.Type.MetaCall)
        if job_id is not None and self._current_job_id == job_id:
            self._on_stopped(
                StoppedMessage(job_id, JobState.INTERRUPTED, "The app closed while this job was running.", time.time())
            )
        return True

    # -- dispatching ----------------------------------------------------------

    def _on_running_changed(self, is_running: bool) -> None:
        if is_running:
            self._is_drained_reported = False
        self._schedule_dispatch()

    def _schedule_dispatch(self, *_args: Any) -> None:
        # Coalesce the many queue signals of one change into one look at the queue.
        if not self._dispatch_scheduled and not self._is_shut_down:
            self._dispatch_scheduled = True
            QTimer.singleShot(0, self, self._dispatch_next)

    def _dispatch_next(self) -> None:
        self._dispatch_scheduled = False
        if self._is_shut_down or self._current_job_id is not None or not self._queue.is_running:
            return
        job = self._queue.next_queued()
        if job is None:
            if not self._is_drained_reported:
                self._is_drained_reported = True
                self.queue_drained.emit()
            return
        self._is_drained_reported = False
        self._current_job_id = job.id
        project = self._queue.project
        task = RenderTask(
            job_id=job.id,
            kind=job.kind.value,
            request=jsonable(job.request),
            work_dir=str(project.job_dir(job.id)),
            outputs_dir=str(project.outputs_dir),
            want_previews=self.want_previews,
            preview_every_steps=max(1, self.preview_every_steps),
            copy_dir=str(self.output_dir) if self.output_dir else None,
            scratch_dir=str(self.scratch_dir) if self.scratch_dir else None,
        )
        self._queue.mark_running(job.id, time.time())
        logger.info("Starting %s", job.describe())
        self.job_started.emit(job.id)
        self._task_ready.emit(task)

    # -- reports from the worker ----------------------------------------------

    def _on_cancel_requested(self, job_id: str) -> None:
        if job_id == self._current_job_id and not self._is_shut_down:
            self._worker.request_stop(job_id, JobState.CANCELLED)

    def _on_progress(self, message: ProgressMessage) -> None:
        if message.job_id != self._current_job_id or self._queue.project.find_job(message.job_id) is None:
            return
        progress = JobProgress(message.stage, message.step, message.total, message.eta_seconds)
        self._queue.update_progress(message.job_id, progress)

    def _on_preview(self, message: PreviewMessage) -> None:
        if message.job_id == self._current_job_id:
            self.preview_ready.emit(message)

    def _on_finished(self, message: FinishedMessage) -> None:
        if message.job_id != self._current_job_id:
            return
        self._current_job_id = None
        thumbnail = Path(message.thumbnail_path) if message.thumbnail_path else None
        self._queue.mark_done(message.job_id, message.result, message.finished_at, thumbnail)
        self.job_finished.emit(message.job_id)
        self._schedule_dispatch()

    def _on_stopped(self, message: StoppedMessage) -> None:
        if message.job_id != self._current_job_id:
            return
        self._current_job_id = None
        self._queue.mark_stopped(message.job_id, message.state, message.message, message.finished_at)
        self.job_stopped.emit(message.job_id, message.message)
        self._schedule_dispatch()

