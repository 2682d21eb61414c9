"""Run events: the one stream that the journal, live view, logs and traces observe.

The loop and agent emit events; observers (journal, UI, JSON logs, OpenTelemetry) turn them
into whatever they keep or show. Every event and its fields are declared once, in `EVENTS`
below: README's table ("Structured logs") is generated from it (`python -m ralph.docs`), and
the test suite checks every event any in-process test emits against it, so the views and
the documentation cannot drift from what is emitted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class EventSpec:
    """An event's fields; `readme`: how README's table shows them (the fields, by default);
    `debug`: only JSON logs at -v show it."""

    fields: tuple[str, ...]
    readme: str = ""
    debug: bool = False


# Every run event, in the order a run emits them. `conversation` (an iteration's whole
# exchange, emitted when it ends) is the journal's (`ralph show RUN --iteration N`); the JSON
# logs leave it out.
EVENTS: dict[str, EventSpec] = {
    "run_started": EventSpec(
        (
            "prompt",
            "prompt_name",
            "model",
            "max_iterations",
            "repo",
            "root",
            "branch",
            "base_commit",
            "worktree",
            "resumed_at",
            "earlier_usage",
            "earlier_cost_usd",
            "earlier_elapsed_s",
            "budgets_changed",
            "origin",
            "config",
            "campaign_id",
            "phase",
        ),
        "prompt, prompt_name, model, max_iterations, repo, root, branch, base_commit, worktree, resumed_at, earlier_usage, earlier_cost_usd, earlier_elapsed_s (what earlier sessions of a resumed run used, counted by the budgets; null otherwise; for a campaign's phase, what the campaign used before it), budgets_changed (budgets the operator changed on resume: {name: {was, now}}), origin (the branch or commit the checkout was on), config, campaign_id, phase (only in a `ralph harden` campaign's runs)",
    ),
    "sandbox": EventSpec(
        ("kind", "network"),
        "kind (`bwrap` or `none`: where the agent's commands run), network",
    ),
    "iteration_started": EventSpec(
        ("max_iterations",),
        "max_iterations",
    ),
    "model_started": EventSpec(
        ("turn",),
        "turn",
    ),
    "model_text": EventSpec(
        ("text",),
        "turn, text (≤2,000 chars unless `--show-text`), chars — one record per model call",
        debug=True,
    ),
    "model_retry": EventSpec(
        ("wait_s", "reason"),
        "wait_s, reason",
    ),
    "model_call": EventSpec(
        (
            "turn",
            "model",
            "stop_reason",
            "usage",
            "cost_usd",
            "latency_s",
            "retries",
            "request_id",
            "request_summary",
            "response_summary",
        ),
        "turn, model, stop_reason, usage{input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens}, cost_usd, latency_s, retries, request_id, request_summary, response_summary",
    ),
    "model_error": EventSpec(
        ("message", "status", "fatal"),
        "message, status, fatal",
    ),
    "tool_started": EventSpec(
        ("tool_use_id", "tool", "input"),
        "tool_use_id, tool, input",
    ),
    "tool_finished": EventSpec(
        ("tool_use_id", "tool", "input", "is_error", "exit_code", "duration_s", "output"),
        "tool_use_id, tool, input, is_error, exit_code, duration_s, output (≤4,000 chars unless `-v`), output_chars",
    ),
    "promise_seen": EventSpec(
        ("token", "accepted", "reasons", "judged", "judged_commit"),
        "token, accepted, reasons, judged (`clean checkout` or `working tree`), judged_commit",
    ),
    "guard_tripped": EventSpec(
        ("guard", "message"),
        "guard, message",
    ),
    "commit": EventSpec(
        ("files", "message", "sha"),
        "sha, files, message",
    ),
    "iteration_ended": EventSpec(
        (
            "outcome",
            "summary",
            "final_text",
            "promise",
            "files_changed",
            "commit",
            "usage",
            "cost_usd",
            "duration_s",
            "turns",
            "error",
        ),
        "outcome, summary, final_text, promise, files_changed, commit, usage, cost_usd, duration_s, turns, error",
    ),
    "warning": EventSpec(
        ("message", "agent", "fallback", "until"),
        "message, agent, fallback, until (an agent CLI's usage limit: the fallback stands in "
        "until then; Python warnings add category, source)",
    ),
    "usage_limit": EventSpec(
        ("agent", "limit", "resets_at"),
        "agent, limit, resets_at (an agent CLI hit its usage limit)",
    ),
    "usage_limit_wait": EventSpec(
        ("agent", "reason", "until", "wait_s"),
        "agent, reason, until, wait_s (the iteration waits for the reset)",
    ),
    "agent_process": EventSpec(
        ("agent", "duration_s", "exit_code", "stderr"),
        "agent, exit_code, duration_s, stderr (an agent CLI's process of one iteration ended)",
    ),
    "run_ended": EventSpec(
        (
            "status",
            "exit_code",
            "reason",
            "iterations",
            "usage",
            "cost_usd",
            "duration_s",
            "resume",
        ),
        "status, exit_code, reason, iterations, usage, cost_usd, duration_s, resume",
    ),
    "pull_request": EventSpec(
        ("url", "number", "created", "base", "draft"),
        "url, number, created, base, draft",
    ),
    "pull_request_failed": EventSpec(
        ("message",),
        "message",
    ),
    "task_list": EventSpec(
        ("path", "tasks"),
        "path, tasks (a task-list run's tasks as its task file had them when the run began: {id: {title, verify}}; what the runner judges them by, whatever the agent writes to the file; a resume reads it back)",
    ),
    "task_started": EventSpec(
        ("id", "title"),
        "id, title (a task-list run's task for this iteration)",
    ),
    "task_ended": EventSpec(
        ("id", "title", "status", "reason", "commit", "cost_usd"),
        "id, title, status, reason, commit, cost_usd (a task closed: done, blocked, deferred)",
    ),
    "task_retry": EventSpec(
        ("id", "failures", "reason", "feedback"),
        "id, failures, reason, feedback (a task not done yet: its failures in a row so far; a resumed run goes on counting)",
    ),
    "guidance": EventSpec(
        ("keep", "request", "text"),
        "request, text, keep (`ralph steer` guidance given to this iteration)",
    ),
    "stop_requested": EventSpec(
        ("message",),
        "message (`ralph stop` was seen between iterations; level warning)",
    ),
    "notification_failed": EventSpec(
        ("target", "message"),
        "target (`scheme://host/…` only), message (level warning)",
    ),
    "conversation": EventSpec(
        ("messages", "system", "tools"),
    ),
}


def check_event(name: str, data: Mapping[str, Any]) -> None:
    """Raise ValueError when event `name` or one of its fields is not declared in EVENTS."""
    spec = EVENTS.get(name)
    if spec is None:
        raise ValueError(f"event {name!r} is not declared in ralph/events.py EVENTS")
    extra = sorted(set(data) - set(spec.fields))
    if extra:
        raise ValueError(f"event {name!r} has fields {extra} not declared in ralph/events.py")


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
