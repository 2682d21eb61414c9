"""RunConfig and its sources: defaults < ralph.yaml < front matter < RALPH_* env < flags."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UsageError

DEFAULT_MODEL = "claude-sonnet-5-5"
CONFIG_FILE = "ralph.yaml"
STATE_DIR = ".ralph"


@dataclass
class RunConfig:
    """Everything a run needs, resolved from all sources. Plain data, JSON-able."""

    prompt: str = ""  # the prompt text given to the agent
    prompt_name: str = "inline"  # short name used in branch names and commits
    prompt_source: str = ""  # path, built-in name, "-", or "inline"
    completion_promise: str = ""
    description: str = ""
    repo: Path = field(default_factory=Path.cwd)
    model: str = DEFAULT_MODEL
    max_iterations: int = 10  # 0: no limit (needs max_cost or timeout)
    max_turns: int = 50  # model calls within one iteration
    max_output_tokens: int = 16000  # max_tokens of each model call
    dry_run: bool = False
    # the real agent
    retry_window: float = 900.0  # seconds of retrying transient API failures
    bash_timeout: float = 120.0
    output_cap: int = 30_000  # bytes of tool output the model sees
    pricing: dict[str, dict[str, float]] = field(default_factory=dict)
    # git workspace
    branch: str | None = None
    in_place: bool = False
    worktree: bool = False
    allow_dirty: bool = False
    no_commit: bool = False
    # safety and guards
    sandbox: str = "auto"  # auto | bwrap | none
    network: str = "on"  # on | off
    env: list[str] = field(default_factory=list)  # RALPH_* names passed to the agent
    max_cost: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None  # seconds of wall time for the run
    stall_limit: int = 5
    max_failures: int = 3
    # completion gate
    verify: list[str] = field(default_factory=list)
    artifacts: list[Any] = field(default_factory=list)
    # seeing a run
    log_format: str = "auto"  # auto | plain | json | rich
    log_file: Path | None = None
    quiet: bool = False
    verbose: bool = False
    show_text: bool = False
    otel: bool = False
    # pull requests
    pr: bool = False
    pr_draft: bool | None = None  # None: a draft unless the run completed
    pr_base: str | None = None
    pr_labels: list[str] = field(default_factory=list)
    remote: str = "origin"
    # the agent of each iteration: the built-in one or an agent CLI (operator-only settings)
    agent: str = "builtin"  # builtin | claude-code | codex
    agent_args: list[str] = field(default_factory=list)  # passed to the agent CLI
    fallback_agent: str | None = None  # runs an iteration when the agent hits a usage limit
    usage_limit_wait: float = 21600.0  # seconds an iteration may wait for a usage limit

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config stored by `to_dict` (the journal keeps one per run)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("repo", "log_file"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)


# --- parsing of values from files, environment and flags -------------------------------

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str | float | int) -> float:
    """Seconds from `90`, `90s`, `45m`, `8h` or `1h30m`."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    raw = str(text).strip().lower()
    match = _DURATION.match(raw)
    if not raw or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; use e.g. 90, 90s, 45m, 8h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"{value!r} is not a whole number")
    return int(text)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    try:
        return float(str(value).strip().lstrip("$"))
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{value!r} is not true or false")


