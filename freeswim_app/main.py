"""Entry point of ``freeswim-studio`` and the ``AppState`` that the window is built on.

Usage::

    freeswim-studio [--demo] [--project DIR] [--start] [--headless] [--self-test] [--version]

Without ``--headless`` it opens the main window on the given project, the
demo project, or the most recent project. Importing this module loads neither
torch nor the widgets; they are imported when needed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from freeswim_app import APP_DISPLAY_NAME, __version__
from freeswim_app.project import PROJECT_FILE, Project, ProjectCorruptError, ProjectError
from freeswim_app.queue_model import JobQueue, JobStateError, JobTableModel
from freeswim_app.settings import ENGINE_CACHE_DIR_ENV, AppSettings, SettingsSaveError, apply_engine_cache_dir
from freeswim_app.worker import EngineLoader, RenderRunner, load_engine
from freeswim_engine.logs import APP_NAME, configure_logging

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

logger = logging.getLogger(__name__)

ORGANIZATION_NAME = "FreeSwim"
ICON_DIR = Path(__file__).resolve().parent / "resources" / "icons"
EXIT_USAGE = 2


class AppState(QObject):
    """State of the window: the open project, its queue and table model, the render runner and the settings.

    ``project``, ``queue``, ``model`` and ``runner`` are replaced together by
    ``open_project``; widgets reconnect to the new ones on ``project_changed``.
    """

    project_changed = Signal()

    def __init__(
        self,
        project: Project,
        settings: AppSettings,
        *,
        engine_loader: EngineLoader = load_engine,
        log_file: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.log_file = log_file
        self._engine_loader = engine_loader
        self._inherited_cache_dir = os.environ.get(ENGINE_CACHE_DIR_ENV)
        self.project = project
        self.queue = JobQueue(project, self)
        self.model = JobTableModel(self.queue, self)
        self.runner = RenderRunner(self.queue, engine_loader=engine_loader)
        self.apply_settings()
        self._remember(project)

    @property
    def is_busy(self) -> bool:
        """True while a job renders; closing or switching projects then interrupts it."""
        return self.runner.is_busy

    def open_project(self, folder: Path, *, create: bool = False) -> None:
        """Switch to the project in ``folder`` (``create=True`` makes a new one there).

        Raises JobStateError while a job renders. Raises ProjectError, or its
        subclass ProjectCorruptError, when the folder cannot be opened. The
        current project stays open in both cases.
        """
        if self.is_busy:
            raise JobStateError(
                f"Cannot open {folder} while a job of {self.project.name} renders. "
                "Pause the queue and cancel the running job first."
            )
        project = Project.open(folder, create=create)
        self.runner.shutdown()
        self.project = project
        self.queue = JobQueue(project, self)
        self.model = JobTableModel(self.queue, self)
        self.runner = RenderRunner(self.queue, engine_loader=self._engine_loader)
        self.apply_settings()
        self._remember(project)
        self.project_changed.emit()

    def apply_settings(self) -> None:
        """Pass the settings the runner and the engine read to them; call it after the settings change.

        Jobs that are already running keep the values they started with.
        """
        settings = self.settings
        self.runner.want_previews = settings.show_previews
        self.runner.preview_every_steps = settings.preview_every_steps
        self.runner.output_dir = settings.output_dir
        self.runner.scratch_dir = settings.cache_dir
        apply_engine_cache_dir(settings.cache_dir, self._inherited_cache_dir)

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Interrupt the running job, stop the engine thread and save the settings.

        Returns False only when ``timeout_s`` passed before the thread stopped.
        """
        stopped = self.runner.shutdown(timeout_s)
        self._save_settings()
        return stopped

    def _remember(self, project: Project) -> None:
        self.settings.add_recent_project(project.folder)
        self._save_settings()

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except SettingsSaveError as error:
            logger.warning("%s", error)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freeswim-studio",
        description="FreeSwim Studio: render 1080p to 4K text-to-video on your GPU with FreeSwim.",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="open the demo project: three short prompts on the built-in demo model "
        "(kept in the user data folder, or in --project DIR when given)",
    )
    parser.add_argument("--project", type=Path, metavar="DIR", help="open the project in DIR, creating it if missing")
    parser.add_argument("--start", action="store_true", help="start the render queue at launch")
    parser.add_argument(
        "--headless",
        action="store_true",
        help="render the project's queued jobs without a window and print each MP4 path",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="render one short demo video into a temporary project, print its path and exit",
    )
    parser.add_argument(
        "--version", action="store_true", help="print the versions of the app and its libraries and the device"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, engine_loader: EngineLoader = load_engine) -> int:
    """Run ``freeswim-studio`` and return its exit code; tests pass a stand-in ``engine_loader``."""
    args = build_parser().parse_args(argv)
    if args.version:
        print(version_report())
        return 0

    log_file = configure_logging()
    logger.info("%s %s starting with %s", APP_DISPLAY_NAME, __version__, sys.argv[1:] if argv is None else list(argv))
    if args.self_test:
        from freeswim_app.headless import self_test

        return self_test(engine_loader=engine_loader)
    if args.headless:
        return _main_headless(args, engine_loader)
    return _main_window(args, log_file, engine_loader)


