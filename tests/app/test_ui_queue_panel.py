"""Queue panel: rows follow the JobQueue, actions change it, and running jobs show their progress."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QPalette

from freeswim_app.jobs import JobKind, JobProgress, JobResult, JobState
from freeswim_app.project import Project
from freeswim_app.queue_model import JobColumn, JobQueue
from freeswim_app.ui.frames import qimage_to_array
from freeswim_app.ui.queue_panel import QueuePanel


def demo_request(prompt: str) -> dict:
    return {"prompt": prompt, "model": "demo", "width": 448, "height": 256, "num_frames": 5}


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(Project.create(tmp_path / "project"))


def make_panel(qtbot, queue: JobQueue) -> QueuePanel:
    panel = QueuePanel(queue)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    return panel


def cell_text(panel: QueuePanel, row: int, column: JobColumn) -> str:
    return str(panel.model.index(row, column).data() or "")


def test_panel_lists_jobs_in_order(qtbot, queue: JobQueue) -> None:
    queue.add(demo_request("first"))
    queue.add(demo_request("second"))
    panel = make_panel(qtbot, queue)
    assert panel.model.rowCount() == 2
    assert cell_text(panel, 0, JobColumn.PROMPT) == "first"
    assert cell_text(panel, 1, JobColumn.SIZE) == "448x256"
    assert cell_text(panel, 0, JobColumn.STATE) == "Queued"
    queue.add(demo_request("third"))
    assert panel.model.rowCount() == 3


def test_panel_reflects_state_changes(qtbot, queue: JobQueue) -> None:
    job = queue.add(demo_request("fox"))
    panel = make_panel(qtbot, queue)

    queue.mark_running(job.id, time.time())
    assert cell_text(panel, 0, JobColumn.STATE) == "Running"
    queue.update_progress(job.id, JobProgress("stage2", 12, 35, 65.0))
    progress = cell_text(panel, 0, JobColumn.PROGRESS)
    assert "12/35" in progress
    assert "Stage 2" in progress
    assert "1:05" in progress

    queue.mark_stopped(job.id, JobState.FAILED, "Out of memory in stage 2. Use a cache interval of 5.", time.time())
    assert cell_text(panel, 0, JobColumn.STATE) == "Failed"
    assert "Out of memory" in cell_text(panel, 0, JobColumn.PROGRESS)
    panel.select_job(job.id)
    assert "Error: Out of memory" in panel.details_label.text()
    assert panel.retry_action.isEnabled()
    assert not panel.cancel_action.isEnabled()


def highlight_pixels(panel: QueuePanel) -> int:
    """Count pixels of the progress cell close to the palette's highlight colour (the bar's chunk)."""
    rect = panel.table.visualRect(panel.model.index(0, JobColumn.PROGRESS))
    cell = qimage_to_array(panel.table.viewport().grab(rect).toImage()).astype(int)
    highlight = panel.table.palette().color(QPalette.ColorRole.Highlight)
    target = np.array([highlight.red(), highlight.green(), highlight.blue()])
    return int((np.abs(cell - target).max(axis=2) <= 40).sum())


def test_panel_paints_progress_bar_for_running_job(qtbot, queue: JobQueue) -> None:
    job = queue.add(demo_request("fox"))
    panel = make_panel(qtbot, queue)
    queue.mark_running(job.id, time.time())
    queue.update_progress(job.id, JobProgress("stage2", 3, 35, 50.0))
    qtbot.wait(10)
    small = highlight_pixels(panel)
    queue.update_progress(job.id, JobProgress("stage2", 33, 35, 5.0))
    qtbot.wait(10)
    large = highlight_pixels(panel)
    assert large > 100, "the bar's chunk is drawn"
    assert large > small, "the bar grows with progress"


def test_panel_buttons_follow_selection(qtbot, queue: JobQueue) -> None:
    queued = queue.add(demo_request("queued"))
    running = queue.add(demo_request("running"))
    queue.mark_running(running.id, time.time())
    panel = make_panel(qtbot, queue)

    assert not panel.edit_action.isEnabled()
    panel.select_job(queued.id)
    assert panel.edit_action.isEnabled()
    assert panel.remove_action.isEnabled()
    assert not panel.retry_action.isEnabled()
    panel.select_job(running.id)
    assert not panel.edit_action.isEnabled()
    assert not panel.remove_action.isEnabled()
    assert panel.cancel_action.isEnabled()


def test_panel_duplicate_cancel_retry_remove(qtbot, queue: JobQueue) -> None:
    job = queue.add(demo_request("fox"))
    panel = make_panel(qtbot, queue)
    panel.select_job(job.id)

    panel.duplicate_action.trigger()
    assert len(queue) == 2
    assert queue.job_at(1).prompt == "fox"

    panel.select_job(job.id)
    panel.cancel_action.trigger()
    assert queue.job(job.id).state is JobState.CANCELLED
    panel.retry_action.trigger()
    assert queue.job(job.id).state is JobState.QUEUED
    panel.remove_action.trigger()
    assert len(queue) == 1
    assert panel.model.rowCount() == 1


def test_panel_cancel_running_asks_worker(qtbot, queue: JobQueue) -> None:
    job = queue.add(demo_request("fox"))
    queue.mark_running(job.id, time.time())
    panel = make_panel(qtbot, queue)
    panel.select_job(job.id)
    with qtbot.waitSignal(queue.cancel_requested):
        panel.cancel_action.trigger()
    assert cell_text(panel, 0, JobColumn.STATE) == "Cancelling"


def test_panel_edit_emits_job_id(qtbot, queue: JobQueue) -> None:
    job = queue.add(demo_request("fox"))
    panel = make_panel(qtbot, queue)
    panel.select_job(job.id)
    with qtbot.waitSignal(panel.edit_requested) as blocker:
        panel.edit_action.trigger()
    assert blocker.args == [job.id]


def test_panel_start_and_pause_queue(qtbot, queue: JobQueue) -> None:
    panel = make_panel(qtbot, queue)
    assert panel.start_action.text() == "Start queue"
    panel.start_action.trigger()
    assert queue.is_running
    assert panel.start_action.text() == "Pause queue"
    panel.start_action.trigger()
    assert not queue.is_running
    assert panel.start_action.text() == "Start queue"


def test_panel_reorders_by_drop(qtbot, queue: JobQueue) -> None:
    first = queue.add(demo_request("first"))
    queue.add(demo_request("second"))
    queue.add(demo_request("third"))
    panel = make_panel(qtbot, queue)
    data = panel.model.mimeData([panel.model.index(0, JobColumn.PROMPT)])
    assert panel.model.dropMimeData(data, Qt.DropAction.MoveAction, 3, 0, QModelIndex())
    assert [job.prompt for job in queue.jobs] == ["second", "third", "first"]
    assert cell_text(panel, 2, JobColumn.PROMPT) == "first"
    assert queue.row_of(first.id) == 2
    assert panel.table.dragDropMode() == panel.table.DragDropMode.InternalMove


def test_panel_upscale_finished_render(qtbot, queue: JobQueue, tmp_path: Path) -> None:
    job = queue.add(demo_request("fox"))
    base = tmp_path / "base.mp4"
    base.write_bytes(b"not read by this test")
    queue.mark_running(job.id, time.time())
    queue.mark_done(job.id, JobResult(output_path=tmp_path / "out.mp4", base_video_path=base, seed=42), time.time())
    panel = make_panel(qtbot, queue)
    panel.select_job(job.id)
    assert panel.upscale_button.isEnabled()
    assert "Seed used: 42" in panel.details_label.text()

    panel.upscale_actions[0].trigger()
    assert len(queue) == 2
    upscale = queue.job_at(1)
    assert upscale.kind is JobKind.UPSCALE
    assert upscale.size == (2560, 1440)
    assert upscale.request["input_video"] == str(base)


def test_panel_shows_thumbnail_of_done_job(qtbot, queue: JobQueue, tmp_path: Path) -> None:
    from PySide6.QtGui import QImage

    job = queue.add(demo_request("fox"))
    thumbnail = tmp_path / "thumb.png"
    image = QImage(64, 36, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.red)
    image.save(str(thumbnail))
    queue.mark_running(job.id, time.time())
    queue.mark_done(job.id, JobResult(output_path=tmp_path / "out.mp4", seconds=3.0), time.time())
    panel = make_panel(qtbot, queue)
    queue.set_thumbnail(job.id, thumbnail)
    icon = panel.model.index(0, JobColumn.THUMBNAIL).data(Qt.ItemDataRole.DecorationRole)
    assert icon is not None
    assert not icon.isNull()
    assert cell_text(panel, 0, JobColumn.PROGRESS) == "Done in 0:03"


def test_panel_shows_queue_errors(qtbot, queue: JobQueue) -> None:
    job = queue.add(demo_request("fox"))
    panel = make_panel(qtbot, queue)
    queue.mark_running(job.id, time.time())
    panel.select_job(job.id)
    panel.remove_selected()  # the running job cannot be removed
    assert panel.message_label.isVisibleTo(panel)
    assert "running" in panel.message_label.text()
