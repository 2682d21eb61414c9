"""The checkout a run works in, before and around its iterations: finding the repository and
refusing one a run cannot use (`check`), the checkout lock of a run working in the checkout
itself, and creating the run's branch or worktree (`start_branch`) or taking it back on resume
(`reattach`).

Every git command goes through `gitrun` (see there). Nothing is ever pushed, forced or
rewritten: a branch ralph creates is new, and a branch name another run took is never reused.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import STATE_DIR, RunConfig
from ..errors import RalphError, UsageError
from ..store.locks import RunLock, lock_holder, take_lock
from . import gitrun
from .staging import CacheFilter
from .stale_locks import clear_stale_locks

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


def start_branch(
    cfg: RunConfig,
    run_id: str,
    prompt_name: str,
    record: Callable[[str, str, Path], None] | None = None,
) -> tuple[Path, Path, str, str, str]:
    """Create the run's branch (or worktree); call `check(cfg)` first. `record(branch, base,
    root)` is called before anything is created or switched (again if the branch's name
    changes), so that whatever a kill leaves is a run the journal knows.

    Returns (checkout root, work root, branch, base commit, origin: the branch or commit the
    checkout was on).
    """
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
    return main, root, branch, base, origin


def reattach(cfg: RunConfig, branch: str, worktree_path: str | Path | None) -> tuple[Path, Path]:
    """A resumed run's branch checked out again, its worktree back (re-added if it was removed
    by hand); a lock file a killed git left is removed or refused (`stale_locks`). Returns
    (checkout root, work root)."""
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
        clear_stale_locks(root, branch, own_worktree=True)
    else:
        clear_stale_locks(main, branch, own_worktree=False)
        if _current_branch(main) != branch:
            dirty = sorted(_status(main))
            if dirty:
                raise UsageError(
                    f"cannot switch to the run's branch {branch}: the work tree has "
                    f"uncommitted changes ({_describe_paths(dirty)}); commit or stash "
                    "them, then resume"
                )
            _git(main, "checkout", "-q", branch)
    return main, root
