"""Main window on a real AppState, JobQueue and RenderRunner, with a simulated engine on the worker thread."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication, QMessageBox

from freeswim_app.jobs import JobState
from freeswim_app.main import AppState
from freeswim_app.project import PROJECT_FILE, Project
from freeswim_app.settings import AppSettings
from freeswim_app.ui.main_window import MainWindow
from freeswim_app.ui.player import PlayerWidget
from freeswim_engine import video_io
from freeswim_engine.errors import RenderCancelled
from freeswim_engine.request import RenderRequest

MAX_BLOCKING_S = 30  # a blocking simulated render gives up after this long, so a broken test cannot hang


@dataclasses.dataclass
class FakeCallbacks:
    on_stage: Any = None
    on_progress: Any = None
    on_preview: Any = None
    should_cancel: Any = None


class FakeEngine:
    """Stands in for freeswim_engine.api: reports steps and previews, then writes small real MP4s.

    With `block=True` a render keeps going until it is cancelled, like a long render the user quits.
    """

    def __init__(self, block: bool = False, steps: int = 3) -> None:
        self.block = block
        self.steps = steps
        self.threads: list[threading.Thread] = []
        self.started = threading.Event()

    def module(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(RenderCallbacks=FakeCallbacks, render=self.render, upscale=self.render)

    def render(self, request: RenderRequest, callbacks: FakeCallbacks, *, work_dir: Path) -> Any:
        self.threads.append(threading.current_thread())
        self.started.set()
        callbacks.on_stage("stage2")
        step = 0
        deadline = time.monotonic() + MAX_BLOCKING_S
        while step < self.steps or (self.block and time.monotonic() < deadline):
            if callbacks.should_cancel():
                raise RenderCancelled("cancelled")
            step += 1
            callbacks.on_progress("stage2", min(step, self.steps), self.steps)
            if callbacks.on_preview is not None:
                callbacks.on_preview("stage2", np.full((2, 16, 28, 3), step * 40 % 256, dtype=np.uint8))
            time.sleep(0.01)
        frames = np.zeros((5, request.height, request.width, 3), dtype=np.uint8)
        frames[..., 1] = 200
        output = video_io.write_mp4(frames, request.output_path, 16, metadata={"prompt": request.prompt})
        base = video_io.write_mp4(frames[:, ::2, ::2], Path(work_dir) / "base.mp4", 16)
        resolved = dataclasses.replace(request, seed=request.seed if request.seed is not None else 1234, num_frames=5, fps=16)
        return types.SimpleNamespace(
            output_path=output,
            sidecar_path=video_io.sidecar_path_for(output),
            seed=resolved.seed,
            request=resolved,
            base_video_path=base,
            latents_path=None,
            peak_memory_bytes=None,
            seconds=0.5,
            warnings=[],
            plan_summary=None,
        )


def demo_request(prompt: str) -> dict:
    return {"prompt": prompt, "model": "demo", "width": 448, "height": 256, "num_frames": 5}


@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(path=tmp_path / "config" / "settings.json")


def make_window(qtbot, tmp_path: Path, settings: AppSettings, engine: FakeEngine, jobs: int = 0) -> MainWindow:
    project = Project.create(tmp_path / "project")
    state = AppState(project, settings, engine_loader=engine.module)
    for index in range(jobs):
        state.queue.add(demo_request(f"job {index}"))
    window = MainWindow(state)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def gui_thread_checks(monkeypatch) -> list[str]:
    """Record calls of PlayerWidget.show_preview made outside the GUI thread."""
    violations: list[str] = []
    original = PlayerWidget.show_preview

    def checked_show_preview(self: PlayerWidget, stage: str, frames: np.ndarray) -> None:
        if QThread.currentThread() is not QApplication.instance().thread():
            violations.append("PlayerWidget.show_preview")
        original(self, stage, frames)

    monkeypatch.setattr(PlayerWidget, "show_preview", checked_show_preview)
    return violations


def test_window_builds_with_real_queue(qtbot, tmp_path: Path, settings: AppSettings) -> None:
    window = make_window(qtbot, tmp_path, settings, FakeEngine(), jobs=2)
    assert window.queue_panel.model.rowCount() == 2
    assert window.queue_dock.isVisible()
    assert window.editor_dock.isVisible()
    assert window.player.isVisible()
    menus = [action.text() for action in window.menuBar().actions()]
    assert menus == ["&File", "&Queue", "&View", "&Help"]
    assert window.windowTitle().startswith("project")
    window.state.shutdown()


def test_editor_add_puts_job_in_queue(qtbot, tmp_path: Path, settings: AppSettings) -> None:
    window = make_window(qtbot, tmp_path, settings, FakeEngine())
    editor = window.editor
    editor.set_request(demo_request("a lighthouse in a storm"))
    assert editor.add_button.isEnabled()
    editor.add_button.click()
    queue = window.state.queue
    assert len(queue) == 1
    assert queue.job_at(0).prompt == "a lighthouse in a storm"
    assert queue.job_at(0).request["width"] == 448
    assert window.queue_panel.selected_job_ids() == [queue.job_at(0).id]
    saved = (window.state.project.folder / PROJECT_FILE).read_text(encoding="utf-8")
    assert "a lighthouse in a storm" in saved
    window.state.shutdown()


def test_new_jobs_use_settings_device_and_dtype(qtbot, tmp_path: Path, settings: AppSettings, monkeypatch) -> None:
    settings.device = "cpu"
    settings.dtype = "float32"
    window = make_window(qtbot, tmp_path, settings, FakeEngine())
    request = window.editor.request_dict()
    assert request["device"] == "cpu"
    assert request["dtype"] == "float32"

    class AcceptingDialog:
        def __init__(self, app_settings: AppSettings, parent: object) -> None:
            self.settings = app_settings

        def exec(self) -> int:
            self.settings.dtype = "bfloat16"
            self.settings.preview_every_steps = 3
            return 1

    monkeypatch.setattr("freeswim_app.ui.main_window.SettingsDialog", AcceptingDialog)
    window.editor.prompt_edit.setPlainText("kept after the settings change")
    window.show_settings()

    request = window.editor.request_dict()
    assert request["dtype"] == "bfloat16"
    assert request["prompt"] == "kept after the settings change"
    assert window.state.runner.preview_every_steps == 3
    window.state.shutdown()


def test_missing_default_model_falls_back(qtbot, tmp_path: Path, settings: AppSettings, monkeypatch) -> None:
    from freeswim_app.ui import engine_info

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    engine_info.model_info.cache_clear()
    settings.default_model = "wan2.1-t2v-1.3b"
    window = make_window(qtbot, tmp_path, settings, FakeEngine())

    assert window.editor.current_model() == "demo"
    assert window.editor.model_hint_label.isVisible()
    assert "Wan2.1-T2V-1.3B" in window.editor.model_hint_label.text()
    window.state.shutdown()
    engine_info.model_info.cache_clear()


def test_edit_queued_job_through_editor(qtbot, tmp_path: Path, settings: AppSettings) -> None:
    window = make_window(qtbot, tmp_path, settings, FakeEngine(), jobs=1)
    job = window.state.queue.job_at(0)
    window.queue_panel.select_job(job.id)
    window.queue_panel.edit_action.trigger()
    assert window.editor.editing_job_id() == job.id
    window.editor.prompt_edit.setPlainText("changed prompt")
    window.editor.add_button.click()
    assert window.state.queue.job(job.id).prompt == "changed prompt"
    assert len(window.state.queue) == 1
    window.state.shutdown()


def test_render_shows_previews_then_video(qtbot, tmp_path: Path, settings: AppSettings, gui_thread_checks: list[str]) -> None:
    engine = FakeEngine(steps=3)
    window = make_window(qtbot, tmp_path, settings, engine, jobs=1)
    previews: list[str] = []
    window.state.runner.preview_ready.connect(lambda message: previews.append(message.stage))
    job_id = window.state.queue.job_at(0).id

    window.start_pause_action.trigger()
    qtbot.waitUntil(lambda: window.state.queue.job(job_id).state is JobState.DONE, timeout=30000)

    assert previews, "the worker sent previews"
    assert engine.threads[0] is not threading.main_thread()
    assert gui_thread_checks == []
    job = window.state.queue.job(job_id)
    assert job.result.seed == 1234
    qtbot.waitUntil(lambda: window.player.frame_view.current_image() is not None, timeout=30000)
    assert window.player.compare_source() is not None, "the base video is loaded for A/B"
    shown = window.player.frame_view.current_image().frame
    assert shown.shape == (256, 448, 3)
    assert int(shown[..., 1].mean()) > 150
    window.state.shutdown()


def test_close_during_render_asks_and_interrupts(qtbot, tmp_path: Path, settings: AppSettings, monkeypatch) -> None:
    engine = FakeEngine(block=True)
    window = make_window(qtbot, tmp_path, settings, engine, jobs=1)
    job_id = window.state.queue.job_at(0).id
    questions: list[str] = []

    def answer(answer_button):
        def question(*args, **kwargs):
            questions.append(args[1])
            return answer_button

        return question

    window.state.queue.start()
    qtbot.waitUntil(lambda: window.state.is_busy and engine.started.is_set(), timeout=30000)

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    assert not window.close()
    assert len(questions) == 1
    assert window.state.queue.job(job_id).state is JobState.RUNNING

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    assert window.close()
    assert len(questions) == 2
    assert window.state.runner.engine_thread.isFinished()
    assert window.state.queue.job(job_id).state is JobState.INTERRUPTED
    reopened = Project.open(window.state.project.folder)
    assert reopened.find_job(job_id).state is JobState.INTERRUPTED


def test_close_when_idle_does_not_ask(qtbot, tmp_path: Path, settings: AppSettings, monkeypatch) -> None:
    window = make_window(qtbot, tmp_path, settings, FakeEngine(), jobs=1)
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: pytest.fail("asked while idle"))
    assert window.close()
    assert window.state.runner.engine_thread.isFinished()
    assert "main_window.state" in settings.ui_state


def test_corrupt_project_shows_message_bar(qtbot, tmp_path: Path, settings: AppSettings) -> None:
    window = make_window(qtbot, tmp_path, settings, FakeEngine())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / PROJECT_FILE).write_text("{ not json", encoding="utf-8")

    assert not window.open_project(broken)
    assert window.message_bar.isVisible()
    assert "invalid" in window.message_bar.label.text()
    assert window.message_bar.action_button.isVisible()

    window.message_bar.action_button.click()
    assert window.state.project.folder == broken.resolve()
    assert window.queue_panel.queue is window.state.queue
    window.state.shutdown()


def test_open_other_project_rebuilds_queue(qtbot, tmp_path: Path, settings: AppSettings) -> None:
    window = make_window(qtbot, tmp_path, settings, FakeEngine(), jobs=1)
    other = Project.create(tmp_path / "other")
    other.jobs.append(__import__("freeswim_app.jobs", fromlist=["Job"]).Job(request=demo_request("from other")))
    other.save()
    assert window.open_project(other.folder)
    assert window.queue_panel.model.rowCount() == 1
    assert window.queue_panel.model.index(0, 1).data() == "from other"
    assert str(other.folder) in settings.recent_projects[0]
    window.state.shutdown()


def test_failed_job_shows_error(qtbot, tmp_path: Path, settings: AppSettings) -> None:
    def failing_render(request, callbacks, *, work_dir):
        from freeswim_engine.errors import OutOfMemoryError

        raise OutOfMemoryError("CUDA out of memory in stage 2 with the GPU cache plan. Use a cache interval of 5.")

    engine = FakeEngine()
    engine.render = failing_render  # type: ignore[method-assign]
    window = make_window(qtbot, tmp_path, settings, engine, jobs=1)
    job_id = window.state.queue.job_at(0).id
    window.state.queue.start()
    qtbot.waitUntil(lambda: window.state.queue.job(job_id).state is JobState.FAILED, timeout=30000)
    assert "out of memory" in window.message_bar.label.text()
    window.queue_panel.select_job(job_id)
    assert "Error: CUDA out of memory" in window.queue_panel.details_label.text()
    window.state.shutdown()


def test_log_panel_receives_worker_thread_records(qtbot, tmp_path: Path, settings: AppSettings) -> None:
    import logging

    window = make_window(qtbot, tmp_path, settings, FakeEngine())
    received_in: list[bool] = []
    window.log_panel.handler.record_logged.connect(
        lambda _level, _text: received_in.append(QThread.currentThread() is QApplication.instance().thread())
    )
    worker = threading.Thread(target=lambda: logging.getLogger("freeswim_engine.test").warning("from a worker thread"))
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: "from a worker thread" in window.log_panel.text_view.toPlainText(), timeout=30000)
    assert received_in and all(received_in)
    window.state.shutdown()
