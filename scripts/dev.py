#!/usr/bin/env python3
"""Set up the project's virtual environment and run the app or the tests.

Usage:
    python3 scripts/dev.py app [ARGS...]    open FreeSwim Studio on the demo project and start its queue
    python3 scripts/dev.py test [ARGS...]   run the type checker and the test suite (ARGS go to pytest)
    python3 scripts/dev.py setup            only create or update the virtual environment

Only the standard library is used here, so the script works on a fresh clone
with nothing but Python 3.11 or newer. The environment lives in `.venv/` next
to `pyproject.toml` (override with FREESWIM_VENV) and is reinstalled only when
`pyproject.toml` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 11)


def venv_dir() -> Path:
    return Path(os.environ.get("FREESWIM_VENV", REPO_ROOT / ".venv"))


def venv_python(root: Path) -> Path:
    if os.name == "nt":
        return root / "Scripts" / "python.exe"
    return root / "bin" / "python"


def requirements_digest() -> str:
    return hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_environment() -> Path:
    """Create the virtual environment if needed and install the project with its dev extra."""
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"Python {sys.version.split()[0]} is too old: FreeSwim Studio needs Python 3.11 or newer.")

    root = venv_dir()
    python = venv_python(root)
    if not python.exists():
        print(f"Creating the virtual environment in {root}", flush=True)
        venv.EnvBuilder(with_pip=True).create(root)

    stamp = root / ".freeswim-installed"
    digest = requirements_digest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return python

    print("Installing FreeSwim Studio and its dependencies (first run takes a few minutes)", flush=True)
    # torch is named exactly first: a looser requirement lets pip choose a multi-GB CUDA build.
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "torch==2.13.0"])
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", f"{REPO_ROOT}[dev]"])
    stamp.write_text(digest + "\n")
    return python


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def run_tests(python: Path, pytest_args: list[str]) -> None:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    print("Type checking with mypy", flush=True)
    run([str(python), "-m", "mypy"], env=env)
    print("Running the test suite", flush=True)
    run([str(python), "-m", "pytest", *pytest_args], env=env)


def run_app(python: Path, app_args: list[str]) -> None:
    args = app_args or ["--demo", "--start"]
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"
    if sys.platform == "darwin":
        has_display = True
    if not has_display and "--headless" not in args:
        print("No display found, so the demo queue renders without a window.", flush=True)
        args = [*args, "--headless"]
    run([str(python), "-m", "freeswim_app.main", *args])


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"app", "test", "setup"}:
        sys.exit(__doc__)
    command, rest = argv[0], argv[1:]
    python = ensure_environment()
    if command == "test":
        run_tests(python, rest)
    elif command == "app":
        run_app(python, rest)


if __name__ == "__main__":
    main(sys.argv[1:])
