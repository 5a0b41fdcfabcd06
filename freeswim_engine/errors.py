"""Exceptions raised by the engine.

Every error a user can cause carries a message that names the value, the rule
it broke and what to do instead, so front ends show `str(error)` as it is.
"""

from __future__ import annotations

from typing import Any


class FreeSwimError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidRequestError(FreeSwimError, ValueError):
    """A render request field that breaks a rule.

    Attributes:
        field: name of the request field, for example ``"width"``.
        value: the value received.
        rule: the rule it breaks, as a sentence fragment.
        fix: what to use instead.
    """

    def __init__(self, field: str, value: Any, rule: str, fix: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.fix = fix
        super().__init__(f"Invalid {field} {value!r}: {rule}. {fix}")


class ModelLoadError(FreeSwimError):
    """A model that cannot be found or loaded, with the path or repo id involved."""


class InputVideoError(FreeSwimError):
    """An input video or frame folder that cannot be read."""


class ExportError(FreeSwimError):
    """An MP4 that could not be written (ffmpeg failure, disk full, bad path)."""


class RenderCancelled(FreeSwimError):
    """Raised when a render stops because its cancel callback returned True."""


class NonFiniteLatentsError(FreeSwimError):
    """Latents contain NaN or infinity before decoding, so the video would be black or noise."""


class OutOfMemoryError(FreeSwimError):
    """The device ran out of memory; the message names the plan used and a more frugal one."""


class PlanRejectedError(FreeSwimError):
    """No memory plan fits the machine; the message lists what would fit."""
