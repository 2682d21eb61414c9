"""A throw-away clean checkout of a commit: what the completion gate judges.

The agent's working tree can hold what a clone of the branch would not: files it left
uncommitted, files its own `.gitignore` hides (a `unittest/__main__.py` that exits 0 made
`python3 -m unittest` pass while a clean clone failed), a database or cache a test run left.
So the gate looks at the commit instead, checked out as a detached git worktree under the main
repository's `.ralph/gate/` (same filesystem as the repository, invisible to `git status`,
read-only to the agent's sandbox), removed when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config import STATE_DIR
from .repo import _git, _out

GATE_DIR = "gate"
# The runner's own git must not run anything from the repository while checking out (hooks
# are off in every runner call; these are specific to a checkout).
_SAFE = ("-c", "core.fsmonitor=false", "-c", "submodule.recurse=false")


class GateCheckout:
    """The gate's clean checkout for one run, at `.ralph/gate/<run id>`.

    Made on the run's first check (a full checkout: the cost of writing the tree once), then
    brought to each later commit with `checkout -f` and `clean -ffdx`, which rewrite only
    what changed and delete everything else (what the last verify commands wrote, ignored or
    not): the same files as a fresh checkout, at a fraction of its cost (20,000 files: one
    full checkout takes seconds, a refresh a tenth of a second). Removed when the run ends.
    """

    def __init__(self, main_repo: Path, rev: str, name: str) -> None:
        self.main_repo = main_repo
        self.rev = rev
        self.path = main_repo / STATE_DIR / GATE_DIR / name

    @contextmanager
    def __call__(self) -> Iterator[tuple[Path, str]]:
        """The checkout at the run branch's tip: (its directory, the commit's sha)."""
        sha = _out(
            self.main_repo, "rev-parse", "--verify", "--end-of-options", f"{self.rev}^{{commit}}"
        )
        if not self._refreshed(sha):
            self.close()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _git(self.main_repo, *_SAFE, "worktree", "add", "-q", "--detach", str(self.path), sha)
        yield self.path, sha

    def _refreshed(self, sha: str) -> bool:
        """Bring an existing checkout to `sha`, exactly; False when there is none to reuse."""
        if not (self.path / ".git").is_file():
            return False
        _make_writable(self.path)  # a verify command may have left read-only directories
        for args in (("checkout", "-q", "-f", "--detach", sha), ("clean", "-ffdxq")):
            if _git(self.path, *_SAFE, *args, check=False).returncode:
                return False
        return True

    def close(self) -> None:
        """Remove the checkout (end of run)."""
        if self.path.exists():
            remove_checkout(self.main_repo, self.path)


def remove_checkout(main_repo: Path, path: Path) -> None:
    """Remove a gate checkout and git's record of it, even if a command left it read-only."""
    _git(main_repo, "worktree", "remove", "--force", "--force", str(path), check=False)
    if path.exists():
        _make_writable(path)
        shutil.rmtree(path, ignore_errors=True)
        _git(main_repo, "worktree", "prune", check=False)


def _make_writable(path: Path) -> None:
    """Give the owner write and search permission on every directory (a test may have made
    one read-only), top down, never through a symlink."""
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IRWXU)
    for directory, subdirs, _ in os.walk(path):
        for name in subdirs:
            sub = os.path.join(directory, name)
            if not os.path.islink(sub):
                with contextlib.suppress(OSError):
                    os.chmod(sub, stat.S_IRWXU)
