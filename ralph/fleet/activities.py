"""The fleet's activities, run by `ralph fleet worker`: prepare a run, run one iteration (in
a process of its own, heartbeating while it works), open the pull request at the end.

Credentials come from the worker's environment only (ANTHROPIC_API_KEY, GITHUB_TOKEN, ...);
nothing an activity returns carries one (summaries and reasons are redacted by the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..errors import RalphError, UsageError
from ..git import gitrun
from ..git.api import GitHubError
from ..git.pr import draft_for, pr_title, publish
from ..models import make_model, model_pricing
from ..redact import redact
from ..run.preflight import preflight as _preflight
from ..status import RunStatus
from ..views.markdown import code, text
from .iteration import checkout_dir, push_remote, resolve_base, sync_checkout
from .jobconfig import run_config
from .model import (
    IterationInput,
    IterationResult,
    Prepared,
    Published,
    PublishInput,
    RepoRun,
    TaskState,
)

T = TypeVar("T")
PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 30.0  # a cancelled iteration's process gets this long to commit and push


def _die_with_parent() -> None:
    """In the iteration's process: the kernel kills it when the worker dies (SIGKILL, OOM),
    so it never pushes behind the back of the worker that takes the run over."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def _heartbeating(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in a thread, heartbeating meanwhile: a worker that dies during it is
    noticed after the heartbeat timeout, not after the activity's whole time limit."""
    info = activity.info()
    every = max(
        0.2, (info.heartbeat_timeout.total_seconds() if info.heartbeat_timeout else 30.0) / 4
    )
    task = asyncio.ensure_future(asyncio.to_thread(work, *args))
    while True:
        activity.heartbeat()
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return task.result()


def _job_error(exc: RalphError) -> ApplicationError:
    """A RalphError as Temporal sees it: a usage error is not worth another attempt."""

    return ApplicationError(
        redact(exc.message), type=type(exc).__name__, non_retryable=isinstance(exc, UsageError)
    )


