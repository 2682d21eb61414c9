"""Builds a run from its config (workspace, journal, observers, tools, model) and drives it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..config import RunConfig
from ..errors import UsageError
from ..events import Bus, Observer
from ..git import gitrun
from ..git.api import GitHubError
from ..git.pr import draft_for, pr_title, preflight, publish
from ..models.base import Model, ModelResponse, Usage
from ..status import RESUMABLE, RunStatus
from ..views.markdown import text as md_text
from .agent import Agent
from .gate import Gate, parse_artifacts
from .guards import Guards
from .loop import Loop, RunResult
from .messages import iteration_message, system_prompt
from .signals import STOP


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


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


@dataclass(frozen=True)
class PhaseLink:
    """A run that is a phase of a hardening campaign (campaign.py): the journal links them;
    the campaign, not the phase, opens the pull request and tidies the branch."""

    campaign_id: str
    phase: str


def dry_run(cfg: RunConfig, out: TextIO = sys.stdout) -> None:
    """Print the resolved config and the first request that would be sent.

    Input a run would refuse is refused the same way (same checks, exit 2), and, like those
    checks, a dry run creates nothing: no branch, no `.ralph/`, no journal.
    """
    from ..git.repo import check
    from ..tools import make_toolset

    _preflight(cfg)
    check(cfg)
    tools, warnings = make_toolset(cfg, cfg.repo)
    system, prompt = system_prompt(cfg.repo, cfg.completion_promise), cfg.prompt
    if cfg.tasks:  # the first task, as the run would choose it
        from . import tasklist

        system = tasklist.system_prompt(cfg.repo)
        prompt = tasklist.first_prompt(cfg.repo, cfg.tasks, cfg.prompt)
    request: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": cfg.max_output_tokens,
        "system": system,
        "tools": tools.definitions(),
        "messages": [
            {
                "role": "user",
                "content": iteration_message(prompt, 1, cfg.max_iterations, None),
            }
        ],
    }
    shown: dict[str, Any] = {"config": cfg.to_dict(), "warnings": warnings, "request": request}
    if cfg.agent != "builtin":
        from ..agents import first_command

        # What an agent CLI is given instead of that request: its command and standard input.
        shown["request"] = first_command(cfg, request["system"], request["messages"][0]["content"])
    json.dump(shown, out, indent=2)
    out.write("\n")


def _preflight(cfg: RunConfig, resuming: bool = False) -> Model:
    """The checks a run makes before it touches git (model, credentials, prices, agent CLIs,
    sandbox, --pr); the model. Creates nothing, so --dry-run makes them too."""
    from .. import agents
    from ..models import make_model
    from ..tools.sandbox import choose_sandbox

    agents.preflight(cfg)  # the agent CLIs: installed, recent enough, logged in
    builtin = None
    if "builtin" in (cfg.agent, cfg.fallback_agent):
        builtin = make_model(cfg)
        _check_pricing(cfg, builtin)
    model = (
        builtin if builtin is not None and cfg.agent == "builtin" else agents.CliModel(cfg, builtin)
    )
    # A sandbox that cannot work: error before git (a worktree is checked once it exists).
    choose_sandbox(cfg.sandbox, cfg.network, None if cfg.worktree else cfg.repo)
    _check_pr(cfg)
    if cfg.tasks and not resuming:  # a malformed task file: exit 2 before anything is created
        # (A resumed run reads it from its branch, which may be in a worktree.)
        from .tasklist import check

        check(cfg.repo, cfg.tasks)
    return model


def _check_pricing(cfg: RunConfig, model: Model) -> None:
    from ..models import model_pricing

    if cfg.max_cost is not None and model_pricing(model.name, cfg) is None:
        raise UsageError(
            f"--max-cost needs a price for model {model.name!r}, and none is known; set "
            f"RALPH_PRICING='{{{model.name}: {{input: USD, output: USD}}}}' (per million "
            "tokens; a repository file cannot give one) or use --max-tokens"
        )


def _check_pr(cfg: RunConfig) -> None:
    """--pr problems that would only show at the end of a long run: report them now."""
    if not cfg.pr:
        return
    if cfg.no_commit:
        raise UsageError("--pr needs commits to push; drop --no-commit")

    try:  # token, remote, repository access and push credentials, before any model call
        preflight(cfg.repo, cfg.remote, base=cfg.pr_base, environ=os.environ)
    except GitHubError as exc:
        raise UsageError(exc.message) from None


def _publish(cfg: RunConfig, workspace: Any, result: RunResult, bus: Bus) -> bool:
    """Push the run branch and open or update its pull request; False when that failed."""
    from ..views.report import build_summary
    from ..views.report_md import render_markdown

    span = f"{workspace.base_commit}..{workspace.branch}"
    count = gitrun.run(workspace.root, "rev-list", "--count", span, check=False).stdout.strip()
    if count in (b"", b"0"):
        bus.emit(
            "warning", level="warning", message="--pr: the run made no commit; no pull request"
        )
        return True
    summary = build_summary(workspace.main_repo, result.run_id, cfg)
    body = render_markdown(summary, for_pr=True) if summary else md_text(result.reason)
    try:
        pr = publish(
            workspace.root,
            workspace.branch,
            title=pr_title(cfg.prompt_name, result.status, result.iterations, cfg.max_iterations),
            body=body,
            remote=cfg.remote,
            base=cfg.pr_base,
            labels=cfg.pr_labels,
            draft=draft_for(result.status, cfg.pr_draft),
        )
    except GitHubError as exc:
        bus.emit("pull_request_failed", level="error", message=exc.message)
        return False
    bus.emit(
        "pull_request",
        url=pr.url,
        number=pr.number,
        created=pr.created,
        base=pr.base,
        draft=pr.draft,
    )
    for note in pr.notes:
        bus.emit("warning", level="warning", message=f"--pr: {note}")
    for problem in pr.problems:  # the pull request is there, but not as it was asked for
        bus.emit("pull_request_failed", level="error", message=problem)
    return not pr.problems


def _make_gate(cfg: RunConfig, workspace: Any, run_id: str) -> tuple[Gate, Any]:
    """The completion gate, and its checkout to close at the end of the run (None with
    --no-commit). It judges a clean checkout of the run's last commit (the working tree with
    --no-commit), running verify commands there in a sandbox of their own."""
    from ..git.checkout import GateCheckout
    from ..tools.bash import BashTool
    from ..tools.sandbox import choose_sandbox, make_sandbox

    def run_command(cmd: str, where: Path) -> tuple[int, str]:
        kind, _ = choose_sandbox(cfg.sandbox, cfg.network, where)
        sandbox = make_sandbox(kind, where, cfg.network, cfg.env)
        bash = BashTool(sandbox, timeout=cfg.bash_timeout, output_cap=cfg.output_cap)
        try:
            with STOP.interruptible():  # a signal stops a long verify command at once
                result = bash.execute(cmd)
        finally:
            bash.close()  # its private HOME
        return (result.exit_code if result.exit_code is not None else 1), result.content

    checkout = (
        None if cfg.no_commit else GateCheckout(workspace.main_repo, workspace.branch, run_id)
    )
    gate = Gate(workspace.root, parse_artifacts(cfg.artifacts), cfg.verify, run_command, checkout)
    return gate, checkout


def _drop_empty_branch(workspace: Any, bus: Bus) -> None:
    """A finished run that committed nothing leaves no empty branch (or worktree) behind."""
    from ..git.cleanup import discard_if_empty

    origin = getattr(workspace, "origin", None)
    with contextlib.suppress(Exception):  # tidying up must not fail a finished run
        if discard_if_empty(
            workspace.main_repo, workspace.root, workspace.branch, workspace.base_commit, origin
        ):
            bus.emit(
                "warning",
                level="info",
                message=f"the run made no commit: its branch {workspace.branch} was removed"
                + (f" and the checkout is back on {origin}" if not workspace.worktree else ""),
            )


def _unfinished_run_here(journal: Any, main: Path, run_id: str, here: str | None) -> str | None:
    """A note when the checkout was (`here`) on the branch of a run that did not end (killed,
    e.g. as it switched to that branch) and that no process holds: the new run starts from
    it, and `ralph resume` would have continued that one."""
    from ..store.locks import lock_holder, run_lock_path
    from ..views.report import resume_command

    if here is None:
        return None
    row = journal.conn.execute(
        "SELECT id, status FROM runs WHERE branch = ? AND id != ? AND worktree IS NULL "
        "ORDER BY started DESC LIMIT 1",
        (here, run_id),
    ).fetchone()
    if row is None or row[1] not in RESUMABLE or lock_holder(run_lock_path(main, row[0])):
        return None
    state = "crashed" if row[1] == RunStatus.RUNNING else row[1]
    return (
        f"the checkout was on {here}, the branch of run {row[0]}, which did not end ({state}): "
        f"this run starts from it; to continue that run instead, stop this one and "
        f"`{resume_command(row[0], main)}`"
    )


def _sandbox_kind(tools: Any) -> str:
    """ "bwrap" or "none": where the agent's commands run."""
    bash = tools.get("bash")
    return str(getattr(getattr(bash, "sandbox", None), "kind", "none"))


