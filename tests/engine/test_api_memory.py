"""Memory plans in the render path: cache placements, scratch files, rejected plans and out-of-memory errors.

Renders use the built-in demo model with a 112x64 base and a 224x128 target. The
stage-2 token grid (8x14) is then larger than the FreeSwim window (5x7), so the two
branches differ, and the VAE, which dominates a CPU render, stays cheap. Four steps
with strength 0.7 give three stage-2 steps, so with cache interval 2 the
cross-attention cache is written on steps 1 and 3 and read on step 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from freeswim_engine import api, pipeline
from freeswim_engine.api import RenderCallbacks, Stage, render
from freeswim_engine.cache_store import CachePlacement, CrossAttentionCacheStore
from freeswim_engine.cache_stores import open_cache_store
from freeswim_engine.errors import ExportError, ModelLoadError, OutOfMemoryError, PlanRejectedError, RenderCancelled
from freeswim_engine.intermediates import load_latents
from freeswim_engine.memory import (
    DeviceMemory,
    MemoryPlan,
    PlanOutOfMemoryError,
    WeightPlacement,
    plan_memory,
)
from freeswim_engine.memory.apply import _TokenChunkedForward
from freeswim_engine.models import load_model, resolve_model
from freeswim_engine.request import RenderRequest

GIB = 1 << 30
ROOMY_CPU = DeviceMemory.for_machine(None, 64 * GIB, 100 * GIB, "test CPU")


@pytest.fixture(scope="module", autouse=True)
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build the demo checkpoint once for this module, in a folder of its own."""
    folder = tmp_path_factory.mktemp("engine-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREESWIM_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def stage1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Work folder shared by the renders, so stage 1 (the same in each) runs once."""
    return tmp_path_factory.mktemp("stage1")


def demo_request(tmp_path: Path, **changes: Any) -> RenderRequest:
    request = RenderRequest(
        prompt="a lighthouse at dusk",
        model="demo",
        width=224,
        height=128,
        base_width=112,
        base_height=64,
        num_frames=5,
        seed=7,
        num_inference_steps=4,
        method="freeswim-cached",
        cache_interval=2,
        device="cpu",
        output_path=tmp_path / "out.mp4",
    )
    return dataclasses.replace(request, **changes)


def cpu_plan(request: RenderRequest, placement: CachePlacement | None = None) -> MemoryPlan:
    plan = plan_memory(request, resolve_model("demo"), ROOMY_CPU)
    if placement is not None:
        plan = dataclasses.replace(plan, cache_placement=placement)
    return plan


@dataclasses.dataclass
class StoreSpy:
    """Wraps the stores that stage 2 opens, counting reads and listing scratch files between steps."""

    scratch_dir: Path
    placements: list[CachePlacement] = dataclasses.field(default_factory=list)
    scratch_dirs: list[Path] = dataclasses.field(default_factory=list)
    reads: int = 0
    files_during_stage2: list[int] = dataclasses.field(default_factory=list)

    @contextlib.contextmanager
    def open(self, placement: Any, scratch_dir: Any = None) -> Iterator[CrossAttentionCacheStore]:
        with open_cache_store(placement, scratch_dir) as store:
            self.placements.append(store.placement)
            self.scratch_dirs.append(scratch_dir)
            yield _CountingStore(store, self)

    def on_progress(self, stage: Stage, step: int, total: int) -> None:
        if stage is Stage.STAGE2:
            self.files_during_stage2.append(count_files(self.scratch_dir))


class _CountingStore:
    def __init__(self, inner: CrossAttentionCacheStore, spy: StoreSpy) -> None:
        self.inner = inner
        self.spy = spy
        self.placement = inner.placement

    def put(self, block_index: int, value: torch.Tensor) -> None:
        self.inner.put(block_index, value)

    def get(self, block_index: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        self.spy.reads += 1
        return self.inner.get(block_index, device, dtype)

    def prefetch(self, block_index: int, device: torch.device) -> None:
        self.inner.prefetch(block_index, device)

    def clear(self) -> None:
        self.inner.clear()


def count_files(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0


def spy_on_stores(monkeypatch: pytest.MonkeyPatch, scratch_dir: Path) -> StoreSpy:
    spy = StoreSpy(scratch_dir)
    monkeypatch.setattr(api, "open_cache_store", spy.open)
    return spy


# -- placements ----------------------------------------------------------------------------------


def test_cache_placements_give_identical_latents(
    tmp_path: Path, stage1_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latents = {}
    for placement in (CachePlacement.DEVICE, CachePlacement.PINNED_HOST, CachePlacement.DISK):
        scratch = tmp_path / f"scratch-{placement.value}"
        spy = spy_on_stores(monkeypatch, scratch)
        request = demo_request(
            tmp_path, output_path=tmp_path / f"{placement.value}.mp4", save_latents=tmp_path / f"{placement.value}.pt"
        )
        plan = cpu_plan(request, placement)
        result = render(
            request, RenderCallbacks(on_progress=spy.on_progress), work_dir=stage1_dir, scratch_dir=scratch, plan=plan
        )
        assert spy.placements == [placement]
        assert spy.scratch_dirs == [scratch]
        assert spy.reads > 0, f"the {placement.value} cache was never read"
        assert result.plan_summary == plan.explain()
        assert result.latents_path is not None
        latents[placement] = load_latents(result.latents_path)[0]

    reference = latents[CachePlacement.DEVICE]
    assert torch.isfinite(reference).all()
    assert torch.equal(latents[CachePlacement.PINNED_HOST], reference)
    assert torch.equal(latents[CachePlacement.DISK], reference)


def test_work_dir_disk_cache_removed_after_success(
    tmp_path: Path, stage1_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spy_on_stores(monkeypatch, stage1_dir)
    request = demo_request(tmp_path)
    files_before = count_files(stage1_dir)
    callbacks = RenderCallbacks(on_progress=spy.on_progress)
    render(request, callbacks, work_dir=stage1_dir, plan=cpu_plan(request, CachePlacement.DISK))

    assert spy.placements == [CachePlacement.DISK]
    assert spy.scratch_dirs == [stage1_dir]
    assert max(spy.files_during_stage2) > max(files_before, count_files(stage1_dir)), "the disk cache wrote no files"
    assert not list(stage1_dir.glob("freeswim-cache-*"))


def test_disk_cache_removed_after_cancel(tmp_path: Path, stage1_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    spy = spy_on_stores(monkeypatch, scratch)
    request = demo_request(tmp_path)
    callbacks = RenderCallbacks(
        on_progress=spy.on_progress, should_cancel=lambda: len(spy.files_during_stage2) >= 2
    )
    with pytest.raises(RenderCancelled):
        plan = cpu_plan(request, CachePlacement.DISK)
        render(request, callbacks, work_dir=stage1_dir, scratch_dir=scratch, plan=plan)
    assert spy.files_during_stage2[-1] > 0, "the cancel came before the disk cache had files"
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "out.mp4").exists()


def test_disk_cache_removed_after_failure(tmp_path: Path, stage1_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    spy = spy_on_stores(monkeypatch, scratch)

    def fail_at_second_step(stage: Stage, step: int, total: int) -> None:
        spy.on_progress(stage, step, total)
        if stage is Stage.STAGE2 and step == 2:
            raise RuntimeError("simulated failure in stage 2")

    request = demo_request(tmp_path)
    with pytest.raises(RuntimeError, match="simulated failure"):
        render(
            request,
            RenderCallbacks(on_progress=fail_at_second_step),
            work_dir=stage1_dir,
            scratch_dir=scratch,
            plan=cpu_plan(request, CachePlacement.DISK),
        )
    assert spy.files_during_stage2[-1] > 0
    assert list(scratch.iterdir()) == []


# -- plans ---------------------------------------------------------------------------------------


def test_runtime_plan_reported(tmp_path: Path, stage1_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measured: list[tuple[Any, Path | None]] = []

    def fake_read_device_memory(device: Any, scratch_dir: Path | None = None) -> DeviceMemory:
        measured.append((device, scratch_dir))
        return ROOMY_CPU

    monkeypatch.setattr(api, "read_device_memory", fake_read_device_memory)
    result = render(demo_request(tmp_path), work_dir=stage1_dir, scratch_dir=tmp_path / "scratch")

    assert measured == [(torch.device("cpu"), tmp_path / "scratch")]
    assert result.plan_summary is not None
    assert result.plan_summary.startswith("Plan for demo at 224x128, 5 frames, method freeswim-cached")
    assert "on test CPU" in result.plan_summary
    assert "Cross-attention cache:" in result.plan_summary


def test_rejected_plan_stops_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_machine = DeviceMemory.for_machine(None, 256 * 1024 * 1024, 1 * GIB, "tiny CPU")
    monkeypatch.setattr(api, "read_device_memory", lambda device, scratch_dir=None: tiny_machine)
    loads: list[Any] = []
    monkeypatch.setattr(api, "load_model", lambda *args, **kwargs: loads.append(args))
    stages: list[Stage] = []

    with pytest.raises(PlanRejectedError) as caught:
        render(demo_request(tmp_path), RenderCallbacks(on_stage=stages.append))

    assert "No memory plan fits demo at 224x128" in str(caught.value)
    assert "tiny CPU" in str(caught.value)
    assert loads == []
    assert stages == [Stage.LOADING]


def test_plan_for_other_device_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request = demo_request(tmp_path)
    gpu_plan = plan_memory(request, resolve_model("demo"), DeviceMemory.for_machine(24 * GIB, 64 * GIB))
    loads: list[Any] = []
    monkeypatch.setattr(api, "load_model", lambda *args, **kwargs: loads.append(args))
    with pytest.raises(ValueError, match="made for a cuda device, but the request runs on cpu"):
        render(request, plan=gpu_plan)
    assert loads == []


def test_cuda_plan_counts_reserved_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An 80 GiB GPU: the driver reports 2 GiB free, and this process has 30 GiB reserved.
    measured = DeviceMemory("cuda", 2 * GIB, 80 * GIB, 64 * GIB, 64 * GIB, None, "test GPU")
    monkeypatch.setattr(api, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(api, "read_device_memory", lambda device, scratch_dir=None: measured)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 30 * GIB)
    planned: list[DeviceMemory] = []

    def stop_after_planning(request: Any, info: Any, device_memory: DeviceMemory) -> MemoryPlan:
        planned.append(device_memory)
        raise PlanRejectedError("stopped by the test")

    monkeypatch.setattr(api, "plan_memory", stop_after_planning)
    with pytest.raises(PlanRejectedError, match="stopped by the test"):
        render(demo_request(tmp_path, device="cuda"))

    assert len(planned) == 1
    assert planned[0].free_vram_bytes == 32 * GIB
    assert planned[0].free_ram_bytes == 64 * GIB


# -- out of memory -------------------------------------------------------------------------------


def raise_cuda_out_of_memory(*args: Any, **kwargs: Any) -> Any:
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_names_plan(tmp_path: Path, stage1_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request = demo_request(tmp_path)
    plan = cpu_plan(request)
    monkeypatch.setattr(pipeline, "run_stage2", raise_cuda_out_of_memory)

    with pytest.raises(OutOfMemoryError) as caught:
        render(request, work_dir=stage1_dir, plan=plan)

    error = caught.value
    assert isinstance(error, PlanOutOfMemoryError)
    assert error.plan is plan
    assert isinstance(error.__cause__, torch.cuda.OutOfMemoryError)
    message = str(error)
    assert "CUDA out of memory. Tried to allocate 20.00 GiB" in message
    assert f"Plan used: {plan.summary()}" in message
    assert "The render stopped during stage2." in message
    # At 224x128 the host base estimate dominates, so no plan is 10% more frugal.
    assert error.suggested_plan is None
    assert "lower the width, height or frame count" in message


def test_out_of_memory_suggests_frugal_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # At 1920x1088 untiled VAE decoding sets the peak, so the plan with VAE tiling is more frugal.
    request = demo_request(tmp_path, width=1920, height=1088)
    plan = cpu_plan(request)
    assert plan.vae_tiling is False
    monkeypatch.setattr(pipeline, "encode_prompts", raise_cuda_out_of_memory)

    with pytest.raises(PlanOutOfMemoryError) as caught:
        render(request, plan=plan)

    error = caught.value
    assert error.suggested_plan is not None
    assert error.suggested_plan.vae_tiling is True
    assert f"Try the more frugal plan: {error.suggested_plan.summary()}" in str(error)
    assert "The render stopped during encoding-prompt." in str(error)


def test_out_of_memory_before_plan_keeps_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "read_device_memory", raise_cuda_out_of_memory)
    with pytest.raises(OutOfMemoryError) as caught:
        render(demo_request(tmp_path))
    assert not isinstance(caught.value, PlanOutOfMemoryError)
    assert "ran out of memory during loading at 224x128, 5 frames" in str(caught.value)


def test_other_errors_pass_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def raise_value_error(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("not a memory problem")

    monkeypatch.setattr(pipeline, "encode_prompts", raise_value_error)
    with pytest.raises(ValueError, match="not a memory problem"):
        render(demo_request(tmp_path), plan=cpu_plan(demo_request(tmp_path)))


# -- loading -------------------------------------------------------------------------------------


def test_loaded_model_keyed_by_weight_placement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request = demo_request(tmp_path)
    plain = load_model("demo", device="cpu")
    assert load_model("demo", device="cpu", plan=cpu_plan(request)) is plain

    # CPU offload needs a GPU, so record the call instead of offloading.
    applied: list[MemoryPlan] = []
    monkeypatch.setattr(
        "freeswim_engine.memory.apply.apply_memory_plan", lambda pipe, plan, device: applied.append(plan)
    )
    offload_plan = dataclasses.replace(cpu_plan(request), weight_placement=WeightPlacement.MODEL_CPU_OFFLOAD)
    offloaded = load_model("demo", device="cpu", plan=offload_plan)

    assert offloaded is not plain
    assert applied == [offload_plan]
    assert load_model("demo", device="cpu", plan=offload_plan) is offloaded
    assert applied == [offload_plan]


def test_reused_model_takes_plan_ffn_chunking(tmp_path: Path) -> None:
    request = demo_request(tmp_path)
    chunked = dataclasses.replace(cpu_plan(request), ffn_chunks=4, ffn_chunk_size=8)
    model = load_model("demo", device="cpu", plan=chunked)
    ffn = model.pipeline.transformer.blocks[0].ffn
    assert isinstance(ffn.__dict__.get("forward"), _TokenChunkedForward)

    assert load_model("demo", device="cpu", plan=cpu_plan(request)) is model
    assert "forward" not in ffn.__dict__


# -- VAE tiling ----------------------------------------------------------------------------------


def test_vae_tiling_follows_plan_on_cuda() -> None:
    request = demo_request(Path("unused"), width=1920, height=1088)
    gpu_plan = plan_memory(request, resolve_model("demo"), DeviceMemory.for_machine(24 * GIB, 64 * GIB))
    cuda = torch.device("cuda")
    untiled = dataclasses.replace(gpu_plan, vae_tiling=False, vae_tile_size=None, vae_tile_stride=None)
    tiled = dataclasses.replace(gpu_plan, vae_tiling=True, vae_tile_size=256, vae_tile_stride=192)

    assert pipeline.choose_vae_tiling(2176, 3840, cuda, untiled) is None
    assert pipeline.choose_vae_tiling(128, 224, cuda, tiled) == pipeline.VaeTiling(256, 192)
    assert pipeline.choose_vae_tiling(2176, 3840, cuda, None) == pipeline.VaeTiling(256, 192)
    assert pipeline.choose_vae_tiling(480, 832, cuda, None) is None


def test_vae_tiling_keeps_cpu_rule_when_plan_untiled() -> None:
    request = demo_request(Path("unused"), width=3840, height=2176)
    plan = cpu_plan(request)
    cpu = torch.device("cpu")
    untiled = dataclasses.replace(plan, vae_tiling=False, vae_tile_size=None, vae_tile_stride=None)
    tiled = dataclasses.replace(plan, vae_tiling=True, vae_tile_size=256, vae_tile_stride=192)

    assert pipeline.choose_vae_tiling(2176, 3840, cpu, untiled) == pipeline.VaeTiling(1024, 768)
    assert pipeline.choose_vae_tiling(1088, 1920, cpu, untiled) is None
    assert pipeline.choose_vae_tiling(1088, 1920, cpu, tiled) == pipeline.VaeTiling(256, 192)
    assert pipeline.choose_vae_tiling(2176, 3840, cpu, None) == pipeline.VaeTiling(1024, 768)


def test_unwritable_output_fails_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    loads: list[Any] = []
    monkeypatch.setattr(api, "load_model", lambda *args, **kwargs: loads.append(args))

    with pytest.raises(ExportError) as caught:
        render(demo_request(tmp_path, output_path=blocker / "video.mp4"))

    assert "not-a-folder" in str(caught.value)
    assert "output" in str(caught.value)
    assert loads == []


def test_missing_model_fails_before_planning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    plans: list[Any] = []
    monkeypatch.setattr(api, "plan_memory", lambda *args, **kwargs: plans.append(args))
    request = RenderRequest(prompt="x", model="wan2.1-t2v-1.3b", width=832, height=480, num_frames=1)

    with pytest.raises(ModelLoadError) as caught:
        render(dataclasses.replace(request, output_path=tmp_path / "out.mp4"))

    assert "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in str(caught.value)
    assert plans == []
