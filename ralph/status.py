"""A run's status and an iteration's outcome: every view (exit code, summary, report, `ralph
show`, journal, PR title, telemetry) reads these, so each fact about a status lives here once.

Both are `StrEnum`s: a status is stored and emitted as its plain string ("max_iterations"),
and `RunStatus("max_iterations")` reads it back.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import ExitCode, Interrupted, RalphError


class RunStatus(StrEnum):
    """How a run stands or ended."""

    RUNNING = "running"
    COMPLETED = "completed"  # the promise was found and the gate accepted it
    MAX_ITERATIONS = "max_iterations"
    BUDGET = "budget"  # cost, tokens or time ran out
    STALLED = "stalled"  # the stall guard
    FAILED = "failed"  # repeated failed iterations
    STOPPED = "stopped"  # `ralph stop`: after an iteration, at the operator's request
    INTERRUPTED = "interrupted"  # SIGINT / SIGTERM
    ERROR = "error"
    CRASHED = "crashed"  # the journal says running, but no process holds the run

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT[self]

    @property
    def label(self) -> str:
        """A few words for titles and summaries."""
        return _LABEL[self]

    @property
    def finished(self) -> bool:
        """Ended for good: `ralph resume` refuses it (a new run, or `--more`, goes on)."""
        return self in _FINISHED

    @property
    def resumable(self) -> bool:
        """`ralph resume` continues it where it stopped."""
        return self not in _FINISHED

    @property
    def failure(self) -> bool:
        """Ended by something going wrong (telemetry marks its span as an error)."""
        return self in (RunStatus.ERROR, RunStatus.FAILED, RunStatus.CRASHED)


_EXIT = {
    RunStatus.RUNNING: ExitCode.ERROR,
    RunStatus.COMPLETED: ExitCode.COMPLETED,
    RunStatus.MAX_ITERATIONS: ExitCode.MAX_ITERATIONS,
    RunStatus.BUDGET: ExitCode.BUDGET,
    RunStatus.STALLED: ExitCode.GUARD,
    RunStatus.FAILED: ExitCode.GUARD,
    RunStatus.STOPPED: ExitCode.INTERRUPTED,
    RunStatus.INTERRUPTED: ExitCode.INTERRUPTED,
    RunStatus.ERROR: ExitCode.ERROR,
    RunStatus.CRASHED: ExitCode.ERROR,
}
_LABEL = {
    RunStatus.RUNNING: "running",
    RunStatus.COMPLETED: "completed",
    RunStatus.MAX_ITERATIONS: "stopped at max iterations",
    RunStatus.BUDGET: "budget ran out",
    RunStatus.STALLED: "stalled",
    RunStatus.FAILED: "stopped after repeated failures",
    RunStatus.STOPPED: "stopped by the operator",
    RunStatus.INTERRUPTED: "interrupted",
    RunStatus.ERROR: "stopped by an error",
    RunStatus.CRASHED: "crashed",
}
_FINISHED = frozenset(
    {RunStatus.COMPLETED, RunStatus.MAX_ITERATIONS, RunStatus.BUDGET, RunStatus.STALLED}
)
FINISHED = tuple(s.value for s in RunStatus if s.finished)
RESUMABLE = frozenset(s.value for s in RunStatus if s.resumable)


class Outcome(StrEnum):
    """How one iteration ended."""

    ENDED = "ended"  # the model ended its turn
    MAX_TURNS = "max_turns"
    REFUSED = "refused"
    CONTEXT_EXCEEDED = "context_exceeded"
    FAILED = "failed"  # a model call failed
    STOPPED = "stopped"  # a budget ran out mid-iteration
    INTERRUPTED = "interrupted"
    RUNNING = "running"  # the journal has no end for it yet

    @property
    def failure(self) -> bool:
        """Counts towards the repeated-failures guard."""
        return self in (Outcome.FAILED, Outcome.REFUSED)


def status_of(exc: BaseException) -> tuple[RunStatus, ExitCode, str]:
    """The status, exit code and reason of a run that `exc` cut short (still resumable)."""
    if isinstance(exc, Interrupted | KeyboardInterrupt):
        return RunStatus.INTERRUPTED, ExitCode.INTERRUPTED, "interrupted by a signal"
    if isinstance(exc, RalphError):
        return RunStatus.ERROR, exc.exit_code, exc.message
    return RunStatus.ERROR, ExitCode.ERROR, f"{type(exc).__name__}: {exc}"
