"""What a run did, as the report shows it (`RunSummary`): gathered from the journal (every
iteration of the run, including those of earlier processes of a resumed run, and the totals
it holds), or, when the journal cannot be read, from the events this process saw
(`ReportCollector`); completed with what git and the ending process know (commits, limits,
artifacts, the commands to run next). report_md.py renders it as report.md and the PR body.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig, find_main_repo
from ..events import Event
from ..git.bulky import BulkyFile, bulky_files
from ..git.commits import run_commits
from ..run.gate import matching_files, parse_artifacts
from ..run.guards import BUDGETS
from ..settings import SETTINGS
from ..status import RESUMABLE, RunStatus, status_of
from ..store.journal import Journal
from ..store.schema import db_path
from ..text import usage_total
from ..trust import shown


@dataclass
class IterationRow:
    """One iteration of the report."""

    number: int
    outcome: str
    summary: str = ""
    files_changed: list[str] = field(default_factory=list)
    commit: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    duration_s: float | None = None
    error: str | None = None
    promise: bool = False
    commits: list[str] = field(default_factory=list)  # every attempt's, oldest first
    attempts: int = 1

    @property
    def tokens(self) -> int:
        return usage_total(self.usage)


@dataclass
class RunSummary:
    """Everything the report shows about a run; plain data."""

    run_id: str
    status: str = "running"
    exit_code: int | None = None
    reason: str = ""
    prompt: str = ""
    model: str = ""
    branch: str | None = None
    base_commit: str | None = None
    started: str | None = None  # ISO 8601 UTC
    duration_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = 0.0
    iterations: list[IterationRow] = field(default_factory=list)
    promises: list[dict[str, Any]] = field(
        default_factory=list
    )  # iteration, token, accepted, reasons
    guards: list[dict[str, Any]] = field(default_factory=list)  # iteration, guard, message
    warnings: list[str] = field(default_factory=list)
    guidance: list[dict[str, Any]] = field(default_factory=list)  # iteration, text, keep
    limits: dict[str, Any] = field(default_factory=dict)  # max_iterations, max_cost, ...
    artifacts: list[str] = field(default_factory=list)  # artifact files that exist
    resume: str | None = None
    worktree: str | None = None
    commits: list[str] = field(default_factory=list)  # the run's commits on its branch (git)
    sandbox: str | None = None  # "bwrap" or "none" (None: not recorded)
    network: str | None = None
    pull_request: str | None = None  # its URL
    next_steps: list[str] = field(default_factory=list)  # commands to run next
    # A task-list run's tasks, by id: title, status, reason, commit, cost_usd (tasklist.py).
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Large or binary files its commits add (bulky.py), largest first.
    bulky: list[BulkyFile] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return usage_total(self.usage)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _limits(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_iterations", "max_cost", "max_tokens", "timeout")
    return {k: config.get(k) for k in keys}


# --- sources -------------------------------------------------------------------------------


class ReportCollector:
    """An observer keeping what the report needs from this process's events."""

    def __init__(self) -> None:
        self.summary = RunSummary(run_id="")
        self.ended = False
        self._started_ts: float | None = None

    def handle(self, event: Event) -> None:
        s, d = self.summary, event.data
        s.run_id = event.run_id
        match event.name:
            case "run_started":
                self._started_ts = event.ts
                s.prompt, s.model = str(d.get("prompt_name") or ""), str(d.get("model") or "")
                s.branch, s.base_commit = d.get("branch"), d.get("base_commit")
                s.worktree = str(d.get("root")) if d.get("worktree") else None
                s.started = _iso(event.ts)
                config = d.get("config")
                s.limits = _limits(config if isinstance(config, dict) else {})
            case "iteration_ended":
                s.iterations.append(_row(int(event.iteration or 0), d))
            case name if name in NOTED:
                _note(s, name, event.iteration, d)
            case "run_ended":
                self.ended = True
                s.status, s.exit_code = str(d.get("status")), d.get("exit_code")
                s.reason = str(d.get("reason") or "")
                s.usage, s.cost_usd = dict(d.get("usage") or {}), d.get("cost_usd")
                s.duration_s = float(d.get("duration_s") or 0)

    def close(self) -> None:
        pass

    def collected(self) -> RunSummary:
        """The summary so far; totals summed from the iterations if the run did not end."""
        s = self.summary
        if not self.ended:
            usage: dict[str, int] = {}
            cost: float | None = 0.0
            for row in s.iterations:
                for key, value in row.usage.items():
                    usage[key] = usage.get(key, 0) + int(value or 0)
                cost = None if cost is None or row.cost_usd is None else cost + row.cost_usd
            s.usage, s.cost_usd = usage, cost
            s.duration_s = time.time() - self._started_ts if self._started_ts else 0.0
        return s


