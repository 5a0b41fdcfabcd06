"""Settings dialog: edits the AppSettings fields that new jobs and the worker read."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from freeswim_app.settings import AppSettings, SettingsSaveError
from freeswim_engine.presets import preset_names
from freeswim_engine.request import DTYPES

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:0", "cuda:1")


@dataclasses.dataclass(frozen=True)
class SettingField:
    """One editable setting: the AppSettings attribute, its kind and its help text."""

    name: str
    kind: str  # "model", "device", "dtype", "folder", "bool" or "int"
    minimum: int = 0
    maximum: int = 0


# Shown in this order when AppSettings has the attribute; the others are left out.
SETTING_FIELDS = (
    SettingField("default_model", "model"),
    SettingField("device", "device"),
    SettingField("dtype", "dtype"),
    SettingField("output_dir", "folder"),
    SettingField("cache_dir", "folder"),
    SettingField("show_previews", "bool"),
    SettingField("preview_every_steps", "int", minimum=1, maximum=100),
)


class SettingsDialog(QDialog):
    """Shows the settings in widgets; on OK writes the values to the AppSettings and saves the file."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Settings"))
        self.settings = settings
        self._readers: dict[str, Callable[[], Any]] = {}
        self.editors: dict[str, QWidget] = {}
        self.notes: dict[str, QLabel] = {}
        form = self._build_form(settings)

        self.error_label = QLabel()
        self.error_label.setObjectName("fieldError")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        self.setMinimumWidth(480)

    def _build_form(self, settings: AppSettings) -> QFormLayout:
        form = QFormLayout()
        available = {field.name for field in dataclasses.fields(settings)}
        for field in SETTING_FIELDS:
            if field.name not in available:
                continue
            caption, help_text = self._caption(field.name)
            editor = self._build_editor(field, getattr(settings, field.name))
            editor.setToolTip(help_text)
            form.addRow(caption, editor)
            if field.kind == "folder":  # what an empty folder means is not obvious, so it is shown
                note = QLabel(help_text)
                note.setWordWrap(True)
                note.setObjectName("settingNote")
                self.notes[field.name] = note
                form.addRow("", note)
        return form

    def _caption(self, name: str) -> tuple[str, str]:
        captions = {
            "default_model": (self.tr("Default model"), self.tr("Model of new jobs in new projects")),
            "device": (self.tr("Device"), self.tr("Where new jobs render: auto picks the first CUDA GPU, else the CPU")),
            "dtype": (self.tr("Transformer dtype"), self.tr("auto uses bfloat16 on GPUs that support it, else float32")),
            "output_dir": (
                self.tr("Output folder"),
                self.tr(
                    "Each finished MP4 and its settings JSON are also copied here. The project keeps its own "
                    "copy in its outputs folder. Empty: no copy."
                ),
            ),
            "cache_dir": (
                self.tr("Cache folder"),
                self.tr(
                    "Where the engine keeps the demo model, and the cross-attention cache when the memory "
                    "plan puts it on disk. Empty: the user cache folder for the demo model, and each job's "
                    "folder for the cross-attention cache."
                ),
            ),
            "show_previews": (self.tr("Live previews"), self.tr("Show decoded previews of the latents while a job renders")),
            "preview_every_steps": (
                self.tr("Preview every"),
                self.tr("Denoising steps between two live previews; the last step of a stage is always shown"),
            ),
        }
        return captions.get(name, (name, ""))

    def _build_editor(self, field: SettingField, value: Any) -> QWidget:
        if field.kind in ("model", "device", "dtype"):
            choices = {"model": preset_names(), "device": DEVICE_CHOICES, "dtype": DTYPES}[field.kind]
            box = QComboBox()
            box.setEditable(field.kind != "dtype")
            box.addItems(list(choices))
            box.setCurrentText(str(value))
            self._readers[field.name] = lambda: box.currentText().strip()
            self.editors[field.name] = box
            return box
        if field.kind == "bool":
            check = QCheckBox()
            check.setChecked(bool(value))
            self._readers[field.name] = check.isChecked
            self.editors[field.name] = check
            return check
        if field.kind == "int":
            spin = QSpinBox()
            spin.setRange(field.minimum, field.maximum)
            spin.setValue(int(value))
            if field.name == "preview_every_steps":
                spin.setSuffix(self.tr(" steps"))
            self._readers[field.name] = spin.value
            self.editors[field.name] = spin
            return spin
        return self._folder_editor(field.name, value)

    def _folder_editor(self, name: str, value: Any) -> QWidget:
        container = QWidget()
        row = QHBoxLayout(container)
        row.setContentsMargins(0, 0, 0, 0)
        line = QLineEdit("" if value is None else str(value))
        browse = QPushButton(self.tr("Browse..."))

        def choose() -> None:
            folder = QFileDialog.getExistingDirectory(self, self.tr("Choose a folder"), line.text())
            if folder:
                line.setText(folder)

        browse.clicked.connect(choose)
        row.addWidget(line, 1)
        row.addWidget(browse)
        self._readers[name] = lambda: Path(line.text().strip()) if line.text().strip() else None
        self.editors[name] = line
        return container

    def values(self) -> dict[str, Any]:
        return {name: read() for name, read in self._readers.items()}

    def accept(self) -> None:
        values = self.values()
        if not values.get("default_model", "x") or not values.get("device", "x"):
            self.error_label.setText(self.tr("The default model and the device cannot be empty."))
            self.error_label.show()
            return
        for name in ("output_dir", "cache_dir"):
            folder = values.get(name)
            if folder is not None and folder.exists() and not folder.is_dir():
                self.error_label.setText(
                    self.tr("{folder} is a file, not a folder. Choose a folder, or leave the field empty.").format(
                        folder=folder
                    )
                )
                self.error_label.show()
                return
        previous = {name: getattr(self.settings, name) for name in values}
        for name, value in values.items():
            setattr(self.settings, name, value)
        try:
            self.settings.save()
        except SettingsSaveError as error:
            for name, value in previous.items():
                setattr(self.settings, name, value)
            logger.error("%s", error)
            self.error_label.setText(str(error))
            self.error_label.show()
            return
        logger.info("Settings saved: %s", ", ".join(f"{name}={value}" for name, value in values.items()))
        super().accept()
