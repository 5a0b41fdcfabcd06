"""The built-in demo project: three prompts on the demo model, small enough to render on a CPU.

The demo model has random weights, so its videos are coloured noise; the demo
project exists to show the queue, the player and a finished render right after
installation without downloading a model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from freeswim_app.jobs import Job
from freeswim_app.project import PROJECT_FILE, Project
from freeswim_app.settings import data_dir
from freeswim_engine.demo_model import DEMO_NAME, DEMO_PRESET

logger = logging.getLogger(__name__)

DEMO_PROJECT_NAME = "Demo project"
DEMO_FOLDER_NAME = "demo-project"

# (prompt, upscale factor over the demo model's base size of 224x128 pixels)
DEMO_PROMPTS: tuple[tuple[str, int], ...] = (
    ("A paper boat drifting down a rain-soaked street at dusk, reflections of neon signs", 2),
    ("Aerial view of a turquoise river winding through autumn forest, morning mist", 2),
    ("Close-up of a hummingbird hovering at a red flower, slow motion, shallow depth of field", 3),
)


def default_demo_folder() -> Path:
    """Return where ``--demo`` keeps its project when no ``--project`` folder is given."""
    return data_dir() / DEMO_FOLDER_NAME


def demo_request(prompt: str, scale: int = 2, **overrides: Any) -> dict[str, Any]:
    """Return a RenderRequest dict for the demo model at ``scale`` times its base size.

    Frames, steps and guidance stay unset so the engine takes the demo preset's
    defaults (5 frames, 6 steps). ``overrides`` replace any field.
    """
    request: dict[str, Any] = {
        "prompt": prompt,
        "model": DEMO_NAME,
        "width": DEMO_PRESET.base_width * scale,
        "height": DEMO_PRESET.base_height * scale,
        "seed": 0,
    }
    request.update(overrides)
    return request


def open_demo_project(folder: Path | None = None) -> Project:
    """Open the demo project in ``folder``, creating it with the three demo jobs the first time.

    An existing project there is opened as it is, so finished demo renders are kept between runs.
    """
    folder = Path(folder) if folder is not None else default_demo_folder()
    if (folder / PROJECT_FILE).exists():
        return Project.open(folder)
    project = Project.create(folder, name=DEMO_PROJECT_NAME)
    project.settings.default_request = {"model": DEMO_NAME}
    project.jobs.extend(Job(request=demo_request(prompt, scale)) for prompt, scale in DEMO_PROMPTS)
    project.save()
    logger.info("Created the demo project in %s", project.folder)
    return project

