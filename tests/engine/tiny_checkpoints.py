"""Helpers that build tiny random Wan checkpoints on disk for the engine tests.

They save the demo model's architecture (see freeswim_engine.demo_model) in the
diffusers folder layout, and can place a copy in a Hugging Face cache layout
(``models--org--name/snapshots/<revision>/`` with ``refs/main``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from freeswim_engine.demo_model import save_demo_checkpoint

FAKE_REVISION = "0123456789abcdef0123456789abcdef01234567"


def save_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random Wan pipeline to ``folder`` and return it."""
    return save_demo_checkpoint(folder, seed=seed)


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def add_to_hf_cache(hub_cache: Path, repo_id: str, checkpoint: Path, revision: str = FAKE_REVISION) -> Path:
    """Copy ``checkpoint`` into ``hub_cache`` as the ``main`` snapshot of ``repo_id``; return the snapshot folder.

    The layout matches what huggingface_hub writes (minus the blob deduplication, which
    readers do not need): ``models--{org}--{name}/snapshots/{revision}/...`` and
    ``models--{org}--{name}/refs/main`` containing the revision.
    """
    repo_folder = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_folder / "snapshots" / revision
    shutil.copytree(checkpoint, snapshot)
    (repo_folder / "refs").mkdir(parents=True, exist_ok=True)
    (repo_folder / "refs" / "main").write_text(revision)
    (repo_folder / "blobs").mkdir(exist_ok=True)
    return snapshot
