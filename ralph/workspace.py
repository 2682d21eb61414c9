"""The git workspace of a run: its branch or worktree, the clean-tree policy, one commit per
iteration.

GitPython finds and inspects the repository; the per-iteration path (status, add, commit) runs
the git binary directly, a fixed handful of processes per iteration, because its cost is
benchmarked against `git add -A && git commit`. Every git call made here:

- runs no hooks (`core.hooksPath=/dev/null`, which also covers post-commit hooks that
  `--no-verify` leaves on): without the sandbox the agent could plant a hook that would run
  with the runner's environment, and a user's slow or failing pre-commit hook must not block
  an unattended run; `--verify` commands are the place for checks;
- never signs (a pinentry prompt nobody answers would hang an overnight run);
- gets the runner's environment minus secret-named variables (no git command here needs one);
- treats paths literally (a file named `*.py` is that file, not a glob).

Nothing is ever pushed, forced or rewritten: a commit only advances the run's branch from the
tip it had (`update-ref` with the old value), so a branch moved by someone else is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import STATE_DIR, RunConfig
from .errors import RalphError, UsageError

if TYPE_CHECKING:
    from .journal import RunLock

IDENTITY = ("ralph-loop", "ralph-loop@users.noreply.github.com")
INDEX_LOCK_WAIT_S = 3.0  # how long a git command waits for another git's index.lock
SUMMARY_WIDTH = 72
_GIT_OPTIONS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "core.quotePath=false",
    "--literal-pathspecs",
)

# path -> (two-letter status code, content fingerprint or None when not computed yet)
Snapshot = dict[str, tuple[str, str | None]]


@dataclass(frozen=True)
class FileStat:
    """Lines added and deleted in one file (None for binary files)."""

    path: str
    added: int | None
    deleted: int | None


# --- running git ---------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    from .redact import is_secret_name

    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _index_locked(stderr: bytes) -> bool:
    """Whether git failed because another git process holds (or a killed one left) index.lock."""
    return b"index.lock'" in stderr


def _git_error(args: tuple[str, ...], cwd: Path, proc: subprocess.CompletedProcess[bytes]) -> str:
    """One line for a failed git command: git's own error line (`fatal:`/`error:`), not the
    advice that follows it, which does not name the problem."""
    command = next((a for a in args if not a.startswith("-")), "command")
    lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    error = (errors or lines or [f"exit {proc.returncode}"])[0]
    if b".lock': " in proc.stderr:  # git's "Unable to create '...lock': File exists."
        error += (
            " (another git command is running in this repository, or one was killed: if none "
            "is running, delete that file)"
        )
    return f"git {command} failed in {cwd}: {error}"


def _git(
    cwd: Path, *args: str, stdin: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run one git command in `cwd`; a failure raises RalphError with git's own message.

    A command that finds the index locked runs again for up to INDEX_LOCK_WAIT_S: an editor's
    or the user's `git status` takes the lock for a moment, and a command that could not take
    it has changed nothing yet.
    """
    deadline: float | None = None
    while True:
        proc = subprocess.run(
            ["git", *_GIT_OPTIONS, *args],
            cwd=cwd,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env=_git_env(),
            check=False,
        )
        if proc.returncode == 0 or not _index_locked(proc.stderr):
            break
        now = time.monotonic()
        deadline = now + INDEX_LOCK_WAIT_S if deadline is None else deadline
        if now >= deadline:
            break
        time.sleep(0.05)
    if check and proc.returncode != 0:
        raise RalphError(_git_error(args, cwd, proc))
    return proc


