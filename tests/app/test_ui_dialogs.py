"""Export, settings and About dialogs, and the log panel's handler."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from freeswim_app.settings import AppSettings
from freeswim_app.ui.about_dialog import AboutDialog
from freeswim_app.ui.export_dialog import ExportDialog, export_video, source_metadata
from freeswim_app.ui.log_panel import LogPanel
from freeswim_app.ui.settings_dialog import SettingsDialog
from freeswim_engine import video_io
from freeswim_engine.errors import ExportError


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    frames = np.zeros((5, 64, 96, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(5, dtype=np.uint8)[:, None, None] * 50
    metadata = {"prompt": "a red fox", "seed": 7, "model": "demo"}
    return video_io.write_mp4(frames, tmp_path / "render.mp4", 16, metadata=metadata)


def test_export_keeps_metadata_and_sets_codec(rendered: Path, tmp_path: Path) -> None:
    metadata = source_metadata(rendered)
    assert metadata["prompt"] == "a red fox"
    assert "export" not in metadata

    written = export_video(rendered, tmp_path / "out" / "fox", fps=24, codec="h265", crf=30, metadata=metadata)

    assert written == tmp_path / "out" / "fox.mp4"
    info = video_io.probe_mp4(written)
    assert info.codec in ("hevc", "h265")
    assert info.num_frames == 5
    assert info.fps == pytest.approx(24)
    settings = info.embedded_settings()
    assert settings is not None
    assert settings["seed"] == 7
    assert settings["prompt"] == "a red fox"
    assert settings["export"]["crf"] == 30


def test_export_rejects_overwriting_source(rendered: Path) -> None:
    with pytest.raises(ExportError, match="onto itself"):
        export_video(rendered, rendered, fps=16, codec="h264", crf=18, metadata={})


def test_export_dialog_runs_in_background(qtbot, rendered: Path, tmp_path: Path) -> None:
    dialog = ExportDialog(rendered, 16, num_frames=5)
    qtbot.addWidget(dialog)
    destination = tmp_path / "exported.mp4"
    dialog.destination_edit.setText(str(destination))
    dialog.crf_spin.setValue(23)
    finished_in: list[bool] = []
    dialog.task.finished.connect(lambda _path: finished_in.append(QThread.currentThread() is QApplication.instance().thread()))
    with qtbot.waitSignal(dialog.exported, timeout=30000) as blocker:
        dialog.export_button.click()
    assert blocker.args == [str(destination)]
    qtbot.waitUntil(lambda: bool(finished_in), timeout=30000)
    assert finished_in == [True]
    assert destination.is_file()
    assert "Wrote" in dialog.status_label.text()


def test_export_dialog_reports_failure(qtbot, rendered: Path) -> None:
    dialog = ExportDialog(rendered, 16)
    qtbot.addWidget(dialog)
    dialog.destination_edit.setText(str(rendered))
    with qtbot.waitSignal(dialog.task.failed, timeout=30000):
        dialog.export_button.click()
    assert "onto itself" in dialog.status_label.text()
    assert dialog.export_button.isEnabled()


def test_settings_dialog_saves_fields(qtbot, tmp_path: Path) -> None:
    settings = AppSettings(path=tmp_path / "settings.json")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.editors["device"].setCurrentText("cpu")
    dialog.editors["show_previews"].setChecked(False)
    dialog.editors["default_model"].setCurrentText("wan2.1-t2v-1.3b")
    dialog.accept()
    assert settings.device == "cpu"
    assert settings.show_previews is False
    reloaded = AppSettings.load(tmp_path / "settings.json")
    assert reloaded.device == "cpu"
    assert reloaded.default_model == "wan2.1-t2v-1.3b"


def test_settings_dialog_rejects_empty_device(qtbot, tmp_path: Path) -> None:
    settings = AppSettings(path=tmp_path / "settings.json")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.editors["device"].setCurrentText("")
    dialog.accept()
    assert settings.device == "auto"
    assert dialog.error_label.isVisibleTo(dialog)
    assert not (tmp_path / "settings.json").exists()


def test_about_lists_versions_and_device(qtbot) -> None:
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    for name in ("freeswim-studio", "torch", "diffusers", "transformers", "PySide6"):
        assert dialog.version_labels[name].text() not in ("", "not installed"), name
    assert dialog.device_label.text()


def test_log_panel_filters_levels(qtbot) -> None:
    panel = LogPanel()
    qtbot.addWidget(panel)
    logger = logging.getLogger("freeswim_app.test_log_panel")
    logger.setLevel(logging.DEBUG)
    logger.info("an info line")
    logger.warning("a warning line")
    qtbot.waitUntil(lambda: "a warning line" in panel.text_view.toPlainText(), timeout=30000)
    assert "an info line" in panel.text_view.toPlainText()
    panel.level_box.setCurrentIndex(panel.level_box.findData(logging.WARNING))
    assert "an info line" not in panel.text_view.toPlainText()
    assert "a warning line" in panel.text_view.toPlainText()
    panel.detach()


def test_log_handler_delivers_in_gui_thread(qtbot) -> None:
    panel = LogPanel()
    qtbot.addWidget(panel)
    delivered_in: list[bool] = []
    panel.handler.record_logged.connect(
        lambda _level, _text: delivered_in.append(QThread.currentThread() is QApplication.instance().thread())
    )
    thread = threading.Thread(target=lambda: logging.getLogger("freeswim_engine.test").error("engine thread"))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: "engine thread" in panel.text_view.toPlainText(), timeout=30000)
    assert delivered_in == [True]
    panel.detach()


def test_settings_dialog_shows_new_fields(qtbot, tmp_path: Path) -> None:
    settings = AppSettings(path=tmp_path / "settings.json", preview_every_steps=3)
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    for name in ("dtype", "output_dir", "cache_dir", "preview_every_steps"):
        assert name in dialog.editors, name
    assert dialog.editors["preview_every_steps"].value() == 3
    assert dialog.editors["preview_every_steps"].minimum() == 1
    assert "copied" in dialog.notes["output_dir"].text()

    dialog.editors["dtype"].setCurrentText("float32")
    dialog.editors["output_dir"].setText(str(tmp_path / "videos"))
    dialog.editors["cache_dir"].setText("")
    dialog.editors["preview_every_steps"].setValue(4)
    dialog.accept()

    reloaded = AppSettings.load(tmp_path / "settings.json")
    assert reloaded.dtype == "float32"
    assert reloaded.output_dir == tmp_path / "videos"
    assert reloaded.cache_dir is None
    assert reloaded.preview_every_steps == 4


def test_settings_dialog_rejects_file_as_folder(qtbot, tmp_path: Path) -> None:
    settings = AppSettings(path=tmp_path / "settings.json")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.editors["output_dir"].setText(str(blocker))
    dialog.accept()
    assert settings.output_dir is None
    assert "not a folder" in dialog.error_label.text()
    assert not (tmp_path / "settings.json").exists()
