"""Print Markdown tables of the results in ``benchmarks/results``, for the results page.

Run from the repository root::

    python -m benchmarks.report
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR


def load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


def header(record: dict[str, Any]) -> list[str]:
    return [
        f"Command: `{record['command']}`, {record['date_utc']}, load average at start "
        f"{record.get('load_average_start')} and end {record.get('load_average_end')}.",
        "",
    ]


def window_table(record: dict[str, Any]) -> list[str]:
    lines = header(record)
    lines += [
        "| grid | tokens f x h x w = L | heads | full SDPA s | masked SDPA s | window (flex) s | gathered s | window/full time | exact density | visited FLOPs / full FLOPs | window/full over exact density | full GFLOP/s | window useful GFLOP/s | window visited GFLOP/s | first window call s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["grids"]:
        times, ratios, rates = row["times"], row["ratios"], row["flops_per_s"]
        lines.append(
            f"| {row['grid']} | {row['num_frames']} x {row['height_tokens']} x {row['width_tokens']} = {row['sequence_length']} "
            f"| {row['num_heads']} | {times['full']['median_s']:.2f} | {times['masked']['median_s']:.2f} "
            f"| {times['window']['median_s']:.2f} | {times['gathered']['median_s']:.2f} "
            f"| {ratios['window_over_full_time']:.2f} | {ratios['exact_density']:.3f} | {ratios['visited_flops_over_full_flops']:.3f} "
            f"| {ratios['window_time_over_exact_flops_share']:.1f} "
            f"| {rates['full'] / 1e9:.1f} | {rates['window_useful'] / 1e9:.1f} | {rates['window_visited_blocks'] / 1e9:.1f} "
            f"| {row['first_window_call_s']:.1f} |"
        )
    lines += [
        "",
        "| grid | tiled L | block density | block-mask build s (median) | BlockMask tensors | process peak RSS increase | dense bool mask would be |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["grids"]:
        mask = row["block_mask"]
        lines.append(
            f"| {row['grid']} | {mask['tiled_sequence_length']} | {mask['block_density']:.3f} "
            f"| {mask['build']['median_s']:.3f} | {mask['block_mask_tensor_bytes'] / 2**10:.1f} KiB "
            f"| {mask['peak_rss_increase_bytes'] / 2**20:.1f} MiB | {mask['dense_bool_mask_bytes'] / 2**20:.0f} MiB |"
        )
    return lines


def steps_table(record: dict[str, Any]) -> list[str]:
    lines = header(record)
    grid, model = record["grid"], record["model"]
    lines += [
        f"Grid {grid['num_frames']} x {grid['height_tokens']} x {grid['width_tokens']} tokens; model {model['num_layers']} blocks, "
        f"{model['num_heads']} heads of {model['head_dim']}, FFN {model['ffn_dim']}, window density {record['window_density']:.2f}.",
        "",
        "| method | s per step (median) | min | max | runs |",
        "|---|---|---|---|---|",
    ]
    for label, summary in record["seconds_per_step"].items():
        runs = ", ".join(f"{value:.2f}" for value in summary["runs_s"])
        lines.append(f"| {label} | {summary['median_s']:.2f} | {summary['min_s']:.2f} | {summary['max_s']:.2f} | {runs} |")
    speedups = record["speedup_cached_over_uncached"]
    lines += [
        "",
        "| cache interval | speed-up over freeswim (ratio of medians) | per-round speed-ups | median per round | predicted step s (window + direct / 2k) |",
        "|---|---|---|---|---|",
    ]
    for interval in ("k=2", "k=5"):
        entry = speedups[interval]
        rounds = ", ".join(f"{value:.2f}" for value in entry["per_round_speedups"])
        lines.append(
            f"| {interval} | {entry['measured_speedup']:.2f}x | {rounds} | {entry['median_per_round_speedup']:.2f}x | {entry['predicted_step_s']:.2f} |"
        )
    shares = record["attention_flop_share"]
    lines += ["", "Self-attention share of a pass's FLOPs (estimate): " + ", ".join(f"{key} {value:.0%}" for key, value in shares.items()) + "."]
    return lines


def scaling_table(record: dict[str, Any]) -> list[str]:
    lines = header(record)
    labels = list(record["fitted_exponent"])
    lines += ["| tokens | window density | " + " | ".join(f"{label} s" for label in labels) + " |", "|---|---|" + "---|" * len(labels)]
    for row in record["grids"]:
        cells = " | ".join(f"{row['seconds_per_step'][label]['median_s']:.2f}" for label in labels)
        lines.append(f"| {row['sequence_length']} ({row['grid'][1]}x{row['grid'][2]}) | {row['window_density']:.2f} | {cells} |")
    cells = " | ".join(f"{record['fitted_exponent'][label]:.2f}" for label in labels)
    lines.append(f"| fitted exponent p | | {cells} |")
    return lines


def export_table(record: dict[str, Any]) -> list[str]:
    lines = header(record)
    video = record["video"]
    lines += [
        "| video | file size | encode s (median) | encode frames/s | decode s (median) | decode frames/s |",
        "|---|---|---|---|---|---|",
        f"| {video['num_frames']} x {video['width']}x{video['height']} {video['codec']} CRF {video['crf']} | {record['file_bytes'] / 2**20:.1f} MiB "
        f"| {record['encode']['median_s']:.1f} | {record['encode_frames_per_s']:.2f} | {record['decode']['median_s']:.1f} | {record['decode_frames_per_s']:.1f} |",
    ]
    return lines


def app_table(record: dict[str, Any]) -> list[str]:
    lines = header(record)
    lines += ["| variant | launch to shown s (median) | min | max | torch loaded at show | probe phases (median s) |", "|---|---|---|---|---|---|"]
    for name, variant in record["variants"].items():
        timing = variant["launch_to_shown"]
        phases = ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in variant["probe_phases_median_s"].items())
        lines.append(
            f"| {name} | {timing['median_s']:.2f} | {timing['min_s']:.2f} | {timing['max_s']:.2f} | {variant['torch_loaded_at_show']} | {phases} |"
        )
    return lines


TABLES = {
    "window_attention": window_table,
    "stage2_steps": steps_table,
    "scaling": scaling_table,
    "export_decode": export_table,
    "app_start": app_table,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="folder of the JSON files")
    args = parser.parse_args(argv)
    for name, table in TABLES.items():
        record = load(args.results_dir, name)
        print(f"### {name}\n")
        print("\n".join(table(record)) if record is not None else "not measured yet")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
