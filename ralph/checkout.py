"""A throw-away clean checkout of a commit: what the completion gate judges.

The agent's working tree can hold what a clone of the branch would not: files it left
uncommitted, files its own `.gitignore` hides (a `unittest/__main__.py` that exits 0 made
`python3 -m unittest` pass while a clean clone failed), a database or cache a test run left.
So the gate looks at the commit instead, checked out as a detached git worktree under the main
repository's `.ralph/gate/` (same filesystem as the repository, invisible to `git status`,
read-only to the agent's sandbox) and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import STATE_DIR
from .workspace import _git, _out

GATE_DIR = "gate"
# The runner's own git must not run anything from the repository while checking out (hooks
# are off in every runner call; these are specific to a checkout).
_SAFE = ("-c", "core.fsmonitor=false", "-c", "submodule.recurse=false")


@contextmanager
def clean_checkout(main_repo: Path, rev: str) -> Iterator[tuple[Path, str]]:
    """Check out `rev` (the run's branch) into a new directory; yield it and the commit's sha.

    The directory is a detached worktree of the repository (`git log`, `git diff` work in it)
    and is removed, with whatever the verify commands wrote there, when the block ends.
    """
    sha = _out(main_repo, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
    parent = main_repo / STATE_DIR / GATE_DIR
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{sha[:12]}-", dir=parent))
    try:
        _git(main_repo, *_SAFE, "worktree", "add", "-q", "--detach", str(path), sha)
        yield path, sha
    finally:
        remove_checkout(main_repo, path)


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
