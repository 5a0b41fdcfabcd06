"""Shared fixtures of the app tests: isolated user folders, projects and a scripted engine.

Every app test gets its own config, data and log folders through the
environment, so nothing touches the real user's settings or recent projects.
The demo model is built once per test session in a shared cache folder.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from freeswim_app.project import Project  # noqa: E402
from freeswim_engine.errors import ModelLoadError, RenderCancelled  # noqa: E402


@pytest.fixture(scope="session")
def engine_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache folder shared by the session, so the demo checkpoint is built only once."""
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture(autouse=True)
def isolated_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine_cache_dir: Path) -> Path:
    root = tmp_path / "user"
    monkeypatch.setenv("FREESWIM_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("FREESWIM_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("FREESWIM_CACHE_DIR", str(engine_cache_dir))
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "state"))  # platformdirs' user log folder on Linux
    return root


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "project", name="Test project")


# -- scripted engine ------------------------------------------------------------------


@dataclasses.dataclass
class ScriptedCallbacks:
    """Same fields as ``freeswim_engine.api.RenderCallbacks``."""

    on_stage: Callable[..., None] | None = None
    on_progress: Callable[..., None] | None = None
    on_preview: Callable[..., None] | None = None
    should_cancel: Callable[[], bool] | None = None


@dataclasses.dataclass
class ScriptedResult:
    output_path: Path
    sidecar_path: Path
    seed: int
    request: Any
    base_video_path: Path | None
    latents_path: Path | None
    peak_memory_bytes: int | None
    seconds: float
    warnings: list[str]
    plan_summary: str | None


class ScriptedEngine:
    """A stand-in for ``freeswim_engine.api`` whose renders the test controls step by step.

    ``render`` runs ``steps`` stage-2 steps. With ``gated`` set, each step waits
    until the test calls ``release()`` or asks the render to stop, so a test can
    cancel or shut down at a known point. A prompt containing "fail" raises ModelLoadError, one
    containing "crash" raises RuntimeError, one containing "stuck" waits for
    ``release()`` without checking for cancellation, and one containing "flaky" raises
    ModelLoadError while ``flaky_failures`` is above zero. Finished renders write a real
    16-frame MP4 through ``freeswim_engine.video_io``.
    """

    RenderCallbacks = ScriptedCallbacks

    def __init__(self, steps: int = 3, gated: bool = False) -> None:
        self.steps = steps
        self.gated = gated
        self._step_permits = threading.Semaphore(0)
        self.step_started = threading.Event()  # set when a render is waiting at a step
        self.render_threads: list[threading.Thread] = []
        self.rendered: list[str] = []  # prompts, in the order they finished
        self.work_dirs: list[Path | None] = []
        self.flaky_failures = 0  # how many more renders of a prompt containing "flaky" fail
        self.calls: list[tuple[str, str | None]] = []  # ("render" or "upscale", input_video)

    def module(self) -> types.ModuleType:
        module = types.ModuleType("scripted_engine")
        module.RenderCallbacks = ScriptedCallbacks  # type: ignore[attr-defined]
        module.render = self.render  # type: ignore[attr-defined]
        module.upscale = self.upscale  # type: ignore[attr-defined]
        return module

    def loader(self) -> Callable[[], types.ModuleType]:
        module = self.module()
        return lambda: module

    def release(self, steps: int = 1) -> None:
        for _ in range(steps):
            self._step_permits.release()

    def _wait_for_permit(self, callbacks: ScriptedCallbacks) -> None:
        # Like a real step, a held step notices a cancel request within a fraction of a second.
        self.step_started.set()
        deadline = time.monotonic() + 60
        while not self._step_permits.acquire(timeout=0.02):
            if callbacks.should_cancel and callbacks.should_cancel():
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the test never released the scripted render")
        self.step_started.clear()

    def upscale(
        self,
        request: Any,
        callbacks: ScriptedCallbacks | None = None,
        *,
        work_dir: Path | None = None,
        scratch_dir: Path | None = None,
    ) -> Any:
        return self.render(request, callbacks, work_dir=work_dir, scratch_dir=scratch_dir, mode="upscale")

    def render(
        self,
        request: Any,
        callbacks: ScriptedCallbacks | None = None,
        *,
        work_dir: Path | None = None,
        scratch_dir: Path | None = None,
        mode: str = "render",
    ) -> Any:
        from freeswim_engine.video_io import sidecar_path_for, write_mp4

        self.calls.append((mode, str(request.input_video) if request.input_video else None))
        self.render_threads.append(threading.current_thread())
        self.work_dirs.append(work_dir)
        callbacks = callbacks or ScriptedCallbacks()
        if "flaky" in request.prompt and self.flaky_failures > 0:
            self.flaky_failures -= 1
            raise ModelLoadError("Flaky model folder.")
        if "fail" in request.prompt:
            raise ModelLoadError(f"Model folder {request.model} is missing model_index.json.")
        if "crash" in request.prompt:
            raise RuntimeError("scripted crash")
        if "stuck" in request.prompt:  # like loading a model: no cancel checks until released
            self.step_started.set()
            self._step_permits.acquire(timeout=60)
        started = time.monotonic()
        if callbacks.on_stage:
            callbacks.on_stage("stage2")
        for step in range(1, self.steps + 1):
            if self.gated:
                self._wait_for_permit(callbacks)
            if callbacks.should_cancel and callbacks.should_cancel():
                raise RenderCancelled("Render cancelled.")
            if callbacks.on_progress:
                callbacks.on_progress("stage2", step, self.steps)
            if callbacks.on_preview:
                callbacks.on_preview("stage2", numpy.zeros((2, 8, 8, 3), dtype=numpy.uint8))
        frames = numpy.full((16, request.height, request.width, 3), 90, dtype=numpy.uint8)
        path = write_mp4(frames, request.output_path, fps=16, metadata={"prompt": request.prompt})
        resolved = dataclasses.replace(request, seed=request.seed if request.seed is not None else 1234)
        resolved.num_frames = 16
        resolved.fps = 16
        self.rendered.append(request.prompt)
        return ScriptedResult(
            output_path=path,
            sidecar_path=sidecar_path_for(path),
            seed=resolved.seed,
            request=resolved,
            base_video_path=None,
            latents_path=None,
            peak_memory_bytes=None,
            seconds=time.monotonic() - started,
            warnings=[],
            plan_summary=None,
        )


@pytest.fixture
def scripted_engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def gated_engine() -> Iterator[ScriptedEngine]:
    engine = ScriptedEngine(steps=5, gated=True)
    yield engine
    engine.release(100)  # lets a render still waiting at a step finish, so its thread can end
