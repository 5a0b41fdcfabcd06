"""Cross-attention cache stores off the device: pinned host memory and memory-mapped scratch files.

Both keep each block's tensor in the dtype it was written in and convert only on
``get``, with the same ``Tensor.to(device=..., dtype=...)`` call as DeviceCacheStore,
so every placement returns the same bits. On CUDA, ``prefetch`` starts copying a
block's entry to the GPU on a side stream and records an event. ``get`` then makes
the current stream wait on that event only, not on the whole side stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy
import torch

from freeswim_engine.cache_store import CachePlacement, CrossAttentionCacheStore, DeviceCacheStore

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = "freeswim-cache-"


@dataclasses.dataclass
class _Prefetch:
    """A device copy of one entry that may still be in flight on the side stream."""

    tensor: torch.Tensor
    device: torch.device
    ready: torch.cuda.Event


class _SideStreamCopier:
    """Copies host tensors to a CUDA device on one side stream per device, one event per copy."""

    def __init__(self) -> None:
        self._streams: dict[torch.device, torch.cuda.Stream] = {}

    def start(self, host: torch.Tensor, device: torch.device, after: torch.cuda.Event | None) -> _Prefetch:
        stream = self._streams.get(device)
        if stream is None:
            stream = self._streams[device] = torch.cuda.Stream(device)
        # Only the copy that fills the host buffer must finish first. Waiting on the whole
        # current stream would delay the prefetch until the running block's compute is done.
        if after is not None:
            stream.wait_event(after)
        with torch.cuda.stream(stream):
            tensor = host.to(device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(stream)
        return _Prefetch(tensor, device, ready)

    @staticmethod
    def finish(prefetch: _Prefetch) -> torch.Tensor:
        current = torch.cuda.current_stream(prefetch.device)
        current.wait_event(prefetch.ready)
        # The tensor was allocated on the side stream; tell the allocator the current stream uses it too.
        prefetch.tensor.record_stream(current)
        return prefetch.tensor


def _normalise_device(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class PinnedHostCacheStore:
    """Cache kept in page-locked host memory when CUDA is available, in ordinary RAM otherwise.

    ``put`` copies a CUDA tensor to a fresh pinned buffer without blocking and records
    an event; reads wait on that event. ``prefetch(block, device)`` starts the next
    block's host-to-device copy on a side stream so that it overlaps compute.
    """

    placement = CachePlacement.PINNED_HOST

    def __init__(self, pin_memory: bool | None = None) -> None:
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._entries: dict[int, torch.Tensor] = {}
        self._written: dict[int, torch.cuda.Event] = {}  # pending device-to-host copies
        self._prefetched: dict[int, _Prefetch] = {}
        self._copier = _SideStreamCopier()

    def put(self, block_index: int, value: torch.Tensor) -> None:
        value = value.detach()
        self._prefetched.pop(block_index, None)
        self._written.pop(block_index, None)
        # A fresh buffer per put: a tensor handed out by an earlier get may still alias the old one.
        host = torch.empty(value.shape, dtype=value.dtype, device="cpu", pin_memory=self.pin_memory)
        if value.is_cuda and self.pin_memory:
            host.copy_(value, non_blocking=True)
            written = torch.cuda.Event()
            written.record(torch.cuda.current_stream(value.device))
            self._written[block_index] = written
        else:
            host.copy_(value)
        self._entries[block_index] = host

    def get(self, block_index: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        host = self._entries[block_index]
        device = _normalise_device(device)
        prefetch = self._prefetched.pop(block_index, None)
        if prefetch is not None and prefetch.device == device:
            return _SideStreamCopier.finish(prefetch).to(dtype=dtype)

        written = self._written.get(block_index)
        if written is not None:
            if device.type == "cuda":
                torch.cuda.current_stream(device).wait_event(written)
            else:
                written.synchronize()
        return host.to(device=device, dtype=dtype)

    def prefetch(self, block_index: int, device: torch.device) -> None:
        device = _normalise_device(device)
        if device.type != "cuda" or block_index not in self._entries:
            return
        current = self._prefetched.get(block_index)
        if current is not None and current.device == device:
            return
        host = self._entries[block_index]
        self._prefetched[block_index] = self._copier.start(host, device, self._written.get(block_index))

    def clear(self) -> None:
        self._prefetched.clear()
        self._written.clear()
        self._entries.clear()

    def close(self) -> None:
        self.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._entries.values())


@dataclasses.dataclass(frozen=True)
class _DiskEntry:
    path: Path
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int


class DiskCacheStore:
    """Cache kept in raw files under a fresh subfolder of ``scratch_dir``, read back through memory maps.

    Each ``put`` writes the tensor's bytes unchanged (``block-NNNN.bin``). ``get``
    maps the file and copies it to the caller's device and dtype, so the result is
    bit-identical and never aliases the file. ``clear`` deletes the files, ``close``
    also the subfolder. Use it as a context manager so an exception, a cancelled
    render included, removes the files; a store that is garbage-collected unclosed
    removes them too.
    """

    placement = CachePlacement.DISK

    def __init__(self, scratch_dir: Path | str) -> None:
        scratch = Path(scratch_dir).expanduser()
        scratch.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=scratch))
        self._entries: dict[int, _DiskEntry] = {}
        self._prefetched: dict[int, _Prefetch] = {}
        self._copier = _SideStreamCopier()
        self._pin_memory = torch.cuda.is_available()
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        logger.info("Cross-attention cache on disk in %s", self.folder)

    def put(self, block_index: int, value: torch.Tensor) -> None:
        self._prefetched.pop(block_index, None)
        host = value.detach().to("cpu").contiguous()
        path = self.folder / f"block-{block_index:04d}.bin"
        raw = host.reshape(-1).view(torch.uint8).numpy() if host.numel() else numpy.empty(0, numpy.uint8)
        raw.tofile(path)
        self._entries[block_index] = _DiskEntry(path, tuple(host.shape), host.dtype, raw.nbytes)

    def get(self, block_index: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        entry = self._entries[block_index]
        device = _normalise_device(device)
        prefetch = self._prefetched.pop(block_index, None)
        if prefetch is not None and prefetch.device == device:
            return _SideStreamCopier.finish(prefetch).to(dtype=dtype)

        mapped = self._read(entry)
        result = mapped.to(device=device, dtype=dtype)
        if result.data_ptr() == mapped.data_ptr() and entry.nbytes:
            result = result.clone()  # never hand out memory backed by a file that clear() deletes
        return result

    def prefetch(self, block_index: int, device: torch.device) -> None:
        device = _normalise_device(device)
        if device.type != "cuda" or block_index not in self._entries:
            return
        current = self._prefetched.get(block_index)
        if current is not None and current.device == device:
            return
        mapped = self._read(self._entries[block_index])
        host = mapped.pin_memory() if self._pin_memory else mapped.clone()
        self._prefetched[block_index] = self._copier.start(host, device, None)

    def clear(self) -> None:
        self._prefetched.clear()
        for entry in self._entries.values():
            entry.path.unlink(missing_ok=True)
        self._entries.clear()

    def close(self) -> None:
        """Delete every file and the store's subfolder; the store cannot be used afterwards."""
        self.clear()
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> DiskCacheStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            logger.info("Removing the disk cache in %s after %s", self.folder, type(exc).__name__)
        self.close()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    @staticmethod
    def _read(entry: _DiskEntry) -> torch.Tensor:
        if entry.nbytes == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        # Copy-on-write mapping: writable for torch.from_numpy, and the file is never modified.
        mapped = numpy.memmap(entry.path, dtype=numpy.uint8, mode="c", shape=(entry.nbytes,))
        return torch.from_numpy(mapped).view(entry.dtype).view(entry.shape)


