"""Job editor: the form that builds a render request, validates it live and queues it."""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from freeswim_engine.errors import FreeSwimError, InvalidRequestError
from freeswim_engine.presets import PRESETS
from freeswim_engine.request import METHODS, MAX_SEED, RenderRequest

from freeswim_app.ui import engine_info
from freeswim_app.ui.field_message import FieldMessage
from freeswim_app.ui.request_form import (
    CUSTOM_RESOLUTION,
    MAX_SIZE,
    RESOLUTION_PRESETS,
    SIZE_FIELDS,
    preset_of,
    size_suggestions,
)
from freeswim_app.ui.token_count import TokenCountLabel

logger = logging.getLogger(__name__)

BROWSE_MODEL = "__browse__"
ANALYSIS_DELAY_MS = 300


class JobEditor(QWidget):
    """Form for one render request.

    `add_requested` carries a new request dict for the queue; in edit mode the button
    emits `save_requested` with the id of the queued job being edited.
    """

    add_requested = Signal(dict)
    save_requested = Signal(str, dict)
    validity_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None, defaults: dict[str, Any] | None = None) -> None:
        super().__init__(parent)
        self._base_request: dict[str, Any] = RenderRequest(prompt="").to_dict()
        self._editing_job_id: str | None = None
        self._replaced_default_model: str | None = None  # a default model that is not installed
        self._is_valid = False
        self._loading = False
        self._messages: dict[str, FieldMessage] = {}

        # Exact token counts and the memory plan come from a background thread (see _validate).
        self._analysis_generation = 0
        self._pending_analysis: tuple[RenderRequest, Any, bool] | None = None
        self._analysis_timer = QTimer(self)
        self._analysis_timer.setSingleShot(True)
        self._analysis_timer.setInterval(ANALYSIS_DELAY_MS)
        self._analysis_timer.timeout.connect(self._request_analysis)
        self._analysis_worker = engine_info.RequestAnalysisWorker(self)
        self._analysis_worker.analysis_ready.connect(self._on_analysis_ready)
        self.destroyed.connect(self._analysis_worker.stop)

        self._build_form()
        self._build_buttons()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self._form_widget)
        layout.addWidget(scroll, 1)
        layout.addWidget(self._button_bar)

        self._connect_fields()
        self._fit_combo_boxes()
        self._update_mode()
        self.set_request(defaults or {})

    # -- building --------------------------------------------------------------

    def _build_form(self) -> None:
        self._form_widget = QWidget()
        column = QVBoxLayout(self._form_widget)
        self._form = QFormLayout()
        column.addLayout(self._form)
        column.addStretch(1)  # extra height goes below the form, not into the text boxes
        self._form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._build_prompts()
        self._build_model()
        self._build_size()
        self._build_sampling()
        self._build_attention()
        # A plan that does not fit lists alternatives over many lines, so the text scrolls.
        self.memory_view = QPlainTextEdit()
        self.memory_view.setReadOnly(True)
        self.memory_view.setObjectName("memoryPlan")
        self.memory_view.setMaximumHeight(110)
        self._form.addRow(self.tr("Memory"), self.memory_view)

    def _add_row(self, field: str, caption: str, widget: QWidget) -> None:
        self._form.addRow(caption, widget)
        message = FieldMessage()
        self._messages[field] = message
        self._form.addRow("", message)

    def _build_prompts(self) -> None:
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setPlaceholderText(self.tr("Describe the video, for example: a red fox running through fresh snow at dawn"))
        self.prompt_edit.setTabChangesFocus(True)
        self.prompt_edit.setMinimumHeight(70)
        self.prompt_edit.setMaximumHeight(130)
        self.prompt_tokens_label = TokenCountLabel()
        self._add_row("prompt", self.tr("Prompt"), self._with_note(self.prompt_edit, self.prompt_tokens_label))

        self.negative_prompt_edit = QPlainTextEdit()
        self.negative_prompt_edit.setTabChangesFocus(True)
        self.negative_prompt_edit.setMaximumHeight(70)
        self.negative_tokens_label = TokenCountLabel()
        self._add_row(
            "negative_prompt",
            self.tr("Negative prompt"),
            self._with_note(self.negative_prompt_edit, self.negative_tokens_label),
        )

    @staticmethod
    def _with_note(widget: QWidget, note: QLabel) -> QWidget:
        container = QWidget()
        column = QVBoxLayout(container)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(widget)
        column.addWidget(note)
        return container

    def _build_model(self) -> None:
        self.model_box = QComboBox()
        self.model_box.setToolTip(self.tr("A preset, an installed model folder, or the demo model"))
        self._populate_models()
        self._add_row("model", self.tr("Model"), self.model_box)
        self.model_hint_label = QLabel()
        self.model_hint_label.setObjectName("fieldWarning")
        self.model_hint_label.setWordWrap(True)
        self.model_hint_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_hint_label.hide()
        self._form.addRow("", self.model_hint_label)

    def _populate_models(self) -> None:
        box = self.model_box
        box.blockSignals(True)
        box.clear()
        for preset in PRESETS.values():
            box.addItem(preset.label, preset.name)
        box.addItem(self.tr("Demo (tiny random weights, checks the install)"), "demo")
        for spec, label, is_installed in engine_info.listed_models():
            index = box.findData(spec)
            if index >= 0:
                suffix = self.tr("installed") if is_installed else self.tr("not installed")
                if spec != "demo":
                    box.setItemText(index, f"{box.itemText(index)} ({suffix})")
            elif is_installed:
                box.addItem(label, spec)
        box.addItem(self.tr("Browse for a model folder..."), BROWSE_MODEL)
        box.blockSignals(False)

    def refresh_models(self) -> None:
        """List the models again, for example after the engine's cache folder changed; keeps the selection."""
        current = self.current_model()
        self._populate_models()
        self.model_box.blockSignals(True)
        self._select_model(current)
        self.model_box.blockSignals(False)
        self._on_changed()

    def _build_size(self) -> None:
        self.resolution_box = QComboBox()
        for name, width, height in RESOLUTION_PRESETS:
            self.resolution_box.addItem(f"{name} ({width}x{height})", f"{width}x{height}")
        self.resolution_box.addItem(self.tr("Custom"), CUSTOM_RESOLUTION)
        self._form.addRow(self.tr("Resolution"), self.resolution_box)
        self.width_spin = self._spin_box(16, MAX_SIZE, 16, suffix=self.tr(" px"))
        self.height_spin = self._spin_box(16, MAX_SIZE, 16, suffix=self.tr(" px"))
        self._add_row("width", self.tr("Width"), self.width_spin)
        self._add_row("height", self.tr("Height"), self.height_spin)

    def _build_sampling(self) -> None:
        default = self.tr("Model default")
        self.frames_spin = self._spin_box(0, 1001, 4, special=default)
        self.frames_spin.setToolTip(self.tr("Frames to render: 4k+1 (5, 9, ... 81)"))
        self._add_row("num_frames", self.tr("Frames"), self.frames_spin)
        self.fps_spin = self._spin_box(0, 240, 1, special=default, suffix=self.tr(" fps"))
        self._add_row("fps", self.tr("Frame rate"), self.fps_spin)

        self.random_seed_box = QCheckBox(self.tr("Random"))
        self.seed_edit = QLineEdit()
        self.seed_edit.setPlaceholderText(self.tr("0 to {max}").format(max=MAX_SEED))
        self.last_seed_label = QLabel()
        self.last_seed_label.setObjectName("lastSeed")
        seed_row = QWidget()
        row = QHBoxLayout(seed_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.random_seed_box)
        row.addWidget(self.seed_edit, 1)
        row.addWidget(self.last_seed_label)
        self._add_row("seed", self.tr("Seed"), seed_row)

        self.steps_spin = self._spin_box(0, 1000, 1, special=default)
        self.steps_spin.setToolTip(self.tr("Scheduled denoising steps of each stage"))
        self._add_row("num_inference_steps", self.tr("Steps"), self.steps_spin)
        self.guidance_spin = self._double_spin_box(-0.5, 30.0, 0.5, special=default)
        self.guidance_spin.setToolTip(self.tr("Classifier-free guidance scale; 1.0 or less turns guidance off"))
        self._add_row("guidance_scale", self.tr("Guidance"), self.guidance_spin)
        self.strength_spin = self._double_spin_box(0.0, 1.0, 0.05)
        self.strength_spin.setToolTip(self.tr("Stage-2 denoise strength: the share of the scheduled steps stage 2 runs"))
        self._add_row("strength", self.tr("Strength"), self.strength_spin)

    def _build_attention(self) -> None:
        self.method_box = QComboBox()
        labels = {
            "freeswim-cached": self.tr("FreeSwim, cached cross-attention (fastest)"),
            "freeswim": self.tr("FreeSwim, dual path on every step"),
            "window": self.tr("Window attention only"),
            "direct": self.tr("Full attention (no FreeSwim)"),
        }
        for method in ("freeswim-cached", "freeswim", "window", "direct"):
            if method in METHODS:
                self.method_box.addItem(labels[method], method)
        self._add_row("method", self.tr("Method"), self.method_box)
        self.cache_interval_spin = self._spin_box(1, 100, 1, suffix=self.tr(" steps"))
        self.cache_interval_spin.setToolTip(self.tr("Steps between refreshes of the cached cross-attention"))
        self._add_row("cache_interval", self.tr("Cache interval"), self.cache_interval_spin)

    def _build_buttons(self) -> None:
        self._button_bar = QWidget()
        column = QVBoxLayout(self._button_bar)
        column.setContentsMargins(0, 4, 0, 0)
        self.general_message = FieldMessage()
        self.warnings_label = QLabel()
        self.warnings_label.setObjectName("fieldWarning")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.hide()
        column.addWidget(self.general_message)
        column.addWidget(self.warnings_label)
        row = QHBoxLayout()
        self.mode_label = QLabel()
        self.cancel_edit_button = QPushButton(self.tr("Stop editing"))
        self.cancel_edit_button.clicked.connect(self.stop_editing)
        self.add_button = QPushButton(self.tr("Add to queue"))
        self.add_button.setObjectName("primaryButton")
        self.add_button.setDefault(True)
        self.add_button.clicked.connect(self._submit)
        row.addWidget(self.mode_label, 1)
        row.addWidget(self.cancel_edit_button)
        row.addWidget(self.add_button)
        column.addLayout(row)

    def _fit_combo_boxes(self) -> None:
        # Long model and method names would otherwise set the dock's minimum width.
        for box in (self.model_box, self.resolution_box, self.method_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(14)

    def _spin_box(self, minimum: int, maximum: int, step: int, special: str = "", suffix: str = "") -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(minimum, maximum)
        spin.setSingleStep(step)
        spin.setSuffix(suffix)
        spin.setKeyboardTracking(True)
        if special:
            spin.setSpecialValueText(special)
        return spin

    def _double_spin_box(self, minimum: float, maximum: float, step: float, special: str = "") -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(minimum, maximum)
        spin.setSingleStep(step)
        spin.setDecimals(2)
        if special:
            spin.setSpecialValueText(special)
        return spin

    def _connect_fields(self) -> None:
        self.prompt_edit.textChanged.connect(self._on_changed)
        self.negative_prompt_edit.textChanged.connect(self._on_changed)
        self.model_box.currentIndexChanged.connect(self._on_model_changed)
        self.resolution_box.currentIndexChanged.connect(self._on_resolution_chosen)
        for spin in (
            self.width_spin,
            self.height_spin,
            self.frames_spin,
            self.fps_spin,
            self.steps_spin,
            self.cache_interval_spin,
        ):
            spin.valueChanged.connect(self._on_changed)
        self.width_spin.valueChanged.connect(self._sync_resolution_box)
        self.height_spin.valueChanged.connect(self._sync_resolution_box)
        self.guidance_spin.valueChanged.connect(self._on_changed)
        self.strength_spin.valueChanged.connect(self._on_changed)
        self.method_box.currentIndexChanged.connect(self._on_changed)
        self.random_seed_box.toggled.connect(self._on_changed)
        self.seed_edit.textChanged.connect(self._on_changed)

    # -- request <-> form ------------------------------------------------------

    def set_request(self, request: dict[str, Any]) -> None:
        """Fill the form from a request dict; fields it lacks take RenderRequest's defaults."""
        merged = {**RenderRequest(prompt="").to_dict(), **copy.deepcopy(request)}
        self._base_request = merged
        self._loading = True
        try:
            self.prompt_edit.setPlainText(str(merged.get("prompt") or ""))
            self.negative_prompt_edit.setPlainText(str(merged.get("negative_prompt") or ""))
            self._select_model(str(merged.get("model") or "demo"))
            self.width_spin.setValue(int(merged.get("width") or 1920))
            self.height_spin.setValue(int(merged.get("height") or 1088))
            self.frames_spin.setValue(int(merged.get("num_frames") or 0))
            self.fps_spin.setValue(int(merged.get("fps") or 0))
            self.steps_spin.setValue(int(merged.get("num_inference_steps") or 0))
            guidance = merged.get("guidance_scale")
            self.guidance_spin.setValue(self.guidance_spin.minimum() if guidance is None else float(guidance))
            self.strength_spin.setValue(float(merged.get("strength", 0.7)))
            self._select_data(self.method_box, merged.get("method") or "freeswim-cached")
            self.cache_interval_spin.setValue(int(merged.get("cache_interval") or 2))
            seed = merged.get("seed")
            self.random_seed_box.setChecked(seed is None)
            self.seed_edit.setText("" if seed is None else str(seed))
        finally:
            self._loading = False
        self._replaced_default_model = None
        self._sync_resolution_box()
        self.last_seed_label.clear()
        self._on_changed()

    def set_new_job_defaults(self, defaults: dict[str, Any]) -> None:
        """Load the defaults of a new job; a default model that is not installed gives way to the demo model.

        A hint under the model row then names the default model and how to install it.
        """
        request = dict(defaults)
        model = str(request.get("model") or "demo")
        replaced = None
        if not engine_info.is_model_usable(model):
            logger.info("Default model %s is not installed; new jobs default to the demo model", model)
            request["model"] = "demo"
            replaced = model
        self.set_request(request)
        self._replaced_default_model = replaced
        self._update_model_hint(engine_info.model_info(self.current_model()))

    def request_dict(self) -> dict[str, Any]:
        """Return the request the form describes, on top of the fields the form does not show."""
        request = copy.deepcopy(self._base_request)
        guidance: float | None = self.guidance_spin.value()
        if guidance is not None and guidance <= self.guidance_spin.minimum():
            guidance = None
        request.update(
            prompt=self.prompt_edit.toPlainText(),
            negative_prompt=self.negative_prompt_edit.toPlainText(),
            model=self.current_model(),
            width=self.width_spin.value(),
            height=self.height_spin.value(),
            num_frames=self.frames_spin.value() or None,
            fps=self.fps_spin.value() or None,
            seed=self._seed_value(),
            num_inference_steps=self.steps_spin.value() or None,
            guidance_scale=guidance,
            strength=round(self.strength_spin.value(), 4),
            method=self.method_box.currentData(),
            cache_interval=self.cache_interval_spin.value(),
        )
        return request

    def _seed_value(self) -> Any:
        if self.random_seed_box.isChecked():
            return None
        text = self.seed_edit.text().strip()
        try:
            return int(text)
        except ValueError:
            return text  # validation names the invalid text

    def current_model(self) -> str:
        data = self.model_box.currentData()
        return str(data) if data not in (None, BROWSE_MODEL) else str(self._base_request.get("model") or "demo")

    def _select_model(self, spec: str) -> None:
        index = self.model_box.findData(spec)
        if index < 0:
            index = self.model_box.count() - 1  # in front of "Browse..."
            self.model_box.insertItem(index, spec, spec)
        self.model_box.setCurrentIndex(index)

    @staticmethod
    def _select_data(box: QComboBox, data: Any) -> None:
        index = box.findData(data)
        if index >= 0:
            box.setCurrentIndex(index)

    def set_runtime_defaults(self, device: str, dtype: str) -> None:
        """Set the device and dtype of the jobs the form adds; they have no row in the form."""
        self._base_request["device"] = device
        self._base_request["dtype"] = dtype
        self._on_changed()

    # -- editing jobs ----------------------------------------------------------

    def edit_job(self, job_id: str, request: dict[str, Any]) -> None:
        """Load a queued job's request; the button then saves changes to that job."""
        self.set_request(request)
        self._editing_job_id = job_id
        self._update_mode()

    def use_as_template(self, request: dict[str, Any], used_seed: int | None = None) -> None:
        """Load a request as the start of a new job and show the seed its run used."""
        self.stop_editing()
        self.set_request(request)
        if used_seed is not None:
            self.last_seed_label.setText(self.tr("last run: {seed}").format(seed=used_seed))

    def stop_editing(self) -> None:
        self._editing_job_id = None
        self._update_mode()

    def editing_job_id(self) -> str | None:
        return self._editing_job_id

    def _update_mode(self) -> None:
        editing = self._editing_job_id is not None
        self.cancel_edit_button.setVisible(editing)
        self.add_button.setText(self.tr("Save changes") if editing else self.tr("Add to queue"))
        self.mode_label.setText(
            self.tr("Editing queued job {id}").format(id=self._editing_job_id[:8]) if self._editing_job_id else ""
        )

    def _submit(self) -> None:
        self._validate()
        if not self._is_valid:
            return
        request = self.request_dict()
        if self._editing_job_id is not None:
            job_id = self._editing_job_id
            self.stop_editing()
            self.save_requested.emit(job_id, request)
        else:
            self.add_requested.emit(request)

    # -- live validation -------------------------------------------------------

    def is_valid(self) -> bool:
        return self._is_valid

    def _on_model_changed(self) -> None:
        if self.model_box.currentData() == BROWSE_MODEL:
            self._browse_model()
        self._on_changed()

    def _browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Choose a diffusers model folder"))
        self.model_box.blockSignals(True)
        if folder:
            self._select_model(folder)
        else:
            self._select_model(str(self._base_request.get("model") or "demo"))
        self.model_box.blockSignals(False)

    def _on_resolution_chosen(self) -> None:
        size = self.resolution_box.currentData()
        if size == CUSTOM_RESOLUTION or self._loading:
            return
        width, height = (int(part) for part in size.split("x"))
        self._loading = True
        self.width_spin.setValue(width)
        self.height_spin.setValue(height)
        self._loading = False
        self._on_changed()

    def _sync_resolution_box(self) -> None:
        index = self.resolution_box.findData(f"{self.width_spin.value()}x{self.height_spin.value()}")
        if index < 0:
            index = self.resolution_box.findData(CUSTOM_RESOLUTION)
        self.resolution_box.blockSignals(True)
        self.resolution_box.setCurrentIndex(index)
        self.resolution_box.blockSignals(False)

    def _on_changed(self) -> None:
        if self._loading:
            return
        self.cache_interval_spin.setEnabled(self.method_box.currentData() == "freeswim-cached")
        self._validate()

    def _validate(self) -> None:
        """Validate the form with RenderRequest.validate and show errors, token counts and warnings.

        The model's figures (native size, pixels per token) are used here, but not its tokenizer:
        loading one imports transformers, which would freeze the form for seconds. Token counts
        start as estimates and become exact when the background analysis returns.
        """
        for message in self._messages.values():
            message.clear()
        self.general_message.clear()
        request_dict = self.request_dict()
        model_info = engine_info.model_info(request_dict["model"])
        figures = getattr(model_info, "preset", None)
        self._update_model_hint(model_info)
        self._show_token_counts(request_dict, model_info, None, None)

        warnings: list[str] = []
        request: RenderRequest | None = None
        is_valid = False
        try:
            request = RenderRequest.from_dict(request_dict)
            warnings = request.validate(figures)
            is_valid = True
        except InvalidRequestError as error:
            self._show_error(error, request_dict, model_info)
        except (TypeError, FreeSwimError) as error:
            self.general_message.show_error(str(error))

        has_prompt = bool(request_dict["prompt"].strip())
        if is_valid and not has_prompt:
            self.general_message.show_error(self.tr("Write a prompt to add the job."))
        self._set_valid(is_valid and has_prompt)
        self._show_warnings(warnings)
        self._start_analysis(request, model_info, is_valid)

    def _update_model_hint(self, model_info: Any) -> None:
        """Show why the form uses the demo model, or that the chosen model is not installed and how to install it."""
        model = self.current_model()
        text = ""
        if self._replaced_default_model is not None and model == "demo":
            text = self.tr("The default model is not installed, so new jobs use the demo model. {hint}").format(
                hint=engine_info.install_hint(self._replaced_default_model)
            )
        elif model_info is not None and not engine_info.is_model_usable(model):
            text = self.tr("Jobs with this model fail until it is installed. {hint}").format(
                hint=engine_info.install_hint(model)
            )
        self.model_hint_label.setText(text)
        self.model_hint_label.setVisible(bool(text))

    def _show_warnings(self, warnings: list[str]) -> None:
        self.warnings_label.setText("\n".join(warnings))
        self.warnings_label.setVisible(bool(warnings))

    def _set_valid(self, valid: bool) -> None:
        self.add_button.setEnabled(valid)
        if valid != self._is_valid:
            self._is_valid = valid
            self.validity_changed.emit(valid)

    def _show_error(self, error: InvalidRequestError, request_dict: dict[str, Any], model_info: Any) -> None:
        text = str(error)
        field = error.field
        if field in SIZE_FIELDS and field in self._messages:
            suggestions = size_suggestions(field, request_dict, model_info)
            if suggestions:
                # The buttons replace the fix sentence, so the sizes are not listed twice.
                text = self.tr("Invalid {field} {value}: {rule}. Use:").format(
                    field=field.replace("_", " "), value=error.value, rule=error.rule
                )
            actions = [(str(value), self._setter(field, value)) for value in suggestions]
            self._messages[field].show_error(text, actions)
        elif field in self._messages:
            self._messages[field].show_error(text)
        else:
            self.general_message.show_error(text)

    def _setter(self, field: str, value: int) -> Callable[[], None]:
        spin = {"width": self.width_spin, "height": self.height_spin}.get(field)

        def apply() -> None:
            if spin is not None:
                spin.setValue(value)
            else:
                self._base_request[field] = value
                self._on_changed()

        return apply

    def _show_token_counts(
        self, request_dict: dict[str, Any], model_info: Any, prompt_tokens: int | None, negative_tokens: int | None
    ) -> None:
        """Show exact counts when given, else estimates labelled as such."""
        preset = preset_of(request_dict["model"], model_info)
        max_tokens = preset.max_text_tokens if preset else 512
        has_tokenizer = getattr(model_info, "tokenizer_path", None) is not None
        self.prompt_tokens_label.show_count(request_dict["prompt"], prompt_tokens, max_tokens, has_tokenizer)
        self.negative_tokens_label.show_count(request_dict["negative_prompt"], negative_tokens, max_tokens, has_tokenizer)

    def _start_analysis(self, request: RenderRequest | None, model_info: Any, is_valid: bool) -> None:
        self._analysis_generation += 1
        if is_valid:
            self.memory_view.setPlainText(self.tr("Computing the memory plan..."))
        else:
            self.memory_view.setPlainText(self.tr("Fix the request to see the memory plan."))
        needs_tokenizer = getattr(model_info, "tokenizer_path", None) is not None
        if request is None or not (is_valid or needs_tokenizer):
            self._pending_analysis = None
            self._analysis_timer.stop()
            return
        self._pending_analysis = (request, model_info, is_valid)
        self._analysis_timer.start()  # waits for typing to pause, so a burst of changes is analysed once

    def _request_analysis(self) -> None:
        if self._pending_analysis is not None:
            request, model_info, is_valid = self._pending_analysis
            self._analysis_worker.analyse(self._analysis_generation, request, model_info, is_valid)

    def _on_analysis_ready(self, analysis: engine_info.RequestAnalysis) -> None:
        if analysis.generation != self._analysis_generation or self._pending_analysis is None:
            return
        request, model_info, is_valid = self._pending_analysis
        self._pending_analysis = None
        if analysis.prompt_tokens is not None:
            self._show_token_counts(self.request_dict(), model_info, analysis.prompt_tokens, analysis.negative_prompt_tokens)
        if analysis.warnings is not None:
            self._show_warnings(analysis.warnings)
        if is_valid:
            self.memory_view.setPlainText(analysis.plan or self.tr("memory plan not available"))

    def is_analysis_done(self) -> bool:
        """True when no background analysis of the current form is pending."""
        return self._pending_analysis is None and not self._analysis_timer.isActive()

    def shutdown(self) -> None:
        """Stop the analysis thread."""
        self._analysis_worker.stop()
