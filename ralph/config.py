"""Building a RunConfig: defaults < ralph.yaml < front matter < RALPH_* env < flags.

The settings themselves (type, parser, bounds, default, help, flag, repository-file rule)
are declared once in settings.py; everything here is derived from those declarations."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import trust
from .errors import UsageError
from .layers import (
    BOUNDS,
    env_layer,
    load_yaml_mapping,
    merge_layers,
    option_name,
    parse_layer,
)
from .parse import parse_duration
from .settings import DEFAULT_MODEL, RunConfig

if TYPE_CHECKING:
    from .run.prompt import PromptSpec

__all__ = ["DEFAULT_MODEL", "RunConfig", "build_config", "parse_duration", "restore_config"]

CONFIG_FILE = "ralph.yaml"
STATE_DIR = ".ralph"


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


def require_main_repo(start: Path) -> Path:
    """find_main_repo, or the one-line error every command gives outside a repository."""
    main = find_main_repo(start)
    if main is None:
        raise UsageError(f"{start} is not inside a git repository; pass --repo DIR")
    return main


def file_layer(repo: Path) -> dict[str, Any]:
    """Settings from `ralph.yaml` at the repository root, if it exists."""
    path = repo / CONFIG_FILE
    if path.is_symlink() and not path.resolve().is_relative_to(repo.resolve()):
        # The agent may have made it: reading through it would show a host file's lines in
        # a parse error (a CI log is often public).
        raise UsageError(
            f"{path} is a link out of the repository; replace it with a file (or remove it)"
        )
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    return parse_layer(load_yaml_mapping(text, str(path)), str(path))


def validate(cfg: RunConfig) -> None:
    """Reject combinations that make no sense, with the fix in the message."""
    for name, (ok, problem) in BOUNDS.items():
        value = getattr(cfg, name)
        if name == "completion_promise":
            continue  # "" is "not given" here: build_config takes the prompt's
        if value is not None and not ok(value):
            raise UsageError(f"{option_name(name)} {problem}")
    if cfg.max_iterations == 0 and cfg.max_cost is None and cfg.timeout is None:
        raise UsageError(
            "--max-iterations 0 (no limit) needs a budget: add --max-cost USD or --timeout DURATION"
        )
    checks: list[tuple[bool, str]] = [
        (cfg.in_place and cfg.worktree, "--in-place and --worktree exclude each other; pick one"),
        (cfg.in_place and cfg.branch is not None, "--in-place and --branch exclude each other"),
        (not cfg.prompt.strip(), "the prompt is empty; write the task in the prompt file"),
    ]
    for failed, message in checks:
        if failed:
            raise UsageError(message)
    for name in cfg.env:
        if not re.fullmatch(r"RALPH_[A-Z0-9_]+", name):
            raise UsageError(
                f"--env {name}: only RALPH_* variables can be passed to the agent; "
                "rename it (e.g. RALPH_" + name.upper().removeprefix("RALPH_") + ")"
            )


def repo_dir(repo: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The repository a command works on: --repo, else RALPH_REPO, else the current directory
    (every command alike, so the `ralph resume RUN` a run prints works in the same shell)."""
    environ = os.environ if environ is None else environ
    return (repo or Path(environ.get("RALPH_REPO") or Path.cwd())).expanduser()


def build_config(
    prompt: str,
    flags: Mapping[str, Any],
    repo: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    note: Callable[[str, RunConfig], None] | None = None,
) -> RunConfig:
    """The one way to make a run's RunConfig: defaults < ralph.yaml < front matter <
    RALPH_* env (`environ`, default os.environ) < `flags` (parsed, as from parse_layer).

    Files the agent could have written (ralph.yaml, the front matter of a prompt file in
    the repository) may only tighten what the operator set (trust.py); the environment,
    flags, built-in prompts and prompt files outside the repository may do anything.
    `note` receives a one-line note about the prompt (e.g. that a built-in stood in for a
    missing file)."""
    from .run.prompt import load_prompt  # start-up: `ralph --help` and `ralph runs` need neither
    from .views.logs import settings_log_format  # (the same)

    root = repo_dir(repo, environ)
    if not root.is_dir():
        named = f"--repo {root}" if repo is not None else f"RALPH_REPO={root}"
        raise UsageError(f"{named} does not exist or is not a directory")
    root = root.resolve()
    spec = load_prompt(prompt)
    merged = _merge_sources(spec, file_layer(root), env_layer(environ), flags, root)
    settings_log_format(merged.get("log_format"))  # usage errors from here on follow it
    cfg = RunConfig(
        **merged,
        repo=root,
        prompt=spec.text,
        prompt_name=spec.name,
        prompt_source=spec.source,
    )
    if not cfg.completion_promise and not cfg.tasks:  # a task-list run ends when none is open
        cfg.completion_promise = _prompt_promise(spec.promises)
    validate(cfg)
    if spec.note and note is not None:
        note(spec.note, cfg)
    return cfg


def _merge_sources(
    spec: PromptSpec,
    from_file: dict[str, Any],
    from_env: dict[str, Any],
    flags: Mapping[str, Any],
    root: Path,
) -> dict[str, Any]:
    """The layers overlaid, after refusing what a file the agent could have written would
    loosen (trust.py)."""
    given = {k: v for k, v in flags.items() if v is not None and v != []}
    file_where = str(root / CONFIG_FILE)
    front_where = f"{spec.path or spec.source} front matter"
    trust.refuse_never_in_files(from_file, file_where)
    trust.refuse_never_in_files(spec.settings, front_where)
    tree = find_main_repo(root) or root
    if spec.path is None or spec.is_builtin or not trust.agent_writable(spec.path, tree):
        # The operator's prompt file (or the package's): its front matter is theirs.
        above = [spec.settings, from_env, given]
        trust.check_repo_layer(from_file, file_where, above, merge_layers)
        return merge_layers(from_file, *above)
    above = [from_env, given]
    trust.check_repo_layer(from_file, file_where, above, merge_layers)
    trust.check_repo_layer(spec.settings, front_where, above, merge_layers)
    in_repo = merge_layers(from_file, spec.settings)
    return merge_layers(trust.strictest(in_repo, from_file, spec.settings), *above)


def _prompt_promise(found: list[str]) -> str:
    """The promise a prompt names, when no setting does."""
    if len(found) > 1:
        raise UsageError(
            f"the prompt asks for several promises ({', '.join(found)}); choose one with "
            "--completion-promise TOKEN"
        )
    if not found:
        raise UsageError(
            "no completion promise: add --completion-promise TOKEN, or put "
            "<promise>TOKEN</promise> in the prompt"
        )
    return found[0]


def restore_config(stored: Mapping[str, Any], repo: Path) -> RunConfig:
    """The RunConfig a run recorded in the journal (RunConfig.to_dict), for resuming it in
    `repo`: never a dry run, checked like a new one."""
    cfg = RunConfig.from_dict(stored)
    cfg.repo = repo
    cfg.dry_run = False
    # The journal holds only the shown form of notification targets (they are secrets): a
    # resumed run tells the targets RALPH_NOTIFY names in the environment it resumes in.
    cfg.notify = env_layer().get("notify", [])
    validate(cfg)
    return cfg
