"""Main window: the queue panel, the job editor and the player in docks, with the app's menus."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QThread, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from freeswim_app import APP_DISPLAY_NAME
from freeswim_app.jobs import Job, JobState
from freeswim_app.project import ProjectCorruptError, ProjectError
from freeswim_app.ui import engine_info
from freeswim_app.ui.about_dialog import AboutDialog
from freeswim_app.ui.export_dialog import ExportDialog
from freeswim_app.ui.job_editor import JobEditor
from freeswim_app.ui.log_panel import LogPanel
from freeswim_app.ui.player import PlayerWidget
from freeswim_app.ui.queue_panel import QueuePanel
from freeswim_app.ui.settings_dialog import SettingsDialog
from freeswim_app.ui.style import apply_style
from freeswim_engine.errors import FreeSwimError
from freeswim_engine.logs import log_dir

logger = logging.getLogger(__name__)

WINDOW_STATE_KEY = "main_window.state"
WINDOW_GEOMETRY_KEY = "main_window.geometry"
SHUTDOWN_TIMEOUT_S = 120.0


class MessageBar(QFrame):
    """A dismissable line above the player for errors and notices that need no dialog."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton()
        self.action_button.hide()
        close = QToolButton()
        close.setText("x")
        close.setToolTip(self.tr("Dismiss"))
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        row.addWidget(self.label, 1)
        row.addWidget(self.action_button)
        row.addWidget(close)
        self._action: Any = None
        self.action_button.clicked.connect(self._run_action)
        self.hide()

    def show_message(self, text: str, severity: str = "error", action_text: str = "", action: Any = None) -> None:
        self.setProperty("severity", severity)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self._action = action
        self.action_button.setText(action_text)
        self.action_button.setVisible(bool(action_text and action))
        self.show()

    def _run_action(self) -> None:
        action = self._action
        self.hide()
        if action is not None:
            action()


