"""Resuming a run: its config, branch and totals from the journal; credentials from the env."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunConfig, require_main_repo, restore_config, validate
from ..errors import RalphError, UsageError
from ..git.commits import commit_files, run_commits
from ..git.repo import _branch_exists, _git
from ..layers import COMMAND_LINE, option_name, parse_layer
from ..models.base import Usage
from ..settings import SETTINGS
from ..status import RunStatus
from ..store.journal import Journal
from ..store.locks import lock_holder, run_lock_path
from ..store.schema import db_path
from ..text import fmt_cost, fmt_duration
from ..trust import shown
from .gate import rejection_feedback
from .guards import BUDGETS
from .runner import ResumePoint

if TYPE_CHECKING:
    from ..store.journal import Journal
    from ..store.resume_state import ResumeState


def reconcile_with_branch(
    journal: Journal, main: Path, run_id: str, base: str, branch: str
) -> bool:
    """File in the journal the run's commits that it never recorded; whether there were any.

    A process killed between an iteration's commit and its journal row leaves the commit on
    the branch (its `Ralph-Run` / `Ralph-Iteration` trailers say whose it is) and the
    iteration open: that iteration ended, and resume must not run it (and commit it) again.
    Only for a run no live process holds (it would record them itself).
    """

    if lock_holder(run_lock_path(main, run_id)) is not None:
        return False
    if not _branch_exists(main, branch):
        if not journal.recorded_commits(run_id):
            # A finished run that committed nothing had its empty branch removed: `--more`
            # goes on from the commit it was made from.
            _git(main, "branch", "-q", branch, base)
        return False
    try:
        commits = run_commits(main, base, branch, run_id)
    except RalphError:  # no such branch: resuming says so
        return False
    known = journal.recorded_commits(run_id)
    missing = [c for c in commits if c.sha not in known]
    for commit in missing:
        journal.record_branch_commit(
            run_id,
            commit.iteration,
            commit.sha,
            commit.subject,
            commit_files(main, commit.sha),
            ended=not commit.interrupted,
        )
    return bool(missing)


# How a run is shown is not part of the run: a resumed run takes these from RALPH_* and flags.
DISPLAY = ("log_format", "quiet", "verbose", "show_text", "output_format")


def display_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """The display settings of this process: RALPH_LOG_FORMAT etc., then the given flags."""

    out: dict[str, Any] = {}
    for name in DISPLAY:
        var = "RALPH_" + name.upper()
        if var in os.environ:
            out.update(parse_layer({name: os.environ[var]}, f"environment variable {var}"))
    given = {k: v for k, v in flags.items() if k in DISPLAY and v is not None}
    out.update(parse_layer(given, COMMAND_LINE))
    return out


Spent = tuple[Usage, float | None, float]  # tokens, cost (None: a price unknown), seconds


def _spent(name: str, spent: Spent) -> tuple[float | None, str]:
    """What has been used of budget `name`, and that amount as a person reads it."""

    usage, cost, elapsed = spent
    if name == "max_cost":
        return cost, fmt_cost(cost)
    if name == "max_tokens":
        return usage.total, f"{usage.total:,} tokens"
    return elapsed, fmt_duration(elapsed)


def raise_budgets(
    cfg: RunConfig, budgets: dict[str, Any], spent: Spent, whole: str = "run"
) -> dict[str, dict[str, Any]]:
    """Set the operator's new budgets (already parsed) on `cfg`, each checked against what
    the whole run (or campaign: `whole`) has `spent`; what changed, {name: {"was": old,
    "now": new}}, for the journal. Each must leave room to work."""

    changed: dict[str, dict[str, Any]] = {}
    for name, value in budgets.items():
        used, shown_used = _spent(name, spent)
        if used is not None and value <= used:
            raise UsageError(
                f"{option_name(name)} {shown(SETTINGS[name], value)} leaves nothing to spend: "
                f"the {whole} has used {shown_used} already; give a larger value (a budget "
                f"counts the whole {whole})"
            )
        old = getattr(cfg, name)
        if value != old:
            changed[name] = {"was": old, "now": value}
        setattr(cfg, name, value)
    return changed


def new_budgets(budgets: dict[str, Any] | None) -> dict[str, Any]:
    """--max-cost, --max-tokens, --timeout as given (None: not given), parsed and checked as a
    new run's flags are. The operator's alone: neither a repository file nor the environment
    of a later shell changes them."""

    given = {k: v for k, v in (budgets or {}).items() if k in BUDGETS and v is not None}
    return parse_layer(given, COMMAND_LINE)


def change_budgets(
    cfg: RunConfig, state: ResumeState, budgets: dict[str, Any], more: int | None
) -> dict[str, dict[str, Any]]:
    """Apply the operator's new budgets (already parsed) to a resumed run's config; what
    changed, {name: {"was": old, "now": new}}, for the journal. Each must leave room to work."""

    status = RunStatus(state.status)
    if more is None and status.finished and status is not RunStatus.BUDGET:
        raise UsageError(
            f"run {state.run_id} {status.label}; a larger budget alone does not continue it: "
            f"add iterations with `--more N`"
        )
    return raise_budgets(cfg, budgets, (state.usage, state.cost_usd, state.elapsed_s))


def _origin(journal: Journal, run_id: str) -> str | None:
    """Where the checkout was when the run began, as its first run_started event says."""

    row = journal.conn.execute(
        "SELECT data FROM events WHERE run_id = ? AND name = 'run_started' ORDER BY id LIMIT 1",
        (run_id,),
    ).fetchone()
    origin = json.loads(row[0] or "{}").get("origin") if row is not None else None
    return origin if isinstance(origin, str) else None


def resume_config(
    start: Path,
    run: str,
    more: int | None = None,
    display: dict[str, Any] | None = None,
    budgets: dict[str, Any] | None = None,
) -> tuple[RunConfig, ResumePoint]:
    """The config and starting point of run `run` (an id or unique prefix) in the repo at
    `start`; `budgets`: --max-cost, --max-tokens, --timeout as given (None: not given)."""

    main = require_main_repo(start)
    if not db_path(main).exists():
        raise UsageError(f"no runs recorded in {main}; `ralph runs` lists them")
    raised = new_budgets(budgets)
    going_on = more is not None or bool(raised)  # a finished run may go on
    journal = Journal.open(main, create=False)
    try:
        state = journal.resume_state(run, more=going_on)
        if reconcile_with_branch(journal, main, state.run_id, state.base_commit, state.branch):
            state = journal.resume_state(run, more=going_on)
        origin = _origin(journal, state.run_id)
    finally:
        journal.close()
    cfg = restore_config(state.config, main)
    for name, value in (display or {}).items():
        setattr(cfg, name, value)
    if more is not None:
        if more < 1:
            raise UsageError(f"--more {more}: give the number of iterations to add (1 or more)")
        # N more than the iterations that ended; the run's record says how many that is.
        cfg.max_iterations = state.last_iteration + more
    changed = change_budgets(cfg, state, raised, more) if raised else {}
    validate(cfg)
    point = ResumePoint(
        run_id=state.run_id,
        start=state.last_iteration + 1,
        usage=state.usage,
        cost_usd=state.cost_usd,
        elapsed_s=state.elapsed_s,
        branch=state.branch,
        worktree=state.worktree,
        base_commit=state.base_commit,
        feedback=rejection_feedback(state.rejected) if state.rejected else None,
        budgets_changed=changed,
        origin=origin,
    )
    return cfg, point
