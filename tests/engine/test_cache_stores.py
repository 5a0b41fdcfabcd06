"""Cross-attention cache placements: bit-exact round trips, dtype conversion and scratch-file cleanup."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from freeswim_engine.cache_store import CachePlacement, CrossAttentionCacheStore, DeviceCacheStore
from freeswim_engine.cache_stores import (
    SCRATCH_PREFIX,
    DiskCacheStore,
    PinnedHostCacheStore,
    create_cache_store,
    open_cache_store,
)
from freeswim_engine.errors import RenderCancelled

CPU = torch.device("cpu")
SHAPE = (1, 37, 24)  # (batch, tokens, dim): odd sizes so nothing lines up by luck


def entry(seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    values = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    # Include values that rounding would change, plus signed zero and extremes.
    values[0, 0, :4] = torch.tensor([-0.0, 1e-38, 3.4e38, 1.0 + 2**-20])
    return values.to(dtype)


def same_bits(left: torch.Tensor, right: torch.Tensor) -> bool:
    if left.dtype != right.dtype or left.shape != right.shape:
        return False
    left_bits = left.contiguous().view(torch.uint8)
    right_bits = right.contiguous().view(torch.uint8)
    return bool(torch.equal(left_bits, right_bits))


StoreFactory = Callable[[Path], CrossAttentionCacheStore]
STORE_FACTORIES: dict[str, StoreFactory] = {
    "device": lambda scratch: DeviceCacheStore(),
    "pinned-host": lambda scratch: PinnedHostCacheStore(),
    "disk": lambda scratch: DiskCacheStore(scratch),
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CrossAttentionCacheStore]:
    created = STORE_FACTORIES[request.param](tmp_path)
    yield created
    close = getattr(created, "close", None)
    if callable(close):
        close()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_bit_identical(store: CrossAttentionCacheStore, dtype: torch.dtype) -> None:
    written = {block: entry(block, dtype) for block in range(3)}
    for block, value in written.items():
        store.put(block, value)

    for block, value in written.items():
        read = store.get(block, CPU, dtype)
        assert same_bits(read, value), f"block {block} changed in the {store.placement.value} store"
        assert read.device == CPU


@pytest.mark.parametrize(
    ("stored", "requested"),
    [(torch.bfloat16, torch.float32), (torch.float32, torch.bfloat16), (torch.float32, torch.float16)],
)
def test_dtype_conversion_matches_tensor_to(
    store: CrossAttentionCacheStore, stored: torch.dtype, requested: torch.dtype
) -> None:
    value = entry(7, stored)
    store.put(0, value)

    read = store.get(0, CPU, requested)

    assert read.dtype == requested
    assert same_bits(read, value.to(requested))


def test_all_placements_return_identical_tensors(tmp_path: Path) -> None:
    values = {block: entry(100 + block, torch.bfloat16) for block in range(4)}
    results: dict[str, list[torch.Tensor]] = {}
    for name, factory in STORE_FACTORIES.items():
        store = factory(tmp_path / name)
        for block, value in values.items():
            store.put(block, value)
        results[name] = [store.get(block, CPU, torch.float32) for block in values]
        store.clear()

    reference = results["device"]
    for name, tensors in results.items():
        for block, (tensor, expected) in enumerate(zip(tensors, reference, strict=True)):
            assert same_bits(tensor, expected), f"{name} differs from the device store at block {block}"


def test_put_replaces_entry(store: CrossAttentionCacheStore) -> None:
    store.put(0, entry(1))
    store.put(0, entry(2))

    assert same_bits(store.get(0, CPU, torch.float32), entry(2))


def test_get_missing_block_raises_key_error(store: CrossAttentionCacheStore) -> None:
    store.put(0, entry(1))

    with pytest.raises(KeyError):
        store.get(5, CPU, torch.float32)


def test_clear_drops_entries(store: CrossAttentionCacheStore) -> None:
    store.put(0, entry(1))
    store.clear()

    with pytest.raises(KeyError):
        store.get(0, CPU, torch.float32)


def test_prefetch_then_get_on_cpu(store: CrossAttentionCacheStore) -> None:
    store.put(0, entry(3))
    store.put(1, entry(4))

    store.prefetch(1, CPU)
    store.prefetch(9, CPU)  # absent blocks are ignored

    assert same_bits(store.get(1, CPU, torch.float32), entry(4))


def test_returned_tensor_survives_later_put(store: CrossAttentionCacheStore) -> None:
    store.put(0, entry(5))
    read = store.get(0, CPU, torch.float32)

    store.put(0, entry(6))

    assert same_bits(read, entry(5))


def test_pinned_store_without_cuda_uses_plain_memory() -> None:
    store = PinnedHostCacheStore()

    store.put(0, entry(1))

    assert store.pin_memory == torch.cuda.is_available()
    assert store.nbytes == entry(1).numel() * 4
    assert len(store) == 1


def test_disk_store_writes_raw_bytes(tmp_path: Path) -> None:
    value = entry(8, torch.bfloat16)
    with DiskCacheStore(tmp_path) as store:
        store.put(3, value)
        files = list(store.folder.iterdir())

        assert [path.name for path in files] == ["block-0003.bin"]
        assert files[0].read_bytes() == value.contiguous().view(torch.uint8).numpy().tobytes()
        assert store.nbytes == value.numel() * 2


def test_disk_store_uses_unique_subfolders(tmp_path: Path) -> None:
    with DiskCacheStore(tmp_path) as first, DiskCacheStore(tmp_path) as second:
        assert first.folder != second.folder
        assert first.folder.parent == tmp_path
        assert first.folder.name.startswith(SCRATCH_PREFIX)


def test_disk_store_clear_removes_files(tmp_path: Path) -> None:
    with DiskCacheStore(tmp_path) as store:
        store.put(0, entry(1))
        store.put(1, entry(2))

        store.clear()

        assert list(store.folder.iterdir()) == []


def test_disk_store_close_removes_folder(tmp_path: Path) -> None:
    store = DiskCacheStore(tmp_path)
    store.put(0, entry(1))

    store.close()

    assert not store.folder.exists()
    assert store.closed
    assert list(tmp_path.iterdir()) == []


def test_disk_store_exception_removes_files(tmp_path: Path) -> None:
    folder = None
    with pytest.raises(RenderCancelled):
        with DiskCacheStore(tmp_path) as store:
            folder = store.folder
            store.put(0, entry(1))
            raise RenderCancelled("cancelled by the user")

    assert folder is not None
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []


def test_disk_store_garbage_collected_removes_folder(tmp_path: Path) -> None:
    store = DiskCacheStore(tmp_path)
    store.put(0, entry(1))
    folder = store.folder

    del store

    assert not folder.exists()


def test_disk_store_empty_tensor(tmp_path: Path) -> None:
    with DiskCacheStore(tmp_path) as store:
        store.put(0, torch.empty(1, 0, 24))

        assert store.get(0, CPU, torch.float32).shape == (1, 0, 24)


@pytest.mark.parametrize("placement", list(CachePlacement))
def test_create_cache_store_placement(placement: CachePlacement, tmp_path: Path) -> None:
    store = create_cache_store(placement, tmp_path)

    assert store.placement is placement
    assert isinstance(store, CrossAttentionCacheStore)
    store.clear()
    getattr(store, "close", lambda: None)()


def test_create_cache_store_accepts_value_text(tmp_path: Path) -> None:
    assert create_cache_store("pinned-host").placement is CachePlacement.PINNED_HOST


def test_create_cache_store_without_placement() -> None:
    assert isinstance(create_cache_store(None), DeviceCacheStore)


def test_create_cache_store_rejects_unknown(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device, pinned-host, disk"):
        create_cache_store("ssd", tmp_path)


def test_create_disk_store_needs_scratch_dir() -> None:
    with pytest.raises(ValueError, match="scratch_dir"):
        create_cache_store(CachePlacement.DISK)


def test_open_cache_store_cleans_up_on_cancel(tmp_path: Path) -> None:
    with pytest.raises(RenderCancelled):
        with open_cache_store("disk", tmp_path) as store:
            store.put(0, entry(1))
            raise RenderCancelled("cancelled by the user")

    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("placement", ["pinned-host", "disk"])
def test_cuda_prefetch_bit_identical(placement: str, tmp_path: Path) -> None:
    cuda = torch.device("cuda")
    values = [entry(block, torch.bfloat16).to(cuda) for block in range(4)]
    with open_cache_store(placement, tmp_path) as store:
        for block, value in enumerate(values):
            store.put(block, value)
        store.prefetch(0, cuda)
        for block, value in enumerate(values):
            read = store.get(block, cuda, torch.bfloat16)
            store.prefetch(block + 1, cuda)
            assert read.device.type == "cuda"
            assert same_bits(read.cpu(), value.cpu()), f"block {block} changed"
            assert same_bits(store.get(block, cuda, torch.float32).cpu(), value.float().cpu())


class CountingStore:
    """A store wrapper that counts reads, to show that the cached steps used the placement under test."""

    def __init__(self, inner: CrossAttentionCacheStore) -> None:
        self.inner = inner
        self.placement = inner.placement
        self.reads = 0

    def put(self, block_index: int, value: torch.Tensor) -> None:
        self.inner.put(block_index, value)

    def get(self, block_index: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        self.reads += 1
        return self.inner.get(block_index, device, dtype)

    def prefetch(self, block_index: int, device: torch.device) -> None:
        self.inner.prefetch(block_index, device)

    def clear(self) -> None:
        self.inner.clear()


@pytest.mark.slow
def test_stage2_latents_identical_across_placements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from freeswim_engine import pipeline
    from freeswim_engine.models import load_model

    monkeypatch.setenv("FREESWIM_CACHE_DIR", str(tmp_path / "engine-cache"))
    model = load_model("demo", device="cpu")
    embeddings = pipeline.encode_prompts(model, "a lighthouse at dusk", "blurry", guidance_scale=5.0)
    # 160x288 pixels is a 10x18 token grid, larger than the demo's 9x15 window, so the two branches differ.
    shape = pipeline.latent_shape(model, 5, 160, 288)
    clean_latents = torch.randn(shape, generator=torch.Generator().manual_seed(3))

    results = {}
    for placement in CachePlacement:
        with open_cache_store(placement, tmp_path / "scratch") as inner:
            store = CountingStore(inner)
            results[placement] = pipeline.run_stage2(
                model,
                embeddings,
                clean_latents,
                num_inference_steps=6,
                strength=0.7,
                guidance_scale=5.0,
                flow_shift=9.0,
                method="freeswim-cached",
                cache_interval=2,
                base_size=(128, 224),
                generator=torch.Generator().manual_seed(11),
                cache_store=store,
            )
        assert store.reads > 0, f"the {placement.value} store was never read"

    reference = results[CachePlacement.DEVICE]
    assert torch.isfinite(reference).all()
    for placement, latents in results.items():
        assert same_bits(latents, reference), f"{placement.value} changed the stage-2 latents"
    assert not any((tmp_path / "scratch").iterdir())
