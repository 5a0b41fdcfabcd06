"""App settings and recent projects, stored as JSON in the user config folder.

Folders come from platformdirs (app name "FreeSwimStudio", no app author).
FREESWIM_CONFIG_DIR and FREESWIM_DATA_DIR replace them, so tests and portable
installs keep everything in folders of their choice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import platformdirs

from freeswim_app.project import write_json_atomic
from freeswim_engine.errors import FreeSwimError
from freeswim_engine.logs import APP_NAME
from freeswim_engine.request import DTYPES

logger = logging.getLogger(__name__)

CONFIG_DIR_ENV = "FREESWIM_CONFIG_DIR"
DATA_DIR_ENV = "FREESWIM_DATA_DIR"
ENGINE_CACHE_DIR_ENV = "FREESWIM_CACHE_DIR"  # the engine's cache folder (demo_model.cache_root)
SETTINGS_FILE = "settings.json"
MAX_RECENT_PROJECTS = 10


class SettingsSaveError(FreeSwimError):
    """Writing the settings file failed; the settings in memory are unchanged."""


def config_dir() -> Path:
    """Return the settings folder: FREESWIM_CONFIG_DIR, else the platform's user config folder."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """Return the folder for app data such as the demo project: FREESWIM_DATA_DIR, else the user data folder."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclasses.dataclass
class AppSettings:
    """Settings of the app, as opposed to ``ProjectSettings`` stored in each project."""

    recent_projects: list[str] = dataclasses.field(default_factory=list)  # folders, most recent first
    default_model: str = "demo"  # model of new jobs in new projects
    device: str = "auto"  # RenderRequest.device of new jobs: auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # RenderRequest.dtype of new jobs: auto | float32 | bfloat16
    # Folder that receives a copy of each finished MP4 and its JSON sidecar. The project keeps
    # its own copy in outputs/. None: no copy.
    output_dir: Path | None = None
    # The engine's cache folder: the demo model, and the cross-attention cache when the memory plan
    # puts it on disk. None: the platform's user cache folder for the demo model, and each job's
    # folder for the cross-attention cache.
    cache_dir: Path | None = None
    show_previews: bool = True  # ask the engine for preview frames while rendering
    preview_every_steps: int = 1  # denoising steps between two previews sent to the window; >= 1
    # Opaque strings the widgets store, for example base64 window geometry, keyed by the widget's name.
    ui_state: dict[str, str] = dataclasses.field(default_factory=dict)
    path: Path | None = dataclasses.field(default=None, compare=False)  # where load() read the file

    @classmethod
    def load(cls, path: Path | None = None) -> AppSettings:
        """Read the settings file; a missing or unreadable file gives the defaults and logs why."""
        path = path or config_dir() / SETTINGS_FILE
        settings = cls(path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return settings
        except (OSError, ValueError) as error:
            logger.warning("Cannot read the settings file %s (%s); using the defaults", path, error)
            return settings
        if not isinstance(data, dict):
            logger.warning("The settings file %s is not a JSON object; using the defaults", path)
            return settings
        settings._apply(data)
        return settings

    def _apply(self, data: dict[str, Any]) -> None:
        # Each field falls back to its default on its own, so one bad value does not reset the rest.
        recent = data.get("recent_projects")
        if isinstance(recent, list):
            self.recent_projects = [str(item) for item in recent if isinstance(item, str)][:MAX_RECENT_PROJECTS]
        if isinstance(data.get("default_model"), str):
            self.default_model = data["default_model"]
        if isinstance(data.get("device"), str):
            self.device = data["device"]
        if data.get("dtype") in DTYPES:
            self.dtype = data["dtype"]
        self.output_dir = _folder_or_none(data.get("output_dir"))
        self.cache_dir = _folder_or_none(data.get("cache_dir"))
        if isinstance(data.get("show_previews"), bool):
            self.show_previews = data["show_previews"]
        every = data.get("preview_every_steps")
        if isinstance(every, int) and not isinstance(every, bool) and every >= 1:
            self.preview_every_steps = every
        ui_state = data.get("ui_state")
        if isinstance(ui_state, dict):
            self.ui_state = {str(k): v for k, v in ui_state.items() if isinstance(v, str)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "recent_projects": list(self.recent_projects),
            "default_model": self.default_model,
            "device": self.device,
            "dtype": self.dtype,
            "output_dir": str(self.output_dir) if self.output_dir else None,
            "cache_dir": str(self.cache_dir) if self.cache_dir else None,
            "show_previews": self.show_previews,
            "preview_every_steps": self.preview_every_steps,
            "ui_state": dict(self.ui_state),
        }

    def save(self) -> None:
        """Write the settings atomically; raises SettingsSaveError."""
        path = self.path or config_dir() / SETTINGS_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, self.to_dict())
        except OSError as error:
            raise SettingsSaveError(
                f"Saving the settings to {path} failed: {error}. Make the folder writable, "
                f"or set {CONFIG_DIR_ENV} to a writable folder."
            ) from error
        self.path = path

    def add_recent_project(self, folder: Path) -> None:
        """Put ``folder`` first in the recent projects (in memory; call ``save`` to keep it)."""
        text = str(Path(folder).resolve())
        self.recent_projects = [text, *(item for item in self.recent_projects if item != text)]
        del self.recent_projects[MAX_RECENT_PROJECTS:]

    @property
    def last_project(self) -> Path | None:
        return Path(self.recent_projects[0]) if self.recent_projects else None


def _folder_or_none(value: Any) -> Path | None:
    # A missing key, null or an empty string all mean "not set".
    if isinstance(value, str) and value.strip():
        return Path(value.strip()).expanduser()
    return None


def apply_engine_cache_dir(cache_dir: Path | None, inherited: str | None) -> None:
    """Point the engine's cache folder (FREESWIM_CACHE_DIR) at ``cache_dir``.

    ``None`` restores ``inherited``, the value the process started with, or removes the
    variable so that the engine falls back to the platform's user cache folder. The engine
    reads the variable at each use, so the change applies to the next render.
    """
    if cache_dir is not None:
        os.environ[ENGINE_CACHE_DIR_ENV] = str(cache_dir)
    elif inherited is not None:
        os.environ[ENGINE_CACHE_DIR_ENV] = inherited
    else:
        os.environ.pop(ENGINE_CACHE_DIR_ENV, None)
