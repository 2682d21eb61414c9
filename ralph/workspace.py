"""The git workspace of a run: its branch or worktree, the clean-tree policy, one commit per
iteration.

Every git command goes through `gitrun` (no hooks, no fsmonitor, no filter drivers, no
submodules, time-bounded; see there); the per-iteration path (status, update-index,
write-tree, commit-tree, update-ref) is a fixed handful of processes, because its cost is
benchmarked against `git add -A && git commit`. Which changed paths a commit may hold is
decided in `staging`: never a nested repository (a gitlink), a FIFO, socket, device or huge
file, an untracked cache, or an agent's change to a file that configures ralph.

Nothing is ever pushed, forced or rewritten: a commit only advances the run's branch from the
tip it had (`update-ref` with the old value), so a branch moved by someone else is an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import gitrun
from .config import STATE_DIR, RunConfig
from .errors import RalphError, UsageError
from .staging import (
    NESTED_REPO,
    PROTECTED,
    CacheFilter,
    Refusal,
    describe,
    fingerprint,
    is_protected,
    protected_paths,
    refusal,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .store.locks import RunLock

IDENTITY = ("ralph-loop", "ralph-loop@users.noreply.github.com")
SUMMARY_WIDTH = 72
GITLINK = "160000"

# path -> (two-letter status code, content fingerprint or None when not computed yet)
Snapshot = dict[str, tuple[str, str | None]]


@dataclass(frozen=True)
class FileStat:
    """Lines added and deleted in one file (None for binary files)."""

    path: str
    added: int | None
    deleted: int | None


# --- running git ---------------------------------------------------------------------------


def _git(
    cwd: Path,
    *args: str,
    stdin: bytes | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    filters: list[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return gitrun.run(cwd, *args, stdin=stdin, check=check, env=env, filters=filters)


def _out(
    cwd: Path,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    filters: list[str] | None = None,
) -> str:
    proc = gitrun.run(cwd, *args, stdin=stdin, env=env, filters=filters)
    return proc.stdout.decode("utf-8", "surrogateescape").strip()


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _nul(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


def _is_state(path: str) -> bool:
    """Whether a status path is ralph's own state or git's data, never dirt, never committed."""
    top = path.split("/", 1)[0]
    return top in (STATE_DIR, ".git")


def _status(root: Path, filters: list[str] | None = None) -> dict[str, str]:
    """Changed, deleted and untracked (not ignored) paths of the work tree -> status code.

    Submodules and nested repositories are never entered (`--ignore-submodules=all`: git
    would run their configuration); untracked caches and virtualenvs count as ignored.
    """
    raw = _git(
        root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
        "--ignore-submodules=all", filters=filters,
    ).stdout.decode("utf-8", "surrogateescape")  # fmt: skip
    caches = CacheFilter(root)
    entries = {}
    for entry in raw.split("\0"):
        path, code = entry[3:], entry[:2]
        if len(entry) > 3 and not _is_state(path):
            if code == "??" and caches.skipped(path):
                continue
            entries[path] = code
    return entries


# --- the repository ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Repo:
    """Where a repository's work tree and (common) git directory are."""

    root: Path
    common_dir: Path


def _open_repo(path: Path) -> _Repo:
    """The repository of the work tree containing `path`, or a UsageError naming the problem
    (not a repository, bare, or one git refuses because another user owns it)."""
    if not path.is_dir():
        raise UsageError(f"{path} is not a git repository; run `git init` or pass --repo DIR")
    asked = ("rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir")
    proc = _git(path, *asked, check=False)
    if proc.returncode == 0:
        root, common = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
        return _Repo(Path(root), Path(common))
    error = proc.stderr.decode("utf-8", "replace")
    if "dubious ownership" in error:
        main = (re.findall(r"repository at '(.*)'", error) or [str(path)])[0]
        raise UsageError(
            f"git refuses {main}: it is owned by another user; run ralph as its owner, or "
            f"trust it with `git config --global --add safe.directory {main}`"
        )
    if "must be run in a work tree" in error:
        raise UsageError(f"{path} is a bare git repository; ralph needs a work tree (--repo DIR)")
    if "not a git repository" in error:
        raise UsageError(f"{path} is not a git repository; run `git init` or pass --repo DIR")
    raise RalphError(gitrun.error_line(asked, path, proc))


