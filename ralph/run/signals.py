"""SIGINT/SIGTERM handling: the first stops the run cleanly, the second at once.

The first signal sets a flag; when it arrives inside an interruptible section (a model call
or a tool run) it also raises `Interrupted` there so the in-flight work is abandoned. Outside
such sections the loop sees the flag at its next check, so git and journal writes are never
cut in half. A second SIGINT/SIGTERM exits at once with 130: the journal stays consistent
because every event is one SQLite transaction, and the run stays resumable.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from ..errors import Interrupted
from ..views import logs

# Children an immediate exit leaves alone: git writing the index (gitrun), which would leave
# index.lock behind if killed halfway; it ends by itself in moments.
SPARED: set[int] = set()


def kill_child_groups() -> None:
    """SIGKILL the process groups that this process's children lead (the agent's commands),
    except those in SPARED."""
    # Each agent command runs in a session of its own; unsandboxed, only its shell dies with
    # the runner, so an immediate exit would leave its other processes running in the repo.
    me = os.getpid()
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == me and int(fields[2]) == int(entry) and int(entry) not in SPARED:
                os.killpg(int(entry), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            continue


STOPPING_NOW = "second signal, stopping now (resume with `ralph resume`)"


def _say_stopping_now(signum: int) -> None:
    """Tell stderr the run ends at once: a JSON record in JSON log mode, else a plain line."""

    if logs.json_active():
        name = signal.Signals(signum).name
        rec = logs.record(
            "signal", level="warning", message=STOPPING_NOW, signal=name, exit_code=130
        )
        line = logs.dumps(rec) + "\n"
    else:
        line = f"ralph: {STOPPING_NOW}\n"
    # One write(2) on the real stderr: a buffered stream (or the JSON writer's lock) may be
    # in the middle of a write that this handler interrupted.
    with suppress(OSError):
        os.write(2, line.encode("utf-8", "replace"))


class StopSignal:
    """Process-wide stop state, installed once by the CLI for a run."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._depth = 0
        self._previous: dict[int, object] = {}
        # Set by the CLI: once the run has ended, signals stay ignored until the process exits
        # (a signal during the report or interpreter teardown must not change the exit code).
        self.settle_until_exit = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        if self.settle_until_exit and self._previous:
            self.settle()
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def settle(self) -> None:
        """The run has ended: from now on SIGINT/SIGTERM are noted and otherwise ignored, so
        the report and summary are written and the exit code is the run's."""
        if threading.current_thread() is not threading.main_thread() or not self._previous:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._late)

    def _late(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            _say_stopping_now(signum)
            kill_child_groups()
            os._exit(130)
        self.signum = signum
        if self._depth:
            raise Interrupted(signum)

    def check(self) -> None:
        """Raise Interrupted if a stop was requested (at a safe point)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A section where a signal abandons the work in flight."""
        self.check()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1


STOP = StopSignal()
