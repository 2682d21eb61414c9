"""The outer Ralph loop: fresh iterations until an accepted promise, a limit or a guard."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..agents.base import IterationAgent
from ..config import RunConfig
from ..errors import ExitCode, Interrupted
from ..events import Bus
from ..models.base import ModelError, Usage
from ..redact import redact
from ..status import RunStatus, status_of
from . import promise
from .agent import IterationCut, IterationOutcome
from .committing import Commits, Workspace
from .gate import Gate, rejection_feedback
from .guards import Guards, IterationRecord, Stop
from .messages import iteration_message, summary_line, system_prompt
from .signals import STOP
from .tasklist import TaskQueue
from .tasklist import system_prompt as tasks_system_prompt


class Control(Protocol):
    """What operators ask of a run from elsewhere (ralph steer / ralph stop; control.py)."""

    def guidance(self, iteration: int) -> list[tuple[int, str, bool]]: ...

    def stop_requested(self) -> bool: ...


@dataclass
class RunResult:
    status: str
    reason: str
    iterations: int
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    duration_s: float = 0.0
    run_id: str = ""
    pr_failed: bool = False  # --pr could not push or open the pull request

    @property
    def exit_code(self) -> ExitCode:
        if self.pr_failed and self.status == RunStatus.COMPLETED:
            return ExitCode.ERROR  # otherwise the run's own non-zero code says more
        return RunStatus(self.status).exit_code


@dataclass
class Loop:
    """Drives a run: run_started, what a killed iteration left, the iterations until
    something ends the run, run_ended; lifecycle.open_run builds and tears down the pieces."""

    cfg: RunConfig
    run_id: str
    agent: IterationAgent  # the built-in Agent, or an agent CLI (ralph.agents)
    bus: Bus
    workspace: Workspace
    gate: Gate
    guards: Guards
    control: Control | None = None
    started: float = field(default_factory=time.monotonic)
    # The last promise the gate refused: (iteration, reasons), for the run's closing reason.
    refused: tuple[int, list[str]] | None = None
    tasks: TaskQueue | None = None  # a task-list run (--tasks): one task per iteration
    commits: Commits = field(init=False)  # each iteration's commit (committing.py)

    def __post_init__(self) -> None:
        self.commits = Commits(self.cfg, self.run_id, self.workspace, self.bus, self.gate)

    def _result(self, status: str, reason: str, i: int) -> RunResult:
        return RunResult(
            status,
            reason,
            i,
            self.guards.usage,
            self.guards.cost_usd,
            time.monotonic() - self.started,
            self.run_id,
        )

    def _stop_check(self, usage: Usage, cost: float | None) -> str | None:
        STOP.check()
        stop = self.guards.budget_stop(usage, cost)
        if stop:
            self.bus.emit("guard_tripped", level="warning", guard=stop.guard, message=stop.reason)
            return stop.reason
        return None

    def whole(
        self,
        started: dict[str, Any],
        sandbox: str,
        warnings: Sequence[str] = (),
        start: int = 1,
        feedback: str | None = None,
        leftover: bool = False,
        resume_cmd: str | None = None,
    ) -> RunResult:
        """The whole run, from run_started to run_ended. `started`: run_started's fields;
        `leftover`: a resumed run first commits what its killed iteration left in the tree.
        run_ended is emitted however the run ends: an exception records it as error (or
        interrupted, for a signal), still resumable with `resume_cmd`."""
        ended = False
        try:
            self.bus.emit("run_started", **started)
            self.bus.emit("sandbox", kind=sandbox, network=self.cfg.network)
            for warning in warnings:
                self.bus.emit("warning", level="warning", message=warning)
            if leftover:
                self.commits.left_over(start)
            result = self.run(start, feedback)
            self.bus.iteration = None
            ended = True  # an observer failing on run_ended must not have it emitted twice
            self.bus.emit(
                "run_ended",
                status=result.status,
                exit_code=int(result.exit_code),
                reason=result.reason,
                iterations=result.iterations,
                usage=result.usage.as_dict(),
                cost_usd=result.cost_usd,
                duration_s=round(result.duration_s, 3),
                resume=resume_cmd if RunStatus(result.status).resumable else None,
            )
            return result
        except BaseException as exc:
            if not ended:
                self._end_cut_short(exc, resume_cmd)
            raise

    def _end_cut_short(self, exc: BaseException, resume_cmd: str | None) -> None:
        """Emit run_ended for a run an exception cut short, so the journal does not keep it
        running: status error (or interrupted, for a signal), still resumable."""
        status, code, reason = status_of(exc)
        iterations = self.bus.iteration or 0
        self.bus.iteration = None
        # The journal may be what failed: then the first error is the one to report.
        with contextlib.suppress(Exception):
            self.bus.emit(
                "run_ended",
                status=status.value,
                exit_code=int(code),
                reason=redact(reason),
                iterations=iterations,
                usage=self.guards.usage.as_dict(),
                cost_usd=self.guards.cost_usd,
                duration_s=round(time.monotonic() - self.started, 3),
                resume=resume_cmd,
            )

    def run(self, start: int = 1, feedback: str | None = None) -> RunResult:
        """Iterate from `start` (later than 1 when resuming) until something ends the run."""
        cfg = self.cfg
        system = system_prompt(self.workspace.root, cfg.completion_promise)
        if self.tasks is not None:
            system = tasks_system_prompt(self.workspace.root)
        i = start
        while cfg.max_iterations == 0 or i <= cfg.max_iterations:
            stop = self.guards.budget_stop()
            if stop:
                self.bus.emit(
                    "guard_tripped", level="warning", guard=stop.guard, message=stop.reason
                )
                return self._result(stop.status, stop.reason, i - 1)
            if self.control is not None and self.control.stop_requested():
                reason = "stopped by `ralph stop` after the last iteration"
                self.bus.emit("stop_requested", level="warning", message=reason)
                return self._result(RunStatus.STOPPED, reason, i - 1)
            prompt = cfg.prompt
            if self.tasks is not None:
                # Begun first: statuses start() puts back are then this iteration's to commit.
                self.workspace.begin_iteration()
                task = self.tasks.start()
                if task is None:
                    return self._result(RunStatus.COMPLETED, self.tasks.summary(), i - 1)
                prompt = f"{prompt.rstrip()}\n\n{self.tasks.message()}"
            self.bus.iteration = i
            self.bus.emit("iteration_started", max_iterations=cfg.max_iterations)
            if self.tasks is not None and self.tasks.current is not None:
                current = self.tasks.current
                self.bus.emit("task_started", id=current.id, title=current.title)
            guidance = self._guidance(i)
            began = time.monotonic()
            try:
                STOP.check()
                if self.tasks is None:
                    self.workspace.begin_iteration()
                outcome = self.agent.iterate(
                    system,
                    iteration_message(prompt, i, cfg.max_iterations, feedback, guidance),
                    i,
                    self._stop_check,
                )
            except IterationCut as cut:  # the calls made before it were billed: recorded
                cause = cut.__cause__
                if isinstance(cause, ModelError):  # fatal: authentication
                    failed = cut.outcome
                    failed.outcome, failed.error = "failed", cause.message
                    self._end_iteration(i, began, failed, None)
                    return self._result(RunStatus.ERROR, cause.message, i)
                return self._interrupted(i, began, cut.outcome)
            except Interrupted:  # before the agent started: nothing of it to record
                return self._interrupted(i, began, IterationOutcome("interrupted"))

            summary = summary_line(outcome, cfg.completion_promise)
            feedback, accepted = None, False
            check = promise.check(outcome.final_text, cfg.completion_promise)
            if self.tasks is not None:
                try:  # the task's verify runs like the gate's: interruptible
                    files, sha = self.commits.task(self.tasks, i, summary, outcome.final_text)
                except Interrupted:
                    return self._interrupted(i, began, outcome)
            else:
                # Committed first: the gate judges the commit (a clean checkout of it), never
                # files the agent left uncommitted or hid with a .gitignore.
                files, sha = self.commits.iteration(i, summary)
            if self.tasks is None and check.found:
                try:
                    verdict = self.gate.check()  # verify commands can run long: interruptible
                except Interrupted:
                    self._ended(i, began, outcome, summary, files, sha, None, interrupted=True)
                    return self._result(RunStatus.INTERRUPTED, "interrupted by a signal", i)
                accepted = not verdict.problems
                self.bus.emit(
                    "promise_seen",
                    token=check.expected,
                    accepted=accepted,
                    reasons=verdict.problems,
                    judged=verdict.judged,
                    judged_commit=verdict.commit,
                    level="info" if accepted else "warning",
                )
                feedback = None if accepted else rejection_feedback(verdict.problems)
                self.refused = None if accepted else (i, list(verdict.problems))
            for other in check.other_tokens if self.tasks is None else ():
                self.bus.emit(
                    "promise_seen",
                    token=other,
                    accepted=False,
                    level="warning",
                    reasons=[f"not the completion promise ({check.expected})"],
                )
            self._ended(i, began, outcome, summary, files, sha, accepted)
            if self.tasks is not None:
                self.tasks.settle(self.commits.last, outcome.cost_usd)
                if not self.tasks.file.open_tasks():
                    return self._result(RunStatus.COMPLETED, self.tasks.summary(), i)
            if accepted:
                return self._result(RunStatus.COMPLETED, f"promise {check.expected} accepted", i)
            if outcome.outcome == "stopped":
                return self._result(RunStatus.BUDGET, outcome.error or "budget", i)
            outcome_stop = self.guards.after_iteration(
                IterationRecord(
                    outcome.outcome,
                    len(files),
                    accepted,
                    outcome.final_text,
                    outcome.tool_calls,
                    outcome.tool_errors,
                    outcome.error,
                )
            )
            if outcome_stop:
                return self._stopped(outcome_stop, i)
            i += 1
        return self._result(RunStatus.MAX_ITERATIONS, self._max_iterations_reason(), i - 1)

    def _max_iterations_reason(self) -> str:
        """Why the run stopped at --max-iterations: no promise, or a promise the gate refused."""
        reached = f"reached --max-iterations {self.cfg.max_iterations}"
        if self.refused is None:
            return f"{reached} without the promise"
        i, reasons = self.refused
        why = "; ".join(reasons) or "no reason given"
        return (
            f"{reached}: the promise {promise.normalise(self.cfg.completion_promise)} was made "
            f"in iteration {i} and refused by the completion gate ({why})"
        )

    def _guidance(self, i: int) -> list[str]:
        """The operator's guidance for iteration `i`, each piece journaled as it is given."""
        if self.control is None:
            return []
        given = self.control.guidance(i)
        for request, text, keep in given:
            self.bus.emit("guidance", request=request, text=text, keep=keep)
        return [text for _, text, _ in given]

    def _stopped(self, stop: Stop, i: int) -> RunResult:
        self.bus.emit("guard_tripped", level="warning", guard=stop.guard, message=stop.reason)
        return self._result(stop.status, stop.reason, i)

    def _end_iteration(
        self,
        i: int,
        began: float,
        outcome: IterationOutcome,
        accepted: bool | None,
        interrupted: bool = False,
    ) -> None:
        """Commit what the iteration left and record its end (for iterations cut short)."""
        if self.tasks is not None:
            self.tasks.put_back()
        summary = (
            "interrupted" if interrupted else summary_line(outcome, self.cfg.completion_promise)
        )
        files, sha = self.commits.iteration(i, summary, interrupted)
        self._ended(i, began, outcome, summary, files, sha, accepted, interrupted)

    def _ended(
        self,
        i: int,
        began: float,
        outcome: IterationOutcome,
        summary: str,
        files: list[str],
        sha: str | None,
        accepted: bool | None,
        interrupted: bool = False,
    ) -> None:
        """Count the iteration's usage and record its end."""
        self.guards.add(outcome.usage, outcome.cost_usd)
        self.bus.emit(
            "iteration_ended",
            outcome="interrupted" if interrupted else outcome.outcome,
            summary=summary,
            final_text=outcome.final_text,
            promise=bool(accepted),
            files_changed=files,
            commit=sha,
            usage=outcome.usage.as_dict(),
            cost_usd=outcome.cost_usd,
            duration_s=round(time.monotonic() - began, 3),
            turns=outcome.turns,
            error=outcome.error,
        )

    def _interrupted(self, i: int, began: float, outcome: IterationOutcome) -> RunResult:
        self._end_iteration(i, began, outcome, None, interrupted=True)
        return self._result(RunStatus.INTERRUPTED, "interrupted by a signal", i)
