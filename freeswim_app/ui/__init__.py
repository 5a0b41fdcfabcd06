"""Widgets of the FreeSwim Studio desktop app. Models and the worker live in ``freeswim_app`` itself."""
