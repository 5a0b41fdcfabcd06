"""The render queue: ``JobQueue`` owns the jobs of a project, ``JobTableModel`` shows them in a view.

``JobQueue`` is the only place that changes jobs. Every operation saves the
project at once. A failed save keeps the change in memory and emits
``save_failed`` with the message, so the window can show it without losing the
queue. ``JobQueue`` lives on the GUI thread; the render runner in
``freeswim_app.worker`` calls its ``mark_*`` methods when the worker reports.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QT_TRANSLATE_NOOP,
    QAbstractTableModel,
    QByteArray,
    QCoreApplication,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)

from freeswim_app.jobs import Job, JobKind, JobProgress, JobResult, JobState
from freeswim_app.project import Project, ProjectSaveError
from freeswim_engine.errors import FreeSwimError
from freeswim_engine.progress import stage_label

logger = logging.getLogger(__name__)

JOB_IDS_MIME_TYPE = "application/x-freeswim-job-ids"

ModelIndex = QModelIndex | QPersistentModelIndex


class JobNotFoundError(FreeSwimError, LookupError):
    """A job id that is not in the queue (it was removed, or belongs to another project)."""


class JobStateError(FreeSwimError):
    """An operation that the job's current state does not allow, for example editing a running job."""


class JobQueue(QObject):
    """The jobs of one project in run order, with the operations the window offers.

    Signals carry job ids and rows, never ``Job`` objects, so a slot always
    reads the current state through ``job(job_id)``.
    """

    job_added = Signal(str, int)  # job id, row
    job_removed = Signal(str, int)  # job id, row it had
    job_moved = Signal(str, int, int)  # job id, row before the move, row after it
    job_changed = Signal(str)  # state, request, result, error or thumbnail changed
    progress_changed = Signal(str)  # job id; read job(job_id).progress
    running_changed = Signal(bool)  # the queue was started (True) or paused (False)
    cancel_requested = Signal(str)  # job id of the running job the user wants to stop
    save_failed = Signal(str)  # message of the ProjectSaveError

    def __init__(self, project: Project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._project = project
        self._is_running = False
        self._cancel_pending: set[str] = set()
        self.last_save_error: str | None = None

    # -- reading --------------------------------------------------------------

    @property
    def project(self) -> Project:
        return self._project

    @property
    def jobs(self) -> tuple[Job, ...]:
        return tuple(self._project.jobs)

    def __len__(self) -> int:
        return len(self._project.jobs)

    def job(self, job_id: str) -> Job:
        """Return the job with this id; raises JobNotFoundError."""
        job = self._project.find_job(job_id)
        if job is None:
            raise JobNotFoundError(f"No job with id {job_id!r} in the queue of {self._project.folder}.")
        return job

    def row_of(self, job_id: str) -> int:
        for row, job in enumerate(self._project.jobs):
            if job.id == job_id:
                return row
        raise JobNotFoundError(f"No job with id {job_id!r} in the queue of {self._project.folder}.")

    def job_at(self, row: int) -> Job:
        return self._project.jobs[row]

    @property
    def is_running(self) -> bool:
        """True when the queue takes the next queued job as soon as the worker is free."""
        return self._is_running

    @property
    def running_job(self) -> Job | None:
        for job in self._project.jobs:
            if job.state is JobState.RUNNING:
                return job
        return None

    def next_queued(self) -> Job | None:
        for job in self._project.jobs:
            if job.state is JobState.QUEUED:
                return job
        return None

    def is_cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancel_pending

    # -- user operations ------------------------------------------------------

    def add(self, request: dict[str, Any], *, kind: JobKind = JobKind.RENDER, row: int | None = None) -> Job:
        """Queue a new job; ``request`` is a ``RenderRequest.to_dict()`` over the project's default request."""
        merged = {**copy.deepcopy(self._project.settings.default_request), **copy.deepcopy(request)}
        job = Job(request=merged, kind=kind)
        self._insert(job, row)
        return job

    def duplicate(self, job_id: str) -> Job:
        """Queue a copy of a job's request right after it, in any state of the original.

        The copy gets no ``output_path``, so it writes a new MP4 instead of replacing the original's.
        """
        source = self.job(job_id)
        request = copy.deepcopy(source.request)
        request["output_path"] = None
        job = Job(request=request, kind=source.kind, source_job_id=source.source_job_id)
        self._insert(job, self.row_of(job_id) + 1)
        return job

    def add_upscale(
        self,
        source_job_id: str,
        *,
        width: int | None = None,
        height: int | None = None,
        from_output: bool = False,
    ) -> Job:
        """Queue "upscale this": stage 2 only, from a finished render's base video (or its output).

        The new job copies the source request with ``input_video`` set, the
        seed the source actually used and, unless given, the source's target
        size. ``from_output=True`` or a render without a base video uses the
        output MP4 instead. Raises JobStateError unless the source is done.
        """
        source = self.job(source_job_id)
        if source.state is not JobState.DONE:
            raise JobStateError(
                f"Cannot upscale {source.describe()}: it is {source.state.value}, and only done jobs "
                "have a video to upscale. Wait until it finishes, or retry it."
            )
        video = None if from_output else source.result.base_video_path
        video = video or source.result.output_path
        if video is None or not Path(video).exists():
            raise JobStateError(
                f"Cannot upscale {source.describe()}: its video {video} is missing. "
                "Retry the job to render it again."
            )
        request = copy.deepcopy(source.request)
        request["input_video"] = str(video)
        request["output_path"] = None
        request["save_latents"] = None
        if source.result.seed is not None:
            request["seed"] = source.result.seed
        if width is not None:
            request["width"] = width
        if height is not None:
            request["height"] = height
        job = Job(request=request, kind=JobKind.UPSCALE, source_job_id=source.id)
        self._insert(job, self.row_of(source_job_id) + 1)
        return job

    def edit(self, job_id: str, request: dict[str, Any]) -> None:
        """Replace the request of a queued job; raises JobStateError in any other state."""
        job = self.job(job_id)
        if job.state is not JobState.QUEUED:
            raise JobStateError(
                f"Cannot edit {job.describe()}: it is {job.state.value}, and only queued jobs can be edited. "
                "Duplicate it and edit the copy."
            )
        job.request = copy.deepcopy(request)
        job.kind = JobKind.UPSCALE if request.get("input_video") else JobKind.RENDER
        self._save()
        self.job_changed.emit(job_id)

    def move(self, job_id: str, to_row: int) -> None:
        """Move a job so that it ends up at ``to_row`` (clamped to the queue)."""
        self._move_without_saving(job_id, to_row)
        self._save()

    def move_jobs(self, job_ids: Sequence[str], before_row: int) -> None:
        """Move several jobs, in their queue order, in front of what is now at ``before_row``.

        ``before_row`` counts rows before the move, the way drag and drop
        reports a drop position; ``len(queue)`` or -1 moves them to the end.
        """
        jobs = self._project.jobs
        wanted = set(job_ids)
        moving = [job.id for job in jobs if job.id in wanted]
        if not moving:
            return
        if before_row < 0 or before_row > len(jobs):
            before_row = len(jobs)
        moving_set = set(moving)
        staying = [job.id for job in jobs]
        insert_at = sum(1 for job_id in staying[:before_row] if job_id not in moving_set)
        remaining = [job_id for job_id in staying if job_id not in moving_set]
        target = remaining[:insert_at] + moving + remaining[insert_at:]
        for row, job_id in enumerate(target):
            if self.row_of(job_id) != row:
                self._move_without_saving(job_id, row)
        self._save()

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once, or ask the worker to stop the running one.

        A running job stays ``running`` until the worker stops at its next
        step, then becomes ``cancelled``. Finished jobs are left as they are.
        """
        job = self.job(job_id)
        if job.state is JobState.QUEUED:
            job.state = JobState.CANCELLED
            job.finished_at = time.time()
            self._save()
            self.job_changed.emit(job_id)
        elif job.state is JobState.RUNNING and job_id not in self._cancel_pending:
            self._cancel_pending.add(job_id)
            logger.info("Cancel requested for %s", job.describe())
            self.job_changed.emit(job_id)
            self.cancel_requested.emit(job_id)

    def retry(self, job_id: str) -> None:
        """Queue a failed, cancelled or interrupted job again; raises JobStateError otherwise.

        The job keeps its id, so its work folder with the stage-1 base video
        and latents is reused when stage 1's settings did not change.
        """
        job = self.job(job_id)
        if not job.state.can_retry:
            raise JobStateError(
                f"Cannot retry {job.describe()}: it is {job.state.value}; only failed, cancelled and "
                "interrupted jobs can be retried. Duplicate it to render it again."
            )
        job.reset_for_retry()
        self._save()
        self.job_changed.emit(job_id)

    def remove(self, job_id: str, *, delete_work_folder: bool = True) -> None:
        """Remove a job that is not running, and by default its ``jobs/<id>/`` intermediates.

        Files in ``outputs/`` are kept. Raises JobStateError for the running job.
        """
        job = self.job(job_id)
        if job.state is JobState.RUNNING:
            raise JobStateError(f"Cannot remove {job.describe()} while it is running. Cancel it first.")
        row = self.row_of(job_id)
        del self._project.jobs[row]
        self._save()
        self.job_removed.emit(job_id, row)
        if delete_work_folder:
            work_dir = self._project.job_dir(job_id)
            if work_dir.exists():
                shutil.rmtree(work_dir, ignore_errors=True)

    def start(self) -> None:
        """Let the runner take queued jobs one after another."""
        if not self._is_running:
            self._is_running = True
            logger.info("Queue started")
            self.running_changed.emit(True)

    def pause(self) -> None:
        """Stop taking new jobs; a job that is already running finishes first."""
        if self._is_running:
            self._is_running = False
            logger.info("Queue paused")
            self.running_changed.emit(False)

    # -- updates from the render runner ---------------------------------------

    def mark_running(self, job_id: str, started_at: float) -> None:
        job = self.job(job_id)
        job.state = JobState.RUNNING
        job.started_at = started_at
        job.finished_at = None
        job.error = None
        job.progress = JobProgress()
        self._save()
        self.job_changed.emit(job_id)

    def update_progress(self, job_id: str, progress: JobProgress) -> None:
        # Progress is not saved: it changes every step and means nothing after a restart.
        job = self.job(job_id)
        job.progress = progress
        self.progress_changed.emit(job_id)

    def mark_done(self, job_id: str, result: JobResult, finished_at: float, thumbnail_path: Path | None = None) -> None:
        job = self.job(job_id)
        job.state = JobState.DONE
        job.result = result
        job.thumbnail_path = thumbnail_path
        job.finished_at = finished_at
        job.error = None
        self._cancel_pending.discard(job_id)
        self._save()
        self.job_changed.emit(job_id)

    def mark_stopped(self, job_id: str, state: JobState, message: str | None, finished_at: float) -> None:
        """Record a job that ended without a video: failed, cancelled or interrupted."""
        if state not in (JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED):
            raise ValueError(f"mark_stopped takes failed, cancelled or interrupted, got {state.value}")
        job = self.job(job_id)
        job.state = state
        job.error = message
        job.finished_at = finished_at
        self._cancel_pending.discard(job_id)
        self._save()
        self.job_changed.emit(job_id)

    def set_thumbnail(self, job_id: str, path: Path) -> None:
        job = self._project.find_job(job_id)
        if job is None:  # removed while the thumbnail was being written
            return
        job.thumbnail_path = path
        self._save()
        self.job_changed.emit(job_id)

    # -- helpers --------------------------------------------------------------

    def _insert(self, job: Job, row: int | None) -> None:
        jobs = self._project.jobs
        if row is None or row < 0 or row > len(jobs):
            row = len(jobs)
        jobs.insert(row, job)
        self._save()
        logger.info("Queued %s (%s)", job.describe(), job.kind.value)
        self.job_added.emit(job.id, row)

    def _move_without_saving(self, job_id: str, to_row: int) -> None:
        jobs = self._project.jobs
        from_row = self.row_of(job_id)
        to_row = max(0, min(to_row, len(jobs) - 1))
        if from_row == to_row:
            return
        job = jobs.pop(from_row)
        jobs.insert(to_row, job)
        self.job_moved.emit(job_id, from_row, to_row)

    def _save(self) -> None:
        try:
            self._project.save()
        except ProjectSaveError as error:
            message = str(error)
            logger.error("%s", message)
            self.last_save_error = message
            self.save_failed.emit(message)
        else:
            self.last_save_error = None


class JobColumn(enum.IntEnum):
    """Columns of ``JobTableModel``."""

    THUMBNAIL = 0
    PROMPT = 1
    SIZE = 2
    STATE = 3
    PROGRESS = 4


class JobRole(enum.IntEnum):
    """Item data roles of ``JobTableModel`` beyond Qt's own; every column returns them.

    STATE and KIND return the enum's value, a plain str, because Qt turns a str enum
    into a plain str on its way through ``QModelIndex.data`` or a proxy model. Read them
    back with ``JobState(value)`` and ``JobKind(value)``.
    """

    JOB_ID = Qt.ItemDataRole.UserRole + 1  # str
    JOB = Qt.ItemDataRole.UserRole + 2  # freeswim_app.jobs.Job
    STATE = Qt.ItemDataRole.UserRole + 3  # str, a JobState value
    PROGRESS = Qt.ItemDataRole.UserRole + 4  # float from 0.0 to 1.0 within the current stage
    THUMBNAIL_PATH = Qt.ItemDataRole.UserRole + 5  # str, or None before the job is done
    KIND = Qt.ItemDataRole.UserRole + 6  # str, a JobKind value


# Source texts of the Qt translation context "JobTableModel", translated when shown.
# QT_TRANSLATE_NOOP marks them for pyside6-lupdate.
_HEADERS = {
    JobColumn.THUMBNAIL: "",
    JobColumn.PROMPT: QT_TRANSLATE_NOOP("JobTableModel", "Prompt"),
    JobColumn.SIZE: QT_TRANSLATE_NOOP("JobTableModel", "Size"),
    JobColumn.STATE: QT_TRANSLATE_NOOP("JobTableModel", "State"),
    JobColumn.PROGRESS: QT_TRANSLATE_NOOP("JobTableModel", "Progress"),
}

# Keys are freeswim_engine.api.Stage values; a stage missing here shows the engine's English label.
_STAGE_LABELS = {
    "loading": QT_TRANSLATE_NOOP("JobTableModel", "Loading model"),
    "encoding-prompt": QT_TRANSLATE_NOOP("JobTableModel", "Encoding prompt"),
    "stage1": QT_TRANSLATE_NOOP("JobTableModel", "Stage 1: base video"),
    "upsampling": QT_TRANSLATE_NOOP("JobTableModel", "Upsampling"),
    "stage2": QT_TRANSLATE_NOOP("JobTableModel", "Stage 2: refining"),
    "decoding": QT_TRANSLATE_NOOP("JobTableModel", "Decoding"),
    "exporting": QT_TRANSLATE_NOOP("JobTableModel", "Exporting"),
}


class JobTableModel(QAbstractTableModel):
    """A table of the queue's jobs, one row per job, with drag and drop reordering.

    Drag and drop moves rows through ``JobQueue.move_jobs``; dropping never
    copies or deletes jobs, because ``removeRows`` is not implemented and the
    view's clean-up after a move therefore does nothing.
    """

    def __init__(self, queue: JobQueue, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue = queue
        # The model keeps its own list of ids so that begin/end notifications wrap its own changes.
        self._ids: list[str] = [job.id for job in queue.jobs]
        self._icons: dict[str, Any] = {}
        queue.job_added.connect(self._on_job_added)
        queue.job_removed.connect(self._on_job_removed)
        queue.job_moved.connect(self._on_job_moved)
        queue.job_changed.connect(self._on_job_changed)
        queue.progress_changed.connect(self._on_progress_changed)

    @property
    def queue(self) -> JobQueue:
        return self._queue

    def job_id_at(self, row: int) -> str:
        return self._ids[row]

    def index_of(self, job_id: str, column: int = JobColumn.PROMPT) -> QModelIndex:
        try:
            return self.index(self._ids.index(job_id), column)
        except ValueError:
            return QModelIndex()

    # -- QAbstractItemModel ---------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: N802 (Qt override)
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(JobColumn)

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or role != Qt.ItemDataRole.DisplayRole:
            return None
        if not 0 <= section < len(JobColumn):
            return None
        text = str(_HEADERS[JobColumn(section)])
        return QCoreApplication.translate("JobTableModel", text) if text else ""

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._ids):
            return None
        job = self._queue.project.find_job(self._ids[index.row()])
        if job is None:
            return None
        custom = self._custom_role_data(job, role)
        if custom is not _NO_DATA:
            return custom
        column = JobColumn(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display_text(job, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(job, column)
        if role == Qt.ItemDataRole.DecorationRole and column is JobColumn.THUMBNAIL:
            return self._thumbnail_icon(job)
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.ItemIsDropEnabled  # drops land between rows, never on a row
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    def supportedDropActions(self) -> Qt.DropAction:  # noqa: N802
        return Qt.DropAction.MoveAction

    def supportedDragActions(self) -> Qt.DropAction:  # noqa: N802
        return Qt.DropAction.MoveAction

    def mimeTypes(self) -> list[str]:  # noqa: N802
        return [JOB_IDS_MIME_TYPE]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:  # noqa: N802
        rows = sorted({index.row() for index in indexes if index.isValid()})
        job_ids = [self._ids[row] for row in rows if row < len(self._ids)]
        data = QMimeData()
        data.setData(JOB_IDS_MIME_TYPE, QByteArray(json.dumps(job_ids).encode("utf-8")))
        return data

    def canDropMimeData(  # noqa: N802
        self, data: QMimeData, action: Qt.DropAction, row: int, column: int, parent: ModelIndex
    ) -> bool:
        return action == Qt.DropAction.MoveAction and data.hasFormat(JOB_IDS_MIME_TYPE)

    def dropMimeData(  # noqa: N802
        self, data: QMimeData, action: Qt.DropAction, row: int, column: int, parent: ModelIndex
    ) -> bool:
        if not self.canDropMimeData(data, action, row, column, parent):
            return False
        try:
            job_ids = json.loads(bytes(data.data(JOB_IDS_MIME_TYPE).data()).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return False
        if not isinstance(job_ids, list) or not all(isinstance(job_id, str) for job_id in job_ids):
            return False
        if parent.isValid():  # dropped onto a row: insert in front of it
            row = parent.row()
        self._queue.move_jobs(job_ids, row)
        return True

    def moveRows(  # noqa: N802
        self,
        source_parent: ModelIndex,
        source_row: int,
        count: int,
        destination_parent: ModelIndex,
        destination_child: int,
    ) -> bool:
        if source_parent.isValid() or destination_parent.isValid() or count <= 0:
            return False
        if source_row < 0 or source_row + count > len(self._ids):
            return False
        self._queue.move_jobs(self._ids[source_row : source_row + count], destination_child)
        return True

    # -- queue signals --------------------------------------------------------

    def _on_job_added(self, job_id: str, row: int) -> None:
        self.beginInsertRows(QModelIndex(), row, row)
        self._ids.insert(row, job_id)
        self.endInsertRows()

    def _on_job_removed(self, job_id: str, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._ids[row]
        self.endRemoveRows()
        self._icons.pop(job_id, None)

    def _on_job_moved(self, job_id: str, from_row: int, to_row: int) -> None:
        # Qt counts the destination before the row is taken out, so moving down needs one more.
        destination = to_row + 1 if to_row > from_row else to_row
        self.beginMoveRows(QModelIndex(), from_row, from_row, QModelIndex(), destination)
        self._ids.insert(to_row, self._ids.pop(from_row))
        self.endMoveRows()

    def _on_job_changed(self, job_id: str) -> None:
        self._icons.pop(job_id, None)
        self._emit_row_changed(job_id, JobColumn.THUMBNAIL, JobColumn.PROGRESS)

    def _on_progress_changed(self, job_id: str) -> None:
        self._emit_row_changed(job_id, JobColumn.PROGRESS, JobColumn.PROGRESS)

    def _emit_row_changed(self, job_id: str, first: JobColumn, last: JobColumn) -> None:
        try:
            row = self._ids.index(job_id)
        except ValueError:
            return
        self.dataChanged.emit(self.index(row, first), self.index(row, last))

    # -- item data ------------------------------------------------------------

    def _custom_role_data(self, job: Job, role: int) -> Any:
        if role == JobRole.JOB_ID:
            return job.id
        if role == JobRole.JOB:
            return job
        if role == JobRole.STATE:
            return job.state.value
        if role == JobRole.PROGRESS:
            return job.progress.fraction
        if role == JobRole.THUMBNAIL_PATH:
            return str(job.thumbnail_path) if job.thumbnail_path else None
        if role == JobRole.KIND:
            return job.kind.value
        return _NO_DATA

    def _display_text(self, job: Job, column: JobColumn) -> str | None:
        if column is JobColumn.PROMPT:
            if job.kind is JobKind.UPSCALE:
                return QCoreApplication.translate("JobTableModel", "Upscale: {prompt}").format(prompt=job.prompt)
            return job.prompt
        if column is JobColumn.SIZE:
            size = job.size
            return f"{size[0]}x{size[1]}" if size else ""
        if column is JobColumn.STATE:
            if job.state is JobState.RUNNING and self._queue.is_cancel_requested(job.id):
                return QCoreApplication.translate("JobTableModel", "Cancelling")
            return job.state.label
        if column is JobColumn.PROGRESS:
            return progress_text(job)
        return None

    def _tooltip(self, job: Job, column: JobColumn) -> str | None:
        if column in (JobColumn.STATE, JobColumn.PROGRESS) and job.error:
            return job.error
        if column is JobColumn.PROMPT:
            return job.prompt
        if column is JobColumn.THUMBNAIL and job.result.output_path:
            return str(job.result.output_path)
        return None

    def _thumbnail_icon(self, job: Job) -> Any:
        # QIcon needs a QGuiApplication; the headless runner has only a QCoreApplication.
        from PySide6.QtGui import QGuiApplication, QIcon

        if job.thumbnail_path is None or QGuiApplication.instance() is None:
            return None
        if job.id not in self._icons:
            self._icons[job.id] = QIcon(str(job.thumbnail_path))
        return self._icons[job.id]


_NO_DATA = object()


def progress_text(job: Job) -> str:
    """Return the progress column's text, for example ``Stage 2: refining 12/35, about 1:05 left``."""
    if job.state is JobState.RUNNING:
        progress = job.progress
        if progress.stage is None:
            return QCoreApplication.translate("JobTableModel", "Starting")
        text = translated_stage_label(progress.stage)
        if progress.total > 0:
            text += f" {progress.step}/{progress.total}"
        if progress.eta_seconds is not None and progress.step > 0:
            text += QCoreApplication.translate("JobTableModel", ", about {duration} left").format(
                duration=format_duration(progress.eta_seconds)
            )
        return text
    if job.state is JobState.DONE and job.result.seconds is not None:
        return QCoreApplication.translate("JobTableModel", "Done in {duration}").format(
            duration=format_duration(job.result.seconds)
        )
    if job.error:
        return job.error.splitlines()[0]
    return ""


def translated_stage_label(stage: str) -> str:
    """Return the translated display name of an engine stage value, for example ``Stage 2: refining``."""
    text = _STAGE_LABELS.get(stage)
    if text is None:
        return stage_label(stage)
    return QCoreApplication.translate("JobTableModel", str(text))


def format_duration(seconds: float) -> str:
    """Format seconds as ``m:ss``, or ``h:mm:ss`` from one hour on."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"
