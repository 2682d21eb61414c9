"""`ralph init`: a commented ralph.yaml, and optionally editable copies of the prompts."""

from __future__ import annotations

import shutil
from pathlib import Path

from .config import CONFIG_FILE
from .docs import TEMPLATE
from .errors import UsageError
from .prompt import builtin_names, builtin_path


def init_repo(repo: Path, with_prompts: bool = False, force: bool = False) -> list[Path]:
    """Write ralph.yaml (and prompts/ copies); never overwrite without `force`."""
    written: list[Path] = []
    target = repo / CONFIG_FILE
    targets = [target]
    prompt_dir = repo / "prompts"
    if with_prompts:
        targets += [prompt_dir / f"{name}.md" for name in builtin_names()]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        names = ", ".join(str(p.relative_to(repo)) for p in existing)
        raise UsageError(f"{names} already exist(s); pass --force to overwrite")
    target.write_text(TEMPLATE, encoding="utf-8")
    written.append(target)
    if with_prompts:
        prompt_dir.mkdir(exist_ok=True)
        for name in builtin_names():
            source = builtin_path(name)
            assert source is not None
            shutil.copyfile(source, prompt_dir / f"{name}.md")
            written.append(prompt_dir / f"{name}.md")
    return written