def _head_commit(root: Path) -> str | None:
    """The commit HEAD points at, or None before the first commit."""
    found = _git(root, "rev-parse", "-q", "--verify", "HEAD^{commit}", check=False)
    if found.returncode:
        return None
    return found.stdout.decode().strip() or None


def _branch_exists(root: Path, name: str) -> bool:
    found = _git(root, "show-ref", "--verify", "--quiet", f"refs/heads/{name}", check=False)
    return found.returncode == 0


def _current_branch(root: Path) -> str | None:
    ref = _git(root, "symbolic-ref", "-q", "HEAD", check=False).stdout.decode().strip()
    return ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None


def default_branch_name(prompt_name: str, now: float | None = None) -> str:
    """`ralph/<prompt-name>-<UTC yyyymmdd-HHMMSS>`, the prompt name made ref-safe."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", prompt_name).strip("-") or "run"
    return f"ralph/{safe}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"


def _describe_paths(paths: list[str], shown: int = 5) -> str:
    head = ", ".join(paths[:shown])
    return head + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


CHECKOUT_LOCK = "checkout.lock"  # in .ralph/: held by the run working in the checkout itself


def _checkout_lock_path(main: Path) -> Path:
    return main / STATE_DIR / CHECKOUT_LOCK


def _busy_checkout(main: Path, holder: str, resuming: bool) -> UsageError:
    way_out = (
        "wait for it to end (or stop it), then resume"
        if resuming
        else "start this run with --worktree (its own checkout), or wait for that run to end"
    )
    return UsageError(
        f"another run is working in {main} ({holder}) and would have its branch switched under "
        f"it; {way_out}"
    )


def acquire_checkout_lock(main: Path, run_id: str, resuming: bool = False) -> RunLock:
    """Take the checkout for a run that works in it (not in a worktree): one such run at a time.

    Two runs in one checkout would switch HEAD under each other and commit each other's files.
    Held until released or until the run's process ends, however it ends.
    """
    from .store.locks import take_lock

    lock = take_lock(_checkout_lock_path(main), label=f"run {run_id}, ")
    if isinstance(lock, str):
        raise _busy_checkout(main, lock, resuming)
    return lock


def _check_writable(main: Path, git_dir: Path) -> None:
    """Refuse a checkout where ralph cannot keep its state or git cannot commit: one line now,
    not a traceback once the branch exists (a read-only mount, a file named .ralph)."""
    state = main / STATE_DIR
    if state.exists() and not state.is_dir():
        raise UsageError(
            f"{state} is not a directory; ralph keeps its journal, locks and worktrees there: "
            "move that file away"
        )
    for where, needed in (
        (state if state.exists() else main, f"its journal and locks ({state})"),
        (git_dir, "its branch and commits"),
    ):
        if not os.access(where, os.W_OK | os.X_OK):
            raise UsageError(
                f"{where} is not writable (a read-only file system or permissions) and ralph "
                f"needs it for {needed}; run ralph in a writable clone"
            )


def check(cfg: RunConfig, holding_checkout: bool = False) -> Path:
    """Refuse a repository a new run cannot use; creates and changes nothing.

    Returns the checkout's root (where `.ralph/` lives). `holding_checkout`: this process holds
    the checkout lock (`acquire_checkout_lock`), so it is not another run's.
    """
    repo = _open_repo(cfg.repo)
    main = repo.root
    if _head_commit(main) is None:
        raise UsageError(
            f"{main} has no commits yet; ralph branches from HEAD: make a first commit "
            "(e.g. `git commit --allow-empty -m init`)"
        )
    _check_writable(main, repo.common_dir)
    if not cfg.worktree and not holding_checkout:
        from .store.locks import lock_holder

        holder = lock_holder(_checkout_lock_path(main))
        if holder is not None:
            raise _busy_checkout(main, holder, resuming=False)
    if cfg.in_place and _current_branch(main) is None:
        raise UsageError("--in-place needs a branch, but HEAD is detached; `git switch` to one")
    if cfg.branch is not None:
        if _git(main, "check-ref-format", "--branch", cfg.branch, check=False).returncode:
            raise UsageError(f"--branch {cfg.branch!r} is not a valid git branch name")
        if _branch_exists(main, cfg.branch):
            raise UsageError(
                f"branch {cfg.branch} already exists; ralph never reuses or rewrites a branch: "
                "choose another --branch, or continue its run with `ralph resume RUN` (`--more N` after it finished)"
            )
    if cfg.worktree or cfg.allow_dirty:
        return main
    dirty = sorted(_status(main))
    if dirty:
        raise UsageError(
            f"the work tree has uncommitted changes ({_describe_paths(dirty)}); commit or stash "
            "them, or run with --worktree (ralph works in its own checkout and never touches "
            "yours) or --allow-dirty (ralph commits only the files it changes)"
        )
    return main


def ensure_excluded(common_git_dir: Path) -> None:
    """Add `/.ralph/` to `.git/info/exclude` once (never to the user's .gitignore)."""
    exclude = common_git_dir / "info" / "exclude"
    text = exclude.read_text(encoding="utf-8") if exclude.is_file() else ""
    lines = {line.strip() for line in text.splitlines()}
    if lines & {f"/{STATE_DIR}/", f"{STATE_DIR}/", f"/{STATE_DIR}", STATE_DIR}:
        return
    sep = "" if not text or text.endswith("\n") else "\n"
    try:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a", encoding="utf-8") as handle:
            handle.write(f"{sep}# ralph-loop state: journal, locks, worktrees\n/{STATE_DIR}/\n")
    except OSError as exc:
        raise UsageError(
            f"cannot write {exclude} ({exc.strerror}): ralph lists {STATE_DIR}/ there so git "
            "ignores it; the repository must be writable"
        ) from None


def _identity_options(root: Path) -> list[str]:
    """`-c user.*` options with ralph's identity when the user configured none."""
    for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        if _git(root, "-c", "user.useConfigOnly=true", "var", var, check=False).returncode:
            return ["-c", f"user.name={IDENTITY[0]}", "-c", f"user.email={IDENTITY[1]}"]
    return []


def commit_message(
    prompt_name: str, i: int, n: int, summary: str, run_id: str, interrupted: bool = False
) -> str:
    """The commit message of iteration `i` of `n` (0: no limit, shown as ∞), with trailers."""
    from .markdown import neutralise

    if interrupted:
        subject = f"ralph({prompt_name}): iteration {i}{INTERRUPTED_SUFFIX}"
    else:
        line = neutralise(summary) or "no summary"
        if len(line) > SUMMARY_WIDTH:
            line = line[: SUMMARY_WIDTH - 1].rstrip() + "…"
        subject = f"ralph({prompt_name}): iteration {i}/{n if n else '∞'} — {line}"
    # The agent's words stay on the subject line (no trailer of theirs), redacted, and inert
    # once pushed: no mention, no issue closed, no CI skipped.
    return f"{neutralise(subject)}\n\nRalph-Run: {run_id}\nRalph-Iteration: {i}\n"


@dataclass(frozen=True)
class RunCommit:
    """A commit of a run on its branch, as its trailers name it."""

    sha: str
    iteration: int
    subject: str

    @property
    def interrupted(self) -> bool:
        """Made from what a stopped iteration left, not at the end of one (`commit_message`)."""
        return self.subject.endswith(INTERRUPTED_SUFFIX)


INTERRUPTED_SUFFIX = " (interrupted)"


def run_commits(main: Path, base: str, branch: str, run_id: str) -> list[RunCommit]:
    """Run `run_id`'s commits on `branch` since `base`, oldest first, found by their
    `Ralph-Run` / `Ralph-Iteration` trailers."""
    fmt = "%H%x1f%s%x1f%(trailers:key=Ralph-Run,valueonly,separator=,)%x1f" + (
        "%(trailers:key=Ralph-Iteration,valueonly,separator=,)%x1e"
    )
    raw = _out(main, "log", "--reverse", f"--format={fmt}", f"{base}..refs/heads/{branch}", "--")
    found = []
    for record in raw.split("\x1e"):
        parts = [part.strip() for part in record.strip().split("\x1f")]
        if len(parts) == 4 and parts[2] == run_id and parts[3].isdigit():
            found.append(RunCommit(parts[0], int(parts[3]), parts[1]))
    return found


def commit_files(root: Path, sha: str) -> list[str]:
    """The paths commit `sha` changed."""
    raw = _out(root, "diff-tree", "--no-commit-id", "--name-only", "-r", "-z", "--no-renames", sha)
    return [p for p in raw.split("\0") if p]


def _git_locks(root: Path, branch: str) -> list[Path]:
    """The lock files git takes to commit on `branch` in `root`: index.lock, HEAD.lock (HEAD
    names the branch) and the branch's own."""
    names = ("index.lock", "HEAD.lock", f"refs/heads/{branch}.lock")
    asked = [arg for name in names for arg in ("--git-path", name)]
    return [Path(p) for p in _out(root, "rev-parse", "--path-format=absolute", *asked).split("\n")]


def _held_open(path: Path) -> bool | None:
    """Whether a live process has `path` open (git keeps its lock file open until it commits
    or rolls back); None when this system cannot tell (no /proc)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    target = str(path)
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:  # closed meanwhile (the listing's own descriptor, say)
                continue
    return False


def _refuse_stale(lock: Path) -> None:
    """A lock a killed git left would fail the first commit, after an iteration's work: one no
    live process holds is removed (we hold the run and the checkout), any other refused."""
    if lock.exists() and _held_open(lock) is False:
        lock.unlink(missing_ok=True)
    if lock.exists():
        raise UsageError(
            f"{lock} exists (a git command was killed?); if no git command is running in this "
            "repository, delete it and resume"
        )


def _new_branch(
    main: Path,
    chosen: str | None,
    prompt_name: str,
    command: tuple[str, ...],
    rest: tuple[str, ...],
    before: Callable[[str], None] | None = None,
) -> str:
    """Create the run's branch with `git COMMAND BRANCH REST`; its name. `before(name)` is
    called before git is asked to make each name (to record the run first).

    Without --branch, a default name already taken gets a `-N` suffix, including one taken
    between our look and git's (two runs started in the same second, e.g. with --worktree).
    """
    stem = chosen or default_branch_name(prompt_name)
    branch, n = stem, 2
    while True:
        if chosen is None and _branch_exists(main, branch):
            branch, n = f"{stem}-{n}", n + 1
            continue
        if before is not None:
            before(branch)
        done = _git(main, *command, branch, *rest, check=False)
        if done.returncode == 0:
            return branch
        if b"already exists" not in done.stderr or not _branch_exists(main, branch):
            raise RalphError(gitrun.error_line(command, main, done))
        if chosen is not None:  # another run took it since `check`
            raise UsageError(
                f"branch {branch} already exists; ralph never reuses or rewrites a branch: "
                "choose another --branch"
            )


# --- the workspace -------------------------------------------------------------------------


@dataclass
class Workspace:
    """Where a run's agent works (`root`) and how its changes become commits on `branch`."""

    root: Path
    main_repo: Path
    branch: str
    base_commit: str
    worktree: bool
    run_id: str | None = None
    allow_dirty: bool = False
    last_commit_files: list[str] = field(default_factory=list)
    # the files that configure ralph (see staging.protected_paths)
    protected: frozenset[str] = field(default_factory=frozenset)
    # changed paths the last changed_files()/commit() left out, and why (for warnings)
    refused: list[Refusal] = field(default_factory=list)
    origin: str | None = None  # the branch (or commit) the checkout was on before the run
    _identity: list[str] = field(default_factory=list, repr=False)
    _start: Snapshot = field(default_factory=dict, repr=False)  # dirty at iteration start
    _now: Snapshot | None = field(default=None, repr=False)  # dirty at the last look
    _changed: list[str] = field(default_factory=list, repr=False)
    # filter drivers listed since the agent last ran (see gitrun.run's `filters`)
    _filters: list[str] | None = field(default=None, repr=False)

    @classmethod
    def prepare(
        cls,
        cfg: RunConfig,
        run_id: str,
        prompt_name: str,
        record: Callable[[str, str, Path], None] | None = None,
    ) -> Workspace:
        """Create the run's branch (or worktree); call `check(cfg)` first. `record(branch,
        base, root)` is called before anything is created or switched (again if the branch's
        name changes), so that whatever a kill leaves is a run the journal knows."""
        repo = _open_repo(cfg.repo)
        main = repo.root
        base = _out(main, "rev-parse", "--verify", "HEAD^{commit}")
        ensure_excluded(repo.common_dir)
        origin = _current_branch(main) or base
        root = main

        def before(name: str) -> None:
            if record is not None:
                record(name, base, root)

        if cfg.in_place:
            branch = _current_branch(main) or ""  # check() refused a detached HEAD
            before(branch)
        elif cfg.worktree:
            root = main / STATE_DIR / "worktrees" / run_id
            root.parent.mkdir(parents=True, exist_ok=True)
            branch = _new_branch(
                main, cfg.branch, prompt_name, ("worktree", "add", "-q", "-b"), (str(root), base),
                before,
            )  # fmt: skip
        else:
            # Uncommitted changes (--allow-dirty) come along to the new branch untouched.
            branch = _new_branch(
                main, cfg.branch, prompt_name, ("checkout", "-q", "-b"), (base,), before
            )
        ws = cls(root, main, branch, base, cfg.worktree, run_id, cfg.allow_dirty)
        ws.protected = protected_paths(cfg, main)
        ws.origin = None if cfg.in_place else origin
        ws._identity = _identity_options(root)
        # Without --allow-dirty the tree is known clean (check) and a new worktree is clean.
        ws._now = ws._snapshot() if cfg.allow_dirty and not cfg.worktree else {}
        ws._start = dict(ws._now)
        return ws

    @classmethod
    def reopen(
        cls,
        cfg: RunConfig,
        branch: str,
        worktree_path: str | Path | None,
        base_commit: str,
        run_id: str | None = None,
        origin: str | None = None,
    ) -> Workspace:
        """The workspace of a run being resumed: its branch checked out, its worktree back;
        `origin`, where the checkout was when the run began (kept if it is still a branch, or
        the base commit), is where it goes back if the run ends having committed nothing.

        Changes found in the tree count as the dead iteration's work (commit them first),
        except, with --allow-dirty, the user's paths recorded when that iteration began.
        """
        main = _open_repo(cfg.repo).root
        if not _branch_exists(main, branch):
            raise UsageError(
                f"the run's branch {branch} no longer exists, so the run cannot be resumed; "
                "start a new run"
            )
        root = main
        if worktree_path:
            root = Path(worktree_path)
            if not (root / ".git").exists():  # removed by hand: its commits are on the branch
                _git(main, "worktree", "prune")
                root.parent.mkdir(parents=True, exist_ok=True)
                _git(main, "worktree", "add", "-q", str(root), branch)
            elif _current_branch(root) != branch:
                raise UsageError(
                    f"the run's worktree {root} is not on its branch {branch}; "
                    f"`git -C {root} switch {branch}`, then resume"
                )
            index_lock, head_lock, branch_lock = _git_locks(root, branch)
            # The worktree's index and HEAD are ralph's alone and we hold the run lock: a lock
            # left there is from a git process killed with the run.
            index_lock.unlink(missing_ok=True)
            head_lock.unlink(missing_ok=True)
            _refuse_stale(branch_lock)
        else:
            for lock in _git_locks(main, branch):  # the checkout is the user's too
                _refuse_stale(lock)
            if _current_branch(main) != branch:
                dirty = sorted(_status(main))
                if dirty:
                    raise UsageError(
                        f"cannot switch to the run's branch {branch}: the work tree has "
                        f"uncommitted changes ({_describe_paths(dirty)}); commit or stash "
                        "them, then resume"
                    )
                _git(main, "checkout", "-q", branch)
        ws = cls(root, main, branch, base_commit, bool(worktree_path), run_id, cfg.allow_dirty)
        ws.protected = protected_paths(cfg, main)
        ws._identity = _identity_options(root)
        if origin == base_commit or (origin and origin != branch and _branch_exists(main, origin)):
            ws.origin = origin
        if cfg.allow_dirty and not worktree_path:
            saved = ws._load_baseline()
            # Without a record of the user's paths, every dirty path is treated as theirs.
            ws._start = saved if saved is not None else ws._snapshot()
        return ws

    # --- iterations ------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        return {p: (code, fingerprint(self.root, p)) for p, code in _status(self.root).items()}

    def _baseline_path(self) -> Path | None:
        if self.run_id is None:
            return None
        return self.main_repo / STATE_DIR / "runs" / self.run_id / "baseline.json"

    def _save_baseline(self) -> None:
        path = self._baseline_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._start), encoding="utf-8")
        os.replace(tmp, path)

    def _load_baseline(self) -> Snapshot | None:
        path = self._baseline_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path else None
        except (OSError, ValueError):
            return None
        return {p: (v[0], v[1]) for p, v in data.items()} if isinstance(data, dict) else None

    def begin_iteration(self) -> None:
        """Record the paths dirty as an iteration begins, with their contents.

        The rule of --allow-dirty: a commit holds only paths that were clean when the iteration
        began (or are new); a path already dirty then is the user's and is never committed,
        even when the agent changes it further. The state seen at the end of the previous
        iteration (after its commit) is reused, so git is asked only when nothing is known.
        """
        start = self._now
        if start is None:
            start = {p: (code, None) for p, code in _status(self.root).items()}
        self._start = {
            p: (code, fp if fp is not None else fingerprint(self.root, p))
            for p, (code, fp) in start.items()
        }
        self._now, self._changed, self._filters = None, [], None
        if self.allow_dirty and not self.worktree:
            self._save_baseline()  # so a resume knows which paths are the user's

    def changed_files(self) -> list[str]:
        """Paths changed in the work tree since `begin_iteration` (not ignored, not .ralph/).

        An agent's change to a file that configures ralph is undone first and listed in
        `refused`: those files are the operator's, whether or not they existed at the start.
        """
        self.refused = []
        # The agent has run since the last look: the filter drivers are listed again, once
        # for this look and the commit that follows it.
        self._filters = gitrun.filter_drivers(self.root, gitrun.git_env())
        status = _status(self.root, self._filters)
        undone = {
            next(p for p in self.protected if is_protected(path, (p,)))
            for path in status
            if path not in self._start and is_protected(path, self.protected)
        }
        if undone:
            for path in sorted(undone):
                self._undo(path)
                self.refused.append(Refusal(path, PROTECTED))
            status = _status(self.root, self._filters)
        now: Snapshot = {}
        changed = []
        for path, code in status.items():
            before = self._start.get(path)
            if before is None:
                now[path] = (code, None)  # new dirt: changed, no need to hash it yet
                changed.append(path)
                continue
            content = fingerprint(self.root, path)
            now[path] = (code, content)
            if content != before[1]:
                changed.append(path)
        changed.extend(p for p in self._start if p not in status)  # back to the committed state
        self._now, self._changed = now, sorted(changed)
        return list(self._changed)

    def refusals(self) -> list[str]:
        """Warning lines for the paths the last changed_files()/commit() left out."""
        return describe(self.refused)

    def _undo(self, path: str) -> None:
        """Put `path` back as HEAD has it (or remove it), without following any link."""
        parts = path.split("/")
        for n in range(1, len(parts)):  # a parent made a link or a file: git restores the dir
            parent = self.root.joinpath(*parts[:n])
            try:
                if not stat.S_ISDIR(os.lstat(parent).st_mode):
                    parent.unlink()
                    break
            except FileNotFoundError:
                break
        else:
            where = self.root / path
            try:
                is_dir = stat.S_ISDIR(os.lstat(where).st_mode)
            except FileNotFoundError:
                is_dir = None
            if is_dir:
                shutil.rmtree(where)
            elif is_dir is not None:
                where.unlink()
        if _git(self.root, "cat-file", "-e", f"HEAD:{path}", check=False).returncode == 0:
            _git(self.root, "checkout", "-q", "HEAD", "--", path, filters=self._filters)
        else:  # an agent without the sandbox may have staged it
            _git(self.root, "update-index", "-q", "--force-remove", "-z", "--stdin",
                 stdin=_nul([path]), filters=self._filters)  # fmt: skip

    def commit(self, message: str, amend: bool = False) -> str | None:
        """Commit this iteration's paths (see `begin_iteration`); the new sha, or None.

        Stages what the last `changed_files()` reported (it is called if it was not), except
        what `staging.refusal` refuses (listed in `refused`). `amend`: replace the branch's
        tip, a commit this iteration made (a task run's status joins its iteration's commit);
        "" when that leaves no change, and the tip was dropped.
        """
        if self._now is None:
            self.changed_files()
        assert self._now is not None
        paths = []
        for path in self._changed:
            if path in self._start:
                continue  # the user's (--allow-dirty)
            why = refusal(self.root, path)
            if why is None:
                paths.append(path)
            else:
                self.refused.append(Refusal(path, why))
        self.last_commit_files = []
        if not paths:
            return None
        head, head_tree, ref = _out(
            self.root, "rev-parse", "HEAD", "HEAD^{tree}", "--symbolic-full-name", "HEAD"
        ).splitlines()
        if ref != f"refs/heads/{self.branch}":
            raise RalphError(
                f"HEAD of {self.root} is {ref or 'detached'}, not the run's branch {self.branch}; "
                "ralph commits only on its own branch (something switched branches)"
            )
        chosen = set(paths)
        users_staged = any(
            code[0] not in " ?" and p not in chosen for p, (code, _) in self._now.items()
        )
        chosen -= self._stage(paths)
        paths = [p for p in paths if p in chosen]
        if users_staged:
            # The user's staged changes stay staged and out of this commit: the commit's tree
            # is HEAD's plus these paths, built in an index of its own.
            with tempfile.TemporaryDirectory(prefix="ralph-index-") as tmp:
                env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
                _git(self.root, "read-tree", "HEAD", env=env, filters=self._filters)
                self._stage(paths, env)
                tree = _out(self.root, "write-tree", env=env, filters=self._filters)
        else:
            tree = _out(self.root, "write-tree", filters=self._filters)
        sha = None
        parents = ["-p", head]
        if amend:  # on the tip's parent: a tree the same as the parent's is no commit at all
            below = _out(self.root, "rev-parse", f"{head}^@").split()
            parents = [arg for parent in below for arg in ("-p", parent)]
            if below and tree == _out(self.root, "rev-parse", f"{below[0]}^{{tree}}"):
                subject = "commit: drop an iteration commit left empty"
                _git(
                    self.root,
                    "update-ref",
                    "-m",
                    subject,
                    f"refs/heads/{self.branch}",
                    below[0],
                    head,
                )
                self._now = {p: v for p, v in self._now.items() if p not in chosen}
                self._changed = [p for p in self._changed if p not in chosen]
                self.last_commit_files = []
                return ""
        if tree != head_tree:
            sha = _out(
                self.root, *self._identity, "commit-tree", tree, *parents, "-F", "-",
                stdin=message.encode("utf-8"),
            )  # fmt: skip
            subject = "commit: " + message.splitlines()[0]
            _git(self.root, "update-ref", "-m", subject, f"refs/heads/{self.branch}", sha, head)
        for path in paths:
            self._now.pop(path, None)  # committed: clean again
        self._changed = [p for p in self._changed if p not in chosen]
        self.last_commit_files = paths if sha else []
        return sha

    def _stage(self, paths: list[str], env: dict[str, str] | None = None) -> set[str]:
        """Stage `paths` as they are now; returns those git took for a nested repository
        (made one since `refusal` looked), which are put back as HEAD has them and refused.

        `update-index` with the paths on stdin is linear in their number (`git add` matches
        every path against every pathspec: 300,000 new files took minutes).
        """
        _git(
            self.root, "update-index", "--add", "--remove", "--replace", "-z", "--stdin",
            stdin=_nul(paths), env=env, filters=self._filters,
        )  # fmt: skip
        if not any(_is_dir(self.root / p) for p in paths):
            return set()  # git records a gitlink only for a directory
        # --cached compares index and HEAD only: no nested repository is entered.
        raw = _git(
            self.root, "diff-index", "--cached", "--raw", "-z", "--no-renames",
            "--ignore-submodules=none", "HEAD", env=env,
        ).stdout.decode("utf-8", "surrogateescape")  # fmt: skip
        records = raw.split("\0")
        chosen = set(paths)
        restore, gitlinks = [], set()
        for header, path in zip(records[0::2], records[1::2], strict=False):
            fields = header.split()
            if len(fields) >= 4 and fields[1] == GITLINK and path in chosen:
                old_mode, old_sha = fields[0].lstrip(":"), fields[2]
                restore.append(f"{old_mode} {old_sha}\t{path}")
                gitlinks.add(path)
        if restore:
            _git(self.root, "update-index", "-z", "--index-info", stdin=_nul(restore), env=env)
            if env is None:
                self.refused.extend(Refusal(p, NESTED_REPO) for p in sorted(gitlinks))
        return gitlinks

    def diff_stat(self, since: str | None = None) -> list[FileStat]:
        """Files changed on the branch since `since` (default: the run's base commit)."""
        # Plumbing: `git diff` would run textconv and external diff drivers.
        args = ("diff-tree", "-r", "--numstat", "-z", "--no-renames", since or self.base_commit)
        raw = _out(self.root, *args, "HEAD")
        stats = []
        for entry in raw.split("\0"):
            parts = entry.split("\t", 2)
            if len(parts) == 3:
                added, deleted, path = parts
                stats.append(
                    FileStat(
                        path,
                        int(added) if added.isdigit() else None,
                        int(deleted) if deleted.isdigit() else None,
                    )
                )
        return stats
