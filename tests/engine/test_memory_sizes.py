"""Byte sizes on the command line: parsing and formatting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from freeswim_engine.memory.sizes import format_size, parse_size

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GiB", 24 * 1024**3),
        ("80GB", 80 * 1000**3),
        ("512MiB", 512 * 1024**2),
        ("512mib", 512 * 1024**2),
        ("1.5 TiB", int(1.5 * 1024**4)),
        (" 64 gb ", 64 * 1000**3),
        ("4096B", 4096),
        ("100kB", 100_000),
        (".5GiB", 512 * 1024**2),
    ],
)
def test_parse_size_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24XB", "unknown unit 'XB'"),
        ("GiB", "expected a number followed by a unit"),
        ("", "expected a number followed by a unit"),
        ("-4GiB", "expected a number followed by a unit"),
        ("0GB", "greater than zero"),
        ("1e3GB", "expected a number followed by a unit"),
        ("24", "expected a number followed by a unit"),  # 24 bytes is never what a user means
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


def test_parse_size_error_lists_units() -> None:
    with pytest.raises(ValueError, match="B, kB, MB, GB, TB, KiB, MiB, GiB, TiB"):
        parse_size("3 gigs")


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (15_794_421_760, "14.7 GiB"), (5 * 1024**4, "5.0 TiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_sizes_module_skips_torch() -> None:
    code = "import sys, freeswim_engine.memory.sizes; print('torch' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=True)

    assert completed.stdout.strip() == "False"
