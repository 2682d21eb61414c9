"""Shared pieces of the benchmarks: result rows, settings, repositories, timing and memory."""

from __future__ import annotations

import contextlib
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository: ralph/ and tests/fakeapi.py
BIN = Path(sys.executable).parent  # the venv's console scripts (ralph, ralph-loop)
GIT_IDENTITY = ("-c", "user.name=Bench", "-c", "user.email=bench@example.invalid")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tests.fakeapi` and, without an install, `ralph`


@dataclass
class Settings:
    """How much work each figure does: `--quick` is the CI smoke, the default the real table."""

    quick: bool
    work: Path  # scratch directory for repositories and scripts
    runs: int  # repeated runs whose samples are pooled for a median
    iterations: int  # iterations per run for the per-iteration overhead
    repo_sizes: tuple[int, ...]  # files in the repositories of figure 1
    floor_samples: int
    tool_calls: int  # samples per tool-call figure
    startup_runs: int
    memory_iterations: tuple[int, int]  # the short and the long run of figure 6
    flood_bytes: int  # output of the command in figure 7

    @classmethod
    def make(cls, quick: bool, work: Path) -> Settings:
        if quick:
            return cls(True, work, 1, 4, (200, 2_000), 5, 10, 2, (5, 20), 20_000_000)
        return cls(False, work, 3, 8, (1_000, 20_000), 15, 40, 7, (10, 300), 100_000_000)


@dataclass
class Row:
    """One line of the table: a measured figure beside its target."""

    figure: int
    name: str
    value: float | None  # the figure, in `unit`
    unit: str
    target: str  # human-readable target, e.g. "< 15 ms"
    status: str  # PASS | FAIL | INFO | SKIP | ERROR
    detail: str = ""  # context: the floor, the sample count, what was imported...
    extra: dict[str, Any] = field(default_factory=dict)  # numbers for --json

    def shown(self) -> str:
        """The figure as the table shows it."""
        if self.value is None:
            return "-"
        if self.unit == "ratio":
            return f"{self.value:.2f}"
        if self.unit in ("B", "KB", "MB") or abs(self.value) >= 100:
            return f"{self.value:,.0f} {self.unit}".strip()
        return f"{self.value:.1f} {self.unit}".strip()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def ms(seconds: float) -> float:
    return seconds * 1000.0


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`, failing loudly; its stdout."""
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, files: int, settle: bool = False) -> Path:
    """A git repository of `files` small Python files, 100 per directory, one commit.

    `settle`: wait until the files are older than git's index, as in a real repository, so
    that timed git commands do not re-hash "racily clean" files written in the same second.
    """
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Bench")
    git(path, "config", "user.email", "bench@example.invalid")
    (path / "README.md").write_text("# benchmark repository\n")
    for i in range(files - 1):
        folder = path / f"pkg{i // 100:03d}"
        if i % 100 == 0:
            folder.mkdir()
        (folder / f"mod{i:05d}.py").write_text(f'"""Module {i}."""\n\nVALUE = {i}\n')
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    if settle:
        time.sleep(1.1)
        git(path, "status", "--porcelain")  # rewrites the index, now newer than every file
    return path


def write_yaml(path: Path, data: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Swallow what a run prints (its live lines and end-of-run table)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration, then put the old values back."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def peak_rss_kb() -> int:
    """This process's peak resident set size (VmHWM), in KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def timed(fn: Callable[[], object], samples: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `samples` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out
