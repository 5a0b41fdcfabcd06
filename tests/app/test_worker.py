"""The engine worker thread and the render runner: dispatch, results, failures, cancel and shutdown.

Most tests use the scripted engine from conftest, which renders real MP4s and
lets a test hold a render at a step. The last tests run the real engine on
the demo model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, QThread
from pytestqt.qtbot import QtBot

from freeswim_app.demo_project import demo_request
from freeswim_app.jobs import JobState
from freeswim_app.main import AppState
from freeswim_app.project import Project
from freeswim_app.queue_model import JobQueue
from freeswim_app.settings import AppSettings
from freeswim_app.worker import (
    MAX_PREVIEW_FRAMES,
    PreviewMessage,
    RenderRunner,
    output_path_for,
    preview_frames,
)
from tests.app.conftest import ScriptedEngine

WAIT_MS = 60_000


@pytest.fixture
def queue(project: Project) -> JobQueue:
    return JobQueue(project)


@pytest.fixture
def make_runner(queue: JobQueue) -> Iterator:
    runners: list[RenderRunner] = []

    def make(engine: ScriptedEngine) -> RenderRunner:
        runner = RenderRunner(queue, engine_loader=engine.loader())
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        assert runner.shutdown(timeout_s=30)


def small_request(prompt: str) -> dict:
    return {"prompt": prompt, "width": 64, "height": 32, "seed": 3}


def test_runner_renders_queue_in_order(qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner) -> None:
    runner = make_runner(scripted_engine)
    first = queue.add(small_request("first"))
    second = queue.add(small_request("second"))
    queue.move(second.id, 0)

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()

    assert scripted_engine.rendered == ["second", "first"]
    for job_id in (first.id, second.id):
        job = queue.job(job_id)
        assert job.state is JobState.DONE
        assert job.result.output_path is not None
        assert job.result.output_path.parent == queue.project.outputs_dir
        assert job.result.output_path.is_file()
        assert job.result.seed == 3
        assert job.finished_at is not None
        assert job.thumbnail_path == queue.project.job_dir(job_id) / "thumbnail.png"
        assert job.thumbnail_path.read_bytes().startswith(b"\x89PNG")
    assert all(thread is not threading.main_thread() for thread in scripted_engine.render_threads)


def test_runner_waits_for_start(qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner) -> None:
    make_runner(scripted_engine)
    job = queue.add(small_request("waits"))

    qtbot.wait(200)

    assert queue.job(job.id).state is JobState.QUEUED
    assert scripted_engine.rendered == []


def test_result_saved_in_project_file(qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner) -> None:
    runner = make_runner(scripted_engine)
    job = queue.add(small_request("saved"))

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()

    reloaded = Project.open(queue.project.folder)
    saved = reloaded.find_job(job.id)
    assert saved is not None
    assert saved.state is JobState.DONE
    assert saved.result.output_path == queue.job(job.id).result.output_path
    assert saved.thumbnail_path == queue.job(job.id).thumbnail_path


def test_failed_job_then_next_runs(
    qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner, caplog: pytest.LogCaptureFixture
) -> None:
    runner = make_runner(scripted_engine)
    failing = queue.add(small_request("fail on load"))
    crashing = queue.add(small_request("crash in the engine"))
    after = queue.add(small_request("after"))

    with caplog.at_level(logging.ERROR, logger="freeswim_app"):
        with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
            queue.start()

    assert queue.job(failing.id).state is JobState.FAILED
    assert "missing model_index.json" in (queue.job(failing.id).error or "")
    assert queue.job(crashing.id).state is JobState.FAILED
    assert "RuntimeError: scripted crash" in (queue.job(crashing.id).error or "")
    assert queue.job(after.id).state is JobState.DONE
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 2


def test_retry_after_failure_reuses_job(qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner) -> None:
    runner = make_runner(scripted_engine)
    scripted_engine.flaky_failures = 1
    job = queue.add(small_request("flaky"))
    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()
    assert queue.job(job.id).state is JobState.FAILED

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.retry(job.id)

    assert queue.job(job.id).state is JobState.DONE
    assert queue.job(job.id).error is None
    assert scripted_engine.work_dirs == [queue.project.job_dir(job.id)] * 2


def test_upscale_this_runs_upscale(qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner) -> None:
    runner = make_runner(scripted_engine)
    source = queue.add(small_request("source"))
    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()
    output = queue.job(source.id).result.output_path

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        upscale = queue.add_upscale(source.id, width=128, height=64)

    done = queue.job(upscale.id)
    assert done.state is JobState.DONE, done.error
    assert scripted_engine.calls == [("render", None), ("upscale", str(output))]
    assert done.result.output_path != output


class ScratchRecordingEngine(ScriptedEngine):
    """A scripted engine whose render and upscale take ``scratch_dir``, as the real engine's do."""

    def __init__(self) -> None:
        super().__init__()
        self.scratch_dirs: list[tuple[str, Path | None]] = []

    def render(self, request: Any, callbacks: Any = None, *, work_dir: Path | None = None, **options: Any) -> Any:
        mode = options.pop("mode", "render")
        self.scratch_dirs.append((mode, options.pop("scratch_dir", None)))
        return super().render(request, callbacks, work_dir=work_dir, mode=mode)

    def upscale(self, request: Any, callbacks: Any = None, *, work_dir: Path | None = None, **options: Any) -> Any:
        return self.render(request, callbacks, work_dir=work_dir, mode="upscale", **options)


