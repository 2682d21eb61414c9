"""A run from its config to its end: the pre-flight checks (preflight.py), its parts held
by `open_run` (lifecycle.py), the loop (loop.py), then its pull request (publish.py)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import RunConfig
from ..events import Bus, Observer
from ..models.base import Usage
from .loop import RunResult
from .preflight import preflight


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


@dataclass
class KeptTasks:
    """A task-list run's state kept outside the journal of the checkout it resumes in (a
    fleet run's workflow: its next iteration may run on a worker that never saw the run):
    what a resume otherwise reads from the journal."""

    statuses: dict[str, tuple[str, str]]  # the runner's, by task id: (status, reason)
    pinned: dict[str, dict[str, str]] | None  # each task's title and verify as the run began
    failures: dict[str, int] = field(default_factory=dict)  # failures in a row, open tasks
    feedback: str | None = None  # a task retry's, for the iteration the resume starts with


@dataclass
class ResumePoint:
    """Where a resumed run picks up, from the journal."""

    run_id: str
    start: int
    usage: Usage
    cost_usd: float | None
    elapsed_s: float
    branch: str
    worktree: str | None
    base_commit: str
    feedback: str | None = None
    # Budgets the operator changed to let the run go on: {name: {"was": old, "now": new}}.
    budgets_changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: str | None = None  # the branch (or commit) the checkout was on when the run began
    # A new run that goes on on an existing branch (a campaign's next phase, campaign.py):
    # nothing of its own to resume; the usage above is what the campaign spent before it.
    new_run: bool = False
    tasks: KeptTasks | None = None  # None: the journal's (task_ended, task_list, task_retry)


@dataclass(frozen=True)
class PhaseLink:
    """A run that is a phase of a hardening campaign (campaign.py): the journal links them;
    the campaign, not the phase, opens the pull request and tidies the branch."""

    campaign_id: str
    phase: str


def _sandbox_kind(tools: Any) -> str:
    """ "bwrap" or "none": where the agent's commands run."""
    bash = tools.get("bash")
    return str(getattr(getattr(bash, "sandbox", None), "kind", "none"))


def execute(
    cfg: RunConfig,
    observers: list[Observer] | None = None,
    resume: ResumePoint | None = None,
    phase: PhaseLink | None = None,
) -> RunResult:
    """Run (or resume) the loop; raises UsageError for bad input before creating anything.
    `phase`: the run is a phase of a hardening campaign (campaign.py)."""
    try:
        model = preflight(cfg, resuming=resume is not None)  # starts the SDK's import
        # The run's set-up modules load while the SDK imports in a background thread.
        from . import lifecycle, publish  # start-up: after the SDK's import began (see above)
    except BaseException:
        Bus("", observers or []).close()  # the run did not start: its observers end here
        raise
    run_id = resume.run_id if resume else new_run_id()
    with lifecycle.open_run(cfg, model, run_id, observers, resume, phase) as run:
        workspace = run.workspace
        started = dict(
            prompt=cfg.prompt_source,
            prompt_name=cfg.prompt_name,
            model=model.name,
            max_iterations=cfg.max_iterations,
            repo=str(cfg.repo),
            root=str(workspace.root),
            branch=workspace.branch,
            base_commit=workspace.base_commit,
            worktree=workspace.worktree,
            resumed_at=resume.start if resume and not resume.new_run else None,
            # What earlier sessions of a resumed run used: the budgets count it (see guards).
            earlier_usage=resume.usage.as_dict() if resume else None,
            earlier_cost_usd=resume.cost_usd if resume else None,
            earlier_elapsed_s=round(resume.elapsed_s, 3) if resume else None,
            budgets_changed=resume.budgets_changed if resume else None,
            origin=workspace.origin,  # where the checkout goes back if the run commits nothing
            config=cfg.to_dict(),
            **({"campaign_id": phase.campaign_id, "phase": phase.phase} if phase else {}),
        )
        result = run.loop.whole(
            started,
            sandbox=_sandbox_kind(run.tools),
            warnings=run.warnings,
            start=resume.start if resume else 1,
            feedback=resume.feedback if resume else None,
            leftover=resume is not None and not resume.new_run,
            resume_cmd=run.resume_cmd,
        )
        publish.after_run(cfg, workspace, result, run.bus, in_campaign=phase is not None)
        return result
