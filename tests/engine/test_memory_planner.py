"""Memory planner: estimates, placement decisions, rejections with alternatives, and explanations."""

from __future__ import annotations

import dataclasses
import math

import pytest

from freeswim_engine.cache_store import CachePlacement
from freeswim_engine.demo_model import DEMO_PRESET
from freeswim_engine.errors import PlanRejectedError
from freeswim_engine.memory import (
    DeviceMemory,
    RenderFigures,
    WeightPlacement,
    cross_attention_cache_bytes,
    next_frugal_plan,
    plan_memory,
    read_device_memory,
    resolve_model_figures,
    token_grid,
)
from freeswim_engine.memory.estimates import (
    component_weights,
    transformer_activation_bytes,
    vae_decode_bytes,
    vae_encode_bytes,
)
from freeswim_engine.models import resolve_model
from freeswim_engine.presets import PRESETS
from freeswim_engine.request import RenderRequest

GIB = 1024**3
WAN_1_3B = PRESETS["wan2.1-t2v-1.3b"]
WAN_14B = PRESETS["wan2.1-t2v-14b"]
FULL_HD = RenderFigures(width=1920, height=1088, num_frames=81, method="freeswim-cached")
UHD = RenderFigures(width=3840, height=2160, num_frames=81, method="freeswim-cached")


def gpu(vram_gib: float, ram_gib: float, disk_gib: float | None = None) -> DeviceMemory:
    disk = int(disk_gib * GIB) if disk_gib is not None else None
    return DeviceMemory.for_machine(int(vram_gib * GIB), int(ram_gib * GIB), disk)


# -- estimates ---------------------------------------------------------------------------------


def test_token_grid_full_hd() -> None:
    grid = token_grid(WAN_1_3B, 1920, 1088, 81)

    assert (grid.latent_frames, grid.height, grid.width) == (21, 68, 120)
    assert grid.sequence_length == 21 * 68 * 120


@pytest.mark.parametrize(
    ("model", "figures", "expected"),
    [
        (WAN_1_3B, FULL_HD, 30 * 21 * (68 * 120) * 1536 * 2),
        (WAN_14B, UHD, 40 * 21 * (135 * 240) * 5120 * 2),
        (WAN_1_3B, dataclasses.replace(FULL_HD, num_frames=1), 30 * 1 * (68 * 120) * 1536 * 2),
    ],
)
def test_cache_size_formula(model: object, figures: RenderFigures, expected: int) -> None:
    assert cross_attention_cache_bytes(model, figures, 2) == expected  # type: ignore[arg-type]


def test_cache_size_reference_figures() -> None:
    assert cross_attention_cache_bytes(WAN_1_3B, FULL_HD, 2) / GIB == pytest.approx(14.7, abs=0.05)
    assert cross_attention_cache_bytes(WAN_14B, UHD, 2) / GIB == pytest.approx(259.6, abs=0.5)


def test_cache_size_independent_of_interval() -> None:
    sizes = {cross_attention_cache_bytes(WAN_1_3B, dataclasses.replace(FULL_HD, cache_interval=k), 2) for k in (1, 2, 5)}

    assert len(sizes) == 1


@pytest.mark.parametrize("method", ["direct", "window", "freeswim"])
def test_uncached_methods_have_no_cache(method: str) -> None:
    assert cross_attention_cache_bytes(WAN_1_3B, dataclasses.replace(FULL_HD, method=method), 2) == 0


def test_weights_by_dtype() -> None:
    bf16 = component_weights(WAN_1_3B, 2)
    fp32 = component_weights(WAN_1_3B, 4)

    assert bf16.transformer == WAN_1_3B.transformer.num_parameters * 2
    assert bf16.text_encoder == WAN_1_3B.text_encoder_parameters * 2
    assert bf16.vae == WAN_1_3B.vae_parameters * 4  # float32 whatever the transformer dtype
    assert fp32.transformer == 2 * bf16.transformer
    assert bf16.transformer_block * WAN_1_3B.transformer.num_layers < bf16.transformer


def test_dual_path_doubles_block_activations() -> None:
    single = transformer_activation_bytes(WAN_1_3B, dataclasses.replace(FULL_HD, method="window"), 2)
    dual = transformer_activation_bytes(WAN_1_3B, FULL_HD, 2)

    assert dual.attention_phase == 2 * single.attention_phase
    assert dual.ffn_phase == 2 * single.ffn_phase
    assert dual.residual_streams == 2 * single.residual_streams