def test_scratch_dir_reaches_engine(qtbot: QtBot, queue: JobQueue, make_runner, tmp_path: Path) -> None:
    engine = ScratchRecordingEngine()
    runner = make_runner(engine)
    runner.scratch_dir = tmp_path / "scratch"
    source = queue.add(small_request("with scratch"))
    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()
    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.add_upscale(source.id, width=128, height=64)

    runner.scratch_dir = None
    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.add(small_request("without scratch"))

    assert engine.scratch_dirs == [
        ("render", tmp_path / "scratch"),
        ("upscale", tmp_path / "scratch"),
        ("render", None),
    ]


def test_drained_reported_once(qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner) -> None:
    runner = make_runner(scripted_engine)
    drained: list[bool] = []
    runner.queue_drained.connect(lambda: drained.append(True))
    job = queue.add(small_request("once"))
    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()

    queue.duplicate(job.id)  # a change that looks at the queue again
    qtbot.waitUntil(lambda: len(drained) == 2, timeout=WAIT_MS)
    queue.remove(job.id)
    qtbot.wait(100)

    assert len(drained) == 2


def test_cancel_mid_run(qtbot: QtBot, queue: JobQueue, gated_engine: ScriptedEngine, make_runner) -> None:
    runner = make_runner(gated_engine)
    job = queue.add(small_request("long"))
    after = queue.add(small_request("next"))
    queue.start()
    qtbot.waitUntil(gated_engine.step_started.is_set, timeout=WAIT_MS)
    gated_engine.release(2)
    qtbot.waitUntil(lambda: queue.job(job.id).progress.step >= 2, timeout=WAIT_MS)

    with qtbot.waitSignal(runner.job_stopped, timeout=WAIT_MS) as stopped:
        queue.cancel(job.id)
    assert stopped.args[0] == job.id
    assert queue.job(job.id).state is JobState.CANCELLED
    assert list(queue.project.outputs_dir.glob("*long*")) == []

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        gated_engine.release(100)
    assert queue.job(after.id).state is JobState.DONE


def test_progress_and_preview_on_gui_thread(
    qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner
) -> None:
    runner = make_runner(scripted_engine)
    gui_thread = QCoreApplication.instance().thread()
    seen: list[tuple[str, bool]] = []
    previews: list[PreviewMessage] = []

    def record(name: str) -> None:
        seen.append((name, QThread.currentThread() is gui_thread))

    queue.progress_changed.connect(lambda job_id: record("progress"))
    queue.job_changed.connect(lambda job_id: record("job_changed"))
    runner.job_started.connect(lambda job_id: record("started"))
    runner.job_finished.connect(lambda job_id: record("finished"))
    runner.preview_ready.connect(lambda message: (record("preview"), previews.append(message)))
    job = queue.add(small_request("threads"))

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()

    names = {name for name, _ in seen}
    assert {"progress", "job_changed", "started", "finished", "preview"} <= names
    assert all(on_gui for _, on_gui in seen)
    assert previews[0].job_id == job.id
    assert previews[0].frames.shape == (2, 8, 8, 3)