def _row(number: int, d: dict[str, Any]) -> IterationRow:
    """An iteration row from an iteration_ended event or a journal iteration."""
    return IterationRow(
        number=number,
        outcome=str(d.get("outcome")),
        summary=str(d.get("summary") or ""),
        files_changed=list(d.get("files_changed") or []),
        commit=d.get("commit"),
        usage=dict(d.get("usage") or {}),
        cost_usd=d.get("cost_usd"),
        duration_s=d.get("duration_s"),
        error=d.get("error"),
        promise=bool(d.get("promise", d.get("promise_accepted"))),
        commits=list(d.get("commits") or ([d["commit"]] if d.get("commit") else [])),
        attempts=int(d.get("attempts") or 1),
    )


# Events the report keeps as they come (the others it reads from the journal's tables).
NOTED = (
    "promise_seen", "guard_tripped", "warning", "guidance", "stop_requested",
    "notification_failed", "sandbox", "pull_request", "task_started", "task_ended",
)  # fmt: skip


def _note(s: RunSummary, name: str, iteration: int | None, d: dict[str, Any]) -> None:
    """Keep a promise verdict, a guard or a warning."""
    if name == "promise_seen":
        reasons = list(d.get("reasons") or [])
        accepted = bool(d.get("accepted"))
        s.promises.append(
            {
                "iteration": iteration,
                "token": d.get("token"),
                "accepted": accepted,
                "reasons": reasons,
                "judged": d.get("judged") or "",
                "judged_commit": d.get("judged_commit"),
            }
        )
    elif name == "guidance":
        s.guidance.append({"iteration": iteration, "text": d.get("text"), "keep": d.get("keep")})
    elif name == "sandbox":
        s.sandbox, s.network = d.get("kind"), d.get("network")
    elif name == "pull_request":
        s.pull_request = d.get("url")
    elif name in ("task_started", "task_ended"):
        task = s.tasks.setdefault(str(d.get("id")), {"status": "open"})
        task.update(
            {k: d[k] for k in ("title", "status", "reason", "commit", "cost_usd") if k in d}
        )
    elif name == "guard_tripped":
        s.guards.append(
            {"iteration": iteration, "guard": d.get("guard"), "message": d.get("message")}
        )
    else:
        s.warnings.append(str(d.get("message")))


def summary_from_journal(main_repo: Path, run_id: str) -> RunSummary | None:
    """The run's summary as the journal holds it (all sessions of a resumed run), or None."""

    if not run_id or not db_path(main_repo).exists():
        return None
    journal = Journal.open(main_repo, create=False)
    try:
        run = journal.get_run(run_id)
        if run is None:
            return None
        # Promise verdicts, guards and warnings are kept as raw events; the config holds limits.
        conn = journal.conn
        rows = conn.execute(
            "SELECT iteration, name, data FROM events WHERE run_id = ? AND name IN "
            f"({', '.join('?' for _ in NOTED)}) ORDER BY id",
            (run["id"], *NOTED),
        ).fetchall()
        config_row = conn.execute("SELECT config FROM runs WHERE id = ?", (run["id"],)).fetchone()
    finally:
        journal.close()
    summary = RunSummary(
        run_id=run["id"],
        status=str(run.get("status") or "running"),
        exit_code=run.get("exit_code"),
        reason=str(run.get("reason") or ""),
        prompt=str(run.get("prompt") or ""),
        model=str(run.get("model") or ""),
        branch=run.get("branch"),
        base_commit=run.get("base_commit"),
        worktree=run.get("worktree"),
        started=run.get("started"),
        duration_s=float(run.get("duration_s") or 0),
        usage=dict(run.get("usage") or {}),
        cost_usd=run.get("cost_usd"),
        limits=_limits(json.loads(config_row[0] or "{}") if config_row else {}),
    )
    summary.iterations = [_row(int(it["number"]), it) for it in run.get("iterations_detail") or []]
    for row in rows:
        _note(summary, row["name"], row["iteration"], json.loads(row["data"] or "{}"))
    add_git_facts(summary, main_repo)
    return summary


