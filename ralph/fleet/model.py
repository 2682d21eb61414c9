"""The plain data that travels through Temporal: workflow and activity inputs and results.

Everything here goes into workflow histories, so it holds no secret: clone URLs without
credentials, settings without notification targets, prompts and summaries (redacted by the
loop). Credentials come from each worker's environment. Dataclasses only (the SDK's default
converter serialises them), no imports of ralph modules: workflow code imports this module
inside the SDK's sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASK_QUEUE = "ralph-fleet"
NAMESPACE = "default"

# Search attributes every run workflow sets (registered by `ralph fleet worker` and submit).
SA_REPOSITORY = "RalphRepository"  # Keyword: the clone URL
SA_PROMPT = "RalphPrompt"  # Keyword: the prompt's name
SA_STATUS = "RalphStatus"  # Keyword: a RunStatus value
SA_COST = "RalphCost"  # Double: USD so far
SA_FLEET = "RalphFleet"  # Keyword: the fleet workflow's id
SA_ITERATIONS = "RalphIterations"  # Int: iterations ended
SEARCH_ATTRIBUTES = {
    SA_REPOSITORY: "keyword",
    SA_PROMPT: "keyword",
    SA_STATUS: "keyword",
    SA_COST: "double",
    SA_FLEET: "keyword",
    SA_ITERATIONS: "int",
}


@dataclass
class Timing:
    """How Temporal runs an iteration: a worker that stops heartbeating for `heartbeat_s` is
    taken for dead and the iteration runs again elsewhere; `attempts` in all."""

    heartbeat_s: float = 60.0
    iteration_s: float = 4 * 3600.0  # one attempt of one iteration
    attempts: int = 3
    retry_s: float = 10.0  # first wait between attempts (doubles, up to 10x)


@dataclass
class RepoJob:
    """One repository of a fleet, as FLEET.yaml gives it."""

    name: str  # unique within the fleet; the workflow id ends in it
    url: str  # clone URL (no credentials in it)
    prompt: str  # a built-in prompt's name, or the prompt text
    prompt_name: str
    base: str | None = None  # default: the remote's default branch
    settings: dict[str, Any] = field(default_factory=dict)  # ralph settings, as in ralph.yaml
    github: str | None = None  # owner/name, when the URL does not say it
    work_remote: str | None = None  # where run branches are pushed (default: url)
    pr: bool = True
    branch: str | None = None  # default: ralph/<prompt>-<fleet start, UTC>
    campaign: bool = False  # `ralph harden` (its phases from settings) instead of a prompt


@dataclass
class FleetJob:
    """What `ralph fleet submit` starts: repositories and the fleet-wide budget."""

    fleet: str
    repos: list[RepoJob]
    max_cost: float | None = None  # USD across the fleet
    timing: Timing = field(default_factory=Timing)
    task_queue: str = TASK_QUEUE


@dataclass
class RepoRun:
    """The input of one repository's workflow."""

    job: RepoJob
    timing: Timing = field(default_factory=Timing)
    fleet_id: str | None = None  # the fleet workflow that keeps the budget (None: no budget)
    budgeted: bool = False
    started: str = ""  # the fleet's start, UTC, YYYYmmdd-HHMMSS (names the branch)


@dataclass
class Prepared:
    """What the first activity found: the run's base and settings as the worker resolves them."""

    base: str
    base_commit: str
    branch: str
    max_iterations: int
    prompt_name: str


@dataclass
class Guide:
    """Operator guidance (`ralph fleet steer`) still to be given."""

    id: int
    text: str
    keep: bool = False


@dataclass
class TaskState:
    """A task-list run's state, which a resume in the run's own checkout reads from its
    journal: kept by the workflow, as any worker may run the next iteration. The task file's
    titles and verify commands, the runner's statuses and a failed verify's output tail
    (redacted), all from the repository's task file and the iterations' commits."""

    statuses: dict[str, list[str]] = field(default_factory=dict)  # id: [status, reason]
    pinned: dict[str, dict[str, str]] | None = None  # id: {title, verify}, as the run began
    failures: dict[str, int] = field(default_factory=dict)  # failed verifies in a row, by id
    feedback: str | None = None  # why the task is not done yet, for the next iteration


@dataclass
class IterationInput:
    """One iteration of a run: everything a worker with an empty directory needs."""

    job: RepoJob
    workflow_id: str
    run_id: str
    branch: str
    base_commit: str
    iteration: int
    usage: dict[str, int] = field(default_factory=dict)  # the run's totals so far
    cost_usd: float | None = 0.0
    elapsed_s: float = 0.0
    feedback: str | None = None  # the completion gate's, from the iteration before
    guidance: list[Guide] = field(default_factory=list)
    expected_head: str | None = None  # the branch tip the last iteration pushed
    base: str = ""  # the base branch (a campaign's pull request goes into it)
    tasks: TaskState = field(default_factory=TaskState)  # a task-list run's, so far


@dataclass
class IterationResult:
    """How an iteration (and with it the run, so far) stands."""

    iteration: int
    status: str  # the loop's RunStatus for this session
    reason: str
    outcome: str = ""
    summary: str = ""
    commit: str | None = None
    head: str | None = None  # the branch tip pushed after the iteration
    usage: dict[str, int] = field(default_factory=dict)  # the run's totals
    cost_usd: float | None = 0.0  # the run's total
    iteration_cost_usd: float | None = 0.0
    elapsed_s: float = 0.0
    feedback: str | None = None
    worker: str = ""
    pr_url: str | None = None  # a campaign opens its own pull request
    tasks: TaskState | None = None  # a task-list run's, after the iteration


@dataclass
class IterationRecord:
    number: int
    outcome: str
    summary: str
    commit: str | None
    cost_usd: float | None
    worker: str


@dataclass
class RepoState:
    """What `ralph fleet show` prints: a run as its workflow holds it."""

    name: str
    url: str
    prompt_name: str
    status: str = "running"
    reason: str = ""
    branch: str = ""
    base: str = ""
    run_id: str = ""
    max_iterations: int = 0
    iterations: list[IterationRecord] = field(default_factory=list)
    cost_usd: float | None = 0.0
    pr_url: str | None = None
    guidance: list[Guide] = field(default_factory=list)


@dataclass
class Published:
    url: str | None
    number: int | None
    problem: str | None = None


@dataclass
class PublishInput:
    job: RepoJob
    workflow_id: str
    branch: str
    base: str
    status: str
    iterations: int
    max_iterations: int
    reason: str
    cost_usd: float | None
    records: list[IterationRecord] = field(default_factory=list)
