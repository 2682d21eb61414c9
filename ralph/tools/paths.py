"""Path confinement for the editor tool: every path must resolve inside the repository.

Rules, each named in the refusal so the model knows which one it broke:
- inside: a path (relative to the root, or absolute), once every symlink is followed (dangling
  ones too), must lie inside the repository;
- git: nothing under `.git` (a directory, or a worktree's `.git` file) or the runner's
  `.ralph` state is written: the runner commits, the agent does not;
- config: `ralph.yaml` at the root is not written (created, edited or replaced through a
  symlink): the agent must not choose the settings of the next run;
- hard link: a file with several hard links is not written, since one of them may be
  outside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import CONFIG_FILE

# Top-level names under the root that the agent may read but never write.
READ_ONLY_TOP = (".git", ".ralph")
# Files at the root that the agent may read but never write.
READ_ONLY_FILES = (CONFIG_FILE,)


class PathRefused(Exception):
    """A path the agent may not use; the message names the rule."""


def resolve_root(root: Path) -> Path:
    """The repository root with every symlink resolved (the base of all checks)."""
    return Path(os.path.realpath(root))


def confine(root: Path, raw: object, *, write: bool) -> Path:
    """The resolved path for `raw` inside `root` (already resolved), or PathRefused.

    A path is resolved once here and the resolved form is what the caller opens, so a symlink
    cannot be swapped in between the check and the use by a later component.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise PathRefused("`path` must be a non-empty string (relative to the repository root)")
    if "\0" in raw:
        raise PathRefused("`path` contains a NUL byte")
    given = Path(raw)
    candidate = given if given.is_absolute() else root / given
    lexical = Path(os.path.normpath(candidate))
    resolved = Path(os.path.realpath(candidate))
    if not resolved.is_relative_to(root):
        if lexical.is_relative_to(root):
            raise PathRefused(
                f"{raw} goes through a symlink that points outside the repository, to "
                f"{resolved} (rule: paths must stay inside the repository, symlinks included)"
            )
        raise PathRefused(
            f"{raw} is outside the repository {root} (rule: paths must stay inside the "
            "repository; use a path relative to its root)"
        )
    if write:
        for path in (lexical, resolved):
            parts = path.relative_to(root).parts if path.is_relative_to(root) else ()
            if parts and parts[0] in READ_ONLY_TOP:
                raise PathRefused(
                    f"{raw} is under {parts[0]} (rule: nothing under .git or .ralph is written "
                    "by the agent; the runner commits your changes)"
                )
            if len(parts) == 1 and parts[0] in READ_ONLY_FILES:
                raise PathRefused(
                    f"{raw} is the runner's configuration {parts[0]} (rule: the agent does not "
                    "change ralph's settings; say in your final message what should change)"
                )
        try:
            info = resolved.stat()
        except OSError:
            info = None
        if info is not None and not resolved.is_dir() and info.st_nlink > 1:
            raise PathRefused(
                f"{raw} has {info.st_nlink} hard links, and one may be outside the repository "
                "(rule: hard-linked files are not written); copy it to a new file instead"
            )
    return resolved


def display(root: Path, path: Path) -> str:
    """`path` as the model should see it: relative to the root ("." for the root)."""
    rel = path.relative_to(root)
    return str(rel) if rel.parts else "."