def add_git_facts(summary: RunSummary, main_repo: Path) -> None:
    """The run's commits as git has them (its branch, `Ralph-Run` trailers): the report counts
    what is on the branch, including commits whose journal rows a kill lost."""
    if not (summary.branch and summary.base_commit and summary.run_id):
        return

    try:
        found = run_commits(main_repo, summary.base_commit, summary.branch, summary.run_id)
    except Exception:  # a deleted branch, a broken repository: the journal's word stands
        return
    summary.commits = [commit.sha for commit in found]

    try:
        summary.bulky = bulky_files(main_repo, summary.commits)
    except Exception:  # a report without this list is better than none
        summary.bulky = []


def here_option(main_repo: Path, flag: str = "--repo") -> str:
    """` --repo DIR` when a command run from the current directory would not find `main_repo`
    (the run was started with --repo), else "": printed commands work where they are shown."""

    try:
        if find_main_repo(Path.cwd()) == main_repo.resolve():
            return ""
    except OSError:  # the current directory was removed
        pass
    return f" {flag} {shlex.quote(str(main_repo))}"


def resume_command(run_id: str, main_repo: Path) -> str:
    """`ralph resume RUN`, with --repo when it is needed where it is printed."""
    return f"ralph resume {run_id}{here_option(main_repo)}"


CONTINUABLE = ("max_iterations", "budget", "stalled")  # finished, but `--more` goes on


def next_steps(summary: RunSummary, main_repo: Path) -> list[str]:
    """The commands a person runs next: review the commits, resume, the pull request."""
    steps = []
    if summary.commits and summary.branch and summary.base_commit:
        git = "git" + here_option(main_repo, "-C")
        span = f"{summary.base_commit[:8]}..{shlex.quote(summary.branch)}"
        steps.append(f"{git} log --stat {span}")
    if summary.resume:
        steps.append(summary.resume)
    elif summary.status in CONTINUABLE and summary.run_id:
        steps.append(f"ralph resume {summary.run_id}{_going_on(summary)}{here_option(main_repo)}")
    if summary.pull_request:
        steps.append(f"open {summary.pull_request}")
    return steps


def _going_on(summary: RunSummary) -> str:
    """The options that let a finished run go on: more iterations; after a budget ran out,
    twice that budget (a budget counts the whole run), and iterations if none are left."""

    tripped = [g["guard"] for g in summary.guards if g.get("guard") in BUDGETS]
    limit = summary.limits.get(tripped[-1]) if tripped else None
    if summary.status != RunStatus.BUDGET or not limit:
        return " --more 5"
    setting = SETTINGS[tripped[-1]]
    raised = shown(setting, int(limit * 2) if setting.name == "max_tokens" else limit * 2.0)
    most = summary.limits.get("max_iterations")
    more = " --more 5" if most and len(summary.iterations) >= most else ""
    return f"{more} {setting.option} {raised}"


def complete(
    summary: RunSummary,
    cfg: RunConfig | None,
    root: Path | None,
    error: BaseException | None,
    main_repo: Path | None = None,
) -> RunSummary:
    """Fill in what only the ending process knows: a crash, the limits, artifacts, resume,
    the next commands."""
    if error is not None:
        status, code, summary.reason = status_of(error)
        summary.status, summary.exit_code = status.value, int(code)
    if cfg is not None:
        summary.limits = _limits(cfg.to_dict())
        if root is not None:
            summary.artifacts = existing_artifacts(cfg.artifacts, root)
    main_repo = main_repo or (cfg.repo if cfg is not None else None)
    if summary.status in RESUMABLE and summary.run_id:
        summary.resume = (
            resume_command(summary.run_id, main_repo)
            if main_repo is not None
            else f"ralph resume {summary.run_id}"
        )
    if main_repo is not None:
        summary.next_steps = next_steps(summary, main_repo)
    return summary


def existing_artifacts(entries: list[Any], root: Path) -> list[str]:
    """The artifact files (config `artifacts:` paths and globs) that exist under `root`."""

    found: list[str] = []
    for art in parse_artifacts(entries):
        # matching_files never follows a link out of the repository (no host file names here)
        paths, _ = matching_files(root, art.path)
        found.extend(p.relative_to(root).as_posix() for p in paths)
    return list(dict.fromkeys(found))


def build_summary(main_repo: Path, run_id: str, cfg: RunConfig | None = None) -> RunSummary | None:
    """A finished run's summary from the journal (for `ralph show` and the PR body)."""
    summary = summary_from_journal(main_repo, run_id)
    if summary is None:
        return None
    return complete(summary, cfg, cfg.repo if cfg else None, None, main_repo)
