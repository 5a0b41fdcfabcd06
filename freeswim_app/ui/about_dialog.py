"""About box: versions of the app and its main libraries, and the compute device."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from freeswim_app.ui import engine_info

LIBRARY_LABELS = {
    "freeswim-studio": "FreeSwim Studio",
    "torch": "PyTorch",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "PySide6": "PySide6 (Qt for Python)",
    "numpy": "NumPy",
    "imageio-ffmpeg": "imageio-ffmpeg",
}


class AboutDialog(QDialog):
    """Lists versions and the device; the text is selectable so it can be pasted into a bug report."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("About FreeSwim Studio"))
        intro = QLabel(
            self.tr(
                "FreeSwim Studio renders 1080p to 4K videos from text prompts with FreeSwim, "
                "a training-free method for Wan video diffusion transformers."
            )
        )
        intro.setWordWrap(True)
        form = QFormLayout()
        self.version_labels: dict[str, QLabel] = {}
        for name, version in engine_info.package_versions().items():
            label = QLabel(version)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(LIBRARY_LABELS.get(name, name), label)
            self.version_labels[name] = label
        self.device_label = QLabel(engine_info.device_description())
        self.device_label.setWordWrap(True)
        self.device_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.tr("Device"), self.device_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(460)
