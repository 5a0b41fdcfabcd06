"""Rerun every CPU benchmark, one process each, writing ``benchmarks/results/<name>.json``.

The GPU benchmark is left out, because it needs a CUDA device; run it on one
with ``python -m benchmarks.gpu_benchmark``.

Run from the repository root::

    python -m benchmarks.run_all --threads 1      # all five, as the README's runs were made
    python -m benchmarks.run_all --size smoke     # seconds to a few minutes, into --output-dir if given
    python -m benchmarks.run_all --only window_attention stage2_steps
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCHMARKS = ("window_attention", "stage2_steps", "scaling", "export_decode", "app_start")
THREADED = ("stage2_steps", "scaling")  # the scripts that take --threads
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "smoke"), default="full", help="size passed to every benchmark (default: full)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=None, help="run only these benchmarks")
    parser.add_argument("--output-dir", type=Path, default=None, help="folder for the JSON files (default: benchmarks/results)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for the step benchmarks (the README's runs used 1)"
    )
    args = parser.parse_args(argv)

    failed = []
    for name in args.only or BENCHMARKS:
        command = [sys.executable, "-m", f"benchmarks.{name}", "--size", args.size]
        if args.output_dir is not None:
            command += ["--output-dir", str(args.output_dir)]
        if args.threads is not None and name in THREADED:
            command += ["--threads", str(args.threads)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command, cwd=REPOSITORY_ROOT)
        print(f"== {name} finished with exit code {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
