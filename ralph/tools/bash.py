"""Anthropic's bash tool: one fresh shell per command, in the repository, bounded in time and output.

Each command is a new `bash -c` started by the sandbox; the working directory carries over
from one command to the next (exported variables and background processes do not: every
process a command started is killed when it ends, even one in a session of its own).
stdin is /dev/null: nobody answers.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..redact import redact
from .base import ToolResult
from .reaper import kill_adopted, start_time, subreaper
from .sandbox import Launch, Sandbox

READ_CHUNK = 65536
# After the shell exits, how long output from leftover background processes is still read.
DRAIN_AFTER_EXIT = 0.25
# Between SIGTERM and SIGKILL when a command is stopped.
KILL_GRACE = 1.0
# Bytes of the output cap kept for the runner's note on a cut (about 200) and the exit code.
NOTE_ROOM = 256
BINARY_SAMPLE = 8192  # bytes looked at to tell binary output from text
# Bytes of the command's report kept (its last line is its final directory: at most PATH_MAX).
REPORT_CAP = 8192


def _looks_binary(sample: bytes) -> bool:
    """NUL bytes, or more than one character in four that is not UTF-8 (Latin-1 text passes)."""
    if b"\0" in sample:
        return True
    text = sample.decode("utf-8", "replace")
    return text.count("\ufffd") * 4 > len(text)


class CappedOutput:
    """Keeps the first and last bytes of a stream in bounded memory, counting the rest."""

    def __init__(self, cap: int) -> None:
        self.head_limit = cap // 2
        self.tail_limit = cap - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            # Trim in batches: bounded at twice the limit, without copying on every chunk.
            if len(self.tail) > 2 * self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    def text(self) -> str:
        """What the model reads: at most the cap in UTF-8 bytes, the note included.

        Bytes that are not UTF-8 are dropped (a U+FFFD would take three bytes of the cap);
        output that is mostly such bytes is not shown at all, only described.
        """
        if _looks_binary(bytes(self.head[:BINARY_SAMPLE])):
            return (
                f"[binary output: {self.total} bytes, not shown; redirect it to a file and "
                "inspect it with file, xxd or od]"
            )
        tail = bytes(self.tail[-self.tail_limit :]) if self.tail_limit else b""
        cut = self.total - len(self.head) - len(tail)
        if cut <= 0:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="ignore")
        # The note on what was cut (and a short exit-code line) fit inside the cap too.
        budget = max(0, self.head_limit + self.tail_limit - NOTE_ROOM)
        head = bytes(self.head[: budget // 2])
        tail = tail[len(tail) - (budget - len(head)) :]
        cut = self.total - len(head) - len(tail)
        marker = (
            f"\n\n[... {cut} bytes cut from the middle: the output was {self.total} bytes; "
            f"showing the first {len(head)} and the last {len(tail)}. Redirect to a file "
            "and search it (grep, head, tail) to see the rest ...]\n\n"
        )
        return head.decode("utf-8", "ignore") + marker + tail.decode("utf-8", "ignore")


@dataclass
class CommandOutcome:
    """What one command did."""

    output: str
    exit_code: int | None  # None when it timed out
    timed_out: bool
    bytes_total: int


def terminate_group(proc: subprocess.Popen[bytes], grace: float | None = None) -> None:
    """SIGTERM the process group of `proc`, SIGKILL it after `grace` seconds (default
    KILL_GRACE, read when called), reap `proc`."""
    if grace is None:
        grace = KILL_GRACE
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class ReportPipe:
    """A pipe the command writes a short report to (its final directory), read bounded.

    Only the last `REPORT_CAP` bytes are kept: the agent can write anything to the descriptor
    (`head -c 3G /dev/zero >&N`), and none of it may grow the runner's memory or a file.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * REPORT_CAP:
            del self.data[:-REPORT_CAP]

    def drain(self) -> None:
        """Read what is buffered now, at most a pipe's worth of reads (never blocks)."""
        for _ in range(64):
            try:
                chunk = os.read(self.read_fd, READ_CHUNK)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.feed(chunk)

    def lines(self) -> list[str]:
        return bytes(self.data[-REPORT_CAP:]).decode("utf-8", "replace").splitlines()

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def run_capped(
    launch: Launch, timeout: float, cap: int, report: ReportPipe | None = None
) -> CommandOutcome:
    """Run `launch` with stdout+stderr merged and capped, killing its group after `timeout`.

    `report`, when given, is passed to the command as its write end and read bounded. If an
    exception (e.g. `Interrupted` from a signal handler) arrives while waiting, the process
    group is terminated before it propagates. Processes that left the group (`setsid -f`)
    are killed at the end too (see reaper).
    """
    with subreaper():
        return _run_and_reap(launch, timeout, cap, report)