class MainWindow(QMainWindow):
    """The window built on the core's AppState (project, queue, model, runner, settings)."""

    def __init__(self, app_state: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = app_state
        self._followed_job_id: str | None = None  # the job whose previews and result the player shows
        self._is_closing = False
        self.setObjectName("mainWindow")
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)
        apply_style(self)
        self._build_central()
        self._build_docks()
        self._build_menus()
        self._connect_state()
        self._restore_layout()
        self._update_title()
        self._report_recovered_jobs()
        self.resize(1600, 960)

    # -- building --------------------------------------------------------------

    def _build_central(self) -> None:
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(4, 4, 4, 4)
        self.message_bar = MessageBar()
        self.player = PlayerWidget()
        column.addWidget(self.message_bar)
        column.addWidget(self.player, 1)
        self.setCentralWidget(central)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        self.queue_panel = QueuePanel(self.state.queue, getattr(self.state, "model", None))
        self.editor = JobEditor()
        self.editor.set_new_job_defaults(self._new_job_defaults())
        self.log_panel = LogPanel()
        self.queue_dock = self._dock(self.tr("Queue"), "queueDock", self.queue_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.editor_dock = self._dock(self.tr("New job"), "editorDock", self.editor, Qt.DockWidgetArea.RightDockWidgetArea)
        self.log_dock = self._dock(self.tr("Log"), "logDock", self.log_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resizeDocks([self.queue_dock, self.editor_dock], [560, 420], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [140], Qt.Orientation.Vertical)
        self._connect_queue_panel()
        self.editor.add_requested.connect(self._add_job)
        self.editor.save_requested.connect(self._save_job)
        self.log_panel.open_log_folder_requested.connect(self.open_log_folder)

    def _build_menus(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu(self.tr("&File"))
        self.new_project_action = self._menu_action(file_menu, self.tr("&New project..."), self.new_project, QKeySequence.StandardKey.New)
        self.open_project_action = self._menu_action(file_menu, self.tr("&Open project..."), self.choose_project, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu(self.tr("Recent projects"))
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        self.export_action = self._menu_action(file_menu, self.tr("&Export video..."), self.export_selected, "Ctrl+E")
        self._menu_action(file_menu, self.tr("&Settings..."), self.show_settings, QKeySequence.StandardKey.Preferences)
        file_menu.addSeparator()
        self._menu_action(file_menu, self.tr("&Quit"), self.close, QKeySequence.StandardKey.Quit)

        queue_menu = menu_bar.addMenu(self.tr("&Queue"))
        self.start_pause_action = self._menu_action(queue_menu, self.tr("Start queue"), self.toggle_queue, "Ctrl+R")
        self._menu_action(queue_menu, self.tr("&New job in the editor"), self._focus_editor, "Ctrl+Return")
        self._menu_action(queue_menu, self.tr("&Cancel running job"), self.cancel_running, "Ctrl+.")

        view_menu = menu_bar.addMenu(self.tr("&View"))
        for dock in (self.queue_dock, self.editor_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())

        help_menu = menu_bar.addMenu(self.tr("&Help"))
        self._menu_action(help_menu, self.tr("&About FreeSwim Studio"), self.show_about)
        self._menu_action(help_menu, self.tr("Open &log folder"), self.open_log_folder)
        self._update_queue_actions()

    def _menu_action(self, menu: Any, text: str, slot: Any, shortcut: Any = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    # -- state wiring ----------------------------------------------------------

    def _connect_state(self) -> None:
        self.state.project_changed.connect(self._on_project_changed)
        self._connect_queue_and_runner()

    def _connect_queue_and_runner(self) -> None:
        queue = self.state.queue
        runner = self.state.runner
        queue.running_changed.connect(self._update_queue_actions)
        queue.save_failed.connect(lambda message: self.message_bar.show_message(message))
        runner.job_started.connect(self._on_job_started)
        runner.job_finished.connect(self._on_job_finished)
        runner.job_stopped.connect(self._on_job_stopped)
        runner.preview_ready.connect(self._on_preview)

    def _connect_queue_panel(self) -> None:
        panel = self.queue_panel
        panel.job_activated.connect(self.show_job)
        panel.job_selected.connect(self._on_job_selected)
        panel.edit_requested.connect(self._edit_job)
        panel.template_requested.connect(self._use_job_as_template)
        panel.add_requested.connect(self._focus_editor)

    def _on_project_changed(self) -> None:
        old_panel = self.queue_panel
        self.queue_panel = QueuePanel(self.state.queue, getattr(self.state, "model", None))
        self._connect_queue_panel()
        self.queue_dock.setWidget(self.queue_panel)
        old_panel.deleteLater()
        self._connect_queue_and_runner()
        self.editor.stop_editing()
        self.editor.set_new_job_defaults(self._new_job_defaults())
        self.player.clear()
        self._followed_job_id = None
        self._update_title()
        self._update_queue_actions()
        self._report_recovered_jobs()

    def _new_job_defaults(self) -> dict[str, Any]:
        settings = self.state.settings
        defaults: dict[str, Any] = {"model": settings.default_model, "device": settings.device, "dtype": settings.dtype}
        defaults.update(self.state.project.settings.default_request)
        return defaults

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.state.project.name} - {APP_DISPLAY_NAME}")

    def _update_queue_actions(self, *_args: object) -> None:
        running = self.state.queue.is_running
        self.start_pause_action.setText(self.tr("Pause queue") if running else self.tr("Start queue"))

    def _report_recovered_jobs(self) -> None:
        count = len(getattr(self.state.project, "recovered_job_ids", []))
        if count:
            self.message_bar.show_message(
                self.tr("{count} job(s) were running when the app last stopped and are marked interrupted. Select them and choose Retry to render again.").format(count=count),
                severity="info",
            )

    # -- jobs ------------------------------------------------------------------

    def _add_job(self, request: dict[str, Any]) -> None:
        job = self.state.queue.add(request)
        self.queue_panel.select_job(job.id)
        self.statusBar().showMessage(self.tr("Queued {job}").format(job=job.describe()), 5000)

    def _save_job(self, job_id: str, request: dict[str, Any]) -> None:
        try:
            self.state.queue.edit(job_id, request)
        except FreeSwimError as error:
            self.message_bar.show_message(str(error))

    def _edit_job(self, job_id: str) -> None:
        job = self.state.queue.job(job_id)
        self.editor.edit_job(job_id, job.request)
        self.editor_dock.setWindowTitle(self.tr("Edit job"))
        self.editor_dock.raise_()

    def _use_job_as_template(self, job_id: str) -> None:
        job = self.state.queue.job(job_id)
        # The user's own request, not the resolved one, so a random seed stays random in the new job.
        self.editor.use_as_template(dict(job.request), job.result.seed)
        self.editor_dock.raise_()

    def _focus_editor(self) -> None:
        self.editor_dock.show()
        self.editor_dock.raise_()
        self.editor.prompt_edit.setFocus()

    def _on_job_selected(self, job_id: str) -> None:
        if not job_id:
            return
        job = self.state.queue.job(job_id)
        if job.state is JobState.DONE:
            self.show_job(job_id)
        elif job.state is JobState.RUNNING:
            self._followed_job_id = job_id

    def show_job(self, job_id: str) -> None:
        """Show a job in the player: its MP4 (with the base video for A/B) when done, its previews while running."""
        job = self.state.queue.job(job_id)
        self._followed_job_id = job_id
        if job.state is JobState.DONE and job.result.output_path is not None:
            base = job.result.base_video_path
            if base is not None and not Path(base).is_file():
                base = None
            self.player.load_video(Path(job.result.output_path), base, title=self._job_title(job))
        elif job.state is JobState.RUNNING:
            self.player.clear()
            self.player.title_label.setText(self.tr("Waiting for the first preview of {job}").format(job=job.describe()))

    def _job_title(self, job: Job) -> str:
        size = job.size
        size_text = f"{size[0]}x{size[1]}" if size else ""
        seed = job.result.seed
        seed_text = self.tr(", seed {seed}").format(seed=seed) if seed is not None else ""
        return f"{job.prompt} ({size_text}{seed_text})"

    def _on_job_started(self, job_id: str) -> None:
        self._assert_gui_thread()
        # Follow the new job unless the user is looking at another running job's previews.
        if self._followed_job_id is None or self._followed_is_finished():
            self._followed_job_id = job_id
            self.show_job(job_id)
        self._update_queue_actions()

    def _followed_is_finished(self) -> bool:
        job = self.state.queue.project.find_job(self._followed_job_id or "")
        return job is None or job.state is not JobState.RUNNING

    def _on_job_finished(self, job_id: str) -> None:
        self._assert_gui_thread()
        if job_id == self._followed_job_id:
            self.show_job(job_id)
        job = self.state.queue.job(job_id)
        self.statusBar().showMessage(self.tr("Finished {job}").format(job=job.describe()), 8000)

    def _on_job_stopped(self, job_id: str, message: str) -> None:
        self._assert_gui_thread()
        job = self.state.queue.project.find_job(job_id)
        if job is not None and job.state is JobState.FAILED and not self._is_closing:
            self.message_bar.show_message(self.tr("{job} failed: {message}").format(job=job.describe(), message=message))

    def _on_preview(self, message: Any) -> None:
        self._assert_gui_thread()
        if message.job_id == self._followed_job_id:
            self.player.show_preview(message.stage, message.frames)

    @staticmethod
    def _assert_gui_thread() -> None:
        app = QApplication.instance()
        if app is not None and QThread.currentThread() is not app.thread():
            # Qt widgets are not thread-safe; a slot running elsewhere means a connection went wrong.
            raise RuntimeError("A main window slot ran outside the GUI thread")

    # -- queue menu ------------------------------------------------------------

    def toggle_queue(self) -> None:
        if self.state.queue.is_running:
            self.state.queue.pause()
        else:
            self.state.queue.start()

    def cancel_running(self) -> None:
        job = self.state.queue.running_job
        if job is not None:
            self.state.queue.cancel(job.id)

    # -- file menu -------------------------------------------------------------

    def new_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Choose an empty folder for the new project"))
        if folder:
            self.open_project(Path(folder), create=True)

    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Open a project folder"))
        if folder:
            self.open_project(Path(folder))

    def open_project(self, folder: Path, create: bool = False) -> bool:
        """Switch to the project in `folder`; errors go to the message bar. Returns True on success."""
        try:
            self.state.open_project(folder, create=create)
        except ProjectCorruptError as error:
            logger.error("Corrupt project file in %s: %s", folder, error)
            project_folder = error.path.parent
            self.message_bar.show_message(
                str(error),
                action_text=self.tr("Open as empty project"),
                action=lambda: self.open_project(project_folder, create=True),
            )
            return False
        except (ProjectError, FreeSwimError) as error:
            logger.error("Cannot open the project in %s: %s", folder, error)
            self.message_bar.show_message(str(error))
            return False
        self.message_bar.hide()
        return True

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = list(getattr(self.state.settings, "recent_projects", []))
        if not recent:
            self.recent_menu.addAction(self.tr("No recent projects")).setEnabled(False)
            return
        for folder in recent:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _checked=False, path=folder: self.open_project(Path(path)))

    def export_selected(self) -> None:
        job = self._export_candidate()
        if job is None:
            self.message_bar.show_message(self.tr("Select a finished job to export."), severity="info")
            return
        output = Path(job.result.output_path or "")
        request = resolved_request(job)
        fps = float(request.get("fps") or 16)
        dialog = ExportDialog(
            output, fps, fallback_metadata=dict(request), num_frames=request.get("num_frames"), parent=self
        )
        dialog.exported.connect(lambda path: self.statusBar().showMessage(self.tr("Exported {path}").format(path=path), 8000))
        dialog.open()

    def _export_candidate(self) -> Job | None:
        ids = self.queue_panel.selected_job_ids()
        candidates = ids + ([self._followed_job_id] if self._followed_job_id else [])
        for job_id in candidates:
            job = self.state.queue.project.find_job(job_id)
            if job is not None and job.state is JobState.DONE and job.result.output_path is not None:
                return job
        return None

    def show_settings(self) -> None:
        dialog = SettingsDialog(self.state.settings, self)
        if dialog.exec():
            self.state.apply_settings()
            engine_info.model_info.cache_clear()  # the demo model's install state follows the cache folder
            self.editor.refresh_models()
            if self.editor.editing_job_id() is None:
                defaults = self._new_job_defaults()
                self.editor.set_runtime_defaults(defaults["device"], defaults["dtype"])

    # -- help menu -------------------------------------------------------------

    def show_about(self) -> None:
        AboutDialog(self).exec()

    def open_log_folder(self) -> None:
        log_file = getattr(self.state, "log_file", None)
        folder = Path(log_file).parent if log_file else log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.message_bar.show_message(
                self.tr("Cannot open a file manager. The log folder is {folder}").format(folder=folder), severity="info"
            )

    # -- layout and closing ----------------------------------------------------

    def _restore_layout(self) -> None:
        ui_state = getattr(self.state.settings, "ui_state", {})
        geometry = ui_state.get(WINDOW_GEOMETRY_KEY)
        window_state = ui_state.get(WINDOW_STATE_KEY)
        if geometry:
            self.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
        if window_state:
            self.restoreState(QByteArray.fromBase64(window_state.encode("ascii")))

    def _save_layout(self) -> None:
        ui_state = getattr(self.state.settings, "ui_state", None)
        if ui_state is None:
            return
        ui_state[WINDOW_GEOMETRY_KEY] = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        ui_state[WINDOW_STATE_KEY] = bytes(self.saveState().toBase64().data()).decode("ascii")

    def confirm_close_during_render(self) -> bool:
        job = self.state.queue.running_job
        description = job.describe() if job is not None else self.tr("a job")
        answer = QMessageBox.question(
            self,
            self.tr("Quit while rendering?"),
            self.tr(
                "{job} is rendering. Quitting interrupts it at its next step; you can retry it later, "
                "and its finished stage-1 work is reused.\n\nQuit now?"
            ).format(job=description),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        if self.state.is_busy and not self.confirm_close_during_render():
            event.ignore()
            return
        self._is_closing = True
        self.statusBar().showMessage(self.tr("Stopping the render..."))
        self._save_layout()
        self.player.shutdown()
        self.editor.shutdown()
        stopped = self.state.shutdown(SHUTDOWN_TIMEOUT_S)
        if not stopped:
            logger.warning("The engine thread did not stop within %.0f s; quitting anyway", SHUTDOWN_TIMEOUT_S)
        self.log_panel.detach()
        event.accept()


def resolved_request(job: Job) -> dict[str, Any]:
    """Return the engine's resolved request of a finished job (seed, frames and fps filled in), else the job's own."""
    resolved = getattr(job.result, "resolved_request", None)
    return dict(resolved) if isinstance(resolved, dict) else dict(job.request)
