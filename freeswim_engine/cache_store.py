"""Stores for the cross-attention cache of FreeSwim's cached mode.

On refresh steps, ``put`` stores the full branch's cross-attention output of
every transformer block, a tensor of shape ``(1, L, dim)``. On the other steps
the window branch reads it back with ``get``. Every store returns the
exact bits it was given, on the caller's device and dtype, so the placement
never changes a render.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import torch


class CachePlacement(str, enum.Enum):
    """Location of the cross-attention cache."""

    DEVICE = "device"  # the transformer's own device (GPU VRAM, or RAM on CPU)
    PINNED_HOST = "pinned-host"  # page-locked host memory, next block copied ahead on a side stream
    DISK = "disk"  # memory-mapped file in a scratch folder


@runtime_checkable
class CrossAttentionCacheStore(Protocol):
    """Interface that the attention processors use to keep per-block cross-attention outputs."""

    placement: CachePlacement

    def put(self, block_index: int, value: torch.Tensor) -> None:
        """Store ``value`` (shape ``(1, L, dim)``) for ``block_index``, replacing any earlier entry."""
        ...

    def get(self, block_index: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Return the stored tensor of ``block_index`` on ``device`` as ``dtype``; raise KeyError if absent."""
        ...

    def prefetch(self, block_index: int, device: torch.device) -> None:
        """Start moving ``block_index`` towards ``device`` ahead of a ``get``; may do nothing."""
        ...

    def clear(self) -> None:
        """Drop every entry and release the memory or files behind them."""
        ...


class DeviceCacheStore:
    """Cache kept on the device where it is written (GPU memory, or RAM for CPU renders)."""

    placement = CachePlacement.DEVICE

    def __init__(self) -> None:
        self._entries: dict[int, torch.Tensor] = {}

    def put(self, block_index: int, value: torch.Tensor) -> None:
        self._entries[block_index] = value.detach()

    def get(self, block_index: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return self._entries[block_index].to(device=device, dtype=dtype)

    def prefetch(self, block_index: int, device: torch.device) -> None:
        return None

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._entries.values())