def _main_headless(args: argparse.Namespace, engine_loader: EngineLoader) -> int:
    from freeswim_app.headless import run_headless

    if not args.demo and args.project is None:
        print("--headless needs a project: add --project DIR or --demo.", file=sys.stderr)
        return EXIT_USAGE
    try:
        project = _open_requested_project(args)
    except ProjectError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    settings = AppSettings.load()
    apply_engine_cache_dir(settings.cache_dir, os.environ.get(ENGINE_CACHE_DIR_ENV))
    return run_headless(
        project, engine_loader=engine_loader, output_dir=settings.output_dir, scratch_dir=settings.cache_dir
    )


def _open_requested_project(args: argparse.Namespace) -> Project:
    if args.demo:
        from freeswim_app.demo_project import open_demo_project

        return open_demo_project(args.project)
    return Project.open(args.project, create=True)


def _main_window(args: argparse.Namespace, log_file: Path, engine_loader: EngineLoader) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication

    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    QGuiApplication.setApplicationDisplayName(APP_DISPLAY_NAME)
    app.setOrganizationName(ORGANIZATION_NAME)
    app.setApplicationVersion(__version__)
    QGuiApplication.setDesktopFileName("org.freeswim.FreeSwimStudio")
    icon_path = _icon_path()
    if icon_path is not None:
        QGuiApplication.setWindowIcon(QIcon(str(icon_path)))

    settings = AppSettings.load()
    project = _open_start_project(args, settings)
    if project is None:
        return EXIT_USAGE
    state = AppState(project, settings, engine_loader=engine_loader, log_file=log_file)
    window = build_window(state)
    window.show()
    if args.start:
        state.queue.start()
    try:
        code = app.exec()
    finally:
        # The window confirms a close during a render; this stops whatever still runs.
        state.shutdown()
    logger.info("%s exited with code %d", APP_DISPLAY_NAME, code)
    return code


def _open_start_project(args: argparse.Namespace, settings: AppSettings) -> Project | None:
    """Open the project named on the command line, else the last one, else the demo project.

    A corrupt project file is shown in a message box; it has been renamed by
    then, so the folder opens again as an empty project.
    """
    from PySide6.QtWidgets import QMessageBox

    from freeswim_app.demo_project import open_demo_project

    try:
        if args.demo:
            return open_demo_project(args.project)
        if args.project is not None:
            return Project.open(args.project, create=True)
        last = settings.last_project
        if last is not None and (last / PROJECT_FILE).is_file():
            return Project.open(last)
        return open_demo_project()
    except ProjectCorruptError as error:
        QMessageBox.warning(None, APP_DISPLAY_NAME, str(error))
        try:
            return Project.open(error.path.parent, create=True)
        except ProjectError as second_error:
            QMessageBox.critical(None, APP_DISPLAY_NAME, str(second_error))
            return None
    except ProjectError as error:
        QMessageBox.critical(None, APP_DISPLAY_NAME, str(error))
        return None


def build_window(state: AppState) -> QWidget:
    """Create the main window for ``state``, or a bare queue table when the window's module fails to import."""
    try:
        from freeswim_app.ui.main_window import MainWindow
    except ImportError:
        logger.error("The main window cannot be imported; showing the bare queue table:\n%s", traceback.format_exc())
        return _bare_window(state)
    return MainWindow(state)


def _bare_window(state: AppState) -> QWidget:
    # Keeps the app usable for checking a render when the widgets package is broken or missing.
    from PySide6.QtWidgets import QAbstractItemView, QMainWindow, QTableView

    window = QMainWindow()
    window.setWindowTitle(f"{APP_DISPLAY_NAME}: {state.project.name}")
    view = QTableView(window)
    view.setModel(state.model)
    view.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    window.setCentralWidget(view)
    window.resize(900, 400)
    return window


def _icon_path() -> Path | None:
    for name in ("freeswim-studio.svg", "freeswim-studio-256.png"):
        path = ICON_DIR / name
        if path.is_file():
            return path
    return None


def version_report() -> str:
    """Return the app's version, the versions of the libraries it renders with, and the device."""
    lines = [f"{APP_DISPLAY_NAME} {__version__}"]
    for module_name in ("torch", "diffusers", "transformers", "PySide6"):
        try:
            module = __import__(module_name)
            lines.append(f"{module_name} {getattr(module, '__version__', 'unknown')}")
        except ImportError as error:
            lines.append(f"{module_name} not installed ({error})")
    lines.append(f"device {_device_description()}")
    return "\n".join(lines)


def _device_description() -> str:
    try:
        import torch
    except ImportError:
        return "unknown (torch is not installed)"
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        total_gib = torch.cuda.get_device_properties(index).total_memory / 2**30
        return f"cuda:{index} {torch.cuda.get_device_name(index)} ({total_gib:.0f} GiB)"
    return f"cpu ({os.cpu_count()} cores; no CUDA device found)"


if __name__ == "__main__":
    sys.exit(main())
