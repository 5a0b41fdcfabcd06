"""Rendering a project's queue without a window, and the install self-test.

Both use a QCoreApplication event loop (no widgets, no display needed) with the
same ``JobQueue`` and ``RenderRunner`` as the window, so a project rendered
here looks the same when it is opened in the app afterwards.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer

from freeswim_app.demo_project import demo_request
from freeswim_app.jobs import JobState
from freeswim_app.project import Project
from freeswim_app.queue_model import JobQueue
from freeswim_app.worker import EngineLoader, RenderRunner, load_engine

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl+C (128 + SIGINT)
SIGNAL_POLL_MS = 200  # how often Python gets the chance to run its Ctrl+C handler during the Qt loop


def run_headless(
    project: Project,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    engine_loader: EngineLoader = load_engine,
    output_dir: Path | None = None,
    scratch_dir: Path | None = None,
) -> int:
    """Render every queued job of ``project`` in order and print each MP4 path on its own line.

    ``output_dir`` also receives a copy of each MP4, as the window's output folder setting does.
    ``scratch_dir`` contains the disk cross-attention cache when the memory plan puts it on disk.
    Failures and cancellations go to ``stderr`` and the next job runs.
    Returns EXIT_OK when every job finished, EXIT_JOB_FAILED when at least one
    failed and EXIT_INTERRUPTED after Ctrl+C, which marks the running job
    interrupted as closing the window does.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])  # noqa: F841 (kept alive for the loop)
    queue = JobQueue(project)
    runner = RenderRunner(
        queue, engine_loader=engine_loader, want_previews=False, output_dir=output_dir, scratch_dir=scratch_dir
    )
    loop = QEventLoop()
    outcome = _Outcome()

    def on_finished(job_id: str) -> None:
        output = queue.job(job_id).result.output_path
        print(output, file=out, flush=True)

    def on_stopped(job_id: str, message: str) -> None:
        job = queue.job(job_id)
        if job.state is JobState.FAILED:
            outcome.failed += 1
        print(f"{job.describe()} {job.state.value}: {message}", file=err, flush=True)

    runner.job_finished.connect(on_finished)
    runner.job_stopped.connect(on_stopped)
    runner.queue_drained.connect(loop.quit)
    queue.save_failed.connect(lambda message: print(message, file=err, flush=True))

    _report_skipped_jobs(queue, err)
    with _quit_on_interrupt(loop, outcome):
        queue.start()
        loop.exec()
    runner.shutdown()
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_JOB_FAILED if outcome.failed else EXIT_OK


def self_test(
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    engine_loader: EngineLoader = load_engine,
) -> int:
    """Render one short demo job into a new temporary project and check the MP4.

    Prints the MP4 path and returns 0 when the video has the requested size;
    otherwise prints the reason to ``stderr`` and returns 1. The temporary
    project is kept so that the video can be played.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    folder = Path(tempfile.mkdtemp(prefix="freeswim-self-test-"))
    project = Project.create(folder / "project", name="Self-test")
    queue = JobQueue(project)
    job = queue.add(demo_request("Self-test: a red cube turning slowly on a grey floor", scale=2))
    del queue

    code = run_headless(project, stdout=out, stderr=err, engine_loader=engine_loader)
    job = project.find_job(job.id) or job
    if code != EXIT_OK or job.state is not JobState.DONE or job.result.output_path is None:
        print(f"Self-test failed: {job.error or 'the demo job did not finish'}", file=err, flush=True)
        return EXIT_JOB_FAILED if code == EXIT_OK else code
    problem = _check_video(job.result.output_path, job.request)
    if problem:
        print(f"Self-test failed: {problem}", file=err, flush=True)
        return EXIT_JOB_FAILED
    return EXIT_OK


class _Outcome:
    def __init__(self) -> None:
        self.failed = 0
        self.interrupted = False


def _report_skipped_jobs(queue: JobQueue, err: TextIO) -> None:
    skipped = [job for job in queue.jobs if job.state is JobState.INTERRUPTED]
    for job in skipped:
        print(f"Skipping {job.describe()}: it was interrupted; retry it in the app to render it.", file=err)
    if queue.next_queued() is None:
        print(f"No queued jobs in {queue.project.folder}.", file=err, flush=True)


def _check_video(path: Path, request: dict[str, Any]) -> str | None:
    from freeswim_engine.video_io import probe_mp4

    if not path.is_file():
        return f"the MP4 {path} is missing"
    info = probe_mp4(path)
    expected = (request.get("width"), request.get("height"))
    if (info.width, info.height) != expected:
        return f"the MP4 {path} is {info.width}x{info.height}, expected {expected[0]}x{expected[1]}"
    return None


class _quit_on_interrupt:  # noqa: N801 (used as a context manager, like contextlib's)
    """Route Ctrl+C to quitting the event loop while the loop runs; the old handler comes back on exit."""

    def __init__(self, loop: QEventLoop, outcome: _Outcome) -> None:
        self._loop = loop
        self._outcome = outcome
        self._previous: Any = None
        self._timer = QTimer()
        self._timer.setInterval(SIGNAL_POLL_MS)
        # Qt's loop runs in C++, so Python handles a signal only when some Python code runs.
        self._timer.timeout.connect(lambda: None)

    def __enter__(self) -> None:
        if _is_main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._timer.start()

    def __exit__(self, *exc_info: object) -> None:
        self._timer.stop()
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        logger.warning("Interrupted by Ctrl+C: stopping the running job")
        self._outcome.interrupted = True
        self._loop.quit()


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
