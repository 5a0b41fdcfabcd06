"""Benchmark the desktop app's start: seconds from launching Python to a shown main window.

Each launch runs ``python -m benchmarks.app_launch_probe`` in a fresh process
with ``QT_QPA_PLATFORM=offscreen`` and empty, temporary settings, data and
cache folders. The time from ``subprocess.Popen`` to the probe's report line
is the launch time; launches with and without the engine imported first
alternate, and the medians are compared.

Run from the repository root::

    python -m benchmarks.app_start
    python -m benchmarks.app_start --size smoke
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import benchmark_parser, start_run, load_average, module_command, summarize, write_results

logger = logging.getLogger(__name__)

NAME = "app_start"
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
LAUNCH_TIMEOUT_S = 300
SIZES = {"full": 5, "smoke": 1}  # launches per variant


def launch_once(import_engine: bool, folder: Path) -> dict[str, Any]:
    """Launch the probe once and return its report plus the parent's launch-to-shown seconds."""
    home = folder / ("engine" if import_engine else "plain")
    env = dict(os.environ)
    env.update(
        {
            "QT_QPA_PLATFORM": "offscreen",
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "FREESWIM_CACHE_DIR": str(home / "cache" / "freeswim"),
        }
    )
    command = [sys.executable, "-m", "benchmarks.app_launch_probe", "--project", str(home / "project")]
    if import_engine:
        command.append("--import-engine")

    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    shown_s = time.perf_counter() - start
    try:
        _, stderr = process.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        raise RuntimeError(f"the app probe did not exit within {LAUNCH_TIMEOUT_S} s after showing its window") from None
    if process.returncode != 0 or not line.strip():
        raise RuntimeError(f"the app probe failed with exit code {process.returncode}:\n{stderr[-2000:]}")
    report: dict[str, Any] = json.loads(line)
    report["launch_to_shown_s"] = shown_s
    return report


def run(size: str = "full", launches: int | None = None) -> dict[str, Any]:
    """Launch the app alternately without and with the engine imported, and return the figures."""
    launches = launches if launches is not None else SIZES[size]
    load_start = load_average()
    reports: dict[str, list[dict[str, Any]]] = {"without_engine": [], "with_engine": []}
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        # One untimed launch of each fills the page cache, so no variant pays for cold files alone.
        for import_engine in (False, True):
            launch_once(import_engine, folder)
        for _ in range(launches):
            reports["without_engine"].append(launch_once(False, folder))
            reports["with_engine"].append(launch_once(True, folder))

    variants = {}
    for name, runs in reports.items():
        variants[name] = {
            "launch_to_shown": summarize([report["launch_to_shown_s"] for report in runs]),
            "probe_phases_median_s": {
                phase: statistics.median(report["phases_s"][phase] for report in runs) for phase in runs[0]["phases_s"]
            },
            "window_class": runs[0]["window_class"],
            "window_exposed": all(report["window_exposed"] for report in runs),
            "torch_loaded_at_show": runs[0]["torch_loaded_at_show"],
        }
    without = variants["without_engine"]["launch_to_shown"]["median_s"]
    with_engine = variants["with_engine"]["launch_to_shown"]["median_s"]
    return {
        "size": size,
        "launches_per_variant": launches,
        "load_average_start": load_start,
        "qt_platform": "offscreen",
        "variants": variants,
        "engine_import_cost_s": with_engine - without,
        "notes": "Launch to shown: from subprocess.Popen to the probe's report after QTest.qWaitForWindowExposed. The probe repeats freeswim_app.main's window start-up because main.py has no exit-after-show option.",
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = benchmark_parser(__doc__, SIZES, "launches per variant: full 5, smoke 1")
    parser.add_argument("--launches", type=int, default=None, help="timed launches per variant (overrides --size)")
    args = parser.parse_args(argv)
    start_run(args)
    figures = run(args.size, args.launches)
    path = write_results(NAME, figures, module_command(NAME, argv), args.output_dir)
    print(f"wrote {path}")
    for name, variant in figures["variants"].items():
        print(f"{name}: {variant['launch_to_shown']['median_s']:.2f} s to a shown window (torch loaded: {variant['torch_loaded_at_show']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