def _str(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError("expected a single value")
    return str(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _yaml_list(text: str) -> list[str] | None:
    """A YAML flow list written in one string (`["pytest -q", "ruff check ."]`), else None."""
    if not text.strip().startswith("["):
        return None
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"{text!r} is not a valid YAML list") from None
    if not isinstance(value, list):
        raise ValueError(f"{text!r} is not a valid YAML list")
    return [_str(v) for v in value]


def _listed(value: Any, pieces: Callable[[str], list[str]], expected: str) -> list[str]:
    """A list, a YAML list in a string, or a string cut into `pieces`."""
    if isinstance(value, list):
        return [_str(v) for v in value]
    if isinstance(value, str):
        listed = _yaml_list(value)
        if listed is not None:
            return listed
        return [v.strip() for v in pieces(value) if v.strip()]
    raise ValueError(expected)


def _str_list(value: Any) -> list[str]:
    return _listed(value, lambda s: s.split(","), "expected a list")


def _commands(value: Any) -> list[str]:
    """Shell commands: a list, a YAML list in a string, or one command per line; never split
    on commas, which commands hold (`python -c "f(1, 2)"`)."""
    return _listed(value, str.splitlines, "expected a list of commands")


def _args(value: Any) -> list[str]:
    """Arguments: a list, a YAML list in a string, or a string split like a shell would."""
    import shlex

    return _listed(value, shlex.split, "expected a list of arguments")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
        return text

    return parse


def _on_off(value: Any) -> str:
    # YAML 1.1 reads a bare `on` / `off` as a boolean.
    if isinstance(value, bool):
        return "on" if value else "off"
    return _choice("on", "off")(value)


def _artifacts(value: Any) -> list[Any]:
    """Artifact entries, checked now: a bad one found when the run starts would leave a
    branch and .ralph/ behind, and --dry-run would pass it."""
    if isinstance(value, str):  # RALPH_ARTIFACTS='[{path: sdlc/audit.md, checklist: true}]'
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError("expected a YAML list of artifacts") from None
    if not isinstance(value, list):
        raise ValueError("expected a list")
    from .gate import parse_artifacts

    try:
        parse_artifacts(value)
    except UsageError as exc:
        raise ValueError(exc.message.removeprefix("artifacts: ")) from None
    except (TypeError, ValueError):
        raise ValueError("an entry's min must be a whole number") from None
    return value


def _pricing(value: Any) -> dict[str, dict[str, float]]:
    if isinstance(value, str):  # RALPH_PRICING='{my-model: {input: 3, output: 15}}'
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError("expected a YAML mapping of model id to prices") from None
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of model id to prices")
    out: dict[str, dict[str, float]] = {}
    for model, prices in value.items():
        if not isinstance(prices, dict):
            raise ValueError(f"prices of {model!r} must be a mapping")
        unknown = set(prices) - {"input", "output", "cache_write", "cache_read"}
        if unknown or not {"input", "output"} <= set(prices):
            raise ValueError(
                f"prices of {model!r} need input and output (and may have cache_write, "
                "cache_read), in USD per million tokens"
            )
        out[str(model)] = {k: _float(v) for k, v in prices.items()}
        if any(v < 0 for v in out[str(model)].values()):
            raise ValueError(f"prices of {model!r} cannot be negative")
    return out


def _path(value: Any) -> Path:
    return Path(_str(value)).expanduser()


PARSERS: dict[str, Callable[[Any], Any]] = {
    "dry_run": _bool,
    "completion_promise": _str,
    "description": _str,
    "model": _str,
    "max_iterations": _int,
    "max_turns": _int,
    "max_output_tokens": _int,
    "retry_window": parse_duration,
    "bash_timeout": parse_duration,
    "output_cap": _int,
    "pricing": _pricing,
    "branch": _opt_str,
    "in_place": _bool,
    "worktree": _bool,
    "allow_dirty": _bool,
    "no_commit": _bool,
    "sandbox": _choice("auto", "bwrap", "none"),
    "network": _on_off,
    "env": _str_list,
    "max_cost": _float,
    "max_tokens": _int,
    "timeout": parse_duration,
    "stall_limit": _int,
    "max_failures": _int,
    "verify": _commands,
    "artifacts": _artifacts,
    "log_format": _choice("auto", "plain", "json", "rich"),
    "log_file": _path,
    "quiet": _bool,
    "verbose": _bool,
    "show_text": _bool,
    "otel": _bool,
    "pr": _bool,
    "pr_draft": _bool,  # null (the default): a draft unless the run completed
    "pr_base": _opt_str,
    "pr_labels": _str_list,
    "remote": _str,
    "agent": _choice("builtin", "claude-code", "codex"),
    "agent_args": _args,
    "fallback_agent": lambda v: (
        None if v is None else _choice("builtin", "claude-code", "codex")(v)
    ),
    "usage_limit_wait": parse_duration,
}

# Settings whose "not set" value is null.
NULLABLE = {
    "max_cost", "max_tokens", "timeout", "branch", "pr_draft", "pr_base", "log_file",
    "fallback_agent",
}  # fmt: skip

# Settings a file (ralph.yaml, front matter) may hold; the rest are per-invocation.
# Which agent runs, and with what arguments, is the operator's choice: a repository file the
# agent can write must not swap it (or pass it --dangerously-anything).
FILE_KEYS = set(PARSERS) - {"dry_run", "log_file", "agent", "agent_args", "fallback_agent"}

# The `where` of the command-line layer: its errors name the option (`--max-cost`).
COMMAND_LINE = "command line"

# Bounds of single settings, checked in every layer so that an error names the file or
# variable the bad value came from (and checked again by `validate`, for stored configs).
BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_iterations": (lambda v: v >= 0, "cannot be negative; use 0 for no limit with a budget"),
    "max_turns": (lambda v: v >= 1, "must be at least 1"),
    "max_output_tokens": (lambda v: v >= 1, "must be at least 1"),
    "stall_limit": (lambda v: v >= 0, "cannot be negative; 0 turns it off"),
    "max_failures": (lambda v: v >= 1, "must be at least 1"),
    "max_cost": (lambda v: v > 0, "must be more than 0"),
    "max_tokens": (lambda v: v > 0, "must be more than 0"),
    "timeout": (lambda v: v > 0, "must be more than 0"),
    "output_cap": (lambda v: v >= 1000, "must be at least 1000 bytes"),
    "bash_timeout": (lambda v: v > 0, "must be more than 0"),
    "usage_limit_wait": (lambda v: v >= 0, "cannot be negative; 0 never waits"),
    # A blank token can never be matched: the run would go on to its last iteration.
    "completion_promise": (
        lambda v: bool(v.strip()),
        "is empty; give the token (e.g. DONE), or leave it out to use the prompt's "
        "<promise>TOKEN</promise>",
    ),
    "remote": (lambda v: bool(v.strip()), "is empty; name a git remote (default origin)"),
    "model": (
        lambda v: bool(v.strip()),
        f"is empty; give an Anthropic model id (default {DEFAULT_MODEL}) or script:PATH",
    ),
}

