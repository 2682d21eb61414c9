"""The git workspace of a run: its branch or worktree, the clean-tree policy, one commit per
iteration. Checking the repository and making or reattaching the branch are in `repo`; the
commits' identity and message in `commits`.

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
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import STATE_DIR, RunConfig
from ..errors import RalphError
from . import gitrun
from .commits import _identity_options
from .repo import _branch_exists, _git, _out, _status, reattach, start_branch
from .staging import (
    NESTED_REPO,
    PROTECTED,
    Refusal,
    describe,
    fingerprint,
    is_protected,
    protected_paths,
    refusal,
)

if TYPE_CHECKING:
    from collections.abc import Callable

GITLINK = "160000"

# path -> (two-letter status code, content fingerprint or None when not computed yet)
Snapshot = dict[str, tuple[str, str | None]]


@dataclass(frozen=True)
class FileStat:
    """Lines added and deleted in one file (None for binary files)."""

    path: str
    added: int | None
    deleted: int | None


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _nul(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


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
        main, root, branch, base, origin = start_branch(cfg, run_id, prompt_name, record)
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
        main, root = reattach(cfg, branch, worktree_path)
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
