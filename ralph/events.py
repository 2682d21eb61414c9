"""Run events: the one stream that the journal, live view, logs and traces observe.

The loop and agent emit events; observers (journal, UI, JSON logs, OpenTelemetry) turn them
into whatever they keep or show. Event names and their fields are stable and documented in
README ("Structured logs"):

- run_started: prompt, prompt_name, model, max_iterations, repo, root, branch, base_commit,
  worktree, resumed_at, earlier_usage{...}, earlier_cost_usd, earlier_elapsed_s (the earlier
  sessions' totals when resuming, else null), budgets_changed, origin, config, campaign_id,
  phase (a `ralph harden` campaign's phase only; its earlier_* are what the campaign used
  before it)
- sandbox: kind, network (right after run_started: where the agent's commands run)
- iteration_started: max_iterations
- model_started: turn
- model_text: text (a streaming delta; high volume, for live views only)
- model_retry: wait_s, reason
- model_call: turn, model, stop_reason, usage{...}, cost_usd, latency_s, retries
- model_error: message, status, fatal
- tool_started: tool_use_id, tool, input
- tool_finished: tool_use_id, tool, input, is_error, exit_code, duration_s, output
- promise_seen: token, accepted, reasons
- guard_tripped: guard, message
- commit: sha, files, message
- iteration_ended: outcome, summary, promise, files_changed, commit, usage{...}, cost_usd,
  duration_s, error
- warning: message
- usage_limit: agent, limit, resets_at (an agent CLI reported its usage limit; level warning)
- usage_limit_wait: agent, reason, until, wait_s (the iteration waits for it to reset)
- agent_process: agent, exit_code, duration_s, stderr (an agent CLI's process ended)
- run_ended: status, exit_code, reason, iterations, usage{...}, cost_usd, duration_s, resume
- pull_request: url, number, created, base, draft (after run_ended, with --pr)
- pull_request_failed: message (level error)
- task_started: id, title (a task-list run's task for this iteration)
- task_ended: id, title, status, reason, commit, cost_usd
- task_retry: id, failures, reason, feedback (a task not done yet: failures in a row so far)
- guidance: request, text, keep (operator guidance from `ralph steer`)
- stop_requested: message (`ralph stop`, seen between iterations; level warning)
- notification_failed: target, message (level warning)

`conversation` (system, tools, messages: an iteration's whole exchange, emitted when it ends)
is for the journal (`ralph show RUN --iteration N`); the JSON logs leave it out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Event:
    name: str
    run_id: str
    iteration: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    level: str = "info"


class Observer(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class Bus:
    """Fans events out to observers, in order; stamps run id and iteration."""

    def __init__(self, run_id: str, observers: Iterable[Observer] = ()) -> None:
        self.run_id = run_id
        self.iteration: int | None = None
        self.observers: list[Observer] = list(observers)

    def emit(self, name: str, level: str = "info", **data: Any) -> Event:
        event = Event(name, self.run_id, self.iteration, data, level=level)
        for observer in self.observers:
            observer.handle(event)
        return event

    def close(self) -> None:
        for observer in self.observers:
            observer.close()


class Recorder:
    """An observer that keeps every event in memory (tests, reports)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]
