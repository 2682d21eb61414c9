"""One iteration of a fleet run, in a process of its own on a worker (`python -m
ralph.fleet.iteration IN.json OUT.json`): clone or fetch the repository, check out the run
branch as the last iteration pushed it, run that one iteration with ralph's own loop (a
resumed run: same run id, branch and totals), push the branch, write the result.

A process per iteration: the loop's signal handling, process-wide stop flag and sandbox are
each run's own, a cancelled iteration ends as an interrupted one does at a terminal (SIGTERM:
the work so far is committed and pushed), and a worker that dies takes the iteration with it
(the worker asks the kernel to kill this process then) instead of leaving it pushing behind
the back of the worker that takes the run over. Imports no Temporal code.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ExitCode, RalphError, UsageError
from ..events import Event
from ..git import gitrun
from ..git.push import auth_env, push_branch, remote_url
from ..models.base import Usage
from ..redact import redact
from ..run.campaign_run import run_campaign
from ..run.control import add_guidance, request_stop
from ..run.gate import rejection_feedback
from ..run.runner import KeptTasks, ResumePoint, execute
from ..store.journal import Journal
from ..store.schema import db_path
from .jobconfig import run_config
from .model import Guide, IterationInput, IterationResult, RepoJob, TaskState

PUSH_REMOTE = "ralph-work"  # the remote run branches go to, when it is not origin


def checkout_dir(workdir: Path, workflow_id: str) -> Path:
    """Where a worker keeps its checkout of one run: a name made of the workflow id."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in workflow_id)
    return workdir / "checkouts" / safe


def _git(root: Path, *args: str, check: bool = True) -> Any:
    env = _auth(root, args)
    return gitrun.run(root, *args, check=check, env=env, timeout=600.0)


