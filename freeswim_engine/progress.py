"""Terminal progress for the command line: a tqdm bar per stage on a terminal, one line per stage otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

STAGE_LABELS = {
    "loading": "Loading model",
    "encoding-prompt": "Encoding prompt",
    "stage1": "Stage 1: base video",
    "upsampling": "Upsampling",
    "stage2": "Stage 2: refining",
    "decoding": "Decoding",
    "exporting": "Exporting",
}


def stage_label(stage: Any) -> str:
    """Return the display name of a ``freeswim_engine.api.Stage`` or its string value."""
    value = getattr(stage, "value", stage)
    return STAGE_LABELS.get(str(value), str(value))


class TerminalProgress:
    """Render callbacks that draw progress on a terminal stream.

    On a terminal each stage with steps gets a tqdm bar showing step/total, rate and ETA. When the
    stream is not a terminal (a pipe, a log file, CI), it prints one line as each stage starts and
    nothing per step.
    """

    def __init__(self, stream: TextIO | None = None, is_tty: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._is_tty = self._stream.isatty() if is_tty is None else is_tty
        self._stage: str | None = None
        self._bar: Any = None  # tqdm.tqdm while a stage with steps runs on a terminal
        self._started = time.monotonic()

    def on_stage(self, stage: Any) -> None:
        """Start a stage: close the previous bar and print the stage name."""
        self._close_bar()
        self._stage = stage_label(stage)
        elapsed = time.monotonic() - self._started
        print(f"[{_format_seconds(elapsed)}] {self._stage}", file=self._stream, flush=True)

    def on_progress(self, stage: Any, step: int, total: int) -> None:
        """Advance the current stage's bar to ``step`` of ``total`` (1-based)."""
        label = stage_label(stage)
        if label != self._stage:
            self.on_stage(stage)
        if not self._is_tty:
            return
        if self._bar is None or self._bar.total != total:
            self._open_bar(label, total)
        self._bar.update(step - self._bar.n)

    def close(self) -> None:
        """Close the open bar, if any. Call it when the render ends, however it ends."""
        self._close_bar()

    def _open_bar(self, label: str, total: int) -> None:
        from tqdm import tqdm  # installed with diffusers; imported late to keep `freeswim --help` fast

        self._close_bar()
        self._bar = tqdm(total=total, desc=label, unit="step", file=self._stream, dynamic_ncols=True, leave=True)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"
