"""Smoke tests of the benchmark scripts: each runs at its smallest size and writes a complete JSON.

They check the records' keys and that the figures are positive and finite;
they assert nothing about speed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import app_start, common, export_decode, gpu_benchmark, scaling, stage2_steps, window_attention

METHOD_LABELS = {"direct", "window", "freeswim", "freeswim-cached k=2", "freeswim-cached k=5"}


def run_main(module: Any, output_dir: Path, *extra: str) -> dict[str, Any]:
    """Run a benchmark's ``main`` at smoke size into ``output_dir`` and return the JSON it wrote."""
    size_argument = ["--size", "tiny"] if module is gpu_benchmark else ["--size", "smoke"]
    assert module.main([*size_argument, "--output-dir", str(output_dir), *extra]) == 0
    name = f"{module.NAME}_tiny" if module is gpu_benchmark else module.NAME
    record: dict[str, Any] = json.loads((output_dir / f"{name}.json").read_text(encoding="utf-8"))
    return record


def assert_positive_finite(value: Any, where: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where} is not a number: {value!r}"
    assert math.isfinite(value), f"{where} is not finite: {value}"
    assert value > 0, f"{where} is not positive: {value}"


def assert_timing(summary: dict[str, Any], where: str) -> None:
    for key in ("median_s", "min_s", "max_s"):
        assert_positive_finite(summary[key], f"{where}.{key}")
    assert summary["runs_s"], f"{where}.runs_s is empty"


def assert_common_fields(record: dict[str, Any], name: str) -> None:
    assert record["benchmark"] == name
    assert record["command"].startswith("python -m benchmarks.")
    assert record["date_utc"]
    machine = record["machine"]
    for key in ("cpu_model", "cpu_cores", "torch", "diffusers", "python"):
        assert machine[key], f"machine.{key} is empty"
    assert "load_average_start" in record
    assert "load_average_end" in record


def test_fit_power_law_recovers_exponent() -> None:
    sizes = [100.0, 200.0, 400.0, 800.0]
    seconds = [3.0 * size**1.7 for size in sizes]
    assert common.fit_power_law(sizes, seconds) == pytest.approx(1.7)


def test_fit_power_law_rejects_single_point() -> None:
    with pytest.raises(ValueError, match="at least two"):
        common.fit_power_law([10.0], [1.0])


def test_interleaved_times_runs_in_rounds() -> None:
    calls: list[str] = []
    times = common.interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert len(times["a"]) == 2
    assert len(times["b"]) == 2


@pytest.mark.slow
def test_window_attention_smoke(tmp_path: Path) -> None:
    record = run_main(window_attention, tmp_path)
    assert_common_fields(record, "window_attention")
    (grid,) = record["grids"]
    for kernel in ("full", "masked", "window", "gathered"):
        assert_timing(grid["times"][kernel], f"times.{kernel}")
    for key, value in grid["flops_per_s"].items():
        assert_positive_finite(value, f"flops_per_s.{key}")
    for key, value in grid["ratios"].items():
        assert_positive_finite(value, f"ratios.{key}")
    assert grid["ratios"]["exact_density"] < 1.0
    assert grid["ratios"]["exact_density"] <= grid["ratios"]["visited_flops_over_full_flops"]
    assert_timing(grid["block_mask"]["build"], "block_mask.build")
    assert_positive_finite(grid["block_mask"]["block_mask_tensor_bytes"], "block_mask_tensor_bytes")
    assert grid["window_vs_masked_max_abs_difference"] < 1e-4
    assert grid["gathered_vs_masked_max_abs_difference"] < 1e-4


@pytest.mark.slow
def test_stage2_steps_smoke(tmp_path: Path) -> None:
    record = run_main(stage2_steps, tmp_path)
    assert_common_fields(record, "stage2_steps")
    assert set(record["seconds_per_step"]) == METHOD_LABELS
    for label, summary in record["seconds_per_step"].items():
        assert_timing(summary, f"seconds_per_step.{label}")
    for interval in ("k=2", "k=5"):
        entry = record["speedup_cached_over_uncached"][interval]
        assert_positive_finite(entry["measured_speedup"], f"{interval}.measured_speedup")
        assert_positive_finite(entry["predicted_step_s"], f"{interval}.predicted_step_s")
        assert_positive_finite(entry["median_per_round_speedup"], f"{interval}.median_per_round_speedup")
    for key, share in record["attention_flop_share"].items():
        assert 0 < share < 1, f"attention_flop_share.{key} = {share}"


@pytest.mark.slow
def test_scaling_smoke(tmp_path: Path) -> None:
    record = run_main(scaling, tmp_path)
    assert_common_fields(record, "scaling")
    assert len(record["grids"]) >= 2
    lengths = [row["sequence_length"] for row in record["grids"]]
    assert lengths == sorted(lengths)
    assert set(record["fitted_exponent"]) == METHOD_LABELS
    for label, exponent in record["fitted_exponent"].items():
        assert math.isfinite(exponent), f"fitted_exponent.{label} = {exponent}"


def test_export_decode_smoke(tmp_path: Path) -> None:
    record = run_main(export_decode, tmp_path)
    assert_common_fields(record, "export_decode")
    video = record["video"]
    assert (video["width"], video["height"], video["num_frames"]) == (320, 176, 9)
    assert video["codec"] == "h264"
    assert_timing(record["encode"], "encode")
    assert_timing(record["decode"], "decode")
    assert_positive_finite(record["encode_frames_per_s"], "encode_frames_per_s")
    assert_positive_finite(record["decode_frames_per_s"], "decode_frames_per_s")
    assert_positive_finite(record["file_bytes"], "file_bytes")


@pytest.mark.slow
def test_app_start_smoke(tmp_path: Path) -> None:
    record = run_main(app_start, tmp_path)
    assert_common_fields(record, "app_start")
    for name in ("without_engine", "with_engine"):
        variant = record["variants"][name]
        assert_timing(variant["launch_to_shown"], f"{name}.launch_to_shown")
        assert variant["window_exposed"], f"{name}: the window was never exposed"
        for phase, seconds in variant["probe_phases_median_s"].items():
            assert_positive_finite(seconds, f"{name}.{phase}")
    assert record["variants"]["with_engine"]["torch_loaded_at_show"]


@pytest.mark.slow
def test_gpu_benchmark_tiny(tmp_path: Path) -> None:
    record = run_main(gpu_benchmark, tmp_path, "--budget-s", "600")
    assert_common_fields(record, "gpu_benchmark_tiny")
    assert record["size"] == "tiny"
    assert_positive_finite(record["matmul"]["tflops"], "matmul.tflops")
    attention = record["attention"]
    for key in ("full_tflops", "window_useful_tflops", "window_visited_tflops", "block_mask_build_s"):
        assert_positive_finite(attention[key], f"attention.{key}")
    steps = record["steps"]
    assert steps["skipped_for_time_budget"] == []
    assert set(steps["methods"]) == METHOD_LABELS
    for label, entry in steps["methods"].items():
        assert_positive_finite(entry["seconds_per_step"], f"{label}.seconds_per_step")
