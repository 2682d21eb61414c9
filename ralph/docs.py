"""The settings' documentation, generated from their declarations (settings.py): the
ralph.yaml `ralph init` writes, and the README's tables (`python -m ralph.docs` rewrites
them; tests/test_settings.py says when they are stale)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from . import trust
from .events import EVENTS
from .settings import (
    ADDS,
    AGENT,
    AGENTS,
    ANY,
    GATE,
    GIT,
    HARDEN_OPTIONS,
    LOOP,
    LOWER,
    NEVER,
    ON,
    OPERATOR,
    OPTIONS,
    PR,
    SAFETY,
    SETTINGS,
    STRICTER,
    VIEW,
    RepoRule,
    Setting,
    help_default,
)

# --- ralph.yaml ----------------------------------------------------------------------------

_RULES = (  # what a repository file may do with a setting of each rule, in README order
    (ANY, "set any value"),
    (LOWER, "only lower it: at most the default shown, never to 0 (off) or null"),
    (ON, "only turn it on"),
    (STRICTER, "only make it stricter (loosest first)"),
    (ADDS, "only add entries"),
    (
        OPERATOR,
        "not change it: only a flag or `RALPH_*` variable may (a file may repeat the default)",
    ),
    (NEVER, "not hold it at all: only a flag or `RALPH_*` variable may"),
)


def _detail(s: Setting) -> str:
    """A setting in the rules table, with the bound a file must keep to."""
    if s.repo is LOWER and s.default is not None:
        return f"`{s.name}` ({trust.shown(s, s.default)})"
    if s.repo is STRICTER:
        return f"`{s.name}` ({' < '.join(s.order)})"
    return f"`{s.name}`"


def _ruled(rule: RepoRule) -> list[Setting]:
    return [s for s in SETTINGS.values() if s.repo is rule]


def repo_rules_table() -> str:
    """README Configuration: what ralph.yaml and in-repo front matter may set."""
    rows = ["| a repository file may | settings |", "| --- | --- |"]
    for rule, says in _RULES:
        rows.append(f"| {says} | {', '.join(_detail(s) for s in _ruled(rule))} |")
    return "\n".join(rows)


def repo_rules_sentence() -> str:
    """README Safety: the settings a repository file may set, in one sentence."""

    def names(*rules: RepoRule) -> str:
        return ", ".join(f"`{s.name}`" for rule in rules for s in _ruled(rule))

    return textwrap.fill(
        "A repository file (`ralph.yaml`, the front matter of a prompt file inside the "
        f"repository) may set {names(ANY)} freely and {names(LOWER, ON, STRICTER, ADDS)} only "
        f"to tighten them (see Configuration); {names(OPERATOR, NEVER)} come only from flags "
        "and `RALPH_*` variables. Anything else stops the run before it starts (exit 2), in "
        "one line naming the flag or variable that may set it.",
        92,
        initial_indent="  ",
        subsequent_indent="  ",
    )


def _header() -> str:
    """The template's opening comment, with the repository-file rules."""
    rules = [
        f"{says.replace('`', '')}: "
        + ", ".join(_detail(s).replace("`", "") for s in _ruled(rule) if rule is not NEVER)
        for rule, says in _RULES
        if rule is not NEVER
    ]
    never = ", ".join(s.name for s in _ruled(NEVER))
    text = [
        "ralph.yaml: settings for ralph-loop runs in this repository.",
        "Precedence, lowest to highest: built-in defaults < this file < a prompt's front "
        "matter < RALPH_<SETTING> environment variables < command-line flags.",
        "Every setting is shown with its default; uncomment a line to change it.",
        "The agent can write this file (and prompt files inside the repository), so ralph takes "
        "from them only what tightens the operator's settings, and refuses the rest (exit 2). "
        "Of each setting, this file may:",
    ]
    out = [line for para in text for line in textwrap.wrap(para, _WIDTH - 2)]
    for rule in rules:
        out += textwrap.wrap(rule, _WIDTH - 4, initial_indent="- ", subsequent_indent=" ")
    out += textwrap.wrap(
        "When this file and in-repo front matter both set one, the stricter wins. The "
        f"environment and flags may do anything. Only they may set {never}.",
        _WIDTH - 2,
    )
    return "\n".join(f"# {line}" for line in out) + "\n"


GROUPS = (LOOP, AGENT, GIT, SAFETY, GATE, VIEW, PR, AGENTS)
_WIDTH = 100  # of a template line
_COMMENT_AT = 34  # column of a setting's comment


