"""FreeSwim engine: high-resolution video generation for Wan video diffusion transformers.

This package uses torch and diffusers only; it never imports Qt, so the command
line, the desktop app and the tests can all drive it.
"""

__version__ = "0.1.0"
