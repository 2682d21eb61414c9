"""Benchmark workers that need a process of their own (peak RSS is per process).

    python benchmarks/worker.py memory ITERATIONS DIR   # a whole scripted run; its peak RSS
    python benchmarks/worker.py flood BYTES DIR         # one command printing BYTES

Each prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from bench_loop import run_config
from common import make_repo, peak_rss_kb, silenced, write_yaml

BINARY_BYTES = 1_000_000  # random bytes: text only in part, as `cat` of a binary file gives


def memory(iterations: int, work: Path) -> dict[str, Any]:
    """Run `iterations` iterations (a bash call with output, an edit, a commit each)."""
    from ralph.run.runner import execute

    repo = make_repo(work / "repo", 50)
    turn = {
        "text": "Looking, then editing.",
        "tools": [
            {"bash": {"command": "seq 1 2000; git log --oneline -3"}},
            {"str_replace_based_edit_tool": {"command": "view", "path": "pkg000/mod00001.py"}},
            {
                "str_replace_based_edit_tool": {
                    "command": "insert",
                    "path": "pkg000/mod00000.py",
                    "insert_line": 0,
                    "insert_text": "# another line\n",
                }
            },
        ],
    }
    script = write_yaml(work / "memory.yaml", {"iterations": [{"turns": [turn, "Done."]}]})
    in_loop = LoopPeak()
    with silenced():
        result = execute(run_config(repo, script, iterations), [in_loop])
    if result.iterations != iterations:
        raise RuntimeError(f"the run ended early: {result.status} {result.reason}")
    return {"iterations": iterations, "peak_rss_kb": peak_rss_kb(), "loop_peak_kb": in_loop.peak}


class LoopPeak:
    """An observer noting the peak RSS when the last iteration ends (before the report)."""

    def __init__(self) -> None:
        self.peak = 0

    def handle(self, event: Any) -> None:
        if event.name == "run_ended":
            self.peak = peak_rss_kb()

    def close(self) -> None:
        pass


class Recording:
    """A Model that delegates to another and records the tool_result sizes it is sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.tool_results: list[str] = []

    def complete(self, request: Any, on_event: Any = None) -> Any:
        for message in request.messages[-1:]:
            for block in message.get("content") or []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    self.tool_results.append(str(block.get("content")))
        return self.inner.complete(request, on_event)


def flood(size: int, work: Path) -> dict[str, Any]:
    """One iteration whose command prints `size` bytes; what the model was sent, and memory."""
    from ralph.models.script import ScriptModel
    from ralph.run import runner

    repo = make_repo(work / "repo", 10)
    command = f"yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {size}"
    binary = f"head -c {BINARY_BYTES} /dev/urandom"
    flood_turn = {
        "text": "Printing a lot.",
        "tools": [{"bash": {"command": command}}, {"bash": {"command": binary}}],
    }
    warm_turn = {"text": "Printing a little.", "tools": [{"bash": {"command": "seq 1 10"}}]}
    warm = write_yaml(work / "warm.yaml", {"iterations": [{"turns": [warm_turn, "Done."]}]})
    loud = write_yaml(work / "flood.yaml", {"iterations": [{"turns": [flood_turn, "Done."]}]})

    made: list[Recording] = []

    def make_model(cfg: Any) -> Recording:
        made.append(Recording(ScriptModel(Path(cfg.model.removeprefix("script:")))))
        return made[-1]

    import ralph.models

    original = ralph.models.make_model
    ralph.models.make_model = make_model  # the runner looks it up at each run
    try:
        with silenced():  # a first run loads every module and warms the allocator
            runner.execute(run_config(repo, warm, 1))
        git_checkout_main(repo)
        before = peak_rss_kb()
        started = time.perf_counter()
        with silenced():
            result = runner.execute(run_config(repo, loud, 1))
        seconds = time.perf_counter() - started
        after = peak_rss_kb()
    finally:
        ralph.models.make_model = original
    shown, binary_shown = made[-1].tool_results[-2:]
    start = shown.find("\n\n[... ")
    end = shown.find(" ...]\n\n", start) + len(" ...]\n\n") if start >= 0 else 0
    note = len(shown[start:end].encode("utf-8")) if start >= 0 else 0
    cfg = run_config(repo, loud, 1)
    return {
        "finished": result.iterations == 1 and "[timed out" not in shown,
        "seconds": seconds,
        "run_status": result.status,
        "bytes": size,
        "cap": cfg.output_cap,
        "tool_result_bytes": len(shown.encode("utf-8")),
        "binary_bytes": BINARY_BYTES,
        "binary_tool_result_bytes": len(binary_shown.encode("utf-8")),
        "note_bytes": note,
        "peak_before_kb": before,
        "peak_after_kb": after,
    }


def git_checkout_main(repo: Path) -> None:
    import subprocess

    subprocess.run(["git", "checkout", "-q", "main"], cwd=repo, check=True)


def main(argv: list[str]) -> None:
    kind, amount, work = argv[0], int(argv[1]), Path(argv[2])
    work.mkdir(parents=True, exist_ok=True)
    answer = memory(amount, work) if kind == "memory" else flood(amount, work)
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
