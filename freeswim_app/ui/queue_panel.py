"""Queue panel: the project's jobs with their state, progress and thumbnails, and the queue's actions."""

from __future__ import annotations

import logging

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from freeswim_app.jobs import Job, JobKind, JobState
from freeswim_app.queue_model import JobColumn, JobQueue, JobRole, JobTableModel, format_duration
from freeswim_engine.errors import FreeSwimError

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = QSize(96, 54)
UPSCALE_TARGETS: list[tuple[str, int, int]] = [("1440p", 2560, 1440), ("4K", 3840, 2160)]


class ProgressDelegate(QStyledItemDelegate):
    """Draws a progress bar with the stage and ETA text for the running job's progress cell."""

    def paint(self, painter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        if index.data(JobRole.STATE) != JobState.RUNNING.value:  # None for a row whose job was just removed
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 4, -2, -4)  # type: ignore[attr-defined]
        bar.minimum = 0
        bar.maximum = 1000
        bar.progress = int(round(float(index.data(JobRole.PROGRESS) or 0.0) * 1000))
        bar.text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        bar.textVisible = True
        bar.state = option.state  # type: ignore[attr-defined]
        style = option.widget.style() if option.widget is not None else QApplication.style()  # type: ignore[attr-defined]
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class QueuePanel(QWidget):
    """Lists the jobs of a JobQueue and offers add, duplicate, edit, reorder, cancel, retry, remove and upscale."""

    job_selected = Signal(str)  # job id, or "" when nothing is selected
    job_activated = Signal(str)  # double-click: show the job in the player
    edit_requested = Signal(str)  # job id of a queued job to load into the editor
    template_requested = Signal(str)  # job id whose request should start a new job
    add_requested = Signal()

    def __init__(self, queue: JobQueue, model: JobTableModel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.model = model if model is not None else JobTableModel(queue, self)
        self._build_actions()
        self._build_toolbar()
        self._build_table()
        self._build_details()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._toolbar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details_label)
        layout.addWidget(self.message_label)
        queue.running_changed.connect(self._update_actions)
        queue.job_changed.connect(self._on_job_changed)
        queue.job_removed.connect(lambda _id, _row: self._update_actions())
        queue.job_added.connect(lambda _id, _row: self._update_actions())
        self._update_actions()

    # -- building --------------------------------------------------------------

    def _action(self, text: str, tooltip: str, slot, icon: QStyle.StandardPixmap | None = None) -> QAction:
        action = QAction(text, self)
        action.setToolTip(tooltip)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        pixmap = QStyle.StandardPixmap
        self.start_action = self._action(
            self.tr("Start queue"), self.tr("Render queued jobs one after another"), self._toggle_queue, pixmap.SP_MediaPlay
        )
        self.add_action = self._action(
            self.tr("Add"), self.tr("Add a job from the editor"), self.add_requested.emit, pixmap.SP_FileDialogNewFolder
        )
        self.duplicate_action = self._action(
            self.tr("Duplicate"), self.tr("Queue a copy of the selected job"), self.duplicate_selected
        )
        self.edit_action = self._action(self.tr("Edit"), self.tr("Edit the selected queued job"), self.edit_selected)
        self.template_action = self._action(
            self.tr("Use as template"), self.tr("Load the job's settings into the editor for a new job"), self._use_as_template
        )
        self.cancel_action = self._action(
            self.tr("Cancel"), self.tr("Cancel the selected job"), self.cancel_selected, pixmap.SP_BrowserStop
        )
        self.retry_action = self._action(
            self.tr("Retry"), self.tr("Queue the failed, cancelled or interrupted job again"), self.retry_selected,
            pixmap.SP_BrowserReload,
        )
        self.remove_action = self._action(
            self.tr("Remove"), self.tr("Remove the job from the queue; rendered videos are kept"), self.remove_selected,
            pixmap.SP_TrashIcon,
        )

        self.upscale_menu = QMenu(self.tr("Upscale this"), self)
        self.upscale_actions: list[QAction] = []
        for name, width, height in UPSCALE_TARGETS:
            action = self.upscale_menu.addAction(self.tr("to {name} ({width}x{height})").format(name=name, width=width, height=height))
            action.triggered.connect(lambda _checked=False, w=width, h=height: self.upscale_selected(w, h))
            self.upscale_actions.append(action)
        same = self.upscale_menu.addAction(self.tr("at its own size (stage 2 again)"))
        same.triggered.connect(lambda: self.upscale_selected(None, None))
        self.upscale_actions.append(same)

    def _build_toolbar(self) -> None:
        self._toolbar = QWidget()
        rows = QVBoxLayout(self._toolbar)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.setSpacing(2)
        row = QHBoxLayout()
        row.setSpacing(2)
        rows.addLayout(row)
        self.start_button = QToolButton()
        self.start_button.setDefaultAction(self.start_action)
        self.start_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.start_button.setObjectName("startQueueButton")
        row.addWidget(self.start_button)

        self.buttons: dict[str, QToolButton] = {}
        for name, action in (
            ("add", self.add_action),
            ("duplicate", self.duplicate_action),
            ("edit", self.edit_action),
            ("cancel", self.cancel_action),
            ("retry", self.retry_action),
            ("remove", self.remove_action),
        ):
            button = QToolButton()
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            if name == "cancel":  # the second row keeps the panel narrow enough for a side dock
                row.addStretch(1)
                row = QHBoxLayout()
                row.setSpacing(2)
                rows.addLayout(row)
            row.addWidget(button)
            self.buttons[name] = button

        self.upscale_button = QToolButton()
        self.upscale_button.setText(self.tr("Upscale this"))
        self.upscale_button.setToolTip(self.tr("Queue stage 2 only, from the selected finished render's base video"))
        self.upscale_button.setMenu(self.upscale_menu)
        self.upscale_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        row.addWidget(self.upscale_button)
        row.addStretch(1)

    def _build_table(self) -> None:
        table = QTableView()
        table.setModel(self.model)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.setDragEnabled(True)
        table.setAcceptDrops(True)
        table.setDropIndicatorShown(True)
        table.setDragDropOverwriteMode(False)
        table.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        table.setDefaultDropAction(Qt.DropAction.MoveAction)

        table.setIconSize(THUMBNAIL_SIZE)
        table.setWordWrap(False)
        table.setAlternatingRowColors(True)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIZE.height() + 8)

        header = table.horizontalHeader()
        header.setSectionResizeMode(JobColumn.THUMBNAIL, QHeaderView.ResizeMode.Fixed)
        table.setColumnWidth(JobColumn.THUMBNAIL, THUMBNAIL_SIZE.width() + 8)
        header.setSectionResizeMode(JobColumn.PROMPT, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(JobColumn.SIZE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(JobColumn.STATE, QHeaderView.ResizeMode.Fixed)
        table.setColumnWidth(JobColumn.STATE, 86)
        header.setSectionResizeMode(JobColumn.PROGRESS, QHeaderView.ResizeMode.Stretch)
        table.setItemDelegateForColumn(JobColumn.PROGRESS, ProgressDelegate(table))

        table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        table.customContextMenuRequested.connect(self._show_context_menu)
        table.doubleClicked.connect(self._on_double_clicked)
        table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.table = table

    def _build_details(self) -> None:
        self.details_label = QLabel()
        self.details_label.setObjectName("jobDetails")
        self.details_label.setWordWrap(True)
        self.details_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label = QLabel()
        self.message_label.setObjectName("fieldError")
        self.message_label.setWordWrap(True)
        self.message_label.hide()

    # -- selection -------------------------------------------------------------

    def selected_job_ids(self) -> list[str]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.model.job_id_at(row) for row in rows]

    def selected_jobs(self) -> list[Job]:
        return [self.queue.job(job_id) for job_id in self.selected_job_ids()]

    def select_job(self, job_id: str) -> None:
        index = self.model.index_of(job_id, JobColumn.PROMPT)
        if index.isValid():
            self.table.selectRow(index.row())

    def _on_selection_changed(self) -> None:
        ids = self.selected_job_ids()
        self.job_selected.emit(ids[0] if len(ids) == 1 else "")
        self._update_actions()

    def _on_double_clicked(self, index: QModelIndex) -> None:
        self.job_activated.emit(self.model.job_id_at(index.row()))

    def _on_job_changed(self, job_id: str) -> None:
        if job_id in self.selected_job_ids():
            self._update_actions()

    # -- actions ---------------------------------------------------------------

    def _run(self, operation, *args) -> None:
        """Run a queue operation and show the message of a FreeSwimError it raises."""
        self.message_label.hide()
        try:
            operation(*args)
        except FreeSwimError as error:
            logger.warning("Queue operation failed: %s", error)
            self.message_label.setText(str(error))
            self.message_label.show()

    def _toggle_queue(self) -> None:
        if self.queue.is_running:
            self.queue.pause()
        else:
            self.queue.start()

    def duplicate_selected(self) -> None:
        for job_id in self.selected_job_ids():
            self._run(self.queue.duplicate, job_id)

    def edit_selected(self) -> None:
        ids = self.selected_job_ids()
        if len(ids) == 1 and self.queue.job(ids[0]).state is JobState.QUEUED:
            self.edit_requested.emit(ids[0])

    def _use_as_template(self) -> None:
        ids = self.selected_job_ids()
        if len(ids) == 1:
            self.template_requested.emit(ids[0])

    def cancel_selected(self) -> None:
        for job_id in self.selected_job_ids():
            self._run(self.queue.cancel, job_id)

    def retry_selected(self) -> None:
        for job in self.selected_jobs():
            if job.state.can_retry:
                self._run(self.queue.retry, job.id)

    def remove_selected(self) -> None:
        for job_id in self.selected_job_ids():
            self._run(self.queue.remove, job_id)

    def upscale_selected(self, width: int | None, height: int | None) -> None:
        for job in self.selected_jobs():
            if job.state is JobState.DONE:
                self._run(lambda: self.queue.add_upscale(job.id, width=width, height=height))

    def _show_context_menu(self, position) -> None:
        self._update_actions()
        menu = QMenu(self)
        for action in (self.edit_action, self.template_action, self.duplicate_action):
            menu.addAction(action)
        menu.addMenu(self.upscale_menu)
        menu.addSeparator()
        for action in (self.cancel_action, self.retry_action, self.remove_action):
            menu.addAction(action)
        menu.popup(self.table.viewport().mapToGlobal(position))

    def _update_actions(self, *_args: object) -> None:
        jobs = self.selected_jobs()
        states = {job.state for job in jobs}
        single = len(jobs) == 1
        self.duplicate_action.setEnabled(bool(jobs))
        self.edit_action.setEnabled(single and states == {JobState.QUEUED})
        self.template_action.setEnabled(single)
        self.cancel_action.setEnabled(bool(states & {JobState.QUEUED, JobState.RUNNING}))
        self.retry_action.setEnabled(any(state.can_retry for state in states))
        self.remove_action.setEnabled(bool(jobs) and JobState.RUNNING not in states)
        can_upscale = single and states == {JobState.DONE} and jobs[0].kind is JobKind.RENDER
        self.upscale_button.setEnabled(can_upscale)
        self.upscale_menu.setEnabled(can_upscale)
        running = self.queue.is_running
        self.start_action.setText(self.tr("Pause queue") if running else self.tr("Start queue"))
        icon = QStyle.StandardPixmap.SP_MediaPause if running else QStyle.StandardPixmap.SP_MediaPlay
        self.start_action.setIcon(self.style().standardIcon(icon))
        self.start_action.setToolTip(
            self.tr("Finish the running job, then stop") if running else self.tr("Render queued jobs one after another")
        )
        self.details_label.setText(self._details(jobs[0]) if single else "")

    def _details(self, job: Job) -> str:
        """Return the selected job's facts: state, seed, timing, output and the full error."""
        lines = [self.tr("Job {id}: {state}").format(id=job.short_id, state=job.state.label)]
        result = job.result
        if result.seed is not None:
            lines.append(self.tr("Seed used: {seed}").format(seed=result.seed))
        elif job.request.get("seed") is not None:
            lines.append(self.tr("Seed: {seed}").format(seed=job.request["seed"]))
        if result.seconds is not None:
            lines.append(self.tr("Rendered in {duration}").format(duration=format_duration(result.seconds)))
        if result.output_path is not None:
            lines.append(self.tr("Output: {path}").format(path=result.output_path))
        if result.plan_summary:
            lines.append(self.tr("Memory plan: {plan}").format(plan=result.plan_summary))
        for warning in result.warnings:
            lines.append(self.tr("Warning: {warning}").format(warning=warning))
        if job.error:
            lines.append(self.tr("Error: {error}").format(error=job.error))
        return "\n".join(lines)
