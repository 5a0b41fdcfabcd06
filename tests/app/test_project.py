"""Projects, jobs, settings and the queue: persistence, crash recovery and queue operations."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QModelIndex, QSortFilterProxyModel, Qt, QTranslator
from pytestqt.qtbot import QtBot

from freeswim_app.demo_project import DEMO_PROMPTS, open_demo_project
from freeswim_app.jobs import Job, JobKind, JobProgress, JobResult, JobState
from freeswim_app.project import (
    PROJECT_FILE,
    SCHEMA_VERSION,
    Project,
    ProjectCorruptError,
    ProjectError,
    ProjectSaveError,
)
from freeswim_app.queue_model import (
    JobColumn,
    JobNotFoundError,
    JobQueue,
    JobRole,
    JobStateError,
    JobTableModel,
)
from freeswim_app.settings import MAX_RECENT_PROJECTS, AppSettings, SettingsSaveError, config_dir

MOVE = Qt.DropAction.MoveAction


def read_project_file(project: Project) -> dict:
    return json.loads(project.file_path.read_text(encoding="utf-8"))


def prompts(queue: JobQueue) -> list[str]:
    return [job.prompt for job in queue.jobs]


def model_prompts(model: JobTableModel) -> list[str]:
    return [model.data(model.index(row, JobColumn.PROMPT)) for row in range(model.rowCount())]


# -- project files ---------------------------------------------------------------------


def test_project_round_trip(project: Project) -> None:
    job = Job(request={"prompt": "a fox", "width": 448, "height": 256, "seed": 7})
    job.state = JobState.DONE
    job.finished_at = 1_700_000_000.5
    job.result = JobResult(
        output_path=project.outputs_dir / "fox.mp4",
        sidecar_path=project.outputs_dir / "fox.json",
        base_video_path=project.job_dir(job.id) / "base.mp4",
        seed=7,
        peak_memory_bytes=123,
        seconds=4.5,
        warnings=["prompt truncated"],
        resolved_request={"prompt": "a fox", "num_frames": 5, "seed": 7},
    )
    job.thumbnail_path = project.job_dir(job.id) / "thumbnail.png"
    upscale = Job(request={"prompt": "a fox", "input_video": "/videos/in.mp4"}, kind=JobKind.UPSCALE)
    upscale.source_job_id = job.id
    project.jobs = [job, upscale]
    project.settings.default_request = {"model": "demo"}
    project.save()

    loaded = Project.open(project.folder)

    assert loaded.name == "Test project"
    assert loaded.settings.default_request == {"model": "demo"}
    assert [j.to_dict() for j in loaded.jobs] == [j.to_dict() for j in project.jobs]
    assert loaded.jobs[0].result.output_path == project.outputs_dir / "fox.mp4"
    assert loaded.jobs[0].result.resolved_request == {"prompt": "a fox", "num_frames": 5, "seed": 7}
    assert loaded.jobs[1].kind is JobKind.UPSCALE
    assert loaded.jobs[1].source_job_id == job.id


def test_project_paths_stored_relative(project: Project) -> None:
    job = Job(request={"prompt": "x"})
    job.result.output_path = project.outputs_dir / "x.mp4"
    project.jobs = [job]
    project.save()

    stored = read_project_file(project)["jobs"][0]["result"]["output_path"]

    assert stored == "outputs/x.mp4"


def test_project_survives_folder_move(project: Project, tmp_path: Path) -> None:
    job = Job(request={"prompt": "x"})
    job.result.output_path = project.outputs_dir / "x.mp4"
    project.jobs = [job]
    project.save()
    moved = tmp_path / "moved"
    project.folder.rename(moved)

    loaded = Project.open(moved)

    assert loaded.jobs[0].result.output_path == moved.resolve() / "outputs" / "x.mp4"


def test_missing_and_unknown_fields_default(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    data = {
        "future_field": {"anything": 1},
        "jobs": [
            {"request": {"prompt": "only a prompt", "brand_new_option": True}, "new_job_field": 3},
            {"id": "abc", "state": "done", "result": {"seed": 5, "extra": "x"}},
        ],
    }
    (folder / PROJECT_FILE).write_text(json.dumps(data), encoding="utf-8")

    project = Project.open(folder)

    first, second = project.jobs
    assert first.state is JobState.QUEUED
    assert first.kind is JobKind.RENDER
    assert first.prompt == "only a prompt"
    assert len(first.id) == 32
    assert first.result == JobResult()
    assert second.id == "abc"
    assert second.state is JobState.DONE
    assert second.result.seed == 5
    assert project.settings.default_request == {}
    assert project.name == "old"
    assert (folder / "outputs").is_dir()
    assert (folder / "jobs").is_dir()


def test_create_rejects_existing_project(project: Project) -> None:
    with pytest.raises(ProjectError, match="already contains project.json"):
        Project.create(project.folder)


def test_open_missing_project_raises(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="project.json is missing"):
        Project.open(tmp_path / "nothing")


def test_open_with_create_makes_project(tmp_path: Path) -> None:
    project = Project.open(tmp_path / "new", create=True)

    assert project.file_path.is_file()
    assert project.jobs == []


def test_newer_schema_is_not_set_aside(tmp_path: Path) -> None:
    folder = tmp_path / "newer"
    folder.mkdir()
    (folder / PROJECT_FILE).write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}), encoding="utf-8")

    with pytest.raises(ProjectError, match="newer FreeSwim Studio") as raised:
        Project.open(folder)

    assert not isinstance(raised.value, ProjectCorruptError)
    assert (folder / PROJECT_FILE).is_file()


# -- atomic saving ---------------------------------------------------------------------


def test_failed_replace_keeps_old_file(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.jobs = [Job(request={"prompt": "saved"})]
    project.save()
    before = project.file_path.read_bytes()
    project.jobs.append(Job(request={"prompt": "not saved"}))

    def failing_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ProjectSaveError, match="No space left on device"):
        project.save()

    assert project.file_path.read_bytes() == before
    assert [path.name for path in project.folder.iterdir() if path.name.endswith(".tmp")] == []
    assert [job.prompt for job in project.jobs] == ["saved", "not saved"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_read_only_folder_raises_save_error(project: Project) -> None:
    project.jobs = [Job(request={"prompt": "first"})]
    project.save()
    before = project.file_path.read_bytes()
    project.folder.chmod(0o555)
    try:
        project.jobs.append(Job(request={"prompt": "second"}))
        with pytest.raises(ProjectSaveError, match="make the folder writable"):
            project.save()
    finally:
        project.folder.chmod(0o755)

    assert project.file_path.read_bytes() == before
    assert len(project.jobs) == 2


def test_unwritable_folder_raises_save_error(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    before = project.file_path.read_bytes()

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    project.jobs.append(Job(request={"prompt": "x"}))
    with pytest.raises(ProjectSaveError, match="Permission denied"):
        project.save()

    assert project.file_path.read_bytes() == before
    assert len(project.jobs) == 1


def test_queue_reports_save_failure(qtbot: QtBot, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = JobQueue(project)

    def read_only_replace(source: str, target: str) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only_replace)

    with qtbot.waitSignal(queue.save_failed) as blocker:
        job = queue.add({"prompt": "kept in memory"})

    assert "Read-only" in blocker.args[0]
    assert queue.last_save_error == blocker.args[0]
    assert queue.job(job.id).prompt == "kept in memory"


# -- crash recovery and corrupt files --------------------------------------------------


def test_reload_after_crash_interrupts_running_job(project: Project) -> None:
    output = project.outputs_dir / "done.mp4"
    output.write_bytes(b"not really a video")
    done = Job(request={"prompt": "done"}, state=JobState.DONE)
    done.result.output_path = output
    running = Job(request={"prompt": "running"}, state=JobState.RUNNING)
    queued = Job(request={"prompt": "queued"})
    project.jobs = [done, running, queued]
    project.save()  # the file as it was when the app died mid-render

    reopened = Project.open(project.folder)
    queue = JobQueue(reopened)

    states = [job.state for job in reopened.jobs]
    assert states == [JobState.DONE, JobState.INTERRUPTED, JobState.QUEUED]
    assert reopened.recovered_job_ids == [running.id]
    assert "stopped while this job was running" in (reopened.jobs[1].error or "")
    assert queue.is_running is False
    assert output.read_bytes() == b"not really a video"
    assert read_project_file(reopened)["jobs"][1]["state"] == "interrupted"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{ not json", "not valid JSON"),
        ("[1, 2]", "top level should be a JSON object"),
        ('{"jobs": {"a": 1}}', "'jobs' should be a JSON list"),
        ('{"jobs": [{"state": "exploded"}]}', "expected one of: queued"),
        ('{"jobs": [{"request": "prompt"}]}', "'request' should be dict"),
        ('{"jobs": [{"result": {"seed": "seven"}}]}', "'seed' should be int"),
    ],
)
def test_corrupt_project_set_aside(tmp_path: Path, content: str, reason: str) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / PROJECT_FILE).write_text(content, encoding="utf-8")

    with pytest.raises(ProjectCorruptError) as raised:
        Project.open(folder)

    error = raised.value
    assert reason in str(error)
    assert error.moved_to is not None
    assert error.moved_to.name.startswith("project.json.corrupt-")
    assert error.moved_to.name in str(error)
    assert error.moved_to.read_text(encoding="utf-8") == content
    assert not (folder / PROJECT_FILE).exists()
    reopened = Project.open(folder, create=True)
    assert reopened.jobs == []
    assert error.moved_to.read_text(encoding="utf-8") == content


def test_second_corrupt_file_gets_own_name(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    names = []
    for content in ("{", "{{"):
        (folder / PROJECT_FILE).write_text(content, encoding="utf-8")
        with pytest.raises(ProjectCorruptError) as raised:
            Project.open(folder)
        assert raised.value.moved_to is not None
        names.append(raised.value.moved_to.name)

    assert len(set(names)) == 2


# -- queue operations ------------------------------------------------------------------


def test_queue_add_applies_project_defaults(project: Project) -> None:
    project.settings.default_request = {"model": "demo", "width": 448}
    queue = JobQueue(project)

    job = queue.add({"prompt": "a", "width": 672})

    assert job.request == {"model": "demo", "width": 672, "prompt": "a"}
    assert read_project_file(project)["jobs"][0]["request"]["width"] == 672


def test_queue_operations_save_each_change(qtbot: QtBot, project: Project) -> None:
    queue = JobQueue(project)
    a = queue.add({"prompt": "a"})
    b = queue.add({"prompt": "b"})

    copy = queue.duplicate(a.id)
    assert prompts(queue) == ["a", "a", "b"]
    assert copy.id != a.id
    assert copy.request == {**a.request, "output_path": None}

    queue.edit(b.id, {"prompt": "b2", "width": 448})
    assert queue.job(b.id).request == {"prompt": "b2", "width": 448}

    queue.move(b.id, 0)
    assert prompts(queue) == ["b2", "a", "a"]

    queue.cancel(a.id)
    assert queue.job(a.id).state is JobState.CANCELLED

    queue.retry(a.id)
    assert queue.job(a.id).state is JobState.QUEUED

    queue.remove(copy.id)
    assert prompts(queue) == ["b2", "a"]

    on_disk = [job["request"]["prompt"] for job in read_project_file(project)["jobs"]]
    assert on_disk == ["b2", "a"]


def test_duplicate_writes_new_output(project: Project) -> None:
    queue = JobQueue(project)
    job = queue.add({"prompt": "a", "output_path": str(project.outputs_dir / "a.mp4")})

    copy = queue.duplicate(job.id)

    assert copy.request["output_path"] is None
    assert job.request["output_path"] == str(project.outputs_dir / "a.mp4")


def test_edit_rejects_finished_job(project: Project) -> None:
    queue = JobQueue(project)
    job = queue.add({"prompt": "a"})
    queue.cancel(job.id)

    with pytest.raises(JobStateError, match="only queued jobs can be edited"):
        queue.edit(job.id, {"prompt": "b"})


def test_retry_rejects_queued_job(project: Project) -> None:
    queue = JobQueue(project)
    job = queue.add({"prompt": "a"})

    with pytest.raises(JobStateError, match="only failed, cancelled and interrupted"):
        queue.retry(job.id)


def test_remove_rejects_running_job(project: Project) -> None:
    project.jobs = [Job(request={"prompt": "busy"}, state=JobState.RUNNING)]
    queue = JobQueue(project)

    with pytest.raises(JobStateError, match="while it is running"):
        queue.remove(project.jobs[0].id)


def test_remove_deletes_work_folder_keeps_outputs(project: Project) -> None:
    queue = JobQueue(project)
    job = queue.add({"prompt": "a"})
    work = project.job_dir(job.id)
    work.mkdir(parents=True)
    (work / "base.mp4").write_bytes(b"x")
    output = project.outputs_dir / "a.mp4"
    output.write_bytes(b"y")

    queue.remove(job.id)

    assert not work.exists()
    assert output.exists()


def test_unknown_job_id_raises(project: Project) -> None:
    queue = JobQueue(project)

    with pytest.raises(JobNotFoundError, match="No job with id 'nope'"):
        queue.job("nope")


def test_cancel_running_job_requests_stop(qtbot: QtBot, project: Project) -> None:
    project.jobs = [Job(request={"prompt": "busy"}, state=JobState.RUNNING)]
    queue = JobQueue(project)
    job_id = project.jobs[0].id

    with qtbot.waitSignal(queue.cancel_requested) as blocker:
        queue.cancel(job_id)

    assert blocker.args == [job_id]
    assert queue.job(job_id).state is JobState.RUNNING
    assert queue.is_cancel_requested(job_id)


def test_start_and_pause_emit_running_changed(qtbot: QtBot, project: Project) -> None:
    queue = JobQueue(project)

    with qtbot.waitSignal(queue.running_changed) as started:
        queue.start()
    with qtbot.waitSignal(queue.running_changed) as paused:
        queue.pause()

    assert started.args == [True]
    assert paused.args == [False]
    assert queue.is_running is False


def test_move_jobs_keeps_block_order(project: Project) -> None:
    queue = JobQueue(project)
    ids = [queue.add({"prompt": name}).id for name in "abcde"]

    queue.move_jobs([ids[3], ids[1]], 0)
    assert prompts(queue) == ["b", "d", "a", "c", "e"]

    queue.move_jobs([ids[0]], -1)
    assert prompts(queue) == ["b", "d", "c", "e", "a"]

    queue.move_jobs([ids[4], ids[1]], 3)  # in front of "e", counted before the move
    assert prompts(queue) == ["d", "c", "b", "e", "a"]


def test_upscale_this_uses_base_video(project: Project) -> None:
    base = project.job_dir("source") / "base.mp4"
    base.parent.mkdir(parents=True)
    base.write_bytes(b"base")
    output = project.outputs_dir / "out.mp4"
    output.write_bytes(b"out")
    source = Job(request={"prompt": "p", "width": 448, "height": 256, "seed": None}, id="source")
    source.state = JobState.DONE
    source.result = JobResult(output_path=output, base_video_path=base, seed=99)
    project.jobs = [source, Job(request={"prompt": "other"})]
    queue = JobQueue(project)

    job = queue.add_upscale("source", width=896, height=512)
    assert queue.row_of(job.id) == 1
    from_output = queue.add_upscale("source", from_output=True)

    assert job.kind is JobKind.UPSCALE
    assert job.source_job_id == "source"
    assert job.request["input_video"] == str(base)
    assert job.request["seed"] == 99
    assert (job.request["width"], job.request["height"]) == (896, 512)
    assert from_output.request["input_video"] == str(output)
    assert (from_output.request["width"], from_output.request["height"]) == (448, 256)


def test_upscale_this_rejects_unfinished_job(project: Project) -> None:
    queue = JobQueue(project)
    job = queue.add({"prompt": "a"})

    with pytest.raises(JobStateError, match="only done jobs"):
        queue.add_upscale(job.id)


# -- table model -----------------------------------------------------------------------


def test_model_follows_queue(qtbot: QtBot, project: Project) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    a = queue.add({"prompt": "a", "width": 448, "height": 256})
    b = queue.add({"prompt": "b"})

    assert model.rowCount() == 2
    assert model.columnCount() == len(JobColumn)
    assert model.data(model.index(0, JobColumn.SIZE)) == "448x256"
    assert model.data(model.index(0, JobColumn.STATE)) == "Queued"
    assert model.data(model.index(1, JobColumn.PROMPT), JobRole.JOB_ID) == b.id

    queue.move(b.id, 0)
    assert model_prompts(model) == ["b", "a"]

    with qtbot.waitSignal(model.dataChanged):
        queue.update_progress(a.id, JobProgress("stage2", 3, 10, 65.0))
    assert model.data(model.index(1, JobColumn.PROGRESS), JobRole.PROGRESS) == pytest.approx(0.3)

    queue.remove(b.id)
    assert model_prompts(model) == ["a"]


def test_model_state_role_survives_qt(project: Project) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(model)
    job = queue.add({"prompt": "a"}, kind=JobKind.UPSCALE)
    queue.mark_running(job.id, 0.0)

    for index in (model.index(0, JobColumn.PROGRESS), proxy.index(0, JobColumn.PROGRESS)):
        assert index.data(JobRole.STATE) == "running"
        assert JobState(index.data(JobRole.STATE)) is JobState.RUNNING
        assert JobKind(index.data(JobRole.KIND)) is JobKind.UPSCALE
    assert model.data(model.index(0, JobColumn.STATE), JobRole.STATE) == "running"


def test_model_progress_text(project: Project) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    job = queue.add({"prompt": "a"})
    queue.mark_running(job.id, 0.0)
    queue.update_progress(job.id, JobProgress("stage2", 12, 35, 65.0))

    text = model.data(model.index(0, JobColumn.PROGRESS))

    assert "12/35" in text
    assert "1:05" in text


class UpperCaseTranslator(QTranslator):
    """Translates the texts of the given contexts to upper case, keeping {placeholders}, and records the requests."""

    def __init__(self, contexts: set[str]) -> None:
        super().__init__()
        self.contexts = contexts
        self.requested: set[tuple[str, str]] = set()

    def translate(self, context, source_text, disambiguation=None, n=-1):  # noqa: ANN001 (Qt override)
        self.requested.add((context, source_text))
        if context not in self.contexts:
            return ""
        return re.sub(r"[^{}]+(?![^{]*})", lambda match: match.group(0).upper(), source_text)

    def isEmpty(self) -> bool:  # noqa: N802 (Qt override)
        return False


@pytest.fixture
def upper_case_translator(qapp) -> Iterator[UpperCaseTranslator]:
    translator = UpperCaseTranslator({"JobTableModel", "JobState"})
    QCoreApplication.installTranslator(translator)
    yield translator
    QCoreApplication.removeTranslator(translator)


def test_model_texts_are_translated(project: Project, upper_case_translator: UpperCaseTranslator) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    queued = queue.add({"prompt": "a fox", "width": 448, "height": 256})
    running = queue.add({"prompt": "a heron"})
    queue.mark_running(running.id, 0.0)
    queue.update_progress(running.id, JobProgress("stage2", 12, 35, 65.0))

    headers = [model.headerData(column, Qt.Orientation.Horizontal) for column in JobColumn]

    assert headers == ["", "PROMPT", "SIZE", "STATE", "PROGRESS"]
    assert model.data(model.index(0, JobColumn.STATE)) == "QUEUED"
    assert model.data(model.index(0, JobColumn.PROMPT)) == "a fox"
    assert model.data(model.index(1, JobColumn.STATE)) == "RUNNING"
    assert model.data(model.index(1, JobColumn.PROGRESS)) == "STAGE 2: REFINING 12/35, ABOUT 1:05 LEFT"
    queue.cancel(running.id)
    assert model.data(model.index(1, JobColumn.STATE)) == "CANCELLING"


def test_model_upscale_and_done_translated(project: Project, upper_case_translator: UpperCaseTranslator) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    job = queue.add({"prompt": "a fox"}, kind=JobKind.UPSCALE)
    queue.mark_done(job.id, JobResult(seconds=65.0), 0.0)

    assert model.data(model.index(0, JobColumn.PROMPT)) == "UPSCALE: a fox"
    assert model.data(model.index(0, JobColumn.PROGRESS)) == "DONE IN 1:05"
    assert model.data(model.index(0, JobColumn.STATE)) == "DONE"


def test_state_labels_use_job_state_context(upper_case_translator: UpperCaseTranslator) -> None:
    for state in JobState:
        assert state.label == state.value.upper()
        assert ("JobState", state.value.capitalize()) in upper_case_translator.requested


def test_model_drop_reorders(project: Project) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    for name in "abcd":
        queue.add({"prompt": name})

    data = model.mimeData([model.index(2, 0), model.index(2, 1), model.index(3, 0)])
    assert model.canDropMimeData(data, MOVE, 0, 0, QModelIndex())
    assert model.dropMimeData(data, MOVE, 0, 0, QModelIndex())

    assert prompts(queue) == ["c", "d", "a", "b"]
    assert model_prompts(model) == ["c", "d", "a", "b"]
    on_disk = [job["request"]["prompt"] for job in read_project_file(project)["jobs"]]
    assert on_disk == ["c", "d", "a", "b"]


def test_model_drop_onto_row_and_end(project: Project) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    for name in "abc":
        queue.add({"prompt": name})

    model.dropMimeData(model.mimeData([model.index(0, 0)]), MOVE, -1, -1, QModelIndex())
    assert model_prompts(model) == ["b", "c", "a"]

    model.dropMimeData(model.mimeData([model.index(2, 0)]), MOVE, -1, -1, model.index(1, 0))
    assert model_prompts(model) == ["b", "a", "c"]


def test_model_rejects_foreign_mime_data(project: Project) -> None:
    from PySide6.QtCore import QMimeData

    queue = JobQueue(project)
    model = JobTableModel(queue)
    queue.add({"prompt": "a"})
    data = QMimeData()
    data.setText("a")

    assert not model.canDropMimeData(data, MOVE, 0, 0, QModelIndex())
    assert not model.dropMimeData(data, MOVE, 0, 0, QModelIndex())


def test_model_move_rows(project: Project) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    for name in "abc":
        queue.add({"prompt": name})

    assert model.moveRows(QModelIndex(), 0, 2, QModelIndex(), 3)

    assert model_prompts(model) == ["c", "a", "b"]


def test_view_drag_flags(project: Project) -> None:
    queue = JobQueue(project)
    model = JobTableModel(queue)
    queue.add({"prompt": "a"})

    assert model.flags(model.index(0, 0)) & Qt.ItemFlag.ItemIsDragEnabled
    assert not model.flags(model.index(0, 0)) & Qt.ItemFlag.ItemIsDropEnabled
    assert model.flags(QModelIndex()) & Qt.ItemFlag.ItemIsDropEnabled
    assert model.supportedDropActions() == MOVE


# -- demo project and settings ---------------------------------------------------------


def test_demo_project_created_once(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    project = open_demo_project(folder)
    queue = JobQueue(project)
    queue.remove(project.jobs[0].id)

    reopened = open_demo_project(folder)

    assert len(project.jobs) == len(DEMO_PROMPTS) - 1
    assert len(reopened.jobs) == len(DEMO_PROMPTS) - 1
    for job in reopened.jobs:
        assert job.request["model"] == "demo"
        assert job.request["width"] % 16 == 0
        assert job.request["height"] % 16 == 0


def test_demo_requests_are_valid(tmp_path: Path) -> None:
    from freeswim_engine.request import RenderRequest

    project = open_demo_project(tmp_path / "demo")

    for job in project.jobs:
        RenderRequest.from_dict(job.request).validate()


def test_demo_project_default_folder(isolated_user_folders: Path) -> None:
    project = open_demo_project()

    assert project.folder == (isolated_user_folders / "data" / "demo-project").resolve()


def test_settings_round_trip(isolated_user_folders: Path) -> None:
    settings = AppSettings.load()
    for index in range(MAX_RECENT_PROJECTS + 2):
        settings.add_recent_project(isolated_user_folders / f"p{index}")
    settings.add_recent_project(isolated_user_folders / "p3")
    settings.ui_state["main_window"] = "AAAA"
    settings.save()

    loaded = AppSettings.load()

    assert config_dir() == isolated_user_folders / "config"
    assert len(loaded.recent_projects) == MAX_RECENT_PROJECTS
    assert loaded.last_project == (isolated_user_folders / "p3").resolve()
    assert loaded.ui_state == {"main_window": "AAAA"}


def test_settings_bad_values_default(isolated_user_folders: Path) -> None:
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"show_previews": "yes", "device": "cuda:1", "recent_projects": "x"}))

    settings = AppSettings.load()

    assert settings.show_previews is True
    assert settings.device == "cuda:1"
    assert settings.recent_projects == []


def test_settings_unreadable_file_defaults(isolated_user_folders: Path) -> None:
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{")

    assert AppSettings.load() == AppSettings()


def test_settings_save_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings = AppSettings(path=blocker / "settings.json")

    with pytest.raises(SettingsSaveError, match="FREESWIM_CONFIG_DIR"):
        settings.save()


def test_settings_file_without_new_keys_loads(isolated_user_folders: Path) -> None:
    # A settings file written before dtype, the folders and the preview interval existed.
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True)
    old = {"recent_projects": [], "default_model": "demo", "device": "cpu", "show_previews": False, "ui_state": {}}
    path.write_text(json.dumps(old))

    settings = AppSettings.load()

    assert settings.device == "cpu"
    assert settings.show_previews is False
    assert settings.dtype == "auto"
    assert settings.output_dir is None
    assert settings.cache_dir is None
    assert settings.preview_every_steps == 1


def test_settings_new_fields_round_trip(isolated_user_folders: Path, tmp_path: Path) -> None:
    settings = AppSettings.load()
    settings.dtype = "bfloat16"
    settings.output_dir = tmp_path / "videos"
    settings.cache_dir = tmp_path / "scratch"
    settings.preview_every_steps = 5
    settings.save()

    loaded = AppSettings.load()

    assert loaded.dtype == "bfloat16"
    assert loaded.output_dir == tmp_path / "videos"
    assert loaded.cache_dir == tmp_path / "scratch"
    assert loaded.preview_every_steps == 5


@pytest.mark.parametrize(
    "values",
    [
        {"dtype": "float16", "output_dir": 3, "cache_dir": "", "preview_every_steps": 0},
        {"dtype": None, "output_dir": "  ", "cache_dir": ["x"], "preview_every_steps": True},
        {"preview_every_steps": "2"},
    ],
)
def test_settings_invalid_new_fields_default(isolated_user_folders: Path, values: dict) -> None:
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"device": "cuda", **values}))

    settings = AppSettings.load()

    assert settings.device == "cuda"
    assert settings.dtype == "auto"
    assert settings.output_dir is None
    assert settings.cache_dir is None
    assert settings.preview_every_steps == 1


def test_engine_cache_dir_set_and_restored(tmp_path: Path) -> None:
    from freeswim_app.settings import ENGINE_CACHE_DIR_ENV, apply_engine_cache_dir
    from freeswim_engine.demo_model import cache_root

    apply_engine_cache_dir(tmp_path / "scratch", inherited="/inherited")
    assert cache_root() == tmp_path / "scratch"

    apply_engine_cache_dir(None, inherited="/inherited")
    assert os.environ[ENGINE_CACHE_DIR_ENV] == "/inherited"

    apply_engine_cache_dir(None, inherited=None)
    assert ENGINE_CACHE_DIR_ENV not in os.environ
