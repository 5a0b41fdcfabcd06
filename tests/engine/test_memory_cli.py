"""`freeswim plan` and `render --dry-run`: planning from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from freeswim_engine import cli, cli_plan

cli_plan.register()


def run_cli(tmp_path: Path, *arguments: str) -> int:
    return cli.main([*arguments, "--log-file", str(tmp_path / "freeswim.log")])


def test_plan_for_other_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "plan", "--model", "wan2.1-t2v-1.3b", "--vram", "24GiB", "--ram", "64GiB")

    output = capsys.readouterr().out
    assert status == 0
    assert "pinned host memory" in output
    assert "Estimated peak VRAM:" in output
    assert "of 24.0 GiB free" in output
    assert "Estimated peak RAM:" in output
    assert "of 64.0 GiB available" in output


def test_plan_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "plan", "--model", "wan2.1-t2v-1.3b", "--vram", "80GiB", "--ram", "128GiB", "--json")

    data = json.loads(capsys.readouterr().out)
    assert status == 0
    assert data["cache_placement"] == "device"
    assert data["weight_placement"] == "all-on-device"
    assert data["cache_bytes"] == 30 * 21 * 68 * 120 * 1536 * 2


def test_plan_rejection_lists_alternatives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(
        tmp_path, "plan", "--model", "wan2.1-t2v-14b", "--width", "3840", "--height", "2160",
        "--vram", "80GB", "--ram", "128GB",
    )  # fmt: skip

    error = capsys.readouterr().err
    assert status == cli.EXIT_FAILURE
    assert "No memory plan fits wan2.1-t2v-14b at 3840x2160" in error
    assert "These settings would fit (estimates):" in error


@pytest.mark.parametrize("option", ["--vram", "--ram", "--disk"])
def test_plan_invalid_size(tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tmp_path, "plan", "--model", "demo", option, "24XB")

    assert exit_info.value.code == cli.EXIT_INVALID_INPUT
    assert f"argument {option}: Invalid size '24XB': unknown unit 'XB'" in capsys.readouterr().err


def test_plan_invalid_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "plan", "--model", "wan2.1-t2v-1.3b", "--frames", "80", "--vram", "24GiB")

    assert status == cli.EXIT_INVALID_INPUT
    assert "Invalid num_frames 80" in capsys.readouterr().err


def test_plan_cpu_with_vram_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "plan", "--model", "demo", "--device", "cpu", "--vram", "8GiB")

    assert status == cli.EXIT_INVALID_INPUT
    assert "--vram" in capsys.readouterr().err


def test_plan_this_machine_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli(tmp_path, "plan", "--model", "demo", "--width", "256", "--height", "128", "--device", "cpu")

    output = capsys.readouterr().out
    assert status == 0
    assert "Everything runs from host memory" in output


def test_plan_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])

    assert "plan" in capsys.readouterr().out


def test_render_dry_run_prints_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output_path = tmp_path / "out.mp4"
    status = run_cli(
        tmp_path, "render", "--model", "demo", "--prompt", "a lighthouse", "--output", str(output_path),
        "--width", "256", "--height", "128", "--device", "cpu", "--dry-run",
    )  # fmt: skip

    assert status == 0
    assert "Plan for demo at 256x128" in capsys.readouterr().out
    assert not output_path.exists()
