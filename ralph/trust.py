"""Files the agent could have written (ralph.yaml, the front matter of a prompt file inside the
repository) may only tighten what the operator set: defaults, flags, RALPH_* variables, the
built-in prompts and prompt files outside the repository. Each setting's rule (`repo=`) is
declared in settings.py; this module applies it. A fleet workflow's input (its settings and
its prompt's front matter) is held to the same rule, measured from the worker's own
configuration instead of the defaults (`check_override_layer`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import parse
from .errors import UsageError
from .settings import (
    ADDS,
    ANY,
    LOWER,
    NEVER,
    ON,
    OPERATOR,
    SETTINGS,
    STRICTER,
    RepoRule,
    Setting,
)


def shown(s: Setting, value: Any) -> str:
    """A value as the user would write it in a flag or variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if s.parse is parse.parse_duration and isinstance(value, float):
        # 10h, 15m, 120s: as the help and the template write them
        if value >= 3600 and value % 3600 == 0:
            return f"{value / 3600:g}h"
        if value >= 600 and value % 60 == 0:
            return f"{value / 60:g}m"
        return f"{value:g}s"
    return str(value)


def loosens(s: Setting, value: Any, of: str = "", who: str = "a repository file") -> str | None:
    """Why `value` from a repository file (`who`) would loosen the setting's default (or the
    value `s.default` stands for, `of` saying whose), or None."""
    default = s.default
    if value == default or s.repo is ANY:
        return None
    if s.repo is OPERATOR:
        return "can be set only by the operator"
    if s.repo is LOWER:
        if default is None or (s.off is not None and default == s.off):
            return None  # no limit to loosen: any value is one
        if value is None or (s.off is not None and value == s.off):
            return f"turns the limit off, and {who} may only lower it"
        if value > default:
            return (
                f"is above {of or 'the default '}{shown(s, default)}, and {who} may only lower it"
            )
        return None
    if s.repo is ON:
        return None if value else f"turns it off, and {who} may only turn it on"
    if s.repo is STRICTER:
        if s.order.index(value) < s.order.index(default):
            return f"is looser than {of}{default}, and {who} may only make it stricter"
        return None
    if s.repo is ADDS:
        if any(entry not in value for entry in default):
            return f"removes {of or ''}entries, and {who} may only add them"
        return None
    return "is not a file setting"  # NEVER: refused before


def _refusal(s: Setting, value: Any, where: str, why: str) -> UsageError:
    """One line: the file, the setting, why, and the flag or variable that may set it."""
    scalar = not isinstance(value, list | dict)
    value_text = f": {shown(s, value)}" if scalar else ""
    ways = f"set {s.env}" + (f"={shown(s, value)}" if scalar else "")
    if s.flag is not None and s.switch:  # --pr, --no-pr-draft
        on, _, off = s.flag.partition("/")
        ways = f"pass {on if value else off or on} or {ways}"
    elif s.flag is not None:
        ways = f"pass {s.option}{value_text.replace(':', '', 1)} or {ways}"
    return UsageError(
        f"{where}: {s.name}{value_text} is refused from a repository file (the agent can "
        f"write it): it {why}; {ways}"
    )


def refuse_never_in_files(layer: Mapping[str, Any], where: str) -> None:
    """Refuse a setting no file may hold, from any file: per-run ones (ralph, outside the
    sandbox, would append its log_file to any path the agent chose, e.g. ~/.bashrc) and the
    choice of agent (a file must not swap it or pass it --dangerously-anything)."""
    for key in layer:
        s = SETTINGS[key]
        if s.repo is NEVER:
            raise UsageError(
                f"{where}: {key} is not a file setting; remove it, and pass "
                f"{s.option} or set {s.env}"
            )


def check_repo_layer(
    layer: Mapping[str, Any],
    where: str,
    above: Sequence[Mapping[str, Any]],
    merge: Callable[..., dict[str, Any]],
) -> None:
    """Refuse a setting of a repository file that would loosen its default, unless an
    operator's layer `above` it sets it anyway (or, for a workspace mode, clears it)."""
    survives = merge(layer, *above)
    for key, value in layer.items():
        if key not in survives or any(key in higher for higher in above):
            continue  # the operator's value wins: the file's is moot
        why = loosens(SETTINGS[key], value)
        if why is not None:
            raise _refusal(SETTINGS[key], value, where, why)


def check_override_layer(
    layer: Mapping[str, Any],
    where: str,
    baseline: Mapping[str, Any],
    rules: Mapping[str, RepoRule],
) -> None:
    """Refuse a setting of a fleet workflow's input, a layer above the worker's own that
    whoever can start workflows writes, that would loosen what the worker's operator set
    (`baseline`: each setting as the worker's configuration alone gives it). The repository
    file's rule, measured from that value: a lower limit, a stricter sandbox, more verify
    commands pass; anything else must equal the worker's. `rules`: the caller's own rule for
    a setting, in place of its repository-file rule (a campaign's phases)."""
    for key, value in layer.items():
        s = SETTINGS[key]
        base = baseline[key]
        if value == base:
            continue
        rule = rules.get(key) or (OPERATOR if s.repo is NEVER else s.repo)
        why = loosens(s._replace(default=base, repo=rule), value, "the workers' ", "a workflow")
        if why is not None:
            scalar = not isinstance(value, list | dict)
            value_text = f": {shown(s, value)}" if scalar else ""
            allow = f"{s.env}={shown(s, value)}" if scalar else s.env
            raise UsageError(
                f"{where}: {key}{value_text} is refused from a workflow's input (whoever can "
                f"start workflows on the namespace can write it): it {why}; to allow it, set "
                f"{allow} in the workers' environment"
            )


def _stricter(s: Setting, low: Any, high: Any) -> Any:
    """The stricter of two repository files' values (ties: the higher layer's)."""
    if s.repo is LOWER:

        def limit(value: Any) -> float:
            off = value is None or (s.off is not None and value == s.off)
            return float("inf") if off else float(value)

        return low if limit(low) < limit(high) else high
    if s.repo is ON:
        return low or high
    if s.repo is STRICTER:
        return max(high, low, key=s.order.index)
    if s.repo is ADDS:
        return [*low, *(entry for entry in high if entry not in low)]
    return high


def strictest(merged: dict[str, Any], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """`merged` (the layers overlaid in order) with each setting that several repository
    files set taken at its strictest: in-repo front matter cannot undo `network: off` or
    drop a verify command of ralph.yaml, which the agent could have written just as well."""
    for key in merged:
        values = [layer[key] for layer in layers if key in layer]
        for value in values[1:]:
            values[0] = _stricter(SETTINGS[key], values[0], value)
        if values:
            merged[key] = values[0]
    return merged


def agent_writable(path: Path, tree: Path) -> bool:
    """Whether `path` (as given, or where its links lead) lies in `tree`, the repository the
    agent works in: a prompt file there is the agent's to edit, one elsewhere the operator's."""
    roots = {tree.absolute(), tree.resolve()}
    for candidate in (Path(os.path.normpath(path.absolute())), path.resolve()):
        if any(candidate == root or root in candidate.parents for root in roots):
            return True
    return False
