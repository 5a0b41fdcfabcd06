"""Applying a memory plan to the tiny demo pipeline, FFN chunking, and out-of-memory classification."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from freeswim_engine.demo_model import DEMO_PRESET, build_demo_pipeline
from freeswim_engine.errors import OutOfMemoryError
from freeswim_engine.memory import (
    DeviceMemory,
    MemoryPlan,
    PlanOutOfMemoryError,
    RenderFigures,
    WeightPlacement,
    apply_memory_plan,
    classify_out_of_memory,
    enable_ffn_chunking,
    plan_memory,
)
from freeswim_engine.presets import PRESETS

GIB = 1024**3
CPU = torch.device("cpu")


def demo_plan(**changes: Any) -> MemoryPlan:
    plan = plan_memory(RenderFigures(width=256, height=128, num_frames=5), DEMO_PRESET, DeviceMemory.for_machine(None, 8 * GIB))
    return dataclasses.replace(plan, **changes)


def transformer_output(pipe: Any) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 2, 8, 16, generator=generator)
    text = torch.randn(1, 12, 32, generator=generator)
    with torch.no_grad():
        return pipe.transformer(latents, torch.tensor([500]), text, return_dict=False)[0]


@pytest.fixture(scope="module")
def reference_output() -> torch.Tensor:
    return transformer_output(build_demo_pipeline())


def test_all_on_device_output_unchanged(reference_output: torch.Tensor) -> None:
    pipe = build_demo_pipeline()

    apply_memory_plan(pipe, demo_plan(), CPU)

    assert torch.equal(transformer_output(pipe), reference_output)


@pytest.mark.parametrize(
    "placement", [WeightPlacement.MODEL_CPU_OFFLOAD, WeightPlacement.GROUP_OFFLOAD, WeightPlacement.SEQUENTIAL_OFFLOAD]
)
def test_offload_of_components_output_unchanged(placement: WeightPlacement, reference_output: torch.Tensor) -> None:
    pipe = build_demo_pipeline()

    apply_memory_plan(dict(pipe.components), demo_plan(weight_placement=placement), CPU)

    assert torch.equal(transformer_output(pipe), reference_output)


@pytest.mark.parametrize("placement", [WeightPlacement.MODEL_CPU_OFFLOAD, WeightPlacement.GROUP_OFFLOAD])
def test_offload_of_pipeline_output_unchanged(placement: WeightPlacement, reference_output: torch.Tensor) -> None:
    # NOTE: the pipeline's sequential offload is left out: on a CPU execution device
    # accelerate 1.16.0 raises TypeError while moving weights back to the meta device.
    pipe = build_demo_pipeline()

    apply_memory_plan(pipe, demo_plan(weight_placement=placement), CPU)

    assert torch.equal(transformer_output(pipe), reference_output)


def test_group_offload_registers_hooks() -> None:
    pipe = build_demo_pipeline()

    apply_memory_plan(pipe, demo_plan(weight_placement=WeightPlacement.GROUP_OFFLOAD), CPU)

    assert getattr(pipe.transformer, "_diffusers_hook", None) is not None
    # Leaf-level offloading hooks the layers that hold weights, not the encoder itself.
    assert getattr(pipe.text_encoder.shared, "_diffusers_hook", None) is not None


@pytest.mark.parametrize("placement", list(WeightPlacement))
def test_offload_keeps_prompt_embeddings(placement: WeightPlacement) -> None:
    expected = build_demo_pipeline().encode_prompt("a city at night", do_classifier_free_guidance=False)[0]
    pipe = build_demo_pipeline()

    apply_memory_plan(dict(pipe.components), demo_plan(weight_placement=placement), CPU)
    embeddings = pipe.encode_prompt("a city at night", do_classifier_free_guidance=False, device=CPU)[0]

    assert torch.equal(embeddings, expected)


def test_vae_tiling_follows_plan() -> None:
    pipe = build_demo_pipeline()

    apply_memory_plan(pipe, demo_plan(vae_tiling=True, vae_tile_size=128, vae_tile_stride=96), CPU)

    assert pipe.vae.use_tiling
    assert pipe.vae.tile_sample_min_height == 128
    assert pipe.vae.tile_sample_stride_width == 96

    apply_memory_plan(build_demo_pipeline(), demo_plan(vae_tiling=False), CPU)
    pipe.vae.disable_tiling()
    assert not pipe.vae.use_tiling


def test_ffn_chunking_close_to_unchunked(reference_output: torch.Tensor) -> None:
    pipe = build_demo_pipeline()

    apply_memory_plan(pipe, demo_plan(ffn_chunks=4, ffn_chunk_size=7), CPU)
    chunked = transformer_output(pipe)

    assert chunked.shape == reference_output.shape
    torch.testing.assert_close(chunked, reference_output, rtol=1e-5, atol=1e-5)


def test_ffn_chunking_splits_tokens() -> None:
    pipe = build_demo_pipeline()
    calls: list[int] = []
    ffn = pipe.transformer.blocks[0].ffn
    ffn.net[0].register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[1]))

    enable_ffn_chunking(pipe.transformer, 30)
    transformer_output(pipe)

    assert calls == [30, 30, 4]  # 64 tokens: 2 frames of 4x8


def test_ffn_chunking_off_restores_forward(reference_output: torch.Tensor) -> None:
    pipe = build_demo_pipeline()

    enable_ffn_chunking(pipe.transformer, 5)
    enable_ffn_chunking(pipe.transformer, 9)  # a second call replaces the first wrapper
    enable_ffn_chunking(pipe.transformer, None)

    assert "forward" not in pipe.transformer.blocks[0].ffn.__dict__
    assert torch.equal(transformer_output(pipe), reference_output)


def test_ffn_chunking_keeps_state_dict_keys() -> None:
    pipe = build_demo_pipeline()
    keys = list(pipe.transformer.state_dict())

    enable_ffn_chunking(pipe.transformer, 5)

    assert list(pipe.transformer.state_dict()) == keys


def test_apply_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="diffusers pipeline or a mapping"):
        apply_memory_plan(object(), demo_plan(), CPU)


def cuda_plan() -> MemoryPlan:
    figures = RenderFigures(width=1920, height=1088, num_frames=81)
    return plan_memory(figures, PRESETS["wan2.1-t2v-1.3b"], DeviceMemory.for_machine(80 * GIB, 128 * GIB))


def test_classify_cuda_out_of_memory() -> None:
    plan = cuda_plan()
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    classified = classify_out_of_memory(error, plan)

    assert isinstance(classified, OutOfMemoryError)
    assert isinstance(classified, PlanOutOfMemoryError)
    assert classified.plan is plan
    assert classified.suggested_plan is not None
    assert classified.suggested_plan.required_vram_bytes < plan.required_vram_bytes
    message = str(classified)
    assert "The GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)" in message
    assert plan.summary() in message
    assert classified.suggested_plan.summary() in message


def test_classify_host_allocation_failure() -> None:
    error = RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory")

    classified = classify_out_of_memory(error, demo_plan())

    assert classified is not None
    assert "The machine ran out of memory" in str(classified)
    assert "lower the width, height or frame count" in str(classified)


def test_classify_ignores_other_errors() -> None:
    assert classify_out_of_memory(RuntimeError("shape mismatch"), cuda_plan()) is None
    assert classify_out_of_memory(ValueError("out of memory"), cuda_plan()) is None
