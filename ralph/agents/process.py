"""Running an agent CLI for one iteration: sandboxed, its JSON lines read as they come,
budgets checked while it works, its process group killed when anything ends it early."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.base import Usage
from ..run.agent import IterationOutcome
from ..run.signals import STOP
from ..tools.bash import terminate_group
from ..tools.sandbox import Launch, Sandbox, agent_env

# How often budgets are looked at while the CLI is silent (it may think for minutes).
POLL_S = 0.5
# After its output ends, how long the CLI has to exit before its group is killed.
EXIT_GRACE_S = 5.0
STDERR_KEPT = 4000  # characters of the CLI's stderr kept for an error message
MAX_LINE = 32 * 1024 * 1024  # bytes of one JSON line at most; a longer one is dropped
# Non-secret settings of the agent CLIs that reach them from the runner's environment.
SETTING_PREFIXES = ("CLAUDE_CODE_", "DISABLE_")
SETTING_NAMES = ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "IS_SANDBOX")


def cli_env(
    home: Path,
    credentials: Sequence[str],
    environ: Mapping[str, str],
    settings: Sequence[str] = SETTING_NAMES,
) -> dict[str, str]:
    """The CLI's environment: the sandbox's allow-list and private HOME, its own credential
    names (only those), and the agents' non-secret settings. Never GITHUB_TOKEN or any other
    secret: the CLI runs what the (untrusted) repository makes it run."""
    env = agent_env(home, (), environ)
    for name, value in environ.items():
        if name in settings or name.startswith(SETTING_PREFIXES) or name in credentials:
            env[name] = value
    # CLAUDE_CODE_OAUTH_TOKEN matches a settings prefix but is a credential: only its agent.
    for name in ("CLAUDE_CODE_OAUTH_TOKEN",):
        if name not in credentials:
            env.pop(name, None)
    return env


def install_dirs(binary: str) -> list[Path]:
    """Where the binary and its package live (read-only in the sandbox when they are in a
    hidden home): the real path's directory and, for an npm package, the package root."""
    real = Path(os.path.realpath(binary))
    dirs = [real.parent]
    for parent in list(real.parents)[:4]:
        if (parent / "package.json").is_file():
            dirs.append(parent)
    return dirs


def sandboxed(
    sandbox: Sandbox, argv: Sequence[str], env: dict[str, str], ro: Sequence[Path]
) -> Launch:
    """The launch of `argv` in the same sandbox as the bash tool, with `ro` shown read-only
    (bound after the sandbox hides homes, so a binary in ~/.local stays reachable)."""
    if sandbox.kind == "none":
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        return Launch([*prefix, *argv], env, sandbox.root)
    binds: list[str] = []
    for path in ro:
        if path.exists() and not path.is_relative_to(sandbox.root):
            binds += ["--ro-bind", str(path), str(path)]
    return Launch([*sandbox.bwrap_args(), *binds, "--", *argv], env, sandbox.root)


@dataclass
class Spawned:
    """One iteration's CLI process: how it ended and what it said on stderr."""

    returncode: int | None
    stderr: str
    stopped: str | None  # the budget reason it was killed for, if it was


def run_lines(
    launch: Launch,
    stdin: bytes | None,
    on_line: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], str | None],
) -> Spawned:
    """Run `launch`, feed each JSON line of its stdout to `on_line`, and call `should_stop`
    after each chunk and every POLL_S; a reason kills the process group at once.

    A signal (Interrupted) or any exception also kills the group before it propagates:
    nothing of the CLI outlives the iteration.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            launch.argv,
            env=launch.env,
            cwd=launch.cwd,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,  # its own process group: killed whole
        )
        stopped: str | None = None
        try:
            with STOP.interruptible():
                if stdin is not None and proc.stdin is not None:
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.write(stdin)
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
                stopped = _pump(proc, on_line, should_stop)
                if stopped is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=EXIT_GRACE_S)
        finally:
            if proc.poll() is None:
                terminate_group(proc, grace=0.5 if stopped else 1.0)
            else:
                # The CLI exited; anything it left in its group (a background command) goes.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, 9)
        # Only the tail: the agent's commands can write to the CLI's stderr (/proc/PID/fd/2).
        size = err.seek(0, os.SEEK_END)
        err.seek(max(0, size - 4 * STDERR_KEPT))
        text = err.read().decode("utf-8", "replace")[-STDERR_KEPT:]
    return Spawned(proc.returncode, text, stopped)


def _pump(
    proc: subprocess.Popen[bytes],
    on_line: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], str | None],
) -> str | None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines = LineReader(on_line)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if selector.select(timeout=POLL_S):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                lines.feed(chunk)
            reason = should_stop()
            if reason:
                return reason
    lines.end()
    return None


class LineReader:
    """Splits a stream into JSON lines for `on_line`, in memory bounded by MAX_LINE: a longer
    line is not an event of the CLI's (its commands can write to its stdout too) and is
    dropped whole."""

    def __init__(self, on_line: Callable[[dict[str, Any]], None]) -> None:
        self.on_line = on_line
        self.buffer = bytearray()
        self.dropping = False

    def feed(self, chunk: bytes) -> None:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if not self.dropping:
                self.buffer += chunk[start:end]
                self._emit()
            self.buffer.clear()
            self.dropping = False
            start = end + 1
        if not self.dropping:
            self.buffer += chunk[start:]
            if len(self.buffer) > MAX_LINE:
                self.buffer.clear()
                self.dropping = True

    def end(self) -> None:
        if not self.dropping:
            self._emit()

    def _emit(self) -> None:
        event = _json(bytes(self.buffer))
        if event is not None:
            self.on_line(event)


def _json(line: bytes) -> dict[str, Any] | None:
    """A JSON object line, or None (blank lines, log lines a CLI prints among them)."""
    line = line.strip()
    if not line.startswith(b"{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def add_cost(total: float | None, cost: float | None) -> float | None:
    return None if total is None or cost is None else total + cost


def new_outcome() -> IterationOutcome:
    """An iteration's outcome before the CLI says how it ended (killed: no final message)."""
    return IterationOutcome("failed", usage=Usage())


def text_of(content: Any) -> str:
    """A tool result's content as text (a string, or a list of text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text") or ""))
            elif isinstance(block, dict):
                parts.append(f"[{block.get('type')}]")
        return "\n".join(parts)
    return "" if content is None else json.dumps(content)