def _run_and_reap(
    launch: Launch, timeout: float, cap: int, report: ReportPipe | None
) -> CommandOutcome:
    out = CappedOutput(cap)
    proc = subprocess.Popen(
        launch.argv,
        env=launch.env,
        cwd=launch.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, and no controlling terminal
        pass_fds=(report.write_fd,) if report else (),
    )
    # What the runner adopts from now on (orphans of the command) is killed at its end.
    started = start_time(proc.pid)
    if report:
        # Only the command holds the write end now: the runner reads it, never a file.
        os.close(report.write_fd)
        report.write_fd = -1
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            if report:
                selector.register(report.read_fd, selectors.EVENT_READ)
            eof, exited_at = False, None
            while not eof:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > DRAIN_AFTER_EXIT:
                    break  # background processes hold the pipe; they are killed below
                for key, _ in selector.select(min(deadline - now, 0.1)):
                    try:
                        chunk = os.read(key.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if report and key.fd == report.read_fd:
                        if chunk:
                            report.feed(chunk)
                        else:
                            selector.unregister(key.fd)
                    elif chunk:
                        out.feed(chunk)
                    else:
                        eof = True
            if eof and not timed_out:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
        if timed_out:
            terminate_group(proc)
        else:
            # Leftover background processes do not outlive their command (as under bwrap).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    except BaseException:
        terminate_group(proc)
        raise
    finally:
        kill_adopted(started)
        proc.stdout.close()
        if report:
            report.drain()
    code = None if timed_out else proc.returncode
    if code is not None and code < 0:
        code = 128 - code  # killed by a signal: report it the way a shell would
    return CommandOutcome(out.text(), code, timed_out, out.total)


class BashTool:
    """Anthropic's `bash` tool (`bash_20250124`) over a Sandbox."""

    name = "bash"

    def __init__(self, sandbox: Sandbox, *, timeout: float = 120.0, output_cap: int = 30_000):
        self.sandbox = sandbox
        self.timeout = timeout
        self.output_cap = output_cap
        self.cwd: Path = sandbox.root

    def definition(self) -> dict[str, Any]:
        return {"type": "bash_20250124", "name": "bash"}

    def run(self, tool_input: dict[str, Any]) -> ToolResult:
        command = tool_input.get("command")
        restart = tool_input.get("restart", False)
        if restart is True:
            self.close()
            if not command:
                return ToolResult("The bash tool has been restarted (working directory reset).")
        if not isinstance(command, str) or not command.strip():
            return ToolResult(
                'Error: bash needs {"command": "<shell command>"} (or {"restart": true}).', True
            )
        return self.execute(command)

    def execute(self, command: str) -> ToolResult:
        """Run one shell command in the current working directory; report, never raise."""
        if not self.cwd.is_dir():
            self.cwd = self.sandbox.root
        report = ReportPipe()
        try:
            fd = report.write_fd
            # The EXIT trap reports the final directory even after `exit N` or an error, on
            # a line of its own whatever the command wrote to the descriptor before.
            script = (
                f"trap '{{ echo; pwd -P; }} >&{fd} 2>/dev/null' EXIT\n"
                f"cd -- {shlex.quote(str(self.cwd))} 2>/dev/null || "
                f"cd -- {shlex.quote(str(self.sandbox.root))}\n{command}"
            )
            outcome = run_capped(self.sandbox.launch(script), self.timeout, self.output_cap, report)
            lines = report.lines()
        finally:
            report.close()
        if lines and Path(lines[-1]).is_dir():
            self.cwd = Path(lines[-1])
        return self._result(outcome)

    def _result(self, outcome: CommandOutcome) -> ToolResult:
        # The agent's environment holds no secret, but files it reads might hold the runner's.
        text = redact(outcome.output.rstrip("\n"), shapes=False)
        if outcome.timed_out:
            note = (
                f"[timed out after {self.timeout:g} s: the command and its process group were "
                "killed; make it faster, split it, or give it a `timeout` of its own]"
            )
            return ToolResult(_join(text, note), True, 124)
        code = outcome.exit_code if outcome.exit_code is not None else 1
        if code != 0:
            return ToolResult(_join(text, f"[exit code {code}]"), False, code)
        return ToolResult(text or "(no output)", False, 0)

    def close(self) -> None:
        """Reset: the next command starts in the repository root with a fresh private HOME."""
        self.cwd = self.sandbox.root
        self.sandbox.cleanup()


def _join(text: str, note: str) -> str:
    return f"{text}\n{note}" if text else note
