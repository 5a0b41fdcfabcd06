"""Byte sizes written the way people type them: ``24GiB``, ``80GB``, ``512MiB``."""

from __future__ import annotations

import re

# Decimal units are powers of 1000 and binary units powers of 1024, as in IEC 80000-13.
UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")
GIB = 1024**3


def parse_size(text: str) -> int:
    """Convert a size such as ``24GiB``, ``80 GB`` or ``1.5TiB`` to bytes.

    Units are case-insensitive and required: a bare number such as ``24`` is
    rejected rather than read as bytes. Raises ValueError with the accepted
    units when the text is not a size.
    """
    match = _SIZE_PATTERN.match(text)
    if match is None or not match.group(2):
        raise ValueError(
            f"Invalid size {text!r}: expected a number followed by a unit, for example 24GiB, 80GB or 512MiB."
        )
    number, unit = match.groups()
    multiplier = UNITS.get(unit.lower() or "b")
    if multiplier is None:
        raise ValueError(f"Invalid size {text!r}: unknown unit {unit!r}. Use one of: {', '.join(_unit_names())}.")
    size = round(float(number) * multiplier)
    if size <= 0:
        raise ValueError(f"Invalid size {text!r}: the size must be greater than zero.")
    return size


def format_size(num_bytes: float) -> str:
    """Format a byte count in binary units with one decimal, for example ``14.7 GiB``."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _unit_names() -> list[str]:
    spelled = {"b": "B", "kb": "kB", "mb": "MB", "gb": "GB", "tb": "TB"}
    return [spelled.get(name, name[0].upper() + "iB") for name in UNITS]