@dataclass
class Run:
    """A run's parts, as open_run set them up: what the loop drives and the runner finishes."""

    cfg: RunConfig
    run_id: str
    model: Model
    workspace: Any
    bus: Bus
    loop: Loop
    tools: Any
    warnings: list[str]


@contextlib.contextmanager
def open_run(
    cfg: RunConfig,
    model: Model,
    run_id: str,
    observers: list[Observer] | None = None,
    resume: ResumePoint | None = None,
) -> Iterator[Run]:
    """Everything a run holds, in one ExitStack: its locks, workspace, journal, observers,
    tools, agent and gate checkout. Each is let go of as soon as it is taken hold of, so a
    failure partway through set-up (a task file that cannot be read, a sandbox that cannot
    be made) lets go of exactly what was opened. However the run ends, they are let go of in
    reverse order: the agent and tools first, then the observers (the journal among them),
    then the report, written with the error that ended the run, and the locks last."""
    from ..agents import assemble
    from ..models import model_pricing
    from ..tools import make_toolset
    from ..tools.sandbox import remove_dead_homes
    from ..views.report import ReportCollector
    from ..views.report_md import finish, report_path
    from .control import JournalControl

    with contextlib.ExitStack() as stack:
        try:
            workspace, journal = _take_workspace(cfg, model, run_id, resume, stack)
        except BaseException:
            _close_observers(observers)  # the caller's: the run's to close from the start
            raise
        stack.callback(STOP.uninstall)  # nothing to undo until STOP.install, below
        report = ReportCollector()  # writes the report at the end, however the run ends
        set_up = False

        def write_report(_type: object, error: BaseException | None, _tb: object) -> None:
            if set_up:  # a run whose set-up failed has not started: no report
                finish(report, cfg, workspace.main_repo, workspace.root, error)

        stack.push(write_report)
        bus = Bus(run_id, [journal, *(observers or []), report])
        stack.callback(bus.close)
        if cfg.notify:
            from ..views.notify import Notifier

            # Before the report collector: it keeps the notification_failed warnings it emits.
            notifier = Notifier(
                cfg.notify,
                emit=bus.emit,
                report=str(report_path(workspace.main_repo, run_id)),
                expect_pr=cfg.pr,
            )
            bus.observers.insert(len(bus.observers) - 1, notifier)
        remove_dead_homes()  # what runs killed hard (SIGKILL, OOM) left in the temp directory
        tools, warnings = make_toolset(cfg, workspace.root)
        stack.callback(tools.close)
        if not resume:
            note = _unfinished_run_here(journal, workspace.main_repo, run_id, workspace.origin)
            warnings += [note] if note else []
        builtin_model = getattr(model, "builtin", model)  # an agent CLI's fallback, if any
        pricing = model_pricing(builtin_model.name, cfg) if builtin_model else None

        def cost_of(response: ModelResponse) -> float | None:
            return pricing.cost(response.usage) if pricing else None

        guards = Guards(cfg)
        if resume:
            guards.usage, guards.cost_usd, guards.elapsed_before = (
                resume.usage,
                resume.cost_usd,
                resume.elapsed_s,
            )

        def builtin() -> Agent:
            return Agent(
                builtin_model,
                tools,
                bus,
                max_turns=cfg.max_turns,
                max_output_tokens=cfg.max_output_tokens,
                cost_of=cost_of,
            )

        agent = assemble(cfg, model, builtin, workspace.root, bus)
        stack.callback(getattr(agent, "close", lambda: None))
        gate, gate_checkout = _make_gate(cfg, workspace, run_id)
        if gate_checkout is not None:
            stack.callback(gate_checkout.close)
        loop = Loop(
            cfg, run_id, agent, bus, workspace, gate, guards, JournalControl(journal.conn, run_id)
        )
        if cfg.tasks:
            from .tasklist import TaskQueue, task_path

            # On resume, the task file as the run's branch has it: its statuses carry on.
            relative = task_path(cfg.repo, cfg.tasks)
            path = workspace.root / relative
            trusted = None
            if resume and not resume.new_run:
                # The file as the run began and the statuses the runner set since: not what
                # an iteration cut short (or killed) left in the tree.
                began = gitrun.run(
                    workspace.root,
                    "show",
                    f"{workspace.base_commit}:{relative.as_posix()}",
                    check=False,
                )
                text = began.stdout.decode("utf-8", "replace") if began.returncode == 0 else ""
                trusted = (text, journal.task_statuses(run_id))
            loop.tasks = TaskQueue(path, cfg.task_failures, bus, trusted)
            if resume:  # failures in a row go on counting across a resume
                loop.tasks.restore(*journal.task_failures(run_id, resume.start - 1))

        stack.callback(STOP.settle)  # a late signal must not cost the run its report
        STOP.install()
        set_up = True
        yield Run(cfg, run_id, model, workspace, bus, loop, tools, warnings)


