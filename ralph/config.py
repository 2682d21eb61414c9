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
from .parse import parse_duration
from .settings import DEFAULT_MODEL, NEVER, SETTINGS, RunConfig

if TYPE_CHECKING:
    from .prompt import PromptSpec

__all__ = ["DEFAULT_MODEL", "RunConfig", "build_config", "parse_duration", "restore_config"]

CONFIG_FILE = "ralph.yaml"
STATE_DIR = ".ralph"

PARSERS: dict[str, Callable[[Any], Any]] = {name: s.parse for name, s in SETTINGS.items()}

# Settings whose "not set" value is null.
NULLABLE = {name for name, s in SETTINGS.items() if s.nullable}

# Settings a file (ralph.yaml, front matter) may hold; the rest are per-invocation.
FILE_KEYS = {name for name, s in SETTINGS.items() if s.repo is not NEVER}

# The `where` of the command-line layer: its errors name the option (`--max-cost`).
COMMAND_LINE = "command line"

# Bounds of single settings, checked in every layer so that an error names the file or
# variable the bad value came from (and checked again by `validate`, for stored configs).
BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    name: s.bound for name, s in SETTINGS.items() if s.bound is not None
}


def option_name(name: str) -> str:
    """How the user spells a setting on the command line (`--pr-label` for pr_labels), or,
    for a setting with no option, in files."""
    return SETTINGS[name].option


def parse_layer(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate one source's settings; `where` names it in error messages."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        parser = PARSERS.get(name)
        if parser is None:
            raise UsageError(f"{where}: unknown setting {key!r}; see `ralph init` for the list")
        if where == COMMAND_LINE:
            label = option_name(name)
        elif where.startswith("environment variable"):
            label = where
        else:
            label = f"{where}: {key}"
        if value is None and name in NULLABLE:
            out[name] = None
            continue
        try:
            out[name] = parser(value)
        except ValueError as exc:
            raise UsageError(f"{label}: {exc}") from None
        bound = BOUNDS.get(name)
        if bound is not None and not bound[0](out[name]):
            raise UsageError(f"{label} {bound[1]}")
    return out


def _merge_pricing(
    low: Mapping[str, Mapping[str, float]], high: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Price tables of two layers: per model, the higher layer's entry wins."""
    out = {model: dict(prices) for model, prices in low.items()}
    out.update({model: dict(prices) for model, prices in high.items()})
    return out


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay settings, lowest first. A layer that picks a workspace mode (in_place,
    worktree, branch) clears the modes it excludes from the layers below, so
    `--in-place` beats `worktree: true` in ralph.yaml; price tables are merged per model."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer.get("in_place"):
            merged.pop("worktree", None)
            merged.pop("branch", None)
        if layer.get("worktree") or layer.get("branch") is not None:
            merged.pop("in_place", None)
        if "pricing" in layer and "pricing" in merged:
            merged["pricing"] = _merge_pricing(merged["pricing"], layer["pricing"])
            layer = {k: v for k, v in layer.items() if k != "pricing"}
        merged.update(layer)
    return merged


def env_layer(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from RALPH_<NAME> environment variables (e.g. RALPH_MAX_ITERATIONS=5)."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name in PARSERS:
        var = "RALPH_" + name.upper()
        if var in environ:
            out.update(parse_layer({name: environ[var]}, f"environment variable {var}"))
    return out


def load_yaml_mapping(text: str, where: str, line_offset: int = 0) -> dict[str, Any]:
    """Parse YAML that must be a mapping; errors name the file and line."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1 + line_offset}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{where}{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    return data


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
    from .logs import settings_log_format
    from .prompt import load_prompt

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
    from .workspace import find_main_repo

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
