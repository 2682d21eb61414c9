"""Parsers of setting values: each takes what a file, variable or flag holds (YAML value or
string) and returns the typed value, or raises ValueError with what is wrong."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UsageError

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


def whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"{value!r} is not a whole number")
    return int(text)


def number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    try:
        return float(str(value).strip().lstrip("$"))
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{value!r} is not true or false")


def text(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError("expected a single value")
    return str(value)


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def _yaml_list(value: str) -> list[str] | None:
    """A YAML flow list written in one string (`["pytest -q", "ruff check ."]`), else None."""
    if not value.strip().startswith("["):
        return None
    import yaml  # 19 ms: only for a value written as YAML

    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ValueError(f"{value!r} is not a valid YAML list") from None
    if not isinstance(loaded, list):
        raise ValueError(f"{value!r} is not a valid YAML list")
    return [text(v) for v in loaded]


def _listed(value: Any, pieces: Callable[[str], list[str]], expected: str) -> list[str]:
    """A list, a YAML list in a string, or a string cut into `pieces`."""
    if isinstance(value, list):
        return [text(v) for v in value]
    if isinstance(value, str):
        listed = _yaml_list(value)
        if listed is not None:
            return listed
        return [v.strip() for v in pieces(value) if v.strip()]
    raise ValueError(expected)


def text_list(value: Any) -> list[str]:
    return _listed(value, lambda s: s.split(","), "expected a list")


def commands(value: Any) -> list[str]:
    """Shell commands: a list, a YAML list in a string, or one command per line; never split
    on commas, which commands hold (`python -c "f(1, 2)"`)."""
    return _listed(value, str.splitlines, "expected a list of commands")


def shell_args(value: Any) -> list[str]:
    """Arguments: a list, a YAML list in a string, or a string split like a shell would."""
    return _listed(value, shlex.split, "expected a list of arguments")


def choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        word = text(value).strip().lower()
        if word not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
        return word

    parse.choices = choices  # type: ignore[attr-defined]  # for the docs
    return parse


def network(value: Any) -> str:
    """on | off | host; a YAML boolean reads as on / off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return choice("on", "off", "host")(value)


def _yaml_value(value: Any, expected: str) -> Any:
    """A string from a RALPH_* variable read as YAML; anything else as it is."""
    if not isinstance(value, str):
        return value
    import yaml  # (the same)

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise ValueError(expected) from None


def artifacts(value: Any) -> list[Any]:
    """Artifact entries, checked now: a bad one found when the run starts would leave a
    branch and .ralph/ behind, and --dry-run would pass it."""
    # RALPH_ARTIFACTS='[{path: sdlc/audit.md, checklist: true}]'
    value = _yaml_value(value, "expected a YAML list of artifacts")
    if not isinstance(value, list):
        raise ValueError("expected a list")
    from .run.gate import parse_artifacts  # start-up: the gate is not needed for --help

    try:
        parse_artifacts(value)
    except UsageError as exc:
        raise ValueError(exc.message.removeprefix("artifacts: ")) from None
    except (TypeError, ValueError):
        raise ValueError("an entry's min must be a whole number") from None
    return value


def pricing(value: Any) -> dict[str, dict[str, float]]:
    # RALPH_PRICING='{my-model: {input: 3, output: 15}}'
    value = _yaml_value(value, "expected a YAML mapping of model id to prices")
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
        out[str(model)] = {k: number(v) for k, v in prices.items()}
        if any(v < 0 for v in out[str(model)].values()):
            raise ValueError(f"prices of {model!r} cannot be negative")
    return out


def path(value: Any) -> Path:
    return Path(text(value)).expanduser()


def notify_targets(value: Any) -> list[str]:
    """Notification targets: URLs (one per line or a YAML list) or cmd:COMMAND, each checked."""
    from .views.notify import check_target  # start-up: notify is not needed for --help

    targets = _listed(value, str.splitlines, "a URL or cmd:COMMAND, or a list of them")
    for target in targets:
        problem = check_target(target)
        if problem:
            raise ValueError(problem)
    return targets
