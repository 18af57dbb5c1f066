"""The CPU benchmarks in sequence (what ``make bench`` runs): cc_overhead, pipeline, cc_kernel.

Each runs in its own process at a size that keeps the whole sequence to a few minutes on a
2-core CPU; their full output is streamed, and the ratio lines are repeated at the end.
``--quick`` passes ``--quick`` on (a smoke run of a minute or so). The larger, README runs are the
commands listed in benchmarks/README.md.

    python benchmarks/run_cpu.py            # or: make bench
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# (script, extra arguments of the make-bench size)
BENCHMARKS = (
    ("cc_overhead.py", ["--pairs", "40"]),
    ("pipeline.py", ["--pairs", "6", "--steps", "12", "--overhead-steps", "21"]),
    ("cc_kernel.py", []),
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run of each benchmark")
    p.add_argument("--threads", default="auto", help="passed on (an integer or 'auto'; see any benchmark's --help)")
    args = p.parse_args(argv)
    summary: list[str] = []
    failed: list[str] = []
    started = time.perf_counter()
    for script, extra in BENCHMARKS:
        cmd = [sys.executable, os.path.join(HERE, script), "--device", "cpu", "--threads", str(args.threads)]
        cmd += ["--quick"] if args.quick else extra
        print(f"\n$ {' '.join([os.path.basename(cmd[0])] + [os.path.relpath(cmd[1])] + cmd[2:])}", flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if line.startswith(("RATIO", "OVERHEAD")):
                summary.append(line.rstrip())
        if proc.wait() != 0:
            failed.append(script)
    print(f"\n== summary ({time.perf_counter() - started:.0f} s)")
    for line in summary:
        print(line)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
