"""Headless rendering, the self-test and the ``freeswim-studio`` command line."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from freeswim_app import __version__
from freeswim_app.demo_project import demo_request
from freeswim_app.headless import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK, run_headless
from freeswim_app.jobs import Job, JobState
from freeswim_app.main import main
from freeswim_app.project import Project
from freeswim_app.queue_model import JobQueue
from tests.app.conftest import ScriptedEngine

REPO_ROOT = Path(__file__).resolve().parents[2]


def small_request(prompt: str) -> dict:
    return {"prompt": prompt, "width": 64, "height": 32, "seed": 3}


def test_headless_prints_mp4_paths(qtbot: QtBot, project: Project, scripted_engine: ScriptedEngine) -> None:
    queue = JobQueue(project)
    first = queue.add(small_request("one"))
    second = queue.add(small_request("two"))
    out, err = io.StringIO(), io.StringIO()

    code = run_headless(project, stdout=out, stderr=err, engine_loader=scripted_engine.loader())

    printed = out.getvalue().splitlines()
    assert code == EXIT_OK
    assert printed == [str(project.find_job(first.id).result.output_path), str(project.find_job(second.id).result.output_path)]
    assert all(Path(line).is_file() for line in printed)
    assert Project.open(project.folder).find_job(first.id).state is JobState.DONE


def test_headless_copies_to_output_folder(
    qtbot: QtBot, project: Project, scripted_engine: ScriptedEngine, tmp_path: Path
) -> None:
    queue = JobQueue(project)
    job = queue.add(small_request("copied"))
    out, err = io.StringIO(), io.StringIO()

    code = run_headless(
        project, stdout=out, stderr=err, engine_loader=scripted_engine.loader(), output_dir=tmp_path / "videos"
    )

    output = project.find_job(job.id).result.output_path
    assert code == EXIT_OK
    assert output is not None
    assert (tmp_path / "videos" / output.name).read_bytes() == output.read_bytes()


def test_cli_headless_uses_output_setting(
    qtbot: QtBot, project: Project, scripted_engine: ScriptedEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from freeswim_app.settings import AppSettings

    settings = AppSettings.load()
    settings.output_dir = tmp_path / "videos"
    settings.save()
    job = JobQueue(project).add(small_request("from the command line"))

    code = main(["--headless", "--project", str(project.folder)], engine_loader=scripted_engine.loader())

    printed = Path(capsys.readouterr().out.strip())
    assert code == EXIT_OK
    assert printed == Project.open(project.folder).find_job(job.id).result.output_path
    assert (tmp_path / "videos" / printed.name).is_file()


def test_headless_failure_continues(qtbot: QtBot, project: Project, scripted_engine: ScriptedEngine) -> None:
    queue = JobQueue(project)
    queue.add(small_request("fail here"))
    after = queue.add(small_request("after"))
    out, err = io.StringIO(), io.StringIO()

    code = run_headless(project, stdout=out, stderr=err, engine_loader=scripted_engine.loader())

    assert code == EXIT_JOB_FAILED
    assert "failed: Model folder" in err.getvalue()
    assert out.getvalue().splitlines() == [str(project.find_job(after.id).result.output_path)]


def test_headless_skips_interrupted_jobs(qtbot: QtBot, project: Project, scripted_engine: ScriptedEngine) -> None:
    project.jobs = [Job(request=small_request("was running"), state=JobState.RUNNING)]
    project.save()
    reopened = Project.open(project.folder)
    out, err = io.StringIO(), io.StringIO()

    code = run_headless(reopened, stdout=out, stderr=err, engine_loader=scripted_engine.loader())

    assert code == EXIT_OK
    assert out.getvalue() == ""
    assert "it was interrupted" in err.getvalue()
    assert "No queued jobs" in err.getvalue()
    assert scripted_engine.rendered == []


@pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="needs signal.raise_signal")
def test_headless_ctrl_c_interrupts(qtbot: QtBot, project: Project, gated_engine: ScriptedEngine) -> None:
    queue = JobQueue(project)
    job = queue.add(small_request("long"))
    queue.add(small_request("never started"))
    out, err = io.StringIO(), io.StringIO()

    def press_ctrl_c_when_rendering() -> None:
        if gated_engine.step_started.is_set():
            signal.raise_signal(signal.SIGINT)
        else:
            QTimer.singleShot(20, press_ctrl_c_when_rendering)

    QTimer.singleShot(0, press_ctrl_c_when_rendering)
    code = run_headless(project, stdout=out, stderr=err, engine_loader=gated_engine.loader())

    assert code == EXIT_INTERRUPTED
    assert project.find_job(job.id).state is JobState.INTERRUPTED
    assert [j.state for j in project.jobs][1] is JobState.QUEUED
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_cli_headless_needs_project(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--headless"])

    assert code == 2
    assert "--project DIR or --demo" in capsys.readouterr().err


def test_cli_headless_corrupt_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "project.json").write_text("{", encoding="utf-8")

    code = main(["--headless", "--project", str(folder)])

    assert code == 2
    assert "is invalid" in capsys.readouterr().err


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--version"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == f"FreeSwim Studio {__version__}"
    for name in ("torch", "diffusers", "transformers", "PySide6", "device"):
        assert any(line.startswith(name + " ") for line in lines), name


def run_cli(args: list[str], env_root: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "freeswim_app.main", *args],
        cwd=env_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_cli_self_test(tmp_path: Path) -> None:
    pytest.importorskip("freeswim_engine.api")

    completed = run_cli(["--self-test"], tmp_path)

    assert completed.returncode == 0, completed.stderr
    path = Path(completed.stdout.strip().splitlines()[-1])
    assert path.suffix == ".mp4"
    assert path.is_file()
    assert "Fatal Python error" not in completed.stderr


@pytest.mark.slow
def test_cli_headless_project(tmp_path: Path) -> None:
    pytest.importorskip("freeswim_engine.api")
    project = Project.create(tmp_path / "cli")
    JobQueue(project).add(demo_request("a kite over a beach", scale=1))

    completed = run_cli(["--headless", "--project", str(project.folder)], tmp_path)

    assert completed.returncode == 0, completed.stderr
    paths = [Path(line) for line in completed.stdout.splitlines()]
    assert len(paths) == 1
    assert paths[0].is_file()
    assert paths[0].parent == project.outputs_dir
    assert Project.open(project.folder).jobs[0].state is JobState.DONE
    assert "Fatal Python error" not in completed.stderr


def test_window_closed_during_render(qtbot: QtBot, qtlog, project: Project, gated_engine: ScriptedEngine) -> None:
    from PySide6.QtWidgets import QApplication

    queue = JobQueue(project)
    job = queue.add(small_request("rendering at exit"))
    del queue
    app = QApplication.instance()
    assert app is not None

    def exit_when_rendering() -> None:
        if gated_engine.step_started.is_set():
            app.exit(0)  # like the window closing after the user confirmed
        else:
            QTimer.singleShot(20, exit_when_rendering)

    QTimer.singleShot(0, exit_when_rendering)
    code = main(["--project", str(project.folder), "--start"], engine_loader=gated_engine.loader())

    assert code == 0
    reopened = Project.open(project.folder)
    assert reopened.find_job(job.id).state is JobState.INTERRUPTED
    assert reopened.recovered_job_ids == []
    assert [record.message for record in qtlog.records if "QThread" in record.message] == []


def test_window_opens_demo_project(qtbot: QtBot, tmp_path: Path, scripted_engine: ScriptedEngine) -> None:
    from PySide6.QtWidgets import QApplication

    windows: list[str] = []

    def record_and_exit() -> None:
        windows.extend(type(widget).__name__ for widget in QApplication.topLevelWidgets() if widget.isVisible())
        QApplication.instance().exit(0)

    QTimer.singleShot(0, record_and_exit)
    code = main(["--demo", "--project", str(tmp_path / "demo")], engine_loader=scripted_engine.loader())

    assert code == 0
    assert "MainWindow" in windows
    assert len(Project.open(tmp_path / "demo").jobs) == 3
    assert scripted_engine.rendered == []  # without --start nothing renders


def test_core_starts_without_torch(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from PySide6.QtCore import QCoreApplication\n"
        "app = QCoreApplication([])\n"
        "from freeswim_app.main import AppState\n"
        "from freeswim_app.demo_project import open_demo_project\n"
        "from freeswim_app.settings import AppSettings\n"
        "state = AppState(open_demo_project(Path(sys.argv[1])), AppSettings.load())\n"
        "state.queue.add({'prompt': 'x'})\n"
        "assert state.shutdown(timeout_s=30)\n"
        "print(sorted(name for name in ('torch', 'diffusers', 'transformers') if name in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), QT_QPA_PLATFORM="offscreen")

    completed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "demo")], env=env, capture_output=True, text=True, timeout=300
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
