"""FreeSwim Studio: the desktop front end of the FreeSwim engine.

``freeswim_app`` contains the app's state (projects, the job queue, settings), the
engine worker thread, the headless runner and, in ``freeswim_app.ui``, the
widgets. Importing this package loads neither torch nor the engine, so the
window can open before the first render imports them.
"""

__version__ = "0.1.0"
APP_DISPLAY_NAME = "FreeSwim Studio"