def _yaml(value: Any) -> str:
    """A default as it is written in ralph.yaml."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ("", "on", "off"):
        return f'"{value}"'  # YAML 1.1 reads a bare on/off as a boolean
    if isinstance(value, list | dict) and not value:
        return "[]" if isinstance(value, list) else "{}"
    return str(value)


def _lines(s: Setting) -> list[str]:
    """A setting's commented lines: `# name: default  # what it does`, wrapped."""
    value = s.example if s.example is not None else _yaml(s.default)
    first, *block = value.split("\n")
    key = f"# {s.name}: {first}".rstrip() if first else f"# {s.name}:"
    indent = max(_COMMENT_AT, len(key) + 1)
    said = s.doc.replace("`", "")
    if s.repo is OPERATOR:  # shown at its default: a file may repeat it, nothing else
        said += f"; only by {s.option + ' or ' if s.flag else ''}{s.env}"
    doc = textwrap.wrap(said, _WIDTH - indent - 2) or [""]
    lines = [f"{key:<{indent}}# {doc[0]}"]
    lines += [f"#{' ' * (indent - 1)}# {more}" for more in doc[1:]]
    return lines + [f"# {line}" for line in block]


def template() -> str:
    """ralph.yaml as `ralph init` writes it: every file setting, its default and use."""
    out = [_header()]
    for group in GROUPS:
        out.append(f"# --- {group} ".ljust(_WIDTH, "-"))
        for s in SETTINGS.values():
            if s.group == group and s.repo is not NEVER:
                out += _lines(s)
        out.append("")
    return "\n".join(out)


TEMPLATE = template()


# --- README ----------------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"
_BEGIN = "<!-- generated by `python -m ralph.docs` from ralph/{}.py: {} -->"
_END = "<!-- end of {} -->"
# Options of `ralph-loop` that are not settings, and where they go in the table.
EXTRA_ROWS = {
    "model": "| `--repo DIR` | RALPH_REPO or the current directory | the git repository to work "
    "on (every `ralph` command takes it) |",
    "": "| `--resume RUN` | — | resume run RUN with its recorded settings instead of starting "
    "one |",
}


def _readme_names(s: Setting) -> str:
    assert s.flag is not None
    names = s.flag.replace("/", " / ")
    if s.short:
        names = f"{s.short}, {names}"
    return f"{names} {s.arg}" if s.arg and not s.switch else names


def _readme_default(s: Setting) -> str:
    if s.readme_default is not None:
        return s.readme_default
    stated = help_default(s.help)
    if stated is not None:
        return stated
    return "off" if s.switch else "none"


def options_table() -> str:
    """The README's table of `ralph-loop` options."""
    rows = ["| option | default | what it does |", "| --- | --- | --- |"]
    for s in OPTIONS:
        rows.append(f"| `{_readme_names(s)}` | {_readme_default(s)} | {s.doc} |")
        if s.name in EXTRA_ROWS:
            rows.append(EXTRA_ROWS[s.name])
    rows.append(EXTRA_ROWS[""])
    return "\n".join(rows)


def harden_options_table() -> str:
    """The README's table of the options only `ralph harden` takes."""

    rows = ["| option | default | what it does |", "| --- | --- | --- |"]
    for s in HARDEN_OPTIONS:
        rows.append(f"| `{_readme_names(s)}` | {_readme_default(s)} | {s.doc} |")
    return "\n".join(rows)


# What every JSON log line has, and the records JSON logs write that are not run events
# (ralph/views/logs.py): around the events' rows in README's table.
LOG_FIRST = (
    "| *every line* | `ts` (ISO 8601 UTC), `level`, `event`, `run_id` (null before a run "
    "starts), `iteration` (null outside one); an event field that clashes with these is renamed "
    "`data_<key>` |"
)
LOG_RECORDS = (
    "| error | message, exit_code (usage errors) |",
    "| signal | message, signal, exit_code (a second SIGINT/SIGTERM: the run stops at once) |",
    "| log | logger, message, traceback (library records at WARNING and above) |",
    "| exception | type, message, traceback |",
)


def events_table() -> str:
    """README's table of the JSON log records: every run event (events.EVENTS) and the
    log's own records."""
    rows = ["| event | fields |", "|---|---|", LOG_FIRST]
    for name, spec in EVENTS.items():
        if name == "conversation":  # the journal's; JSON logs leave it out
            continue
        label = f"{name} (debug)" if spec.debug else name
        rows.append(f"| {label} | {spec.readme or ', '.join(spec.fields)} |")
    rows.extend(LOG_RECORDS)
    return "\n".join(rows)


def readme_with_tables(readme: str) -> str:
    """`readme` with its generated parts replaced by the current ones."""
    parts = {
        ("settings", "harden options"): harden_options_table(),
        ("settings", "options"): options_table(),
        ("settings", "repository rules"): repo_rules_table(),
        ("settings", "repository settings"): repo_rules_sentence(),
        ("events", "events"): events_table(),
    }
    for (source, name), text in parts.items():
        begin, end = _BEGIN.format(source, name), _END.format(name)
        head, rest = readme.split(begin, 1)
        _, tail = rest.split(end, 1)
        indent = head[len(head.rstrip(" ")) :]  # markers inside a list item stay in it
        readme = f"{head}{begin}\n{text}\n{indent}{end}{tail}"
    return readme


if __name__ == "__main__":
    README.write_text(readme_with_tables(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the generated parts of {README}")