def _close_observers(observers: list[Observer] | None) -> None:
    """Close the observers of a run that did not start (its bus would have)."""
    Bus("", observers or []).close()


def _take_workspace(
    cfg: RunConfig,
    model: Model,
    run_id: str,
    resume: ResumePoint | None,
    stack: contextlib.ExitStack,
) -> tuple[Any, Any]:
    """Take the run's locks (let go of by `stack`, last taken first), then its workspace and
    journal: a new run is recorded before its branch is made and the checkout switched."""
    from ..git import repo as git_repo
    from ..git.workspace import Workspace
    from ..store.journal import Journal
    from ..store.locks import acquire_run_lock

    if resume:
        # Take the run before touching its branch, so a second process cannot switch it; and
        # the checkout, when the run works in it, so no other run has its HEAD there.
        stack.callback(acquire_run_lock(cfg.repo, run_id).release)
        if not resume.worktree:
            lock = git_repo.acquire_checkout_lock(cfg.repo, run_id, resuming=True)
            stack.callback(lock.release)
        workspace = Workspace.reopen(
            cfg, resume.branch, resume.worktree, resume.base_commit, run_id, resume.origin
        )
        journal = Journal.open(workspace.main_repo)
        stack.callback(journal.close)  # the bus closes it first; closing twice is harmless
        return workspace, journal
    main = git_repo.check(cfg)
    if not cfg.worktree:
        stack.callback(git_repo.acquire_checkout_lock(main, run_id).release)
        # A run that held the checkout between our check and our lock may have left it
        # changed (its branch checked out, its uncommitted work): look again, as its owner.
        git_repo.check(cfg, holding_checkout=True)
    stack.callback(acquire_run_lock(main, run_id).release)
    journal = Journal.open(main)
    stack.callback(journal.close)
    planned: list[str] = []

    def record(branch: str, base: str, root: Path) -> None:
        planned.append(branch)
        journal.record_planned(run_id, cfg, model.name, branch, base, root)

    try:
        # The run is in the journal before its branch exists and the checkout moves: a
        # kill at any moment after leaves a run `ralph resume` continues.
        workspace = Workspace.prepare(cfg, run_id, cfg.prompt_name, record=record)
    except BaseException:
        with contextlib.suppress(Exception):
            if cfg.in_place or not any(git_repo._branch_exists(main, b) for b in planned):
                journal.forget_planned(run_id)  # nothing was made: nothing to resume
        raise
    return workspace, journal


def execute(
    cfg: RunConfig,
    observers: list[Observer] | None = None,
    resume: ResumePoint | None = None,
    phase: PhaseLink | None = None,
) -> RunResult:
    """Run (or resume) the loop; raises UsageError for bad input before creating anything.
    `phase`: the run is a phase of a hardening campaign (campaign.py)."""
    try:
        model = _preflight(cfg, resuming=resume is not None)  # starts the SDK's import
    except BaseException:
        _close_observers(observers)
        raise
    run_id = resume.run_id if resume else new_run_id()
    with open_run(cfg, model, run_id, observers, resume) as run:
        from ..views.report import resume_command  # imported by open_run already

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
            resume_cmd=resume_command(run_id, workspace.main_repo),
        )
        if cfg.pr and result.status not in (RunStatus.INTERRUPTED, RunStatus.STOPPED):
            result.pr_failed = not _publish(cfg, workspace, result, run.bus)
        if RunStatus(result.status).finished and not cfg.no_commit and phase is None:
            _drop_empty_branch(workspace, run.bus)
        return result