def test_ffn_chunking_divides_intermediate() -> None:
    whole = transformer_activation_bytes(WAN_1_3B, FULL_HD, 2, ffn_chunks=1)
    quarter = transformer_activation_bytes(WAN_1_3B, FULL_HD, 2, ffn_chunks=4)
    length = token_grid(WAN_1_3B, 1920, 1088, 81).sequence_length

    assert whole.ffn_intermediate == 2 * 2 * length * WAN_1_3B.transformer.ffn_dim * 2
    assert quarter.ffn_intermediate == 2 * 2 * math.ceil(length / 4) * WAN_1_3B.transformer.ffn_dim * 2
    assert quarter.ffn_phase < whole.ffn_phase


def test_window_workspace_includes_block_mask() -> None:
    window = transformer_activation_bytes(WAN_1_3B, dataclasses.replace(FULL_HD, method="window"), 2)
    direct = transformer_activation_bytes(WAN_1_3B, dataclasses.replace(FULL_HD, method="direct"), 2)

    assert window.attention_workspace > direct.attention_workspace


def test_vae_tiling_lowers_peaks() -> None:
    assert vae_decode_bytes(WAN_1_3B, FULL_HD, tiled=True) < vae_decode_bytes(WAN_1_3B, FULL_HD, tiled=False)
    assert vae_encode_bytes(WAN_1_3B, FULL_HD, tiled=True) < vae_encode_bytes(WAN_1_3B, FULL_HD, tiled=False)


# -- decisions ---------------------------------------------------------------------------------


def test_24_gib_gpu_cache_in_host() -> None:
    plan = plan_memory(FULL_HD, WAN_1_3B, gpu(24, 64))

    assert plan.fits
    assert plan.cache_placement is CachePlacement.PINNED_HOST
    assert plan.weight_placement is not WeightPlacement.ALL_ON_DEVICE
    assert plan.required_vram_bytes <= 24 * GIB
    assert plan.peak_ram_bytes <= 0.9 * 64 * GIB


def test_80_gib_gpu_cache_on_device() -> None:
    plan = plan_memory(FULL_HD, WAN_1_3B, gpu(80, 128))

    assert plan.cache_placement is CachePlacement.DEVICE
    assert plan.weight_placement is WeightPlacement.ALL_ON_DEVICE
    assert plan.required_vram_bytes <= 80 * GIB


def test_uhd_14b_cache_exceeds_ram() -> None:
    machine = gpu(80, 128)
    cache = cross_attention_cache_bytes(WAN_14B, UHD, 2)
    assert cache > machine.free_ram_bytes

    try:
        plan = plan_memory(UHD, WAN_14B, machine)
    except PlanRejectedError as error:
        message = str(error)
        assert "3840x2160" in message
        assert "would fit" in message
        assert "- width " in message
        assert " frames: " in message
    else:
        assert plan.cache_placement is CachePlacement.DISK


def test_uhd_14b_with_disk_room_uses_disk() -> None:
    # Window attention at 1440p needs less VRAM than the dual path at 4K, so a plan exists.
    figures = dataclasses.replace(UHD, width=2560, height=1440)
    plan = plan_memory(figures, WAN_14B, gpu(96, 128, disk_gib=1024))

    assert plan.cache_placement is CachePlacement.DISK
    assert plan.disk_bytes == cross_attention_cache_bytes(WAN_14B, figures, 2)


def test_disk_cache_rejected_without_disk_space() -> None:
    figures = dataclasses.replace(UHD, width=2560, height=1440)

    with pytest.raises(PlanRejectedError, match="scratch disk"):
        plan_memory(figures, WAN_14B, gpu(96, 128, disk_gib=10))


def test_rejection_lists_concrete_alternatives() -> None:
    with pytest.raises(PlanRejectedError) as caught:
        plan_memory(FULL_HD, WAN_1_3B, gpu(12, 64))

    message = str(caught.value)
    assert "No memory plan fits wan2.1-t2v-1.3b at 1920x1088" in message
    assert "With the cache in pinned host memory, the most frugal plan" in message
    assert "needs an estimated" in message
    alternatives = [line for line in message.splitlines() if line.startswith("- ")]
    assert any(line.startswith("- width 1680 and height 944: ") for line in alternatives), message
    assert any(line.startswith("- 65 frames: ") for line in alternatives), message
    assert any(line.startswith("- method window: ") for line in alternatives), message
    assert any(line.startswith("- a GPU with at least ") for line in alternatives), message