@pytest.mark.parametrize(("every", "show", "expected"), [(1, True, 5), (2, True, 3), (5, True, 1), (2, False, 0)])
def test_previews_follow_settings(
    qtbot: QtBot, queue: JobQueue, make_runner, every: int, show: bool, expected: int
) -> None:
    engine = ScriptedEngine(steps=5)
    runner = make_runner(engine)
    runner.preview_every_steps = every
    runner.want_previews = show
    previews: list[PreviewMessage] = []
    runner.preview_ready.connect(previews.append)
    queue.add(small_request("previews"))

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()

    # Steps 1 to 5: every Nth step, and always the last one.
    assert len(previews) == expected


def test_output_folder_gets_copy(
    qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner, tmp_path: Path
) -> None:
    runner = make_runner(scripted_engine)
    runner.output_dir = tmp_path / "videos"
    job = queue.add(small_request("copied"))

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()

    output = job.result.output_path
    assert job.state is JobState.DONE
    assert output is not None and output.parent == queue.project.outputs_dir
    copy = tmp_path / "videos" / output.name
    assert copy.read_bytes() == output.read_bytes()
    assert (tmp_path / "videos" / job.result.sidecar_path.name).is_file()
    assert not list((tmp_path / "videos").glob(".*partial"))
    assert job.result.warnings == []


