"""Projects: a folder with ``project.json``, rendered ``outputs/`` and per-job work folders.

Layout::

    <project>/project.json        schema version, settings and the queue, saved atomically
    <project>/outputs/            finished MP4s with their sidecar JSON
    <project>/jobs/<job id>/      the engine's work_dir: stage-1 base video and latents,
                                  so a retry after a stage-2 failure skips stage 1

Every change is saved at once by the caller (``JobQueue`` saves after each
operation). Opening a project whose file still lists a running job means the
app stopped mid-render: that job becomes ``interrupted`` and is never run again
on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from freeswim_app.jobs import Job, JobState, jsonable
from freeswim_engine.errors import FreeSwimError

logger = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
OUTPUTS_DIR = "outputs"
JOBS_DIR = "jobs"
SCHEMA_VERSION = 1


class ProjectError(FreeSwimError):
    """A project folder that cannot be opened, created or saved."""


class ProjectCorruptError(ProjectError):
    """A ``project.json`` that is not valid; it was renamed so that it is never overwritten.

    Attributes:
        path: the project file that failed to load.
        moved_to: where the file was moved, or None when renaming it failed as well.
    """

    def __init__(self, message: str, path: Path, moved_to: Path | None) -> None:
        super().__init__(message)
        self.path = path
        self.moved_to = moved_to


class ProjectSaveError(ProjectError):
    """Writing ``project.json`` failed (disk full, read-only folder); the state in memory is unchanged."""


@dataclasses.dataclass
class ProjectSettings:
    """Settings stored with a project."""

    # Request fields that new jobs in this project start from, for example {"model": "demo"}.
    default_request: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"default_request": jsonable(self.default_request)}

    @classmethod
    def from_dict(cls, data: Any) -> ProjectSettings:
        if not isinstance(data, dict):
            raise ValueError(f"field 'settings' should be a JSON object, got {type(data).__name__}")
        default_request = data.get("default_request") or {}
        if not isinstance(default_request, dict):
            raise ValueError(f"field 'settings.default_request' should be a JSON object, got {default_request!r}")
        return cls(default_request=dict(default_request))


class Project:
    """An open project folder: its settings and its jobs in queue order.

    Only the GUI thread (or the headless runner's thread) changes a project;
    the worker thread receives plain copies of what it needs.
    """

    def __init__(self, folder: Path, name: str | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.name = name or self.folder.name
        self.settings = ProjectSettings()
        self.jobs: list[Job] = []
        # Jobs that were running when the app last stopped and were marked interrupted on open.
        self.recovered_job_ids: list[str] = []

    def __repr__(self) -> str:
        return f"Project({str(self.folder)!r}, jobs={len(self.jobs)})"

    @property
    def file_path(self) -> Path:
        return self.folder / PROJECT_FILE

    @property
    def outputs_dir(self) -> Path:
        return self.folder / OUTPUTS_DIR

    @property
    def jobs_dir(self) -> Path:
        return self.folder / JOBS_DIR

    def job_dir(self, job_id: str) -> Path:
        """Return the work folder of one job (created by the worker when the job runs)."""
        return self.jobs_dir / job_id

    def find_job(self, job_id: str) -> Job | None:
        for job in self.jobs:
            if job.id == job_id:
                return job
        return None

    # -- creating and opening -------------------------------------------------

    @classmethod
    def create(cls, folder: Path, name: str | None = None) -> Project:
        """Create a new project in ``folder`` (made if missing) and save it.

        Raises ProjectError when the folder already contains a project file.
        """
        project = cls(folder, name)
        if project.file_path.exists():
            raise ProjectError(
                f"Cannot create a project in {project.folder}: it already contains {PROJECT_FILE}. "
                "Open it instead, or choose an empty folder."
            )
        try:
            project.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ProjectSaveError(f"Cannot create the project folder {project.folder}: {error}") from error
        project._make_subfolders()
        project.save()
        logger.info("Created project %s", project.folder)
        return project

    @classmethod
    def open(cls, folder: Path, *, create: bool = False) -> Project:
        """Load the project in ``folder``.

        With ``create=True`` a folder without ``project.json`` becomes a new
        project; otherwise that raises ProjectError. A file that is not valid
        JSON or has fields of the wrong type is renamed to
        ``project.json.corrupt-<UTC time>`` and ProjectCorruptError is raised,
        so opening the folder again starts an empty project next to the old file.
        """
        project = cls(folder)
        if not project.file_path.exists():
            if create:
                return cls.create(folder)
            raise ProjectError(
                f"No project found in {project.folder}: {PROJECT_FILE} is missing. "
                "Choose a folder that contains a FreeSwim Studio project, or create a new one."
            )
        data = project._read_file()
        try:
            project._load_dict(data)
        except ValueError as error:
            project._set_aside_corrupt_file(str(error))
        project._make_subfolders()
        project._recover_running_jobs()
        logger.info("Opened project %s with %d jobs", project.folder, len(project.jobs))
        return project

    def _read_file(self) -> Any:
        try:
            text = self.file_path.read_text(encoding="utf-8")
        except OSError as error:
            raise ProjectError(f"Cannot read {self.file_path}: {error}") from error
        except UnicodeDecodeError as error:
            self._set_aside_corrupt_file(f"it is not UTF-8 text ({error})")
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            self._set_aside_corrupt_file(f"it is not valid JSON ({error})")

    def _load_dict(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"the top level should be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"field 'schema_version' should be an integer, got {version!r}")
        if version > SCHEMA_VERSION:
            # Not corrupt, only newer: leave the file where it is.
            raise ProjectError(
                f"{self.file_path} has schema version {version}, but this FreeSwim Studio reads "
                f"versions up to {SCHEMA_VERSION}. Open it with a newer FreeSwim Studio."
            )
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"field 'name' should be a string, got {name!r}")
        jobs = data.get("jobs") or []
        if not isinstance(jobs, list):
            raise ValueError(f"field 'jobs' should be a JSON list, got {type(jobs).__name__}")
        self.name = name or self.folder.name
        self.settings = ProjectSettings.from_dict(data.get("settings") or {})
        loaded: list[Job] = []
        seen: set[str] = set()
        for index, entry in enumerate(jobs):
            try:
                job = Job.from_dict(entry, base_dir=self.folder)
            except ValueError as error:
                raise ValueError(f"job {index + 1}: {error}") from error
            if job.id in seen:
                raise ValueError(f"job {index + 1}: id {job.id!r} appears twice")
            seen.add(job.id)
            loaded.append(job)
        self.jobs = loaded

    def _set_aside_corrupt_file(self, reason: str) -> NoReturn:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.file_path.with_name(f"{PROJECT_FILE}.corrupt-{stamp}")
        counter = 1
        while target.exists():
            counter += 1
            target = self.file_path.with_name(f"{PROJECT_FILE}.corrupt-{stamp}-{counter}")
        try:
            os.replace(self.file_path, target)
        except OSError as error:
            logger.error("Cannot rename the invalid project file %s: %s", self.file_path, error)
            raise ProjectCorruptError(
                f"The project file {self.file_path} is invalid: {reason}. Renaming it out of the way "
                f"failed too ({error}), so nothing was changed. Move or repair the file, then open the project again.",
                self.file_path,
                None,
            ) from None
        logger.error("Project file %s is invalid (%s); renamed it to %s", self.file_path, reason, target.name)
        raise ProjectCorruptError(
            f"The project file {self.file_path} is invalid: {reason}. It was renamed to {target.name} "
            f"and kept. Open the folder again to start an empty project there; the files in "
            f"{OUTPUTS_DIR}/ are untouched.",
            self.file_path,
            target,
        )

    def _make_subfolders(self) -> None:
        for folder in (self.outputs_dir, self.jobs_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                # A read-only project still opens; rendering into it fails with its own message.
                logger.warning("Cannot create %s: %s", folder, error)

    def _recover_running_jobs(self) -> None:
        # NOTE: projects have no lock file, so opening a project that another running
        # instance is rendering also marks that job interrupted here.
        running = [job for job in self.jobs if job.state is JobState.RUNNING]
        if not running:
            return
        for job in running:
            job.state = JobState.INTERRUPTED
            job.error = "The app stopped while this job was running. Retry it to render again."
            self.recovered_job_ids.append(job.id)
            logger.warning("Marked %s as interrupted: the app stopped while it was running", job.describe())
        try:
            self.save()
        except ProjectSaveError as error:
            logger.warning("Cannot save the recovered state of %s: %s", self.folder, error)

    # -- saving ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        from freeswim_app import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "app_version": __version__,
            "name": self.name,
            "settings": self.settings.to_dict(),
            "jobs": [job.to_dict(base_dir=self.folder) for job in self.jobs],
        }

    def save(self) -> None:
        """Write ``project.json`` atomically; raises ProjectSaveError and leaves the old file intact on failure."""
        try:
            write_json_atomic(self.file_path, self.to_dict())
        except OSError as error:
            raise ProjectSaveError(
                f"Saving the project to {self.file_path} failed: {error.strerror or error}. "
                "The queue is kept in memory; free disk space or make the folder writable, "
                "and the next change saves it again."
            ) from error


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new one, never a part.

    The text goes to a temporary file in the same folder, is flushed and
    fsynced, then replaces ``path`` with ``os.replace``. Raises OSError; the
    temporary file is removed on failure.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path = Path(path)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open folders this way.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
