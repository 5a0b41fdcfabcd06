"""PyInstaller runtime hook: settings the frozen FreeSwim Studio needs before the entry script runs.

The environment settings are defaults, so a user can still override them.
"""

import os
import sys

# Set in the frozen app's environment, so its child processes inherit it. A
# child started with `-c CODE` and this variable was started by torch (see
# below), not by a user.
CHILD_MARKER = "FREESWIM_FROZEN_PARENT_PID"


def run_python_command(code: str) -> None:
    """Run ``code`` the way ``python -c CODE`` would, then exit."""
    sys.argv = ["-c", *sys.argv[3:]]
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(code, "<string>", "exec"), namespace)
    sys.exit(0)


# torch's inductor checks which SIMD instruction set works by compiling a test
# library and loading it in a child `sys.executable -c CODE` (torch 2.13,
# torch/_inductor/cpu_vec_isa.py). In the frozen app sys.executable is the app
# itself, so without this the child would start a second app and inductor
# would fall back to scalar kernels or fail to lower flex attention.
if len(sys.argv) >= 3 and sys.argv[1] == "-c" and os.environ.get(CHILD_MARKER):
    run_python_command(sys.argv[2])

os.environ[CHILD_MARKER] = str(os.getpid())

# inductor compiles kernels in a pool of worker processes, which it starts
# from sys.executable as well. One thread compiles in the app's own process.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
