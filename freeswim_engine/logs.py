"""Logging set-up shared by the command line and the desktop app."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import platformdirs

APP_NAME = "FreeSwimStudio"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_dir() -> Path:
    """Return the user log folder, for example ``~/.local/state/FreeSwimStudio/log`` on Linux."""
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def configure_logging(level: int = logging.INFO, log_file: Path | None = None) -> Path:
    """Send ``freeswim_engine`` and ``freeswim_app`` logs to a rotating file and return its path.

    Calling it again replaces the handlers it added before, so tests can point it elsewhere.
    """
    path = log_file or log_dir() / "freeswim.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.set_name("freeswim-file")
    for name in ("freeswim_engine", "freeswim_app"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "freeswim-file"]:
            logger.removeHandler(old)
            old.close()
        logger.addHandler(handler)
        logger.setLevel(level)
    return path
