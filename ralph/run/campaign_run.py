"""Driving a hardening campaign (`ralph harden`, see `campaign`): its phases one after
another on one branch, stopping or going on as each ends, resuming the phase that was cut
short (at its iteration) and the rest (`resume_campaign`), and at the end the campaign's
result, report and one pull request for the whole campaign (`campaign_pr`).

The entry points for other code (e.g. a fleet worker) are `campaign.campaign_config`, then
`run_campaign` and `resume_campaign` here; the CLI (`ralph harden`, `ralph resume`) only adds
observers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import STATE_DIR, RunConfig, restore_config
from ..errors import UsageError
from ..events import Observer
from ..git import gitrun
from ..git.cleanup import discard_if_empty
from ..git.repo import _current_branch, _head_commit, check, default_branch_name
from ..models.base import Usage
from ..status import RunStatus, status_of
from ..store.journal import Journal
from ..store.locks import take_lock
from .campaign import (
    CAMPAIGN_PREFIX,
    REMEDIATE,
    SKIPPED,
    CampaignResult,
    PhaseOutcome,
    find_campaign,
    named_run,
    open_task_count,
    phase_config,
    plan_resume,
    remediation_file,
)
from .campaign_pr import publish_campaign
from .guards import BUDGETS
from .hardening import write_campaign_report
from .preflight import check_pr
from .resume import new_budgets, raise_budgets, resume_config
from .runner import PhaseLink, ResumePoint, execute, new_run_id
from .taskpins import CHECKLIST_FILE, TASKMASTER_FILE, operator_file

# A phase that ends so goes on to the next phase (it ended without its promise: reported;
# --stop-on-failure stops there instead); any other status stops the campaign.
_GOES_ON = (RunStatus.MAX_ITERATIONS, RunStatus.STALLED)

ObserversFor = Callable[[RunConfig], list[Observer]]
Echo = Callable[[str], None]
# Adjusts a phase's config before it starts (e.g. the demo's recorded session per phase).
Configure = Callable[[RunConfig], None]


@dataclass
class _Campaign:
    """A campaign being driven: its journal row and how to show and run its phases."""

    campaign_id: str
    cfg: RunConfig
    main: Path
    observers_for: ObserversFor | None
    echo: Echo
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    earlier: list[PhaseOutcome] = field(default_factory=list)  # of earlier sessions (resume)
    origin: str | None = None  # where the checkout was before the campaign (this session)
    configure: Configure | None = None
    # For the first phase this session starts as a new run (resume): `--more N`, its
    # iteration limit, and the budgets the operator changed, for its run_started event.
    first_limit: int | None = None
    budgets_changed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def journal(self) -> Journal:
        return Journal.open(self.main)

    def row(self) -> dict[str, Any]:
        journal = self.journal()
        try:
            row = journal.get_campaign(self.campaign_id)
        finally:
            journal.close()
        assert row is not None
        return row

    def observers(self, cfg: RunConfig) -> list[Observer]:
        return self.observers_for(cfg) if self.observers_for else []

    def totals(self) -> tuple[Usage, float | None, float]:
        journal = self.journal()
        try:
            return journal.campaign_totals(self.campaign_id)
        finally:
            journal.close()

    def update(self, **values: Any) -> None:
        journal = self.journal()
        try:
            journal.update_campaign(self.campaign_id, **values)
        finally:
            journal.close()

    def root(self) -> Path:
        """Where the branch is checked out: the campaign's worktree, else the checkout."""
        worktree = self.row().get("worktree")
        return Path(worktree) if worktree else self.main

    # --- one phase ---------------------------------------------------------------------

    def run_phase(self, phase: str, resume: Any = None) -> PhaseOutcome:
        """Run (or, with `resume`, resume) one phase; how it ended."""
        row = self.row()
        tasks_file = None
        if phase == REMEDIATE and resume is None:
            root = self.root() if row.get("branch") else self.cfg.repo
            base = row.get("base_commit")
            tasks_file = remediation_file(root, base)
            open_count = open_task_count(root, tasks_file, base) if tasks_file else None
            if not tasks_file or not open_count:
                why = (
                    "no open remediation task"
                    if tasks_file and open_count == 0
                    else f"no remediation task filed (neither {TASKMASTER_FILE} nor "
                    f"{CHECKLIST_FILE} lists one)"
                )
                ignored = (
                    operator_file(root, base, tasks_file).ignored if base and tasks_file else ""
                )
                if ignored:  # the other file, which the audit phases created
                    why += (
                        f" in {tasks_file}; {ignored}, created by the audit phases, is not worked"
                    )
                return self._skipped(phase, why)
        link = PhaseLink(self.campaign_id, phase)
        limit, changed = self.first_limit, self.budgets_changed
        self.first_limit, self.budgets_changed = None, {}
        if resume is not None:
            cfg, point = resume
        else:
            cfg = phase_config(self.cfg, phase, tasks_file)
            if limit is not None:
                cfg.max_iterations = limit
            if self.configure is not None:
                self.configure(cfg)
            point = None
            if row.get("branch"):  # a later phase: a new run on the campaign's branch
                usage, cost, elapsed = self.totals()
                tip = gitrun.out(self.main, "rev-parse", f"refs/heads/{row['branch']}")
                point = ResumePoint(
                    run_id=new_run_id(),
                    start=1,
                    usage=usage,
                    cost_usd=cost,
                    elapsed_s=elapsed,
                    branch=row["branch"],
                    worktree=row.get("worktree"),
                    base_commit=tip,
                    budgets_changed=changed,
                    new_run=True,
                )
            elif cfg.branch is None and not cfg.in_place:
                cfg.branch = default_branch_name("harden")
        self.echo(f"ralph harden: phase {phase} ({self._position(phase)})")
        result = execute(cfg, self.observers(cfg), point, link)
        if not row.get("branch"):  # the first phase made the branch: the campaign's now
            self._adopt_branch(result.run_id)
        outcome = PhaseOutcome(
            phase, result.status, result.reason, result.run_id, result.iterations, result.cost_usd
        )
        self.echo(f"ralph harden: phase {phase} {RunStatus(result.status).label}: {result.reason}")
        return outcome

    def _skipped(self, phase: str, why: str) -> PhaseOutcome:
        self.echo(f"ralph harden: phase {phase} skipped: {why}")
        if self.first_limit is not None:  # --more was for this phase: the next keep theirs
            self.echo(f"ralph harden: --more {self.first_limit} not used: phase {phase} skipped")
            self.first_limit = None
        return PhaseOutcome(phase, SKIPPED, why)

    def _position(self, phase: str) -> str:
        phases = self.cfg.phases
        return f"{phases.index(phase) + 1} of {len(phases)}"

    def _adopt_branch(self, run_id: str) -> None:
        journal = self.journal()
        try:
            run = journal.conn.execute(
                "SELECT branch, worktree, base_commit FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        finally:
            journal.close()
        if run is not None:
            self.update(
                branch=run["branch"], worktree=run["worktree"], base_commit=run["base_commit"]
            )

    # --- the whole campaign ------------------------------------------------------------

    def drive(self, start: int, resume: Any = None) -> CampaignResult:
        """Run the phases from index `start` (the first one resumed with `resume`)."""
        stopped: PhaseOutcome | None = None
        try:
            for index, phase in enumerate(self.cfg.phases[start:], start):
                outcome = self.run_phase(phase, resume if index == start else None)
                self.outcomes.append(outcome)
                status = outcome.status
                if status in (SKIPPED, RunStatus.COMPLETED):
                    continue
                if status in _GOES_ON and not self.cfg.stop_on_failure:
                    continue
                stopped = outcome
                break
        except BaseException as exc:  # a signal or an error between or inside phases
            cut, code, reason = status_of(exc)
            with contextlib.suppress(Exception):
                self.update(status=cut.value, exit_code=int(code), exit_reason=reason,
                            ended=time.time())  # fmt: skip
            raise
        return self.finish(stopped)

    def finish(self, stopped: PhaseOutcome | None) -> CampaignResult:
        usage, cost, _ = self.totals()
        row = self.row()
        failed = [o for o in self.outcomes_all() if o.status in _GOES_ON]
        if stopped is not None:
            status = RunStatus(stopped.status)
            if status in _GOES_ON:
                reason = f"stopped at phase {stopped.phase} (--stop-on-failure): {stopped.reason}"
            else:
                reason = f"phase {stopped.phase} {status.label}: {stopped.reason}"
        elif failed:
            status = RunStatus(failed[0].status)
            names = ", ".join(o.phase for o in failed)
            reason = f"all phases ran; {names} ended without the promise"
        else:
            status = RunStatus.COMPLETED
            reason = f"all {len(self.cfg.phases)} phases completed"
        result = CampaignResult(
            self.campaign_id,
            status,
            reason,
            self.outcomes_all(),
            usage,
            cost,
            row.get("branch") or "",
        )
        self.update(
            status=status.value, exit_code=int(status.exit_code), exit_reason=reason,
            ended=time.time(),
        )  # fmt: skip
        if self.cfg.pr and status not in (RunStatus.INTERRUPTED, RunStatus.STOPPED):
            publish_campaign(self.cfg, self.main, self.root(), self.row(), result, self.echo)
        with contextlib.suppress(Exception):  # a report must not fail a finished campaign
            result.report = write_campaign_report(self.main, self.campaign_id)
        if result.pr_url is not None or result.pr_failed:
            self.update(pr_url=result.pr_url)
        if RunStatus(status).finished and not self.cfg.no_commit:
            self._drop_if_empty(row)
        return result

    def outcomes_all(self) -> list[PhaseOutcome]:
        """Every phase's latest outcome, including those of earlier sessions (resume)."""
        seen = {o.phase: o for o in self.earlier}
        seen.update({o.phase: o for o in self.outcomes})
        return [seen[p] for p in self.cfg.phases if p in seen]

    def _drop_if_empty(self, row: dict[str, Any]) -> None:
        """A campaign that committed nothing leaves no empty branch behind."""
        branch, base = row.get("branch"), row.get("base_commit")
        if not branch or not base or self.cfg.in_place:
            return
        with contextlib.suppress(Exception):
            if discard_if_empty(self.main, self.root(), branch, base, self.origin):
                self.echo(f"ralph harden: no commit was made: branch {branch} removed")


def _lock(main: Path, campaign_id: str) -> Any:
    path = main / STATE_DIR / "locks" / f"campaign-{campaign_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = take_lock(path, label=f"campaign {campaign_id}, ")
    if isinstance(lock, str):
        raise UsageError(
            f"campaign {campaign_id} is running ({lock}); wait for it to end or stop it"
        )
    return lock


def run_campaign(
    cfg: RunConfig,
    observers_for: ObserversFor | None = None,
    echo: Echo | None = None,
    configure: Configure | None = None,
) -> CampaignResult:
    """Run a hardening campaign: `cfg.phases` one after another on one branch (see the module
    docstring). `cfg` comes from `campaign_config`; `observers_for` gives each phase's run
    its observers (the CLI's live view, a worker's reporter); `echo` receives one line per
    phase start and end; `configure` may adjust each phase's config before it starts (a
    resumed phase keeps the config it started with). Bad input is a UsageError before
    anything is created."""
    say = echo or (lambda line: None)
    for phase in cfg.phases:  # every phase's config is valid before the first one runs
        phase_config(cfg, phase, CHECKLIST_FILE if phase == REMEDIATE else None)
    check_pr(cfg)
    main = check(cfg)
    campaign_id = CAMPAIGN_PREFIX + new_run_id()
    journal = Journal.open(main)
    try:
        journal.start_campaign(campaign_id, list(cfg.phases), cfg.to_dict())
    finally:
        journal.close()
    lock = _lock(main, campaign_id)
    try:
        say(f"ralph harden: campaign {campaign_id}: {', '.join(cfg.phases)}")
        campaign = _Campaign(campaign_id, cfg, main, observers_for, say, configure=configure)
        campaign.origin = _current_branch(main) or _head_commit(main)
        return campaign.drive(0)
    finally:
        lock.release()


def resume_campaign(
    start: Path,
    ref: str,
    observers_for: ObserversFor | None = None,
    echo: Echo | None = None,
    display: dict[str, Any] | None = None,
    more: int | None = None,
    budgets: dict[str, Any] | None = None,
) -> CampaignResult:
    """Continue a campaign (its id, a unique part of it, or one of its runs' ids) at the phase
    and iteration where it stopped, then the phases after it (`campaign.plan_resume` says
    where). `more`: N more iterations for the phase it goes on with; `budgets`: --max-cost,
    --max-tokens, --timeout as given (None: not given), new budgets for the whole campaign,
    recorded in its config; the operator's alone (a repository file never raises them)."""
    raised = new_budgets(budgets)
    if more is not None and more < 1:
        raise UsageError(f"--more {more}: give the number of iterations to add (1 or more)")
    main, row = find_campaign(start, ref)
    campaign_id = row["id"]
    journal = Journal.open(main, create=False)
    try:
        runs = journal.campaign_runs(campaign_id)
        spent = journal.campaign_totals(campaign_id)
        named = named_run(journal, ref)
    finally:
        journal.close()
    lock = _lock(main, campaign_id)
    try:
        cfg = restore_config(row["config"], main)
        plan = plan_resume(row, cfg.phases, runs, more, raised)
        if more is not None and named is not None and named != plan.run_id:
            raise UsageError(
                f"run {named} is a phase of campaign {campaign_id}, which goes on with phase "
                f"{cfg.phases[plan.index]}: --more is for that phase; `ralph resume "
                f"{campaign_id} --more N` gives it N more iterations"
            )
        changed = raise_budgets(cfg, raised, spent, "campaign")
        for name, value in (display or {}).items():
            setattr(cfg, name, value)
        say = echo or (lambda line: None)
        campaign = _Campaign(campaign_id, cfg, main, observers_for, say)
        campaign.earlier = [
            PhaseOutcome(r["phase"], r.get("status") or "", r.get("reason") or "", r["id"],
                         r.get("iterations") or 0, r.get("cost_usd"))
            for r in runs
        ]  # fmt: skip
        if changed:
            journal = campaign.journal()
            try:
                journal.set_campaign_budgets(campaign_id, {k: v["now"] for k, v in changed.items()})
            finally:
                journal.close()
        campaign.update(status=RunStatus.RUNNING.value, ended=None, exit_reason=None)
        if plan.run_id is None:  # a new run for the phase: --more N is its limit
            campaign.first_limit, campaign.budgets_changed = more, changed
            say(f"ralph harden: resuming campaign {campaign_id}")
            return campaign.drive(plan.index)
        phase_cfg, point = resume_config(main, plan.run_id, more, display, budgets)
        phase_cfg.output_format = "text"  # the campaign's result is the one on stdout
        for name in BUDGETS:  # the campaign's budgets, whatever the phase's run recorded
            setattr(phase_cfg, name, getattr(cfg, name))
        point.usage, point.cost_usd, point.elapsed_s = spent  # the budgets count the campaign
        point.budgets_changed = changed
        say(f"ralph harden: resuming campaign {campaign_id} at phase {cfg.phases[plan.index]}")
        return campaign.drive(plan.index, (phase_cfg, point))
    finally:
        lock.release()
