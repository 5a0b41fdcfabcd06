#!/usr/bin/env python3
"""Build the FreeSwim Studio one-folder app with PyInstaller.

Usage:
    python3 packaging/build.py                 build dist/FreeSwimStudio/ from the project's .venv
    python3 packaging/build.py --check         build, then run `FreeSwimStudio --version` and `--self-test`
    python3 packaging/build.py --venv DIR      build from another environment (created if DIR is missing)
    python3 packaging/build.py --entry probe   build dist/FreeSwimProbe/, a dependency check without the app

The build uses the torch wheel installed in the chosen environment, so a CPU
environment gives a CPU build. For a CUDA build, install a CUDA torch wheel
into a separate environment first (see --torch-index-url) and build from it.
Only the standard library is used here; PyInstaller runs inside the
environment and is installed there when missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGING = REPO_ROOT / "packaging"
SPEC_FILE = PACKAGING / "freeswim.spec"
APP_ID = "org.freeswim.FreeSwimStudio"
ICON_NAME = "freeswim-studio"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
APP_NAMES = {"app": "FreeSwimStudio", "probe": "FreeSwimProbe"}
PYINSTALLER_REQUIREMENT = "pyinstaller>=6.10"
TORCH_REQUIREMENT = "torch==2.13.0"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build the FreeSwim Studio one-folder app with PyInstaller.")
    parser.add_argument("--venv", type=Path, default=Path(os.environ.get("FREESWIM_VENV", REPO_ROOT / ".venv")),
                        help="virtual environment to build from, created with the project's dependencies "
                             "when the folder does not exist (default: .venv, or $FREESWIM_VENV)")
    parser.add_argument("--torch-index-url", default=None,
                        help="package index for torch when --venv is created, for example "
                             "https://download.pytorch.org/whl/cu128 for a CUDA 12.8 build")
    parser.add_argument("--entry", choices=sorted(APP_NAMES), default="app",
                        help="what to build: 'app' is FreeSwimStudio (freeswim_app.main), 'probe' is "
                             "FreeSwimProbe, a dependency check (packaging/probe_entry.py); default: app")
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist", help="output folder (default: dist)")
    parser.add_argument("--work", type=Path, default=None,
                        help="PyInstaller's work folder, one per entry so two builds can run at once "
                             "(default: build/pyinstaller/ENTRY)")
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's caches before building")
    parser.add_argument("--check", action="store_true",
                        help="after the build, run the app with --version and --self-test "
                             "(the probe runs its own checks)")
    args = parser.parse_args(argv)
    if args.work is None:
        args.work = REPO_ROOT / "build" / "pyinstaller" / args.entry
    return args


def venv_python(root: Path) -> Path:
    if os.name == "nt":
        return root / "Scripts" / "python.exe"
    return root / "bin" / "python"


def run(command: list[str], **kwargs: object) -> None:
    print("+ " + " ".join(str(part) for part in command), flush=True)
    completed = subprocess.run(command, cwd=REPO_ROOT, **kwargs)  # type: ignore[call-overload]
    if completed.returncode != 0:
        sys.exit(f"Command failed with exit status {completed.returncode}: {command[0]} {command[1:3]}")


def create_environment(root: Path, torch_index_url: str | None) -> Path:
    """Create a virtual environment at ``root`` with torch, the project and PyInstaller."""
    print(f"Creating the build environment in {root}", flush=True)
    venv.EnvBuilder(with_pip=True).create(root)
    python = venv_python(root)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    # torch goes first so that the project's pin cannot pull the default wheel over the chosen one.
    torch_source = ["--index-url", torch_index_url] if torch_index_url else []
    run([*pip, TORCH_REQUIREMENT, *torch_source])
    run([*pip, f"{REPO_ROOT}[packaging]"])
    return python


def ensure_pyinstaller(python: Path) -> None:
    probe = subprocess.run([str(python), "-m", "PyInstaller", "--version"], capture_output=True, text=True)
    if probe.returncode == 0:
        print(f"PyInstaller {probe.stdout.strip()} in {python}", flush=True)
        return
    print(f"PyInstaller is missing from {python}; installing {PYINSTALLER_REQUIREMENT}", flush=True)
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", PYINSTALLER_REQUIREMENT])


def run_pyinstaller(python: Path, args: argparse.Namespace) -> None:
    command = [
        str(python), "-m", "PyInstaller", str(SPEC_FILE), "--noconfirm",
        "--distpath", str(args.dist), "--workpath", str(args.work),
    ]
    if args.clean:
        command.append("--clean")
    command += ["--", "--entry", args.entry]
    run(command)


def precompile_torch(python: Path, app_folder: Path) -> None:
    """Write __pycache__ bytecode next to the bundled torch sources, so the app does not compile them at start.

    The spec bundles torch as plain .py files (see the comment at
    module_collection_mode). The frozen interpreter runs with
    sys.dont_write_bytecode set, so without this step every start would
    compile each torch module it imports.
    Unchecked-hash .pyc files stay valid when unpacking changes the files' times.
    """
    torch_folder = app_folder / "_internal" / "torch"
    if not torch_folder.is_dir():
        sys.exit(f"Bundled torch not found at {torch_folder}; check the PyInstaller output above")
    run([str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
         str(torch_folder)])


def add_desktop_files(app_folder: Path) -> None:
    """Copy the freedesktop entry, AppStream metainfo, icons and installer into the app folder (Linux only)."""
    share = app_folder / "share"
    linux = REPO_ROOT / "resources" / "linux"
    icons = REPO_ROOT / "resources" / "icons"
    (share / "applications").mkdir(parents=True, exist_ok=True)
    (share / "metainfo").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(linux / f"{APP_ID}.desktop", share / "applications" / f"{APP_ID}.desktop")
    shutil.copyfile(linux / f"{APP_ID}.metainfo.xml", share / "metainfo" / f"{APP_ID}.metainfo.xml")
    for size in ICON_SIZES:
        target = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(icons / f"{ICON_NAME}-{size}.png", target / f"{APP_ID}.png")
    scalable = share / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(icons / f"{ICON_NAME}.svg", scalable / f"{APP_ID}.svg")

    installer = app_folder / "install-desktop-entry.sh"
    shutil.copyfile(PACKAGING / "install-desktop-entry.sh", installer)
    installer.chmod(0o755)


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def check_app(executable: Path, entry: str) -> None:
    environment = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    if entry == "probe":
        run([str(executable)], env=environment)
        return
    run([str(executable), "--version"], env=environment)
    run([str(executable), "--self-test"], env=environment)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    python = venv_python(args.venv)
    if not python.exists():
        python = create_environment(args.venv, args.torch_index_url)
    elif args.torch_index_url:
        print(f"Note: {args.venv} exists, so --torch-index-url is ignored; its installed torch is used", flush=True)
    ensure_pyinstaller(python)

    started = time.monotonic()
    run_pyinstaller(python, args)
    app_name = APP_NAMES[args.entry]
    app_folder = args.dist / app_name
    precompile_torch(python, app_folder)
    if sys.platform.startswith("linux"):
        add_desktop_files(app_folder)
    minutes, seconds = divmod(time.monotonic() - started, 60)
    size_gib = folder_size(app_folder) / 2**30
    executable = app_folder / (app_name + (".exe" if os.name == "nt" else ""))
    print(f"Built {executable} in {int(minutes)} min {seconds:.0f} s; the folder is {size_gib:.2f} GiB", flush=True)

    if args.check:
        check_app(executable, args.entry)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
