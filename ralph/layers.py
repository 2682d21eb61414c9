"""One layer of settings (a ralph.yaml, a prompt's front matter, RALPH_* variables, the
command line): parsed and checked against the declarations in settings.py, and overlaid.

config.py builds a RunConfig from the layers; prompt.py parses front matter with them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .errors import UsageError
from .settings import NEVER, SETTINGS

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
    import yaml  # 19 ms: only when a settings file is read

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
