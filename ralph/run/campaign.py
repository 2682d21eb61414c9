"""`ralph harden`: a hardening campaign, the built-in loops one after another on one branch,
then a task-list run over the remediation tasks they filed.

A campaign is no second loop: each phase is an ordinary run (runner.execute) with the
phase prompt's own promise, gate and iteration limit (its front matter), linked to the
campaign in the journal (`campaigns` table, `runs.campaign_id` / `runs.phase`). The first
phase creates the branch (or worktree); the next ones are new runs on that branch
(`ResumePoint(new_run=True)`), started with what the campaign spent so far, so that
`--max-cost`, `--max-tokens` and `--timeout` cover the whole campaign.

This module is the campaign's plan and its record: the settings (`campaign_config`) and each
phase's run config (`phase_config`), where the remediation tasks are filed, how a phase and
the campaign ended (`PhaseOutcome`, `CampaignResult`), where its report goes (`report_dir`)
and which campaign a reference names (`campaign_of`; `find_campaign`, which refuses none).
Driving the phases and resuming a campaign are in `campaign_run` (`run_campaign`,
`resume_campaign`), its pull request in `campaign_pr`; the CLI (`ralph harden`, `ralph
resume`) and other callers (e.g. a fleet worker) only add observers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import STATE_DIR, RunConfig, build_config, find_main_repo, require_main_repo, validate
from ..errors import ExitCode, UsageError
from ..models.base import Usage
from ..status import RunStatus
from ..store.journal import Journal
from ..store.queries import LATEST
from ..store.schema import db_path
from . import taskfiles
from .prompt import load_prompt
from .taskpins import CHECKLIST_FILE, TASKMASTER_FILE, operator_file, operators_choice
from .tasks import OPEN, NoTasks

REMEDIATE = "remediate"
CAMPAIGNS_DIR = "campaigns"
CAMPAIGN_PREFIX = "harden-"  # campaign ids: harden-<time>-<random>, apart from run ids  # .ralph/campaigns/<id>/report.md
SKIPPED = "skipped"  # a phase's outcome, not a run's status: remediate with no task filed


@dataclass
class PhaseOutcome:
    """How one phase ended."""

    phase: str
    status: str  # a RunStatus value, or SKIPPED
    reason: str
    run_id: str | None = None
    iterations: int = 0
    cost_usd: float | None = 0.0


@dataclass
class CampaignResult:
    campaign_id: str
    status: str  # a RunStatus value
    reason: str
    phases: list[PhaseOutcome] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    branch: str = ""
    report: Path | None = None
    pr_url: str | None = None
    pr_failed: bool = False

    @property
    def exit_code(self) -> ExitCode:
        if self.pr_failed and self.status == RunStatus.COMPLETED:
            return ExitCode.ERROR
        return RunStatus(self.status).exit_code

    def going_on(self) -> str | None:
        """How a finished campaign that stopped at a phase without its promise (a budget,
        --stop-on-failure, or its last phase) goes on (`plan_resume`); None for one that
        completed, or whose last phase did (nothing is left to go on with)."""
        status = RunStatus(self.status)
        ran = [o for o in self.phases if o.run_id]
        if status.resumable or not ran or ran[-1].status == RunStatus.COMPLETED:
            return None
        larger = " (or a larger --max-cost, --max-tokens, --timeout)"
        budget = larger if ran[-1].status == RunStatus.BUDGET else ""
        return f"ralph resume {self.campaign_id} --more N{budget}"

    def as_dict(self) -> dict[str, Any]:
        """The result as `--output-format json` prints it."""
        return {
            "campaign_id": self.campaign_id,
            "status": str(self.status),
            "exit_code": int(self.exit_code),
            "reason": self.reason,
            "phases": [dataclasses.asdict(o) for o in self.phases],
            "branch": self.branch,
            "usage": self.usage.as_dict(),
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "report": str(self.report) if self.report else None,
            "pr_url": self.pr_url,
            "resume": f"ralph resume {self.campaign_id}"
            if RunStatus(self.status).resumable
            else None,
        }


def campaign_config(
    flags: dict[str, Any], repo: Path | None, environ: Any = None, note: Any = None
) -> RunConfig:
    """The campaign's settings: the operator's flags, RALPH_* variables and ralph.yaml, as
    for a run of the first phase's prompt (each phase then takes its own prompt's front
    matter, see `phase_config`)."""
    # A neutral prompt: each phase takes its own prompt and front matter (`phase_config`), and
    # what is left here is the operator's (its verify commands and artifacts apply to all).
    cfg = build_config(_CAMPAIGN_PROMPT, flags, repo, environ=environ, note=note)
    cfg.prompt_name, cfg.prompt_source = "harden", "harden"
    return cfg


_CAMPAIGN_PROMPT = (
    "A hardening campaign (each phase has its own prompt). <promise>HARDENED</promise>"
)


def phase_config(cfg: RunConfig, phase: str, tasks_file: str | None = None) -> RunConfig:
    """The run config of one phase: the campaign's settings with the phase prompt's text,
    promise, gate (artifacts and verify commands, added to the operator's) and iteration
    limit (--phase-max-iterations, else its front matter's)."""
    spec = load_prompt(phase)
    fm = spec.settings
    phase_cfg = dataclasses.replace(
        cfg,
        prompt=spec.text,
        prompt_name=phase,
        prompt_source=spec.source,
        completion_promise="" if tasks_file else str(fm.get("completion_promise") or ""),
        artifacts=[*fm.get("artifacts", []), *cfg.artifacts] if not tasks_file else [],
        verify=[*fm.get("verify", []), *cfg.verify],
        max_iterations=cfg.phase_max_iterations or int(fm.get("max_iterations") or 10),
        description=str(fm.get("description") or ""),
        tasks=tasks_file,
        pr=False,  # one pull request, for the whole campaign
        dry_run=False,
        output_format="text",  # --output-format json: one result, the campaign's (as_dict)
    )
    if not tasks_file and not phase_cfg.completion_promise:
        promises = spec.promises
        phase_cfg.completion_promise = promises[0] if promises else ""
    validate(phase_cfg)
    return phase_cfg


def remediation_file(root: Path, base: str | None = None) -> str | None:
    """The task list remediate works: the one of the two the operator had at the campaign's
    base commit `base` (an audit phase's agent that creates the other does not steer it
    away); else the one the audits filed, as the branch has it in `root`: Taskmaster's when
    the repository uses Taskmaster, else the Markdown checklist; None when there is none."""
    chosen = operators_choice(root, base) if base else None
    if chosen:
        return chosen
    for name in (TASKMASTER_FILE, CHECKLIST_FILE):
        if (root / name).is_file() and not (root / name).is_symlink():
            return name
    return None


def open_task_count(root: Path, name: str, base: str | None = None) -> int | None:
    """How many open tasks the file has (None: it lists no task at all). `base`, the
    campaign's base commit: the operator's tasks count with their status there (an audit
    phase's agent that marks them done does not close them), those an audit removed from the
    file (or the file itself) too: remediate puts them back (`TaskQueue`)."""
    began = operator_file(root, base, name).statuses() if base else {}
    try:
        listed = {t.id: t.status for t in taskfiles.load(root / name).tasks}
    except UsageError as exc:
        if began:  # removed or made unreadable: remediate restores the operator's file
            listed = {}
        elif isinstance(exc, NoTasks):
            return None
        else:
            raise
    listed.update({task_id: status for task_id, (status, _) in began.items()})
    return sum(status in OPEN for status in listed.values())


def report_dir(main_repo: Path, campaign_id: str) -> Path:
    return main_repo / STATE_DIR / CAMPAIGNS_DIR / campaign_id


def campaign_of(start: Path, ref: str) -> str | None:
    """The campaign `ref` names (its id or a unique part, or one of its runs' ids or a unique
    part of one), if any."""
    main = find_main_repo(start)
    if main is None or not db_path(main).exists():
        return None
    journal = Journal.open(main, create=False)
    try:
        if ref.startswith(CAMPAIGN_PREFIX):
            return journal.resolve_campaign(ref)
        run_id = journal.resolve(ref)  # `latest` too: its campaign, when it is a phase
        if run_id is None:  # no run: perhaps a unique part of a campaign's id
            return None if ref == LATEST else journal.resolve_campaign(ref)
        return _campaign_of_run(journal, run_id)
    finally:
        journal.close()


def _campaign_of_run(journal: Journal, run_id: str) -> str | None:
    row = journal.conn.execute("SELECT campaign_id FROM runs WHERE id = ?", (run_id,)).fetchone()
    return str(row[0]) if row is not None and row[0] else None


def _campaign_ref(journal: Journal, ref: str) -> str:
    """`ref` as a campaign reference: a unique part of a phase's run id (which `ralph resume`
    takes as it takes any run's) becomes its campaign's id; anything else stays as it is."""
    if ref.startswith(CAMPAIGN_PREFIX) or ref == LATEST:
        return ref
    try:
        run_id = journal.resolve(ref)
    except UsageError:  # ambiguous as a run: perhaps a part of a campaign's id
        return ref
    return (_campaign_of_run(journal, run_id) if run_id else None) or ref


def named_run(journal: Journal, ref: str) -> str | None:
    """The run `ref` names when it names a run (its id or a unique part), not a campaign."""
    if ref.startswith(CAMPAIGN_PREFIX) or ref == LATEST:
        return None
    try:
        return journal.resolve(ref)
    except UsageError:
        return None


@dataclass
class ResumePlan:
    """Where `ralph resume CAMPAIGN` goes on: the phase at `index`, in its run `run_id` (cut
    short, or given more iterations or a larger budget), else in a new run."""

    index: int
    run_id: str | None


def plan_resume(
    row: dict[str, Any],
    phases: list[str],
    runs: list[dict[str, Any]],
    more: int | None,
    budgets: dict[str, Any],
) -> ResumePlan:
    """Where campaign `row` (its phases' `runs` oldest first) goes on, with `more` iterations
    and new `budgets` given or not; a UsageError when it cannot.

    A campaign cut short (a signal, an error, a kill) goes on with the phase it was in, at
    its iteration, or the next phase; one that stopped at a phase (a budget, or
    --stop-on-failure) goes on with that phase's run with `--more N` (N more iterations) or,
    when a budget stopped it, with a larger budget alone; `--more N` is always for the phase
    it goes on with (a new phase: N iterations), the phases after it keep their limits."""
    cid = row["id"]
    status = RunStatus(row["status"])
    last = runs[-1] if runs else None
    last_status = RunStatus(last.get("status") or RunStatus.ERROR) if last else None
    if status is RunStatus.COMPLETED:
        raise UsageError(
            f"campaign {cid} already finished (completed: {row['exit_reason']}); start a new "
            "one with `ralph harden`"
        )
    if not status.finished:
        if last is not None and last_status is not None and last_status.resumable:
            return ResumePlan(phases.index(last["phase"]), last["id"])
        done = {r["phase"] for r in runs}
        index = next((i for i, p in enumerate(phases) if p not in done), len(phases))
        if more is not None and index == len(phases):
            raise UsageError(
                f"every phase of campaign {cid} has run: --more has no phase to add "
                f"iterations to; `ralph resume {cid}` alone finishes it"
            )
        return ResumePlan(index, None)
    if last is None or last_status is RunStatus.COMPLETED:
        raise UsageError(
            f"campaign {cid} already finished ({status}: {row['exit_reason']}); every phase "
            "has run, so none goes on: start a new one with `ralph harden` (--phases names "
            "those to run again)"
        )
    phase, at_budget = last["phase"], last_status is RunStatus.BUDGET
    if more is None and not (at_budget and budgets):
        larger = " or a larger budget (--max-cost, --max-tokens, --timeout)" if at_budget else ""
        why = "a larger budget alone does not continue it" if budgets else "already finished"
        raise UsageError(
            f"campaign {cid} {why} ({status}: {row['exit_reason']}); continue its phase "
            f"{phase} with `ralph resume {cid} --more N` (N more iterations){larger}, or start "
            "a new one with `ralph harden`"
        )
    return ResumePlan(phases.index(phase), last["id"])


def find_campaign(start: Path, ref: str) -> tuple[Path, dict[str, Any]]:
    """The checkout whose journal records the campaign `ref` names (its id, a unique part of
    it, `latest`, or one of its runs' ids) and the campaign's row; a UsageError when there is
    no journal or no such campaign (`ralph show CAMPAIGN`, `ralph resume CAMPAIGN`)."""
    main = require_main_repo(start)
    if not db_path(main).exists():
        raise UsageError(f"no runs recorded in {main}; `ralph runs` lists them")
    journal = Journal.open(main, create=False)
    try:
        campaign_id = journal.resolve_campaign(_campaign_ref(journal, ref))
        row = journal.get_campaign(campaign_id) if campaign_id else None
    finally:
        journal.close()
    if row is None:
        raise UsageError(f"no campaign {ref!r} in {main}; `ralph runs` lists its runs")
    return main, row
