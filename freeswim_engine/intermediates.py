"""Files a render leaves behind for later: saved latents and the stage-1 results of a work folder."""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from freeswim_engine.errors import InputVideoError

logger = logging.getLogger(__name__)

LATENTS_FORMAT = "freeswim-latents"
LATENTS_FORMAT_VERSION = 1


def save_latents(path: Path, latents: torch.Tensor, metadata: dict[str, Any]) -> Path:
    """Save float32 latents with JSON-ready ``metadata`` (model, size, fps, settings) to ``path`` with torch.save.

    The file is written under a temporary name and renamed, so ``path`` never contains a partial file.
    """
    record = {
        "format": LATENTS_FORMAT,
        "version": LATENTS_FORMAT_VERSION,
        "latents": latents.detach().float().cpu().contiguous(),
        "metadata": json.loads(json.dumps(metadata)),  # plain types only, so weights_only loading works
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    try:
        torch.save(record, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_latents(path: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load latents and metadata written by ``save_latents``; raise InputVideoError for any other file."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputVideoError(f"{path} is not a FreeSwim latents file. Pass a file written by --save-latents.") from None
    except (OSError, RuntimeError, EOFError) as error:
        raise InputVideoError(f"Cannot read latents file {path}: {error}. Pass a file written by --save-latents.") from error
    if not isinstance(record, dict) or record.get("format") != LATENTS_FORMAT:
        raise InputVideoError(f"{path} is not a FreeSwim latents file. Pass a file written by --save-latents.")
    if record.get("version") != LATENTS_FORMAT_VERSION:
        raise InputVideoError(
            f"Latents file {path} has format version {record.get('version')}, but this engine reads version "
            f"{LATENTS_FORMAT_VERSION}. Render it again with this version."
        )
    return record["latents"], record["metadata"]


class Stage1Cache:
    """Stage-1 results in a work folder, reused when a retry has the same stage-1 settings.

    Files: ``stage1_latents.pt`` (latents and the settings key), ``stage1.json`` (the key,
    readable) and ``base.mp4`` (the decoded stage-1 video, written by the caller).
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.key_path = work_dir / "stage1.json"
        self.latents_path = work_dir / "stage1_latents.pt"
        self.video_path = work_dir / "base.mp4"

    def load(self, key: dict[str, Any]) -> torch.Tensor | None:
        """Return the saved stage-1 latents when they were made with exactly ``key``, else None."""
        if not self.latents_path.is_file():
            return None
        try:
            latents, metadata = load_latents(self.latents_path)
        except InputVideoError as error:
            logger.warning("Ignoring unreadable stage-1 latents in %s: %s", self.work_dir, error)
            return None
        if metadata.get("key") != _normalised(key):
            return None
        return latents

    def store(self, key: dict[str, Any], latents: torch.Tensor) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        save_latents(self.latents_path, latents, {"key": key})
        self.key_path.write_text(json.dumps(key, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def previous_seed(self, key_without_seed: dict[str, Any]) -> int | None:
        """Return the seed of the saved stage 1 when every other setting matches, so a retry of a random seed reuses it."""
        if not self.key_path.is_file():
            return None
        try:
            saved = json.loads(self.key_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(saved, dict) or not isinstance(saved.get("seed"), int):
            return None
        if {name: value for name, value in saved.items() if name != "seed"} != _normalised(key_without_seed):
            return None
        return int(saved["seed"])


def _normalised(key: dict[str, Any]) -> Any:
    """Return ``key`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(key))