def test_output_folder_failure_warns(
    qtbot: QtBot, queue: JobQueue, scripted_engine: ScriptedEngine, make_runner, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    runner = make_runner(scripted_engine)
    runner.output_dir = blocker
    job = queue.add(small_request("not copied"))

    with qtbot.waitSignal(runner.queue_drained, timeout=WAIT_MS):
        queue.start()

    assert job.state is JobState.DONE
    assert job.result.output_path is not None and job.result.output_path.is_file()
    assert len(job.result.warnings) == 1
    assert str(blocker) in job.result.warnings[0]


def test_app_state_applies_settings(qtbot: QtBot, project: Project, scripted_engine: ScriptedEngine, tmp_path: Path) -> None:
    import os

    from freeswim_app.settings import ENGINE_CACHE_DIR_ENV

    settings = AppSettings(
        path=tmp_path / "settings.json",
        show_previews=False,
        preview_every_steps=4,
        output_dir=tmp_path / "videos",
        cache_dir=tmp_path / "cache",
    )
    inherited = os.environ.get(ENGINE_CACHE_DIR_ENV)
    state = AppState(project, settings, engine_loader=scripted_engine.loader())
    try:
        assert state.runner.want_previews is False
        assert state.runner.preview_every_steps == 4
        assert state.runner.output_dir == tmp_path / "videos"
        assert os.environ[ENGINE_CACHE_DIR_ENV] == str(tmp_path / "cache")
        assert state.runner.scratch_dir == tmp_path / "cache"

        settings.cache_dir = None
        settings.preview_every_steps = 2
        state.apply_settings()
        assert state.runner.preview_every_steps == 2
        assert state.runner.scratch_dir is None
        assert os.environ.get(ENGINE_CACHE_DIR_ENV) == inherited
    finally:
        assert state.shutdown(timeout_s=30)


def test_shutdown_during_render(qtbot: QtBot, qtlog, queue: JobQueue, gated_engine: ScriptedEngine) -> None:
    runner = RenderRunner(queue, engine_loader=gated_engine.loader())
    job = queue.add(small_request("interrupted"))
    queue.start()
    qtbot.waitUntil(gated_engine.step_started.is_set, timeout=WAIT_MS)

    assert runner.shutdown(timeout_s=30)

    assert runner.engine_thread.isFinished()
    assert queue.job(job.id).state is JobState.INTERRUPTED
    assert Project.open(queue.project.folder).find_job(job.id).state is JobState.INTERRUPTED
    assert runner.shutdown() is True  # a second call is harmless
    assert [record.message for record in qtlog.records if "QThread" in record.message] == []


def test_shutdown_keeps_user_cancel(qtbot: QtBot, queue: JobQueue, gated_engine: ScriptedEngine) -> None:
    runner = RenderRunner(queue, engine_loader=gated_engine.loader())
    job = queue.add(small_request("cancelled first"))
    queue.start()
    qtbot.waitUntil(gated_engine.step_started.is_set, timeout=WAIT_MS)
    queue.cancel(job.id)

    assert runner.shutdown(timeout_s=30)

    assert queue.job(job.id).state is JobState.CANCELLED


def test_shutdown_timeout_returns_false(qtbot: QtBot, queue: JobQueue, gated_engine: ScriptedEngine) -> None:
    runner = RenderRunner(queue, engine_loader=gated_engine.loader())
    queue.add(small_request("stuck"))
    queue.start()
    qtbot.waitUntil(gated_engine.step_started.is_set, timeout=WAIT_MS)

    assert runner.shutdown(timeout_s=0.2) is False

    gated_engine.release()
    assert runner.shutdown(timeout_s=30) is True


def test_app_state_shutdown_clean(qtbot: QtBot, project: Project, gated_engine: ScriptedEngine) -> None:
    state = AppState(project, AppSettings.load(), engine_loader=gated_engine.loader())
    job = state.queue.add(small_request("closing"))
    state.queue.start()
    qtbot.waitUntil(gated_engine.step_started.is_set, timeout=WAIT_MS)
    assert state.is_busy

    assert state.shutdown(timeout_s=30)

    assert state.queue.job(job.id).state is JobState.INTERRUPTED
    assert AppSettings.load().last_project == project.folder


def test_app_state_open_project(qtbot: QtBot, project: Project, tmp_path: Path, scripted_engine: ScriptedEngine) -> None:
    state = AppState(project, AppSettings.load(), engine_loader=scripted_engine.loader())
    other = Project.create(tmp_path / "other")

    with qtbot.waitSignal(state.project_changed):
        state.open_project(other.folder)

    assert state.project.folder == other.folder
    assert state.queue.project is state.project
    assert state.model.queue is state.queue
    assert AppSettings.load().recent_projects[:2] == [str(other.folder), str(project.folder)]
    assert state.shutdown(timeout_s=30)


def test_preview_frames_subsampled() -> None:
    import numpy

    frames = numpy.arange(40 * 2 * 2 * 3, dtype=numpy.uint8).reshape(40, 2, 2, 3)

    preview = preview_frames(frames)

    assert preview.shape == (MAX_PREVIEW_FRAMES, 2, 2, 3)
    assert (preview[0] == frames[0]).all()
    assert (preview[-1] == frames[-1]).all()
    assert preview.flags["C_CONTIGUOUS"]


def test_output_path_for_names() -> None:
    path = output_path_for(Path("/p/outputs"), "0123456789abcdef", "A cat: surfing / big waves!")

    assert path.parent == Path("/p/outputs")
    assert path.suffix == ".mp4"
    assert path.name.endswith("-a-cat-surfing-big-waves-01234567.mp4")


# -- the real engine on the demo model ---------------------------------------------------


@pytest.mark.slow
def test_demo_job_renders_mp4(qtbot: QtBot, queue: JobQueue) -> None:
    pytest.importorskip("freeswim_engine.api")
    from freeswim_engine.video_io import probe_mp4

    runner = RenderRunner(queue)
    job = queue.add(demo_request("a lighthouse in a storm", scale=1))  # the base size keeps the VAE cheap
    try:
        with qtbot.waitSignal(runner.queue_drained, timeout=600_000):
            queue.start()
    finally:
        assert runner.shutdown(timeout_s=120)

    done = queue.job(job.id)
    assert done.state is JobState.DONE, done.error
    assert done.result.output_path is not None
    assert done.result.output_path.parent == queue.project.outputs_dir
    info = probe_mp4(done.result.output_path)
    assert (info.width, info.height) == (224, 128)
    assert done.result.sidecar_path is not None and done.result.sidecar_path.is_file()
    assert done.thumbnail_path is not None and done.thumbnail_path.is_file()
    assert done.result.resolved_request is not None
    assert done.result.resolved_request["num_frames"] == 5
    assert done.request.get("num_frames") is None  # the job keeps the request as entered


@pytest.mark.slow
def test_demo_bad_model_folder_fails(qtbot: QtBot, queue: JobQueue, tmp_path: Path) -> None:
    pytest.importorskip("freeswim_engine.api")
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    runner = RenderRunner(queue)
    bad = queue.add(demo_request("bad model", scale=1, model=str(empty)))
    good = queue.add(demo_request("good model", scale=1))
    try:
        with qtbot.waitSignal(runner.queue_drained, timeout=600_000):
            queue.start()
    finally:
        assert runner.shutdown(timeout_s=120)

    failed = queue.job(bad.id)
    assert failed.state is JobState.FAILED
    assert str(empty) in (failed.error or "")
    assert queue.job(good.id).state is JobState.DONE, queue.job(good.id).error