def _out(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    return _git(cwd, *args, stdin=stdin).stdout.decode("utf-8", "surrogateescape").strip()


def _nul(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


def _is_state(path: str) -> bool:
    """Whether a status path is ralph's own state or git's data, never dirt, never committed."""
    top = path.split("/", 1)[0]
    return top in (STATE_DIR, ".git")


def _status(root: Path) -> dict[str, str]:
    """Changed, deleted and untracked (not ignored) paths of the work tree -> status code."""
    raw = _git(
        root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"
    ).stdout.decode("utf-8", "surrogateescape")
    entries = {}
    for entry in raw.split("\0"):
        if len(entry) > 3 and not _is_state(entry[3:]):
            entries[entry[3:]] = entry[:2]
    return entries


def _fingerprint(root: Path, path: str) -> str:
    """What a path holds now: content hash and executable bit, link target, or absence."""
    target = root / path
    try:
        info = os.lstat(target)
        if stat.S_ISLNK(info.st_mode):
            return "link:" + os.readlink(target)
        if stat.S_ISDIR(info.st_mode):
            return "dir"
        with open(target, "rb") as handle:
            digest = hashlib.file_digest(handle, "blake2b").hexdigest()
        return f"{digest}:{int(bool(info.st_mode & 0o111))}"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable:{exc.errno}"


# --- the repository ------------------------------------------------------------------------


def _open_repo(path: Path) -> Any:
    """The GitPython Repo of the work tree containing `path`, or a UsageError."""
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise UsageError(
            f"{path} is not a git repository; run `git init` or pass --repo DIR"
        ) from None
    if repo.bare or repo.working_tree_dir is None:
        raise UsageError(f"{path} is a bare git repository; ralph needs a work tree (--repo DIR)")
    return repo


def _refuse_dubious_ownership(repo: Any, main: Path) -> None:
    """GitPython reads HEAD itself, so a repository git refuses to use (owned by another user,
    not in safe.directory) would look empty; ask git, and name the real cause."""
    import git

    try:
        repo.git.rev_parse("--git-dir")
    except git.GitCommandError as e:
        if "dubious ownership" in str(e):
            raise UsageError(
                f"git refuses {main}: it is owned by another user; run ralph as its owner, or "
                f"trust it with `git config --global --add safe.directory {main}`"
            ) from None


def find_main_repo(start: Path) -> Path | None:
    """The repository whose `.ralph/` holds the journal, from anywhere inside it (or inside one
    of ralph's worktrees); pure Python, so `ralph runs` starts fast."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            if candidate.parent.name == "worktrees" and candidate.parent.parent.name == STATE_DIR:
                return candidate.parent.parent.parent
            return candidate
    return None


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
    from .journal import take_lock

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
    main = Path(repo.working_tree_dir)
    if not repo.head.is_valid():
        _refuse_dubious_ownership(repo, main)
        raise UsageError(
            f"{main} has no commits yet; ralph branches from HEAD: make a first commit "
            "(e.g. `git commit --allow-empty -m init`)"
        )
    _check_writable(main, Path(repo.common_dir))
    if not cfg.worktree and not holding_checkout:
        from .journal import lock_holder

        holder = lock_holder(_checkout_lock_path(main))
        if holder is not None:
            raise _busy_checkout(main, holder, resuming=False)
    if cfg.in_place and repo.head.is_detached:
        raise UsageError("--in-place needs a branch, but HEAD is detached; `git switch` to one")
    if cfg.branch is not None:
        if _git(main, "check-ref-format", "--branch", cfg.branch, check=False).returncode:
            raise UsageError(f"--branch {cfg.branch!r} is not a valid git branch name")
        if _branch_exists(main, cfg.branch):
            raise UsageError(
                f"branch {cfg.branch} already exists; ralph never reuses or rewrites a branch: "
                "choose another --branch, or resume its run with `ralph resume RUN`"
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
        subject = f"ralph({prompt_name}): iteration {i} (interrupted)"
    else:
        line = neutralise(summary) or "no summary"
        if len(line) > SUMMARY_WIDTH:
            line = line[: SUMMARY_WIDTH - 1].rstrip() + "…"
        subject = f"ralph({prompt_name}): iteration {i}/{n if n else '∞'} — {line}"
    # The agent's words stay on the subject line (no trailer of theirs), redacted, and inert
    # once pushed: no mention, no issue closed, no CI skipped.
    return f"{neutralise(subject)}\n\nRalph-Run: {run_id}\nRalph-Iteration: {i}\n"


def run_commits(main: Path, base: str, branch: str, run_id: str) -> list[tuple[str, int]]:
    """(sha, iteration) of run `run_id`'s commits on `branch` since `base`, oldest first, as
    their `Ralph-Run` / `Ralph-Iteration` trailers say."""
    fmt = "%H%x1f%(trailers:key=Ralph-Run,valueonly,separator=,)%x1f" + (
        "%(trailers:key=Ralph-Iteration,valueonly,separator=,)%x1e"
    )
    raw = _out(main, "log", "--reverse", f"--format={fmt}", f"{base}..refs/heads/{branch}", "--")
    found = []
    for record in raw.split("\x1e"):
        parts = [part.strip() for part in record.strip().split("\x1f")]
        if len(parts) == 3 and parts[1] == run_id and parts[2].isdigit():
            found.append((parts[0], int(parts[2])))
    return found


def _git_locks(root: Path, branch: str) -> list[Path]:
    """The lock files git takes to commit on `branch` in `root`: index.lock, HEAD.lock (HEAD
    names the branch) and the branch's own."""
    names = ("index.lock", "HEAD.lock", f"refs/heads/{branch}.lock")
    asked = [arg for name in names for arg in ("--git-path", name)]
    return [Path(p) for p in _out(root, "rev-parse", "--path-format=absolute", *asked).split("\n")]


def _refuse_stale(lock: Path) -> None:
    """A lock a killed git left would fail the first commit, after an iteration's work."""
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
) -> str:
    """Create the run's branch with `git COMMAND BRANCH REST`; its name.

    Without --branch, a default name already taken gets a `-N` suffix, including one taken
    between our look and git's (two runs started in the same second, e.g. with --worktree).
    """
    stem = chosen or default_branch_name(prompt_name)
    branch, n = stem, 2
    while True:
        if chosen is None and _branch_exists(main, branch):
            branch, n = f"{stem}-{n}", n + 1
            continue
        done = _git(main, *command, branch, *rest, check=False)
        if done.returncode == 0:
            return branch
        if b"already exists" not in done.stderr or not _branch_exists(main, branch):
            raise RalphError(_git_error(command, main, done))
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
    _identity: list[str] = field(default_factory=list, repr=False)
    _start: Snapshot = field(default_factory=dict, repr=False)  # dirty at iteration start
    _now: Snapshot | None = field(default=None, repr=False)  # dirty at the last look
    _changed: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def prepare(cls, cfg: RunConfig, run_id: str, prompt_name: str) -> Workspace:
        """Create the run's branch (or worktree); call `check(cfg)` first."""
        repo = _open_repo(cfg.repo)
        main = Path(repo.working_tree_dir)
        base = repo.head.commit.hexsha
        ensure_excluded(Path(repo.common_dir))
        root = main
        if cfg.in_place:
            branch = repo.active_branch.name
        elif cfg.worktree:
            root = main / STATE_DIR / "worktrees" / run_id
            root.parent.mkdir(parents=True, exist_ok=True)
            branch = _new_branch(
                main, cfg.branch, prompt_name, ("worktree", "add", "-q", "-b"), (str(root), base)
            )
        else:
            # Uncommitted changes (--allow-dirty) come along to the new branch untouched.
            branch = _new_branch(main, cfg.branch, prompt_name, ("checkout", "-q", "-b"), (base,))
        ws = cls(root, main, branch, base, cfg.worktree, run_id, cfg.allow_dirty)
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
    ) -> Workspace:
        """The workspace of a run being resumed: its branch checked out, its worktree back.

        Changes found in the tree count as the dead iteration's work (commit them first),
        except, with --allow-dirty, the user's paths recorded when that iteration began.
        """
        repo = _open_repo(cfg.repo)
        main = Path(repo.working_tree_dir)
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
        ws._identity = _identity_options(root)
        if cfg.allow_dirty and not worktree_path:
            saved = ws._load_baseline()
            # Without a record of the user's paths, every dirty path is treated as theirs.
            ws._start = saved if saved is not None else ws._snapshot()
        return ws

    # --- iterations ------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        return {p: (code, _fingerprint(self.root, p)) for p, code in _status(self.root).items()}

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
            p: (code, fp if fp is not None else _fingerprint(self.root, p))
            for p, (code, fp) in start.items()
        }
        self._now, self._changed = None, []
        if self.allow_dirty and not self.worktree:
            self._save_baseline()  # so a resume knows which paths are the user's

    def changed_files(self) -> list[str]:
        """Paths changed in the work tree since `begin_iteration` (not ignored, not .ralph/)."""
        status = _status(self.root)
        now: Snapshot = {}
        changed = []
        for path, code in status.items():
            before = self._start.get(path)
            if before is None:
                now[path] = (code, None)  # new dirt: changed, no need to hash it yet
                changed.append(path)
                continue
            fingerprint = _fingerprint(self.root, path)
            now[path] = (code, fingerprint)
            if fingerprint != before[1]:
                changed.append(path)
        changed.extend(p for p in self._start if p not in status)  # back to the committed state
        self._now, self._changed = now, sorted(changed)
        return list(self._changed)

    def commit(self, message: str) -> str | None:
        """Commit this iteration's paths (see `begin_iteration`); the new sha, or None.

        Stages what the last `changed_files()` reported (it is called if it was not).
        """
        if self._now is None:
            self.changed_files()
        assert self._now is not None
        # Nested repositories would become broken submodules: they are reported, not committed.
        paths = [p for p in self._changed if p not in self._start and not p.endswith("/")]
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
        _git(
            self.root,
            "add",
            "-A",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            stdin=_nul(paths),
        )
        chosen = set(paths)
        if any(code[0] not in " ?" and p not in chosen for p, (code, _) in self._now.items()):
            # Other staged changes (the user's) must stay staged and out of this commit.
            sha = self._commit_only(paths, message)
        else:
            tree = _out(self.root, "write-tree")
            if tree == head_tree:
                sha = None
            else:
                sha = _out(
                    self.root, *self._identity, "commit-tree", tree, "-p", head, "-F", "-",
                    stdin=message.encode("utf-8"),
                )  # fmt: skip
                subject = "commit: " + message.splitlines()[0]
                _git(self.root, "update-ref", "-m", subject, f"refs/heads/{self.branch}", sha, head)
        for path in paths:
            self._now.pop(path, None)  # committed: clean again
        self._changed = [p for p in self._changed if p not in paths]
        self.last_commit_files = paths if sha else []
        return sha

    def _commit_only(self, paths: list[str], message: str) -> str | None:
        """`git commit --only PATHS`: leaves everything else in the index as the user had it."""
        done = _git(
            self.root, *self._identity, "commit", "-q", "--no-verify", "--only",
            "--cleanup=verbatim", "-m", message, "--pathspec-from-file=-", "--pathspec-file-nul",
            stdin=_nul(paths), check=False,
        )  # fmt: skip
        if done.returncode:
            if b"nothing" in done.stdout + done.stderr:
                return None
            raise RalphError(_git_error(("commit",), self.root, done))
        return _out(self.root, "rev-parse", "HEAD")

    def diff_stat(self, since: str | None = None) -> list[FileStat]:
        """Files changed on the branch since `since` (default: the run's base commit)."""
        raw = _git(
            self.root, "diff", "--numstat", "-z", "--no-renames", since or self.base_commit, "HEAD"
        ).stdout.decode("utf-8", "surrogateescape")
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