def _auth(root: Path, args: tuple[str, ...]) -> dict[str, str]:
    """The GitHub token for fetches from the API's own host (never stored in .git/config)."""

    if not args or args[0] != "fetch" or len(args) < 3:
        return {}
    remote = next((a for a in args[1:] if not a.startswith("-")), None)
    if remote is None:
        return {}
    try:
        url = remote_url(root, remote, push=False)
    except RalphError:
        return {}
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
    api = (os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    count = int(gitrun.git_env().get("GIT_CONFIG_COUNT", "0") or "0")
    return auth_env(url, token, api, os.environ, count)


def push_remote(job: RepoJob) -> str:
    return PUSH_REMOTE if job.work_remote else "origin"


def sync_checkout(root: Path, job: RepoJob, branch: str | None = None) -> str | None:
    """Make `root` a checkout of the job's repository with every branch fetched; the tip of
    the run branch on the remote it is pushed to, or None when it is not there (yet)."""
    if not (root / ".git").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        _git(root, "init", "-q")
        _git(root, "remote", "add", "origin", job.url)
        if job.work_remote:
            _git(root, "remote", "add", PUSH_REMOTE, job.work_remote)
    _git(root, "fetch", "-q", "--prune", "--no-tags", "origin",
         "+refs/heads/*:refs/remotes/origin/*")  # fmt: skip
    if branch is None:
        return None
    remote = push_remote(job)
    if remote != "origin":
        _git(root, "fetch", "-q", "--no-tags", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
             check=False)  # fmt: skip
    tip = _git(root, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{branch}^{{commit}}",
               check=False)  # fmt: skip
    return tip.stdout.decode().strip() if tip.returncode == 0 else None


def resolve_base(root: Path, base: str | None) -> tuple[str, str]:
    """(base branch, its commit) on origin: `base`, or the remote's default branch."""
    if base is None:
        head = _git(root, "ls-remote", "--symref", "origin", "HEAD", check=False)
        for line in head.stdout.decode().splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                base = line.split("\t")[0].removeprefix("ref: refs/heads/")
        if base is None:
            raise UsageError(f"{root}: the remote names no default branch; give `base:`")
    found = _git(root, "rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{base}^{{commit}}",
                 check=False)  # fmt: skip
    if found.returncode != 0:
        raise UsageError(f"the repository has no branch {base!r}; fix `base:` in the fleet file")
    return base, found.stdout.decode().strip()


class _OneIteration:
    """Collects the iteration's end and a task-list run's task events, and asks the loop (as
    `ralph stop` would) to end after it: the next iteration is the workflow's to start,
    wherever it runs."""

    def __init__(self, db: Path, run_id: str, iteration: int, tasks: TaskState) -> None:
        self.db, self.run_id, self.iteration = db, run_id, iteration
        self.ended: dict[str, Any] | None = None
        self.rejected: list[str] | None = None
        # The run's task state, brought up to date by this iteration's events, as the journal's
        # readers (task_statuses, recorded_task_list, task_failures) would find it.
        self.tasks = TaskState(dict(tasks.statuses), tasks.pinned, dict(tasks.failures))

    def handle(self, event: Event) -> None:
        self._task_event(event)
        if event.iteration != self.iteration:
            return
        if event.name == "promise_seen" and not event.data.get("accepted"):
            self.rejected = list(event.data.get("reasons") or [])
        elif event.name == "promise_seen":
            self.rejected = None
        if event.name == "iteration_ended":
            self.ended = dict(event.data)

            conn = sqlite3.connect(self.db, timeout=10.0, isolation_level=None)
            try:
                request_stop(conn, self.run_id)
            finally:
                conn.close()

    def _task_event(self, event: Event) -> None:
        data, tasks = event.data, self.tasks
        if event.name == "task_list" and tasks.pinned is None:
            tasks.pinned = {str(k): dict(v) for k, v in dict(data.get("tasks") or {}).items()}
        elif event.name == "task_ended":
            task_id = str(data.get("id"))
            tasks.statuses[task_id] = [
                str(data.get("status")),
                redact(str(data.get("reason") or "")),
            ]
            tasks.failures.pop(task_id, None)
        elif event.name == "task_retry":
            tasks.failures[str(data.get("id"))] = int(data.get("failures") or 0)
            tasks.feedback = redact(str(data.get("feedback") or "")) or None

    def close(self) -> None:
        pass


def _kept_tasks(tasks: TaskState) -> KeptTasks:
    """The workflow's task state as a resume takes it (instead of this checkout's journal,
    which has none of the iterations other workers ran)."""
    statuses = {k: (v[0], v[1] if len(v) > 1 else "") for k, v in tasks.statuses.items()}
    return KeptTasks(statuses, tasks.pinned, dict(tasks.failures), tasks.feedback)


def _give_guidance(root: Path, run_id: str, guidance: list[Guide]) -> None:
    """The workflow's guidance as one-shot requests in this checkout's journal: the loop
    gives them to the iteration (the workflow resends what is to be kept)."""
    if not guidance:
        return

    journal = Journal.open(root)
    try:
        for guide in guidance:
            add_guidance(journal.conn, run_id, guide.text, keep=False)
    finally:
        journal.close()


def run_iteration(inp: IterationInput, workdir: Path) -> IterationResult:
    """Run iteration `inp.iteration` of the run in this worker's checkout; push it."""

    job = inp.job
    root = checkout_dir(workdir, inp.workflow_id)
    tip = sync_checkout(root, job, inp.branch)
    if tip is None and inp.expected_head is not None:
        raise RalphError(
            f"the run branch {inp.branch} is gone from the remote (it was at "
            f"{inp.expected_head[:12]}); the run cannot go on"
        )
    start = tip or inp.base_commit
    _git(root, "checkout", "-q", "-f", "-B", inp.branch, start)
    _git(root, "clean", "-q", "-ffdx", "-e", "/.ralph/")
    cfg = run_config(job, root)
    _give_guidance(root, inp.run_id, inp.guidance)
    watch = _OneIteration(db_path(root), inp.run_id, inp.iteration, inp.tasks)
    point = ResumePoint(
        run_id=inp.run_id,
        start=inp.iteration,
        usage=Usage(**inp.usage),
        cost_usd=inp.cost_usd,
        elapsed_s=inp.elapsed_s,
        branch=inp.branch,
        worktree=None,
        base_commit=inp.base_commit,
        feedback=inp.feedback,
        tasks=_kept_tasks(inp.tasks),
    )
    db_path(root).parent.mkdir(parents=True, exist_ok=True)
    result = execute(cfg, [watch], point)
    head = _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{inp.branch}",
                check=False).stdout.decode().strip()  # fmt: skip
    if head and head != inp.base_commit and head != tip:
        token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
        api = (os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        push_branch(root, push_remote(job), inp.branch, token=token, api_url=api)
    ended = watch.ended or {}
    cost = result.cost_usd
    return IterationResult(
        iteration=inp.iteration,
        status=str(result.status),
        reason=result.reason,
        outcome=str(ended.get("outcome") or ""),
        summary=str(ended.get("summary") or ""),
        commit=ended.get("commit"),
        head=head or None,
        usage=result.usage.as_dict(),
        cost_usd=cost,
        iteration_cost_usd=None if cost is None or inp.cost_usd is None else cost - inp.cost_usd,
        elapsed_s=inp.elapsed_s + result.duration_s,
        feedback=rejection_feedback(watch.rejected) if watch.rejected else None,
        worker=socket.gethostname(),
        tasks=watch.tasks,
    )


def run_campaign_job(inp: IterationInput, workdir: Path) -> IterationResult:
    """A `ralph harden` campaign, whole (its phases are runs of their own, in this process),
    on the run branch; the campaign opens its pull request itself."""

    job = inp.job
    root = checkout_dir(workdir, inp.workflow_id)
    tip = sync_checkout(root, job, inp.branch)
    # An earlier attempt's pushed work is kept: the campaign goes on from it.
    _git(root, "checkout", "-q", "-f", "--detach", tip or inp.base_commit)
    _git(root, "clean", "-q", "-ffdx", "-e", "/.ralph/")
    _git(root, "branch", "-q", "-D", inp.branch, check=False)
    if job.github:  # names the GitHub repository for the campaign's pull request
        os.environ["RALPH_GITHUB_REPO"] = job.github
    cfg = run_config(job, root, pr=job.pr, pr_base=inp.base or None, remote=push_remote(job),
                     branch=inp.branch)  # fmt: skip
    result = run_campaign(cfg)
    head = _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{inp.branch}",
                check=False).stdout.decode().strip()  # fmt: skip
    if head and head != tip and not result.pr_url:
        token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
        api = (os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        push_branch(root, push_remote(job), inp.branch, token=token, api_url=api)
    phases = "; ".join(f"{o.phase}: {o.status} ({o.iterations} it.)" for o in result.phases)
    iterations = sum(o.iterations for o in result.phases)
    cost = result.cost_usd
    return IterationResult(
        iteration=inp.iteration,
        status=str(result.status),
        reason=result.reason,
        outcome=f"campaign, {iterations} iteration(s)",
        summary=phases,
        head=head or None,
        usage=result.usage.as_dict(),
        cost_usd=cost,
        iteration_cost_usd=None if cost is None or inp.cost_usd is None else cost - inp.cost_usd,
        elapsed_s=inp.elapsed_s,
        worker=socket.gethostname(),
        pr_url=result.pr_url,
    )


def load_input(path: Path) -> IterationInput:
    data = json.loads(path.read_text(encoding="utf-8"))
    job = RepoJob(**data.pop("job"))
    guidance = [Guide(**g) for g in data.pop("guidance", [])]
    tasks = TaskState(**data.pop("tasks", None) or {})
    return IterationInput(job=job, guidance=guidance, tasks=tasks, **data)


def main(argv: list[str] | None = None) -> int:
    """IN.json (an IterationInput) OUT.json; exit 0 with OUT written, 2 for a problem with
    the job (not worth another attempt), 1 for anything else; the message on stderr."""
    args = sys.argv[1:] if argv is None else argv
    inp = load_input(Path(args[0]))
    workdir = Path(os.environ.get("RALPH_FLEET_DIR") or Path.cwd())
    try:
        run = run_campaign_job if inp.job.campaign else run_iteration
        result = run(inp, workdir)
    except RalphError as exc:
        sys.stderr.write(f"ralph fleet: error: {redact(exc.message)}\n")
        return int(ExitCode.USAGE if isinstance(exc, UsageError) else ExitCode.ERROR)
    out = Path(args[1])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result)), encoding="utf-8")
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
