"""Run the command line as ``python -m freeswim_engine``."""

from freeswim_engine.cli import main

raise SystemExit(main())