def create_cache_store(
    placement: CachePlacement | str | None, scratch_dir: Path | str | None = None
) -> CrossAttentionCacheStore:
    """Create the store for ``placement``; the disk placement needs ``scratch_dir``.

    None, the placement of a plan whose method keeps no cache, gives a DeviceCacheStore.
    """
    if placement is None:
        return DeviceCacheStore()
    try:
        placement = CachePlacement(placement)
    except ValueError:
        choices = ", ".join(item.value for item in CachePlacement)
        raise ValueError(f"Invalid cache placement {placement!r}: use one of {choices}.") from None
    if placement is CachePlacement.DEVICE:
        return DeviceCacheStore()
    if placement is CachePlacement.PINNED_HOST:
        return PinnedHostCacheStore()
    if scratch_dir is None:
        raise ValueError("The disk cache placement needs a scratch folder: pass scratch_dir, for example the project's.")
    return DiskCacheStore(scratch_dir)


@contextlib.contextmanager
def open_cache_store(
    placement: CachePlacement | str | None, scratch_dir: Path | str | None = None
) -> Iterator[CrossAttentionCacheStore]:
    """Create a store for one render and release it on exit, also when the render raises or is cancelled."""
    store = create_cache_store(placement, scratch_dir)
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
        else:
            store.clear()
