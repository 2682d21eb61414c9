"""A run's lifecycle: `open_run` takes hold of every part of a run (its locks, workspace,
journal, observers, tools, agent and gate checkout) in one ExitStack, and lets go of them
however the run ends; `after_run` (publish.py) and the loop (loop.py) do the rest."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agents import assemble
from ..config import RunConfig
from ..events import Bus, Observer
from ..git import repo as git_repo
from ..git.checkout import GateCheckout
from ..git.cleanup import discard_if_empty
from ..git.workspace import Workspace
from ..models import model_pricing
from ..models.base import Model, ModelResponse
from ..status import RESUMABLE, RunStatus
from ..store.journal import Journal
from ..store.locks import acquire_run_lock, lock_holder, run_lock_path
from ..tools import make_toolset
from ..tools.bash import BashTool
from ..tools.probe import choose_sandbox
from ..tools.sandbox import make_sandbox, remove_dead_homes
from ..views.notify import Notifier
from ..views.report import ReportCollector, resume_command
from ..views.report_md import finish, report_path
from .agent import Agent
from .control import JournalControl
from .gate import Gate, parse_artifacts
from .guards import Guards
from .loop import Loop
from .signals import STOP
from .tasklist import TaskQueue, task_path
from .taskpins import committed_file, operator_file, recorded_task_list

if TYPE_CHECKING:
    from .runner import PhaseLink, ResumePoint


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
    resume_cmd: str  # how to continue the run if it ends resumable


@contextlib.contextmanager
def open_run(
    cfg: RunConfig,
    model: Model,
    run_id: str,
    observers: list[Observer] | None = None,
    resume: ResumePoint | None = None,
    phase: PhaseLink | None = None,
) -> Iterator[Run]:
    """Everything a run holds, in one ExitStack: its locks, workspace, journal, observers,
    tools, agent and gate checkout. How to let go of each is registered as soon as it is
    taken hold of, so a failure partway through set-up (a task file that cannot be read, a
    gate checkout that cannot be made) lets go of exactly what was opened. However the run
    ends, they are let go of in reverse order: the agent and tools first, then the observers
    (the journal among them), then the report, written with the error that ended the run,
    and the locks last. A new run whose set-up fails undoes what it made (see `_undo_set_up`)
    before its locks are let go of."""
    with contextlib.ExitStack() as stack:
        try:
            workspace, journal = _take_workspace(cfg, model, run_id, resume, stack)
        except BaseException:
            _close_observers(observers)  # the caller's: the run's to close from the start
            raise
        set_up = False

        def undo(_type: object, error: BaseException | None, _tb: object) -> None:
            if error is not None and not set_up and not resume:
                _undo_set_up(cfg, workspace, run_id)

        stack.push(undo)  # after all that is opened below is closed; before the locks
        stack.callback(STOP.uninstall)  # nothing to undo until STOP.install, below
        report = ReportCollector()  # writes the report at the end, however the run ends

        def write_report(_type: object, error: BaseException | None, _tb: object) -> None:
            if set_up:  # a run whose set-up failed has not started: no report
                finish(report, cfg, workspace.main_repo, workspace.root, error)

        stack.push(write_report)
        bus = Bus(run_id, [journal, *(observers or []), report])
        stack.callback(bus.close)
        if cfg.notify:
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
            # On resume, the task file as the run's branch has it: its statuses carry on.
            relative = task_path(cfg.repo, cfg.tasks)
            path = workspace.root / relative
            trusted, pinned = None, None
            if resume and not resume.new_run:
                # The file as the run began and the statuses the runner set since: not what
                # an iteration cut short (or killed) left in the tree.
                began = committed_file(workspace.root, workspace.base_commit, relative)
                trusted = (began, journal.task_statuses(run_id))
                pinned = recorded_task_list(journal.conn, run_id)  # verify lines as it began
                if resume.tasks is not None:  # kept outside this journal (a fleet's workflow)
                    trusted, pinned = (began, resume.tasks.statuses), resume.tasks.pinned or pinned
            # A campaign's later phase: the operator's tasks as the campaign began, not as its
            # audit phases' agents left them.
            campaign = journal.get_campaign(phase.campaign_id) if phase else None
            operator = None
            if campaign and campaign.get("base_commit"):
                operator = operator_file(workspace.root, campaign["base_commit"], relative)
            loop.tasks = TaskQueue(
                path, cfg.task_failures, bus, trusted, pinned, operator, root=workspace.root
            )
            if resume and resume.tasks is not None:
                loop.tasks.restore(resume.tasks.failures, resume.tasks.feedback)
            elif resume:  # failures in a row go on counting across a resume
                loop.tasks.restore(*journal.task_failures(run_id, resume.start - 1))

        resume_cmd = resume_command(run_id, workspace.main_repo)
        stack.callback(STOP.settle)  # a late signal must not cost the run its report
        STOP.install()
        set_up = True
        yield Run(cfg, run_id, model, workspace, bus, loop, tools, warnings, resume_cmd)


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


def _undo_set_up(cfg: RunConfig, workspace: Any, run_id: str) -> None:
    """A new run whose set-up failed did not start: the checkout goes back where it was (the
    user's uncommitted work comes along: the branch is at the same commit), its branch and
    worktree are removed (only while they have no commit of their own, see
    `discard_if_empty`), and the journal forgets it, as it forgets a run whose branch could
    not be made: the error was the user's to read at once, and a record would be a run that
    never began, with nothing to show, resume or clean. Whatever cannot be undone is left as
    the journal knows it (a run `ralph resume` continues); the set-up's own error is the one
    the user sees."""
    with contextlib.suppress(Exception):
        made = not cfg.in_place  # --in-place works on the checkout's branch: nothing made
        if made and not discard_if_empty(
            workspace.main_repo,
            workspace.root,
            workspace.branch,
            workspace.base_commit,
            workspace.origin,
        ):
            return
        journal = Journal.open(workspace.main_repo)  # the bus has closed the run's own
        with contextlib.closing(journal):
            journal.forget_planned(run_id)


def _make_gate(cfg: RunConfig, workspace: Any, run_id: str) -> tuple[Gate, Any]:
    """The completion gate, and its checkout to close at the end of the run (None with
    --no-commit). It judges a clean checkout of the run's last commit (the working tree with
    --no-commit), running verify commands there in a sandbox of their own."""

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


def _unfinished_run_here(journal: Any, main: Path, run_id: str, here: str | None) -> str | None:
    """A note when the checkout was (`here`) on the branch of a run that did not end (killed,
    e.g. as it switched to that branch) and that no process holds: the new run starts from
    it, and `ralph resume` would have continued that one."""
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
