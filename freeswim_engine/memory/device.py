"""Free memory of the machine a render runs on: GPU memory, host RAM and scratch disk."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import psutil
import torch

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DeviceMemory:
    """Memory a plan may use, in bytes.

    ``device_type`` is ``"cuda"`` or ``"cpu"``. On a CPU-only machine the VRAM
    figures are 0 and the transformer runs from host RAM. ``free_disk_bytes`` is
    the free space in the scratch folder, or None when it was not measured.
    """

    device_type: str
    free_vram_bytes: int
    total_vram_bytes: int
    free_ram_bytes: int
    total_ram_bytes: int
    free_disk_bytes: int | None = None
    device_name: str = ""

    @property
    def is_cuda(self) -> bool:
        return self.device_type == "cuda"

    @classmethod
    def for_machine(
        cls, vram_bytes: int | None, ram_bytes: int, disk_bytes: int | None = None, name: str = ""
    ) -> DeviceMemory:
        """Describe another machine by its sizes; ``vram_bytes`` None means a CPU-only machine."""
        if vram_bytes is None:
            return cls("cpu", 0, 0, ram_bytes, ram_bytes, disk_bytes, name or "CPU")
        return cls("cuda", vram_bytes, vram_bytes, ram_bytes, ram_bytes, disk_bytes, name or "GPU")


def read_device_memory(device: str | torch.device = "auto", scratch_dir: Path | None = None) -> DeviceMemory:
    """Measure free GPU memory (``torch.cuda.mem_get_info``), available RAM (psutil) and scratch disk space.

    ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``auto`` picks CUDA device 0
    when CUDA is available. Free VRAM is what the driver reports now, so memory held
    by other processes, or by this one's caching allocator, counts as used.
    """
    resolved = _resolve_device(device)
    virtual_memory = psutil.virtual_memory()
    free_disk = _free_disk_bytes(scratch_dir)

    if resolved.type != "cuda":
        return DeviceMemory(
            device_type="cpu",
            free_vram_bytes=0,
            total_vram_bytes=0,
            free_ram_bytes=int(virtual_memory.available),
            total_ram_bytes=int(virtual_memory.total),
            free_disk_bytes=free_disk,
            device_name="CPU",
        )

    free_vram, total_vram = torch.cuda.mem_get_info(resolved)
    return DeviceMemory(
        device_type="cuda",
        free_vram_bytes=int(free_vram),
        total_vram_bytes=int(total_vram),
        free_ram_bytes=int(virtual_memory.available),
        total_ram_bytes=int(virtual_memory.total),
        free_disk_bytes=free_disk,
        device_name=torch.cuda.get_device_name(resolved),
    )


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Invalid device {device!r}: CUDA is not available on this machine. Use auto or cpu.")
    if resolved.type == "cuda" and resolved.index is None:
        return torch.device("cuda", 0)
    return resolved


def _free_disk_bytes(scratch_dir: Path | None) -> int | None:
    if scratch_dir is None:
        return None
    # The folder may not exist yet, so measure its nearest existing parent, usually on the same file system.
    probe = Path(scratch_dir).expanduser().resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError as error:
        logger.warning("Could not read the free space of %s: %s", probe, error)
        return None
