"""The runner's costs beside the model's, measured against targets (issue 9).

    .venv/bin/python benchmarks/run.py            # the full table; exit 1 if a target is missed
    .venv/bin/python benchmarks/run.py --quick    # a small smoke run (CI): always exit 0
    .venv/bin/python benchmarks/run.py --json     # the rows as JSON
    .venv/bin/python benchmarks/run.py --only 1,4 # some figures

Everything is local: real git repositories in a scratch directory, the scripted model, the
real `anthropic` SDK against tests/fakeapi.py on 127.0.0.1, real bubblewrap when it works.
Timings are medians of several samples. Exit codes: 0 all targets met (or --quick), 1 a
target missed, 2 a figure could not be measured (it crashed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench_* modules

from bench_api import api_figures
from bench_loop import iteration_overhead, memory, output_flood
from bench_start import start_and_exit
from bench_stop import stop_on_signal
from bench_tools import startup, tool_calls
from common import Row, Settings, scratch

FIGURES: dict[int, tuple[str, Callable[[Settings], list[Row]]]] = {
    1: ("overhead per iteration", iteration_overhead),
    2: ("overhead per tool call", tool_calls),
    3: ("start-up", startup),
    4: ("request size", lambda s: []),  # measured together with 5
    5: ("cache efficiency", api_figures),
    6: ("memory", memory),
    7: ("tool output cap", output_flood),
    8: ("stop on a signal", stop_on_signal),
    9: ("start and exit", start_and_exit),
}


def measure(s: Settings, only: set[int]) -> list[Row]:
    """Run the chosen figures; a figure that crashes becomes an ERROR row, the rest go on."""
    rows: list[Row] = []
    wanted = set(only)
    if 4 in wanted:
        wanted.add(5)  # one run of the API measures both
    for number, (name, fn) in FIGURES.items():
        if number not in wanted:
            continue
        started = time.perf_counter()
        try:
            got = fn(s)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            sys.stderr.write(f"figure {number} ({name}) failed:\n{traceback.format_exc()}\n")
            got = [Row(number, name, None, "", "-", "ERROR", detail)]
            if number == 5:
                got.insert(0, Row(4, FIGURES[4][0], None, "", "-", "ERROR", detail))
        rows += [r for r in got if r.figure in only]
        sys.stderr.write(f"  figure {number} ({name}): {time.perf_counter() - started:.1f} s\n")
    return sorted(rows, key=lambda r: r.figure)


def machine() -> str:
    """One line about where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {git}"
    )


def render(rows: list[Row], quick: bool) -> str:
    """The table as plain text, with the details under it."""
    head = ("#", "figure", "measured", "target", "result")
    cells = [(str(r.figure), r.name, r.shown(), r.target, r.status) for r in rows]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]

    def line(c: tuple[str, ...]) -> str:
        return "  ".join(
            c[i].rjust(widths[i]) if i == 2 else c[i].ljust(widths[i]) for i in range(len(c))
        ).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    out.append("")
    out += [f"[{r.figure}] {r.name}: {r.detail}" for r in rows if r.detail]
    if quick:
        out.append("(--quick: small inputs and few samples, a smoke run; judge only a full run)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, fast smoke run; exit 0")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--only", default="", help="comma-separated figure numbers (1-9)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    try:
        only = {int(n) for n in args.only.split(",") if n.strip()} or set(FIGURES)
    except ValueError:
        parser.error(f"--only {args.only}: give figure numbers, e.g. --only 1,4")
    if not only <= set(FIGURES):
        parser.error(f"--only {args.only}: the figures are 1 to 9")
    work = scratch("ralph-bench-")
    settings = Settings.make(args.quick, work)
    started = time.perf_counter()
    try:
        rows = measure(settings, only)
    finally:
        if args.keep:
            sys.stderr.write(f"scratch kept in {work}\n")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    if args.json:
        data = {
            "quick": args.quick,
            "machine": machine(),
            "seconds": round(elapsed, 1),
            "rows": [r.__dict__ for r in rows],
        }
        print(json.dumps(data, indent=2, default=str))
    else:
        print(f"ralph-loop benchmarks ({'quick' if args.quick else 'full'}): {machine()}\n")
        print(render(rows, args.quick))
        print(f"\n{elapsed:.0f} s")
    if any(r.status == "ERROR" for r in rows):
        return 2
    if not args.quick and any(r.status == "FAIL" for r in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