class Activities:
    """The activities of one worker, which keeps its checkouts under `workdir`."""

    def __init__(self, workdir: Path, identity: str) -> None:
        self.workdir = workdir
        self.identity = identity
        # The iteration process of each workflow: an attempt Temporal gave up on (its
        # heartbeats were late) may still run here when the next attempt comes.
        self.running: dict[str, asyncio.subprocess.Process] = {}

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM: the iteration ends as interrupted (committed, pushed); SIGKILL if slow."""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_GRACE_S)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    @activity.defn(name="ralph.prepare")
    async def prepare(self, run: RepoRun) -> Prepared:
        """Clone (or fetch) the repository, resolve the base, check the settings."""
        try:
            return await _heartbeating(self._prepare, run, activity.info().workflow_id or "")
        except RalphError as exc:
            raise _job_error(exc) from None

    def _prepare(self, run: RepoRun, workflow_id: str) -> Prepared:
        job = run.job
        root = checkout_dir(self.workdir, workflow_id)
        sync_checkout(root, job)
        base, base_commit = resolve_base(root, job.base)
        cfg = run_config(job, root)
        _preflight(cfg)  # model, credentials, sandbox: a job this worker cannot run says so
        if run.budgeted:
            model = make_model(cfg)
            if model_pricing(model.name, cfg) is None:
                raise UsageError(
                    f"the fleet's max_cost needs a price for model {model.name!r}: set "
                    "RALPH_PRICING in the workers' environment (a workflow cannot set prices)"
                )
        branch = job.branch or f"ralph/{cfg.prompt_name}-{run.started}"
        # A campaign is one activity: its phases have limits of their own.
        limit = 0 if job.campaign else cfg.max_iterations
        return Prepared(base, base_commit, branch, limit, cfg.prompt_name)

    @activity.defn(name="ralph.iterate")
    async def iterate(self, inp: IterationInput) -> IterationResult:
        """Run one iteration in a process of its own; heartbeat until it ends. Cancelled,
        the process gets SIGTERM and ends the iteration as an interrupted one (committed and
        pushed); a worker that dies takes the process with it (Temporal runs it again)."""
        info = activity.info()
        every = max(
            0.2, (info.heartbeat_timeout.total_seconds() if info.heartbeat_timeout else 30.0) / 4
        )
        earlier = self.running.get(inp.workflow_id)
        if earlier is not None and earlier.returncode is None:
            await self._stop(earlier)  # one process per checkout
        with tempfile.TemporaryDirectory(prefix="ralph-fleet-") as tmp:
            src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
            src.write_text(json.dumps(asdict(inp)), encoding="utf-8")
            env = dict(os.environ, RALPH_FLEET_DIR=str(self.workdir),
                       RALPH_FLEET_WORKER=self.identity)  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ralph.fleet.iteration", str(src), str(dst),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, preexec_fn=_die_with_parent,
            )  # fmt: skip
            self.running[inp.workflow_id] = proc
            assert proc.stderr is not None
            errors = asyncio.ensure_future(proc.stderr.read())
            try:
                while True:
                    activity.heartbeat(inp.iteration)
                    try:
                        await asyncio.wait_for(asyncio.shield(proc.wait()), every)
                        break
                    except TimeoutError:
                        continue
            except asyncio.CancelledError:
                await self._stop(proc)
                raise
            finally:
                if self.running.get(inp.workflow_id) is proc and proc.returncode is not None:
                    del self.running[inp.workflow_id]
            stderr = (await errors).decode("utf-8", "replace").strip()
            if proc.returncode != 0 or not dst.exists():
                lines = [ln for ln in stderr.splitlines() if ln.strip()]
                why = lines[-1] if lines else f"exit code {proc.returncode}"

                raise ApplicationError(
                    redact(why), type="IterationFailed", non_retryable=proc.returncode == 2
                )
            data = json.loads(dst.read_text(encoding="utf-8"))
            data["worker"] = self.identity
            tasks = data.pop("tasks", None)
            return IterationResult(**data, tasks=TaskState(**tasks) if tasks else None)

    @activity.defn(name="ralph.publish")
    async def publish(self, inp: PublishInput) -> Published:
        """Push the run branch and open or update its pull request."""
        try:
            return await _heartbeating(self._publish, inp)
        except RalphError as exc:
            if isinstance(exc, GitHubError):
                return Published(None, None, exc.message)
            raise _job_error(exc) from None

    def _publish(self, inp: PublishInput) -> Published:
        job = inp.job
        root = checkout_dir(self.workdir, inp.workflow_id)
        tip = sync_checkout(root, job, inp.branch)
        if tip is None:
            return Published(None, None, "the run branch is not on the remote: no pull request")
        gitrun.run(root, "checkout", "-q", "-f", "-B", inp.branch, tip)
        cfg = run_config(job, root)
        pr = publish(
            root,
            inp.branch,
            title=pr_title(cfg.prompt_name, inp.status, inp.iterations, inp.max_iterations),
            body=pr_body(inp),
            remote=push_remote(job),
            base=inp.base,
            labels=cfg.pr_labels,
            draft=draft_for(inp.status, cfg.pr_draft),
            github_repo=job.github,
        )
        problem = "; ".join(pr.problems) or None
        return Published(pr.url, pr.number, problem)


def pr_body(inp: PublishInput) -> str:
    """The pull request's description: how the run ended and what each iteration did."""

    try:
        label = RunStatus(inp.status).label
    except ValueError:
        label = inp.status
    lines = [
        f"## ralph fleet: {text(inp.job.prompt_name)} on {code(inp.job.name)}",
        "",
        f"**{text(label)}** after {inp.iterations} iteration(s): {text(inp.reason)}",
        "",
        "| # | outcome | summary | cost | worker |",
        "|---|---|---|---|---|",
    ]
    for rec in inp.records:
        cost = "?" if rec.cost_usd is None else f"${rec.cost_usd:.4f}"
        lines.append(
            f"| {rec.number} | {text(rec.outcome)} | {text(rec.summary)} | {cost} | "
            f"{code(rec.worker)} |"
        )
    total = "?" if inp.cost_usd is None else f"${inp.cost_usd:.4f}"
    lines += ["", f"Cost: {total}. Workflow {code(inp.workflow_id)}."]
    return "\n".join(lines)