# Settings with no command-line option: errors name them as they are spelt in files.
NO_FLAG = {"description", "max_output_tokens", "output_cap", "pricing", "artifacts"}


def option_name(name: str) -> str:
    """How the user spells a setting on the command line (`--pr-label` for pr_labels)."""
    if name in NO_FLAG:
        return name
    spelt = {"pr_labels": "--pr-label", "agent_args": "--agent-arg"}
    return spelt.get(name, "--" + name.replace("_", "-"))


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


# Strictness of the sandbox settings, loosest first: repository files may only move right.
_SANDBOX_STRICTNESS = ("none", "auto", "bwrap")


def check_repo_layer(
    settings: Mapping[str, Any], where: str, overridden: Collection[str] = ()
) -> None:
    """Refuse settings from a repository file (ralph.yaml, front matter) that loosen security.

    The agent can write these files, and CI checks them out from the previous run's branch,
    so they may only tighten: the user's flags and RALPH_* environment may do anything.
    `overridden` names the settings a higher layer (environment, flags) sets anyway.
    """
    for key in settings:
        if key not in FILE_KEYS:
            flag = option_name(key)
            raise UsageError(
                f"{where}: {key} is not a file setting; remove it, and pass {flag} or set "
                f"RALPH_{key.upper()}"
            )
    if settings.get("sandbox") == "none" and "sandbox" not in overridden:
        raise UsageError(
            f"{where}: sandbox: none is refused from a repository file (the agent can edit it); "
            "pass --sandbox none or set RALPH_SANDBOX=none"
        )
    pricing = settings.get("pricing") or {}
    if pricing:
        from .models.pricing import builtin_prices

        builtin = builtin_prices()
        for model, prices in pricing.items():
            if model in builtin:
                raise UsageError(
                    f"{where}: pricing: {model} has a built-in price, which a repository file "
                    "cannot change (it would weaken --max-cost); remove it, or set "
                    "RALPH_PRICING in the environment"
                )
            if any(value <= 0 for value in prices.values()):
                raise UsageError(
                    f"{where}: pricing: {model}: prices must be more than 0 in a repository "
                    "file (0 would defeat --max-cost); set RALPH_PRICING for a free model"
                )


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


def merge_repo_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay repository files (ralph.yaml, then front matter), keeping the strictest
    security setting of any of them: a prompt file the agent can edit cannot undo
    `network: off` or `sandbox: bwrap` in ralph.yaml, nor lower a price it set."""
    merged = merge_layers(*layers)
    sandboxes = [layer["sandbox"] for layer in layers if "sandbox" in layer]
    if sandboxes:
        merged["sandbox"] = max(sandboxes, key=_SANDBOX_STRICTNESS.index)
    if any(layer.get("network") == "off" for layer in layers):
        merged["network"] = "off"
    tables = [layer["pricing"] for layer in layers if layer.get("pricing")]
    if len(tables) > 1:
        from .models.pricing import CACHE_READ_FACTOR, CACHE_WRITE_FACTOR

        prices: dict[str, dict[str, float]] = {}
        for table in tables:
            for model, entry in table.items():
                # Fill in the implied cache prices so a max is taken over like with like.
                full = {
                    "cache_write": entry["input"] * CACHE_WRITE_FACTOR,
                    "cache_read": entry["input"] * CACHE_READ_FACTOR,
                    **entry,
                }
                have = prices.setdefault(model, {})
                for key, value in full.items():
                    have[key] = max(value, have.get(key, value))
        merged["pricing"] = prices
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
