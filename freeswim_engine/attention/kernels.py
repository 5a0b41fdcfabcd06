"""Attention kernels: full attention, and window attention through compiled flex attention.

Compiled flex attention is the fast path. When compilation fails (no C
compiler on a CPU machine, an unsupported GPU, a recompile limit), the engine
logs it once and switches to masked SDPA over chunks of query rows, which is
exact but slower. Flex attention is never run uncompiled, because its eager
form materialises every score and runs out of memory at video sizes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from freeswim_engine.attention.block_mask import window_block_mask
from freeswim_engine.attention.geometry import WindowGeometry

logger = logging.getLogger(__name__)

# Distinct compiled shapes allowed for flex attention before Dynamo raises
# instead of falling back to eager flex attention. A render uses one or two.
_RECOMPILE_LIMIT = 64
# Mask elements per chunk in the fallback path: 2**26 booleans is 64 MiB.
_FALLBACK_MASK_ELEMENTS = 1 << 26

_compiled_flex: Callable[..., Any] | None = None
_compile_failure: str | None = None
_state_lock = threading.Lock()


def full_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Scaled dot-product attention over every key; tensors are ``(batch, heads, tokens, head_dim)``."""
    return F.scaled_dot_product_attention(query, key, value, scale=scale)


def window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    geometry: WindowGeometry,
    scale: float | None,
) -> torch.Tensor:
    """Self-attention restricted to the sliding window of ``geometry``.

    Tensors are ``(batch, heads, L, head_dim)`` with ``L = geometry.sequence_length``.
    """
    if query.shape[-2] != geometry.sequence_length:
        raise ValueError(
            f"window attention got {query.shape[-2]} tokens but the geometry has {geometry.sequence_length}"
        )
    if geometry.covers_grid:
        return full_attention(query, key, value, scale)

    if _compile_failure is None:
        try:
            return _compiled_window_attention(query, key, value, geometry, scale)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, AssertionError, torch._dynamo.exc.TorchDynamoException) as error:
            _record_compile_failure(error)
    return masked_window_attention(query, key, value, geometry, scale)


def masked_window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    geometry: WindowGeometry,
    scale: float | None,
) -> torch.Tensor:
    """Exact window attention with SDPA and a boolean mask, computed over chunks of query rows.

    Used where compiled flex attention is unavailable, and as the reference in
    tests. Memory for the mask stays near 64 MiB per chunk.
    """
    length = geometry.sequence_length
    mask_mod = geometry.mask_mod()
    rows_per_chunk = max(1, _FALLBACK_MASK_ELEMENTS // length)
    key_indices = torch.arange(length, device=query.device)
    zero = torch.zeros((), dtype=torch.long, device=query.device)

    outputs = []
    for start in range(0, length, rows_per_chunk):
        query_indices = key_indices[start : start + rows_per_chunk]
        mask = mask_mod(zero, zero, query_indices[:, None], key_indices[None, :])
        chunk = query[:, :, start : start + rows_per_chunk]
        outputs.append(F.scaled_dot_product_attention(chunk, key, value, attn_mask=mask, scale=scale))
    return torch.cat(outputs, dim=2)


def compiled_attention_failure() -> str | None:
    """Return why compiled flex attention was switched off in this process, or None while it is in use."""
    return _compile_failure


def check_compiled_attention(device: torch.device | str | None = None) -> tuple[bool, str]:
    """Compile flex attention on a small window and compare it with masked SDPA.

    Returns ``(works, message)``. ``device`` defaults to the first CUDA device
    when there is one, else the CPU. Takes a few seconds to a minute, because
    it compiles a kernel.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    geometry = WindowGeometry(num_frames=2, height=9, width=15, half_height=2, half_width=3)
    generator = torch.Generator().manual_seed(0)
    shape = (1, 2, geometry.sequence_length, 16)
    query, key, value = (torch.randn(shape, generator=generator).to(device) for _ in range(3))
    try:
        result = _compiled_window_attention(query, key, value, geometry, scale=None)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, AssertionError, torch._dynamo.exc.TorchDynamoException) as error:
        return False, f"compiled flex attention failed on {device}: {type(error).__name__}: {error}"
    expected = masked_window_attention(query, key, value, geometry, scale=None)
    difference = float((result - expected).abs().max())
    if difference > 1e-4:
        return False, f"compiled flex attention on {device} differs from masked SDPA by {difference:.2e}"
    return True, f"compiled flex attention works on {device} (largest difference from masked SDPA {difference:.1e})"


def _compiled_window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    geometry: WindowGeometry,
    scale: float | None,
) -> torch.Tensor:
    block_mask = window_block_mask(geometry, query.device)
    flex = _get_compiled_flex()
    # Raising on the recompile limit, rather than Dynamo's default of running
    # the function eagerly, keeps eager flex attention off video-size inputs.
    with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True):
        output = flex(query, key, value, block_mask=block_mask, scale=scale)
    assert isinstance(output, torch.Tensor)
    return output


def _get_compiled_flex() -> Callable[..., Any]:
    global _compiled_flex
    with _state_lock:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        return _compiled_flex


def _record_compile_failure(error: BaseException) -> None:
    global _compile_failure
    with _state_lock:
        if _compile_failure is not None:
            return
        _compile_failure = f"{type(error).__name__}: {error}"
    logger.warning(
        "Compiled flex attention failed (%s); window attention now uses masked SDPA over chunks, "
        "which gives the same result more slowly",
        _compile_failure,
    )