def test_alternatives_fit_when_applied() -> None:
    machine = gpu(12, 64)

    for figures in (
        dataclasses.replace(FULL_HD, width=1680, height=944),
        dataclasses.replace(FULL_HD, num_frames=65),
        dataclasses.replace(FULL_HD, method="window"),
    ):
        assert plan_memory(figures, WAN_1_3B, machine).fits


def test_rejection_suggests_more_ram() -> None:
    # A 30 GiB GPU has no room left for the cache, and neither 16 GiB of RAM nor 1 GiB of disk can take it.
    with pytest.raises(PlanRejectedError, match="of available RAM"):
        plan_memory(FULL_HD, WAN_1_3B, gpu(30, 16, disk_gib=1))


def test_plain_figures_and_request_agree() -> None:
    request = RenderRequest(prompt="a", model="wan2.1-t2v-1.3b", width=1920, height=1088, num_frames=81)
    from_request = plan_memory(request, None, gpu(24, 64))
    from_figures = plan_memory(dataclasses.replace(FULL_HD, dtype="auto"), WAN_1_3B, gpu(24, 64))

    assert from_request.summary() == from_figures.summary()
    assert from_request.figures.dtype == "bfloat16"


def test_model_info_is_accepted() -> None:
    info = resolve_model("wan2.1-t2v-1.3b")

    assert resolve_model_figures(info) is info.preset
    assert plan_memory(FULL_HD, info, gpu(80, 128)).model_name == "wan2.1-t2v-1.3b"


def test_unknown_model_rejected() -> None:
    with pytest.raises(PlanRejectedError, match="architecture is unknown"):
        resolve_model_figures(None, "some/unknown-model")


def test_float32_needs_more_memory() -> None:
    bf16 = plan_memory(dataclasses.replace(FULL_HD, dtype="bfloat16"), WAN_1_3B, gpu(200, 256))
    fp32 = plan_memory(dataclasses.replace(FULL_HD, dtype="float32"), WAN_1_3B, gpu(200, 256))

    assert fp32.cache_bytes == 2 * bf16.cache_bytes
    assert fp32.peak_vram_bytes > bf16.peak_vram_bytes


def test_cpu_plan_keeps_everything_in_ram() -> None:
    figures = RenderFigures(width=256, height=128, num_frames=5)
    plan = plan_memory(figures, DEMO_PRESET, DeviceMemory.for_machine(None, 8 * GIB))

    assert plan.figures.dtype == "float32"
    assert plan.weight_placement is WeightPlacement.ALL_ON_DEVICE
    assert plan.cache_placement is CachePlacement.DEVICE
    assert plan.peak_vram_bytes == 0


def test_next_frugal_plan_lowers_vram() -> None:
    plan = plan_memory(FULL_HD, WAN_1_3B, gpu(80, 128))
    frugal = next_frugal_plan(plan)

    assert frugal is not None
    assert frugal.required_vram_bytes <= 0.9 * plan.required_vram_bytes
    assert frugal.peak_ram_bytes <= 0.9 * 128 * GIB


def test_next_frugal_plan_none_when_nothing_smaller_fits() -> None:
    plan = plan_memory(RenderFigures(width=256, height=128, num_frames=5), DEMO_PRESET, DeviceMemory.for_machine(None, 8 * GIB))

    assert next_frugal_plan(plan) is None


def test_read_device_memory_cpu(tmp_path: object) -> None:
    memory = read_device_memory("cpu", scratch_dir=tmp_path / "not-yet-created")  # type: ignore[operator]

    assert memory.device_type == "cpu"
    assert memory.free_vram_bytes == 0
    assert 0 < memory.free_ram_bytes <= memory.total_ram_bytes
    assert memory.free_disk_bytes is not None and memory.free_disk_bytes > 0


# -- explanation -------------------------------------------------------------------------------


def test_explain_names_placements_and_peaks() -> None:
    plan = plan_memory(FULL_HD, WAN_1_3B, gpu(24, 64))
    text = plan.explain()

    assert "pinned host memory" in text
    assert "Estimated peak VRAM" in text
    assert "estimated peak RAM" in text
    assert "estimate" in text
    assert "14.7 GiB" in text


def test_explain_without_cache() -> None:
    plan = plan_memory(dataclasses.replace(FULL_HD, method="window"), WAN_1_3B, gpu(80, 128))

    assert "Cross-attention cache: none" in plan.explain()
    assert plan.cache_placement is None


def test_to_dict_is_json_ready() -> None:
    import json

    data = plan_memory(FULL_HD, WAN_1_3B, gpu(24, 64)).to_dict()

    assert json.loads(json.dumps(data))["cache_placement"] == "pinned-host"
