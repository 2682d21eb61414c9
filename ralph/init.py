"""`ralph init`: a commented ralph.yaml, and optionally editable copies of the prompts."""

from __future__ import annotations

from pathlib import Path

from . import trust
from .config import CONFIG_FILE
from .docs import TEMPLATE
from .errors import UsageError
from .git.commits import _identity_options
from .git.repo import _git, _out, _status
from .run.prompt import builtin_names, builtin_path, split_front_matter
from .settings import SETTINGS


def repository_copy(text: str, where: str) -> str:
    """A built-in prompt as it is copied into the repository: the front matter lines a
    repository file may not hold (max_iterations: 30) become comments naming the flag."""
    settings, _ = split_front_matter(text, where)
    lines = text.splitlines(keepends=True)
    end = (
        next(i for i, line in enumerate(lines[1:], 1) if line.startswith("---")) if settings else 0
    )
    for i in range(1, end):
        key = lines[i].split(":", 1)[0]
        if key in settings and trust.loosens(SETTINGS[key], settings[key]) is not None:
            value = trust.shown(SETTINGS[key], settings[key])
            lines[i] = (
                f"# {lines[i].rstrip()}  (not from a file in the repository: pass "
                f"{SETTINGS[key].option} {value})\n"
            )
    return "".join(lines)


def init_repo(repo: Path, with_prompts: bool = False, force: bool = False) -> list[Path]:
    """Write ralph.yaml (and prompts/ copies); the files written.

    A file that exists is kept (so `init --prompts` after `init` adds the prompts), and
    overwritten only with `force`; when every file exists and `force` is not given, a
    UsageError says how to overwrite them.
    """
    target = repo / CONFIG_FILE
    prompt_dir = repo / "prompts"
    plan: list[tuple[Path, Path | None]] = [(target, None)]  # (destination, source or None)
    if with_prompts:
        for name in builtin_names():
            plan.append((prompt_dir / f"{name}.md", builtin_path(name)))
    todo = [(dest, src) for dest, src in plan if force or not dest.exists()]
    if not todo:
        names = ", ".join(str(dest.relative_to(repo)) for dest, _ in plan)
        raise UsageError(f"{names} already exist(s); pass --force to overwrite")
    written: list[Path] = []
    for dest, source in todo:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source is None:
            dest.write_text(TEMPLATE, encoding="utf-8")
        else:
            text = repository_copy(source.read_text(encoding="utf-8"), str(source))
            dest.write_text(text, encoding="utf-8")
        written.append(dest)
    return written


def commit_files(repo: Path, paths: list[Path]) -> str | None:
    """Commit `paths` (and nothing else the index holds) on the current branch, so the next
    `ralph-loop` finds a clean tree; the new commit's sha, or None when nothing changed."""

    root = Path(_out(repo, "rev-parse", "--show-toplevel"))
    names = [str(p.resolve().relative_to(root)) for p in paths]
    if not any(name in _status(root) for name in names):
        return None
    _git(root, "add", "--", *names)
    _git(
        root, *_identity_options(root), "commit", "-q", "--no-verify", "--only", "-m",
        f"ralph init: {', '.join(names) if len(names) < 4 else f'{len(names)} files'}", "--",
        *names,
    )  # fmt: skip
    return _out(root, "rev-parse", "--short", "HEAD")
