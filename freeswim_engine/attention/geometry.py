"""Geometry of FreeSwim's inward sliding window over a video token grid.

Tokens are laid out row-major as ``(frame, y, x)``. A query at ``(t, y, x)``
attends to keys ``(t', y', x')`` of every frame ``t'`` with
``|y' - cy| <= half_height`` and ``|x' - cx| <= half_width``. With the inward
rule the centre is clamped, ``cy = clamp(y, half_height, height - 1 - half_height)``,
so every query, corners included, attends to a window of the full training size. An axis
no longer than the window (``height <= 2 * half_height + 1``) is covered whole.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from freeswim_engine.errors import InvalidRequestError

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class AxisWindow:
    """Window rule along one spatial axis: centre clamped to ``[centre_min, centre_max]``, keys within ``half``."""

    length: int
    centre_min: int
    centre_max: int
    half: int


def _axis_window(length: int, half: int, use_inward: bool) -> AxisWindow:
    if use_inward and length <= 2 * half + 1:
        # The window is at least as long as the axis: every key on the axis is visible.
        return AxisWindow(length=length, centre_min=0, centre_max=0, half=length)
    if use_inward:
        return AxisWindow(length=length, centre_min=half, centre_max=length - 1 - half, half=half)
    # Ablation without the inward shift: the window is centred on the query and cut at the borders.
    return AxisWindow(length=length, centre_min=0, centre_max=length - 1, half=half)


@dataclasses.dataclass(frozen=True)
class WindowGeometry:
    """Token grid of one video and the sliding window that its self-attention uses.

    Attributes:
        num_frames: latent frames after patching (``f``).
        height: tokens per column (``h``).
        width: tokens per row (``w``).
        half_height: window half size along ``y`` in tokens (``d_h``).
        half_width: window half size along ``x`` in tokens (``d_w``).
        use_inward: clamp the window centre inside the grid; False cuts the window at borders.
    """

    num_frames: int
    height: int
    width: int
    half_height: int
    half_width: int
    use_inward: bool = True

    def __post_init__(self) -> None:
        for name in ("num_frames", "height", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"WindowGeometry.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("half_height", "half_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"WindowGeometry.{name} must not be negative, got {getattr(self, name)}")

    @classmethod
    def for_grid(
        cls,
        grid: tuple[int, int, int],
        base_size: tuple[int, int],
        pixels_per_token: int,
        use_inward: bool = True,
    ) -> WindowGeometry:
        """Build the geometry of a ``(frames, height, width)`` token grid for a model trained at ``base_size``.

        ``base_size`` is ``(height, width)`` in pixels; the half sizes are
        ``(base / pixels_per_token) // 2`` tokens, 15 x 26 for Wan2.1 1.3B at 480x832.
        """
        base_tokens = base_tokens_per_axis(base_size, pixels_per_token)
        num_frames, height, width = grid
        return cls(
            num_frames=num_frames,
            height=height,
            width=width,
            half_height=base_tokens[0] // 2,
            half_width=base_tokens[1] // 2,
            use_inward=use_inward,
        )

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width

    @property
    def sequence_length(self) -> int:
        return self.num_frames * self.height * self.width

    @property
    def rows(self) -> AxisWindow:
        return _axis_window(self.height, self.half_height, self.use_inward)

    @property
    def columns(self) -> AxisWindow:
        return _axis_window(self.width, self.half_width, self.use_inward)

    @property
    def covers_grid(self) -> bool:
        """True when every query may attend to every key, so window attention is plain full attention."""
        rows, columns = self.rows, self.columns
        return rows.half >= rows.length and columns.half >= columns.length

    def mask_mod(self) -> MaskMod:
        """Return a flex-attention ``mask_mod`` of the window rule.

        It uses integer arithmetic only, so it is valid for indices past the
        sequence end (flex attention pads to whole blocks) and traceable by
        ``torch.compile``.
        """
        tokens_per_frame = self.tokens_per_frame
        width = self.width
        rows, columns = self.rows, self.columns

        def window_mask_mod(
            batch: torch.Tensor, head: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
        ) -> torch.Tensor:
            q_spatial = q_idx % tokens_per_frame
            kv_spatial = kv_idx % tokens_per_frame
            centre_y = torch.clamp(q_spatial // width, rows.centre_min, rows.centre_max)
            centre_x = torch.clamp(q_spatial % width, columns.centre_min, columns.centre_max)
            near_y = (kv_spatial // width - centre_y).abs() <= rows.half
            near_x = (kv_spatial % width - centre_x).abs() <= columns.half
            return near_y & near_x

        return window_mask_mod

    def dense_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Return the boolean ``(L, L)`` mask of the window rule; True means the query may attend to the key.

        Memory grows with ``L`` squared, so this is for tests and small grids only.
        """
        indices = torch.arange(self.sequence_length, device=device)
        zero = torch.zeros((), dtype=torch.long, device=device)
        return self.mask_mod()(zero, zero, indices[:, None], indices[None, :])


def base_tokens_per_axis(base_size: tuple[int, int], pixels_per_token: int) -> tuple[int, int]:
    """Return the model's training grid ``(height, width)`` in tokens, checking the inputs."""
    if pixels_per_token < 1:
        raise InvalidRequestError(
            "pixels_per_token", pixels_per_token, "must be a positive number of pixels", "Use 16 for Wan2.1."
        )
    for name, value in zip(("base_height", "base_width"), base_size):
        if value < pixels_per_token or value % pixels_per_token:
            raise InvalidRequestError(
                name,
                value,
                f"must be a positive multiple of {pixels_per_token} pixels (one token)",
                "Use the model's training size, for example 480x832 for Wan2.1 1.3B.",
            )
    return (base_size[0] // pixels_per_token, base_size[1] // pixels_per_token)


def freeswim_attention_scale(base_size: tuple[int, int], pixels_per_token: int, head_dim: int) -> float:
    """Return the self-attention softmax scale ``sqrt(log(2 N0) / log(N0)) / sqrt(head_dim)``.

    ``N0`` is the number of tokens per frame at the training size (1560 for
    Wan2.1 1.3B, giving about ``1.0461 / sqrt(head_dim)``).
    """
    base_height, base_width = base_tokens_per_axis(base_size, pixels_per_token)
    tokens_per_frame = base_height * base_width
    if tokens_per_frame < 2:
        raise InvalidRequestError(
            "base size",
            base_size,
            "must span at least 2 tokens, because the scale divides by log(tokens per frame)",
            "Use the model's training size, for example 480x832 for Wan2.1 1.3B.",
        )
    return math.sqrt(math.log(2 * tokens_per_frame) / math.log(tokens_per_frame)) / math.sqrt(head_dim)
