"""Figures 1, 6 and 7: the cost of an iteration beside bare git, memory over many iterations,
and a flood of tool output; all through the real runner (`ralph.run.runner.execute`)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import (
    Row,
    Settings,
    git,
    make_repo,
    median,
    ms,
    silenced,
    verdict,
    write_yaml,
)

WORKER = Path(__file__).resolve().parent / "worker.py"


class GitTimer:
    """Time spent in the workspace's git processes (wraps `_git` in `ralph.git.workspace` and
    in the modules it calls: `repo` for status and branches, `commits` for the identity)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[GitTimer]:
        import ralph.git.commits as commits
        import ralph.git.repo as repo
        import ralph.git.workspace as workspace

        real = workspace._git
        assert repo._git is real and commits._git is real

        def timed_git(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        workspace._git = repo._git = commits._git = timed_git
        try:
            yield self
        finally:
            workspace._git = repo._git = commits._git = real


class Clock:
    """An observer stamping each event with the time it reached the observers."""

    def __init__(self, git: GitTimer | None = None) -> None:
        self.git = git
        self.marks: list[tuple[float, str, int | None, dict[str, Any]]] = []
        self.git_at: dict[int, tuple[float, int]] = {}  # iteration -> git time, calls at start

    def handle(self, event: Any) -> None:
        self.marks.append((time.perf_counter(), event.name, event.iteration, event.data))
        if self.git and event.name == "iteration_started" and event.iteration is not None:
            self.git_at[event.iteration] = (self.git.seconds, self.git.calls)

    def close(self) -> None:
        pass

    def git_per_iteration(self) -> list[tuple[float, int]]:
        """Seconds and processes of git from one iteration's start to the next."""
        n = sorted(self.git_at)
        return [
            (self.git_at[i + 1][0] - self.git_at[i][0], self.git_at[i + 1][1] - self.git_at[i][1])
            for i in n
            if i + 1 in self.git_at
        ]

    def iteration_overheads(self) -> list[float]:
        """Seconds from one iteration's start to the next, minus the model's time in it."""
        starts: dict[int, float] = {}
        in_model: dict[int, float] = {}
        for at, name, iteration, data in self.marks:
            if iteration is None:
                continue
            if name == "iteration_started":
                starts[iteration] = at
            elif name == "model_call":
                in_model[iteration] = in_model.get(iteration, 0.0) + float(data["latency_s"])
        numbers = sorted(starts)
        return [
            starts[n + 1] - starts[n] - in_model.get(n, 0.0) for n in numbers if n + 1 in starts
        ]


def edit_script(path: Path) -> Path:
    """A session whose every iteration edits one file with the editor tool, then ends."""
    edit = {
        "str_replace_based_edit_tool": {
            "command": "insert",
            "path": "pkg000/mod00000.py",
            "insert_line": 0,
            "insert_text": "# edited by the benchmark\n",
        }
    }
    turns = [{"text": "Editing one file.", "tools": [edit]}, "Edited one file."]
    return write_yaml(path, {"iterations": [{"turns": turns}]})


def run_config(repo: Path, script: Path, iterations: int, **overrides: Any) -> Any:
    """A RunConfig for the scripted model on `repo`, with guards that never stop the run."""
    from ralph.config import RunConfig

    values: dict[str, Any] = {
        "prompt": "Benchmark the runner.",
        "completion_promise": "DONE",
        "repo": repo,
        "model": f"script:{script}",
        "max_iterations": iterations,
        "sandbox": "none",
        "stall_limit": 0,
        "max_failures": 1_000_000,
        "quiet": True,
    }
    values.update(overrides)
    return RunConfig(**values)


def floor_samples(repo: Path, samples: int) -> list[float]:
    """Seconds of `git add -A && git commit` by hand after editing one file."""
    target = repo / "pkg000" / "mod00001.py"
    out = []
    for k in range(samples + 1):  # the first one warms the page cache, untimed
        with target.open("a") as handle:
            handle.write(f"# floor {k}\n")
        started = time.perf_counter()
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-q", "-m", f"floor {k}"], cwd=repo, check=True)
        if k:
            out.append(time.perf_counter() - started)
    return out


def iteration_overhead(s: Settings) -> list[Row]:
    """Figure 1: an iteration's wall time minus the model's, beside the bare git commit."""
    from ralph.run.runner import execute

    rows = []
    for files in s.repo_sizes:
        repo = make_repo(s.work / f"repo-{files}", files, settle=True)
        script = edit_script(s.work / f"edit-{files}.yaml")
        samples: list[float] = []
        in_git: list[tuple[float, int]] = []
        for _ in range(s.runs):
            timer = GitTimer()
            clock = Clock(timer)
            with silenced(), timer.installed():
                result = execute(run_config(repo, script, s.iterations), [clock])
            if result.status != "max_iterations":
                raise RuntimeError(f"benchmark run ended {result.status}: {result.reason}")
            git(repo, "checkout", "-q", "main")  # the next run branches from here again
            samples += clock.iteration_overheads()
            in_git += clock.git_per_iteration()
        floor = median(floor_samples(repo, s.floor_samples))
        git_s, git_calls = median([g for g, _ in in_git]), median([c for _, c in in_git])
        value, limit = median(samples), 1.25 * floor + 0.010
        rows.append(
            Row(
                1,
                f"iteration overhead, {files:,} files",
                ms(value),
                "ms",
                f"< {ms(limit):.1f} ms (1.25 x floor + 10)",
                verdict(value <= limit),
                f"floor (git add -A && git commit) {ms(floor):.1f} ms; of the iteration, "
                f"{ms(git_s):.1f} ms in {git_calls:.0f} git processes; {len(samples)} "
                "iterations, each editing one file and committing it",
                {
                    "floor_ms": ms(floor),
                    "limit_ms": ms(limit),
                    "files": files,
                    "git_ms": ms(git_s),
                    "git_processes": git_calls,
                    "samples_ms": [round(ms(x), 2) for x in samples],
                },
            )
        )
    return rows


def _worker(*args: str) -> dict[str, Any]:
    """Run a benchmark worker in a fresh interpreter; its JSON answer."""
    proc = subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed: {proc.stderr.strip()[-2000:]}")
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def memory(s: Settings) -> list[Row]:
    """Figure 6: peak RSS of a whole run after a few and after many iterations."""
    short, long = s.memory_iterations
    peaks: dict[int, list[float]] = {short: [], long: []}
    in_loop: dict[int, list[float]] = {short: [], long: []}
    for n in (short, long):
        for r in range(1 if s.quick else 2):
            answer = _worker("memory", str(n), str(s.work / f"memory-{n}-{r}"))
            peaks[n].append(answer["peak_rss_kb"] / 1024)
            in_loop[n].append(answer["loop_peak_kb"] / 1024)
    low, high = median(peaks[short]), median(peaks[long])
    loop_low, loop_high = median(in_loop[short]), median(in_loop[long])
    ratio = high / low
    return [
        Row(
            6,
            f"peak RSS, {long} vs {short} iterations",
            ratio,
            "ratio",
            "<= 1.20",
            verdict(ratio <= 1.2),
            f"{high:.1f} MB after {long}, {low:.1f} MB after {short} (whole process, "
            f"scripted model, a bash call, an edit and a commit per iteration); at the end of "
            f"the loop, before the end-of-run report: {loop_high:.1f} vs {loop_low:.1f} MB",
            {
                "peak_short_mb": low,
                "peak_long_mb": high,
                "short": short,
                "long": long,
                "loop_peak_short_mb": loop_low,
                "loop_peak_long_mb": loop_high,
            },
        )
    ]


def output_flood(s: Settings) -> list[Row]:
    """Figure 7: a command printing a flood finishes, memory stays flat, the model sees the cap."""
    a = _worker("flood", str(s.flood_bytes), str(s.work / "flood"))
    delta_mb = (a["peak_after_kb"] - a["peak_before_kb"]) / 1024
    shown, cap = a["tool_result_bytes"], a["cap"]
    flood_mb = s.flood_bytes / 1_000_000
    return [
        Row(
            7,
            f"{flood_mb:.0f} MB of output: tool_result size",
            shown,
            "B",
            f"<= {cap:,} B (the cap)",
            verdict(shown <= cap and a["finished"]),
            f"the command finished; the iteration took {a['seconds']:.2f} s; "
            f"{a['note_bytes']} B of the tool_result are the runner's note on what was cut",
            a,
        ),
        Row(
            7,
            f"{a['binary_bytes'] / 1_000_000:.0f} MB of binary output: tool_result size",
            a["binary_tool_result_bytes"],
            "B",
            f"<= {cap:,} B (the cap)",
            verdict(a["binary_tool_result_bytes"] <= cap),
            "random bytes, as `cat` of a binary file prints: described in one line "
            "(size, how to inspect it), not shown",
        ),
        Row(
            7,
            f"{flood_mb:.0f} MB of output: peak RSS growth",
            delta_mb,
            "MB",
            "< 10 MB",
            verdict(delta_mb < 10),
            f"peak {a['peak_before_kb'] / 1024:.1f} -> {a['peak_after_kb'] / 1024:.1f} MB "
            "(whole runner process)",
        ),
    ]
