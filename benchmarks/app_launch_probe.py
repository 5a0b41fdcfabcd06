"""Start the desktop app's main window as ``freeswim-studio --project DIR`` does, then exit once it is shown.

``freeswim_app.main`` has no option to quit after the first show, so this
probe repeats the steps of its window start-up (application object, settings,
project, ``AppState``, ``MainWindow``) and prints one JSON line with the
seconds of each phase, counted from the probe's first statement. With
``--import-engine`` it imports the engine API (torch and diffusers) before
the window, as a start-up that loads the engine eagerly would.

Run it through ``benchmarks.app_start``, which isolates the settings folders.
"""

import time

PROBE_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="project folder to open (created if missing)")
    parser.add_argument("--import-engine", action="store_true", help="import freeswim_engine.api before the window")
    args = parser.parse_args(argv)
    phases: dict[str, float] = {}

    if args.import_engine:
        import freeswim_engine.api  # noqa: F401

        phases["engine_imported"] = time.perf_counter() - PROBE_START

    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from freeswim_app.main import AppState, build_window
    from freeswim_app.project import Project
    from freeswim_app.settings import AppSettings
    from freeswim_engine.logs import APP_NAME, configure_logging

    phases["app_modules_imported"] = time.perf_counter() - PROBE_START
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    log_file = configure_logging()
    settings = AppSettings.load()
    project = Project.open(args.project, create=True)
    state = AppState(project, settings, log_file=log_file)
    window = build_window(state)
    phases["window_built"] = time.perf_counter() - PROBE_START
    window.show()
    exposed = QTest.qWaitForWindowExposed(window, 10_000)
    phases["window_shown"] = time.perf_counter() - PROBE_START

    report = {
        "phases_s": phases,
        "window_exposed": bool(exposed),
        "window_class": type(window).__name__,
        "torch_loaded_at_show": "torch" in sys.modules,
        "diffusers_loaded_at_show": "diffusers" in sys.modules,
    }
    print(json.dumps(report), flush=True)
    window.close()
    state.shutdown(timeout_s=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
