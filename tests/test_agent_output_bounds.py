"""An agent CLI's output reaches the runner bounded: its commands can write to the CLI's
stdout and stderr (/proc/PID/fd/1 and 2), and none of it may grow the runner's memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

from ralph.agents.process import run_lines
from ralph.tools.sandbox import Launch

FLOOD = (
    "head -c 200000000 /dev/zero >&2; "  # 200 MB on stderr
    "head -c 200000000 /dev/zero | tr '\\0' x; echo; "  # one 200 MB line on stdout
    'echo \'{"type": "result", "n": 1}\'; echo "last words" >&2'
)


def test_a_flood_on_the_clis_stdout_and_stderr_keeps_the_runners_memory_bounded(
    tmp_path: Path,
) -> None:
    events: list[dict[str, Any]] = []
    launch = Launch(["sh", "-c", FLOOD], {"PATH": "/usr/bin:/bin"}, tmp_path)
    tracemalloc.start()
    try:
        spawned = run_lines(launch, None, events.append, lambda: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert spawned.returncode == 0
    assert events == [{"type": "result", "n": 1}]  # the CLI's own line still counts
    assert spawned.stderr.endswith("last words\n")
    assert peak < 150_000_000, f"peak Python memory {peak} bytes"
