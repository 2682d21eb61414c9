"""Every run setting, declared once, as a field of `RunConfig`.

To add a setting, add one field below in the group it belongs to:

    max_widgets: int = setting(
        3,                                  # the default (or factory=list for a list)
        parse.whole,                        # ralph/parse.py: str/YAML value -> typed value
        "Widgets at most (default 3).",     # --help text; say the default as "(default X)"
        doc="widgets at most",              # README table and `ralph init`'s template
        arg="N",                            # the option's argument in README
        repo=LOWER,                         # what ralph.yaml / in-repo front matter may set
        bound=(lambda v: v >= 1, "must be at least 1"),
    )

then use `cfg.max_widgets` where it takes effect. From the field come: the option
`--max-widgets` (`flag=` to name it otherwise, `flag=None` for none; a bool is
`--x/--no-x`), the variable `RALPH_MAX_WIDGETS`, the ralph.yaml key and template line, the
README rows (`python -m ralph.docs` rewrites them; a test says when they are stale) and
the repository-file rule, which trust.py applies. `repo=` says what a file the agent could
have written (ralph.yaml, front matter of a prompt file in the repository) may do:
ANY (harmless: views, descriptions), LOWER (a limit: up to its default), ON (a guard: only
turn it on), STRICTER (an ordered choice: only the stricter side), ADDS (gate lists: only
add), OPERATOR (flags and RALPH_* only; a file may hold just the default) or NEVER (not in a
file at all, e.g. per-run settings). When unsure, choose OPERATOR.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from . import parse

DEFAULT_MODEL = "claude-sonnet-5-5"


class RepoRule(NamedTuple):
    """What a repository file (ralph.yaml, in-repo front matter) may do with a setting."""

    name: str
    says: str  # for README and errors: "may only lower it", ...


ANY = RepoRule("any", "any value")
LOWER = RepoRule("lower", "only lower it (at most the default)")
ON = RepoRule("on", "only turn it on")
STRICTER = RepoRule("stricter", "only make it stricter")
ADDS = RepoRule("adds", "only add entries")
OPERATOR = RepoRule("operator", "not change it (flag or RALPH_* variable only)")
NEVER = RepoRule("never", "not hold it: only a flag or RALPH_* variable may")

_AUTO = "auto"  # flag=_AUTO: derive `--the-name` (or `--the-name/--no-the-name`)


class Setting(NamedTuple):
    """One setting: how it is parsed, checked, spelt and documented. (NamedTuples, not
    dataclasses: these are made at every start-up, and a dataclass costs ~2 ms to define.)"""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str  # --help text
    doc: str  # README table and ralph.yaml template: a short phrase
    group: str  # section of the ralph.yaml template
    repo: RepoRule
    flag: str | None  # the option's declaration: "--x", "--x/--no-x"; None: no option
    short: str | None = None  # "-q"
    arg: str = ""  # the option's argument in README: N, DURATION, ...
    bound: tuple[Callable[[Any], bool], str] | None = None
    order: tuple[str, ...] = ()  # STRICTER: loosest first
    off: Any = None  # LOWER: a value that switches the limit off (0)
    example: str | None = None  # YAML shown in the template instead of the default
    readme_default: str | None = None  # the README's default column, when not "(default X"
    command: str = "run"  # the command whose option it is: "run", or "harden" (campaign.py)

    @property
    def nullable(self) -> bool:
        return self.default is None

    @property
    def env(self) -> str:
        return "RALPH_" + self.name.upper()

    @property
    def option(self) -> str:
        """How the user spells it on the command line (`--pr-label`), or as in files."""
        if self.flag is None:
            return self.name
        return self.flag.split("/")[0]

    @property
    def switch(self) -> bool:
        return self.parse is parse.boolean


def setting(
    default: Any = None,
    parser: Callable[[Any], Any] = parse.text,
    help: str = "",
    *,
    doc: str,
    group: str,
    repo: RepoRule,
    factory: Callable[[], Any] | None = None,
    flag: str | None = _AUTO,
    short: str | None = None,
    arg: str = "",
    bound: tuple[Callable[[Any], bool], str] | None = None,
    order: tuple[str, ...] = (),
    off: Any = None,
    example: str | None = None,
    readme_default: str | None = None,
    command: str = "run",
) -> Any:
    """A `RunConfig` field that is a setting (see the module docstring)."""
    spec = {
        "parse": parser,
        "help": help,
        "doc": doc,
        "group": group,
        "repo": repo,
        "flag": flag,
        "short": short,
        "arg": arg,
        "bound": bound,
        "order": order,
        "off": off,
        "example": example,
        "readme_default": readme_default,
        "command": command,
    }
    if factory is not None:
        return field(default_factory=factory, metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec})


LOOP, AGENT, GIT, SAFETY, GATE, VIEW, PR, AGENTS, CAMPAIGN = (
    "the loop",
    "the real agent",
    "git",
    "safety and guards",
    "completion gate",
    "seeing a run",
    "pull requests",
    "other agents",
    "hardening campaign",
)
# The phases of `ralph harden`, in the order they run (campaign.py).
PHASES = ("security", "reliability", "observability", "incident-response", "remediate")


def _phases(value: Any) -> list[str]:
    names = parse.text_list(value)
    unknown = [n for n in names if n not in PHASES]
    if unknown:
        raise ValueError(f"unknown phase {unknown[0]!r}; choose from {', '.join(PHASES)}")
    if not names:
        raise ValueError(f"no phase given; choose from {', '.join(PHASES)}")
    if len(set(names)) != len(names):
        raise ValueError("a phase is named twice; name each once")
    return names


_AGENT_NAMES = ("builtin", "claude-code", "codex")
_PROMISE_BOUND = (
    lambda v: bool(v.strip()),
    "is empty; give the token (e.g. DONE), or leave it out to use the prompt's "
    "<promise>TOKEN</promise>",
)


@dataclass
class RunConfig:
    """Everything a run needs, resolved from all sources. Plain data, JSON-able.

    Only `config.build_config` (and `config.restore_config` for a resumed run) make one for
    a run; tests make them directly."""

    # --- what the run is about (from PROMPT and --repo, not settings) ---
    prompt: str = ""  # the prompt text given to the agent
    prompt_name: str = "inline"  # short name used in branch names and commits
    prompt_source: str = ""  # path, built-in name, "-", or "inline"
    repo: Path = field(default_factory=Path.cwd)

    # --- settings, in the order of `ralph-loop --help` ---
    max_iterations: int = setting(
        10,
        parse.whole,
        "Iterations at most (default 10); 0 = no limit, only with --max-cost or --timeout.",
        doc="iterations at most; 0 = no limit, only with a cost or time budget",
        group=LOOP,
        arg="N",
        repo=LOWER,
        off=0,
        bound=(lambda v: v >= 0, "cannot be negative; use 0 for no limit with a budget"),
    )
    completion_promise: str = setting(
        "",
        parse.text,
        "The token the agent outputs as <promise>TOKEN</promise> when done (default: the one "
        "the prompt names).",
        doc="the token the agent outputs as `<promise>TOKEN</promise>` when done",
        group=LOOP,
        arg="TOKEN",
        repo=ANY,
        bound=_PROMISE_BOUND,
        example="DONE",
        readme_default="the one the prompt names",
    )
    model: str = setting(
        DEFAULT_MODEL,
        parse.text,
        f"Model: an Anthropic model id (default {DEFAULT_MODEL}), or script:PATH to replay a "
        "recorded session offline.",
        doc="an Anthropic model id, or `script:PATH` to replay a recorded session offline",
        group=LOOP,
        arg="ID",
        repo=OPERATOR,
        bound=(
            lambda v: bool(v.strip()),
            f"is empty; give an Anthropic model id (default {DEFAULT_MODEL}) or script:PATH",
        ),
    )
    max_turns: int = setting(
        50,
        parse.whole,
        "Model calls within one iteration (default 50).",
        doc="model calls within one iteration",
        group=LOOP,
        arg="N",
        repo=LOWER,
        bound=(lambda v: v >= 1, "must be at least 1"),
    )
    max_output_tokens: int = setting(
        16000,
        parse.whole,
        doc="max_tokens of each model call",
        group=LOOP,
        flag=None,
        repo=LOWER,
        bound=(lambda v: v >= 1, "must be at least 1"),
    )
    tasks: str | None = setting(
        None,
        parse.optional_text,
        "A task list to work off, one open task per iteration (Taskmaster tasks.json, prd.json "
        "or a Markdown checklist, in the repository); the run completes when none is open.",
        doc="a task list to work off, one open task per iteration (Taskmaster `tasks.json`, "
        "`prd.json` or a Markdown checklist in the repository); no promise needed",
        group=LOOP,
        arg="FILE",
        # The agent could write ralph.yaml: a task file it chose could point the run elsewhere
        # (a list it wrote, verify commands of its choosing). Per run, like the prompt.
        repo=NEVER,
    )
    task_failures: int = setting(
        3,
        parse.whole,
        "With --tasks: a task not done after K iterations in a row is marked blocked (default 3).",
        doc="with `--tasks`: a task not done after K iterations in a row is marked blocked",
        group=LOOP,
        arg="K",
        repo=LOWER,
        bound=(lambda v: v >= 1, "must be at least 1"),
    )
    dry_run: bool = setting(
        False,
        parse.boolean,
        "Print the resolved config and the first request, then exit 0.",
        doc="print the resolved config and the first request, then exit 0",
        group=LOOP,
        flag="--dry-run",
        repo=NEVER,
    )
    retry_window: float = setting(
        900.0,
        parse.parse_duration,
        "How long to keep retrying rate limits and overloads (default 15m).",
        doc="how long to keep retrying rate limits and overloads",
        group=AGENT,
        arg="DURATION",
        repo=LOWER,
        example="15m",
    )
    bash_timeout: float = setting(
        120.0,
        parse.parse_duration,
        "Timeout of each bash command the agent runs (default 120s).",
        doc="timeout of each bash command the agent runs",
        group=AGENT,
        arg="DURATION",
        repo=LOWER,
        example="120s",
        bound=(lambda v: v > 0, "must be more than 0"),
    )
    output_cap: int = setting(
        30_000,
        parse.whole,
        doc="bytes of a tool's output the model sees (head and tail)",
        group=AGENT,
        flag=None,
        repo=LOWER,
        bound=(lambda v: v >= 1000, "must be at least 1000 bytes"),
    )
    pricing: dict[str, dict[str, float]] = setting(
        parser=parse.pricing,
        factory=dict,
        doc="USD per million tokens for models the built-in table lacks, e.g. "
        "`{my-model: {input: 3.0, output: 15.0, cache_write: 3.75, cache_read: 0.30}}`",
        group=AGENT,
        flag=None,
        repo=OPERATOR,
    )
    branch: str | None = setting(
        None,
        parse.optional_text,
        "Branch to create for the run (default ralph/<prompt>-<UTC time>).",
        doc="branch to create for the run",
        group=GIT,
        arg="NAME",
        repo=OPERATOR,
        readme_default="`ralph/<prompt>-<UTC time>`",
    )
    in_place: bool = setting(
        False,
        parse.boolean,
        "Work on the current branch.",
        doc="work on the current branch",
        group=GIT,
        repo=OPERATOR,
    )
    worktree: bool = setting(
        False,
        parse.boolean,
        "Work in a git worktree under .ralph/worktrees; your checkout is never touched.",
        doc="work in a git worktree under `.ralph/worktrees`; your checkout is never touched",
        group=GIT,
        repo=ON,
    )
    allow_dirty: bool = setting(
        False,
        parse.boolean,
        "Run on a dirty tree; only paths ralph changed are committed.",
        doc="run on a dirty tree; only paths ralph changed are committed",
        group=GIT,
        repo=OPERATOR,
    )
    no_commit: bool = setting(
        False,
        parse.boolean,
        "Leave changes uncommitted.",
        doc="leave changes uncommitted",
        group=GIT,
        flag="--no-commit/--commit",
        # Not from a file the agent could write: uncommitted work is judged in the working
        # tree, not a clean checkout of a commit (the gate's guarantee).
        repo=OPERATOR,
        readme_default="commit",
    )
    sandbox: str = setting(
        "auto",
        parse.choice("auto", "bwrap", "none"),
        "auto | bwrap | none (default auto: bubblewrap when it works).",
        doc="`auto` (bubblewrap when it works), `bwrap` or `none`",
        group=SAFETY,
        arg="MODE",
        repo=STRICTER,
        order=("none", "auto", "bwrap"),
    )
    network: str = setting(
        "on",
        parse.network,
        "on | off | host: the sandbox's own network, none, or the host's (default on).",
        doc="the sandbox's own network (the internet, not the host's loopback), none, or the "
        "host's (see Safety)",
        group=SAFETY,
        arg="on\\|off\\|host",
        repo=STRICTER,
        order=("host", "on", "off"),
    )
    env: list[str] = setting(
        parser=parse.text_list,
        factory=list,
        help="Pass a RALPH_* variable to the agent (repeatable).",
        doc="pass a `RALPH_*` variable to the agent (repeatable)",
        group=SAFETY,
        flag="--env",
        arg="RALPH_NAME",
        repo=OPERATOR,
    )
    max_cost: float | None = setting(
        None,
        parse.number,
        "Stop when the run has cost this many USD (exit 4).",
        doc="stop when the run has cost this much (exit 4)",
        group=SAFETY,
        arg="USD",
        repo=LOWER,
        bound=(lambda v: v > 0, "must be more than 0"),
    )
    max_tokens: int | None = setting(
        None,
        parse.whole,
        "Stop after this many billed tokens (exit 4).",
        doc="stop after this many billed tokens (exit 4)",
        group=SAFETY,
        arg="N",
        repo=LOWER,
        bound=(lambda v: v > 0, "must be more than 0"),
    )
    timeout: float | None = setting(
        None,
        parse.parse_duration,
        "Stop after this much wall time: 90, 90s, 45m, 8h, 1h30m (exit 4).",
        doc="stop after this much wall time: 90, 90s, 45m, 8h, 1h30m (exit 4)",
        group=SAFETY,
        arg="DURATION",
        repo=LOWER,
        bound=(lambda v: v > 0, "must be more than 0"),
    )
    stall_limit: int = setting(
        5,
        parse.whole,
        "Stop after K iterations in a row without progress (default 5; 0 = off; exit 5).",
        doc="stop after K iterations in a row without progress (0 = off; exit 5)",
        group=SAFETY,
        arg="K",
        repo=LOWER,
        off=0,
        bound=(lambda v: v >= 0, "cannot be negative; 0 turns it off"),
    )
    max_failures: int = setting(
        3,
        parse.whole,
        "Stop after K failed iterations in a row (default 3; exit 5).",
        doc="stop after K failed iterations in a row (exit 5)",
        group=SAFETY,
        arg="K",
        repo=LOWER,
        bound=(lambda v: v >= 1, "must be at least 1"),
    )
    verify: list[str] = setting(
        parser=parse.commands,
        factory=list,
        help="Command that must exit 0 before a promise is accepted (repeatable).",
        doc="a command that must exit 0 before a promise is accepted (repeatable; in files a "
        'list: `["pytest -q", "ruff check ."]`)',
        group=GATE,
        flag="--verify",
        arg="CMD",
        repo=ADDS,
    )
    artifacts: list[Any] = setting(
        parser=parse.artifacts,
        factory=list,
        doc="files the agent must produce before a promise is accepted, e.g. "
        "`[{path: sdlc/security-audit.md, headings: [Findings], checklist: true}]` "
        '(checklist: every "- [ ]" checked or marked "N/A: reason"; path may be a glob, '
        "with min: N)",
        group=GATE,
        flag=None,
        repo=ADDS,
    )
    log_format: str = setting(
        "auto",
        parse.choice("auto", "plain", "json", "rich"),
        "auto | plain | json | rich (default auto: live view on a terminal, plain lines "
        "otherwise).",
        doc="`auto` (live view on a terminal, plain lines otherwise), `plain`, `json`, `rich`",
        group=VIEW,
        arg="FORMAT",
        repo=ANY,
    )
    output_format: str = setting(
        "text",
        parse.choice("text", "json"),
        "text | json: the result on stdout (default text: the summary table; json: one "
        "object for scripts).",
        doc="`text` (the summary table) or `json` (one object on stdout: run_id, status, "
        "exit_code, iterations, branch, commits, usage, cost_usd, report, …)",
        group=VIEW,
        arg="FORMAT",
        repo=ANY,
    )
    log_file: Path | None = setting(
        None,
        parse.path,
        "Also write JSON log lines to this file.",
        doc="also write JSON log lines to this file",
        group=VIEW,
        arg="PATH",
        repo=NEVER,
    )
    quiet: bool = setting(
        False,
        parse.boolean,
        "Print only the final summary.",
        doc="print only the final summary",
        group=VIEW,
        short="-q",
        repo=ANY,
    )
    verbose: bool = setting(
        False,
        parse.boolean,
        "Show tool outputs too.",
        doc="show tool outputs too",
        group=VIEW,
        short="-v",
        repo=ANY,
    )
    show_text: bool = setting(
        False,
        parse.boolean,
        "Show the agent's text in full.",
        doc="show the agent's text in full",
        group=VIEW,
        repo=ANY,
    )
    otel: bool = setting(
        False,
        parse.boolean,
        "Export OpenTelemetry traces (needs the otel extra).",
        doc="export OpenTelemetry traces (needs the otel extra)",
        group=VIEW,
        repo=OPERATOR,
    )
    pr: bool = setting(
        False,
        parse.boolean,
        "Push the run branch and open or update a pull request.",
        doc="push the run branch and open or update a pull request",
        group=PR,
        repo=OPERATOR,
    )
    pr_draft: bool | None = setting(
        None,  # a draft unless the run completed
        parse.boolean,
        "Pull request always a draft, or never (default: by outcome: a draft unless the run "
        "completed).",
        doc="pull request always a draft, or never; by default a draft unless the run completed",
        group=PR,
        repo=ON,
    )
    pr_base: str | None = setting(
        None,
        parse.optional_text,
        "Base branch of the pull request (default: the repository's default).",
        doc="base branch of the pull request",
        group=PR,
        arg="BRANCH",
        repo=OPERATOR,
    )
    pr_labels: list[str] = setting(
        parser=parse.text_list,
        factory=list,
        help="Label for the pull request (repeatable).",
        doc="label for the pull request (repeatable)",
        group=PR,
        flag="--pr-label",
        arg="LABEL",
        repo=OPERATOR,
    )
    remote: str = setting(
        "origin",
        parse.text,
        "Git remote to push to (default origin).",
        doc="git remote to push to",
        group=PR,
        arg="NAME",
        repo=OPERATOR,
        bound=(lambda v: bool(v.strip()), "is empty; name a git remote (default origin)"),
    )
    # Which agent runs, and with what arguments, is the operator's choice: a repository file
    # the agent can write must not swap it (or pass it --dangerously-anything).
    agent: str = setting(
        "builtin",
        parse.choice(*_AGENT_NAMES),
        "builtin | claude-code | codex: the agent of each iteration (default builtin).",
        doc="`builtin`, `claude-code` or `codex`: the agent of each iteration (see "
        "[Other agents](#other-agents))",
        group=AGENTS,
        arg="NAME",
        repo=NEVER,
    )
    agent_args: list[str] = setting(
        parser=parse.shell_args,
        factory=list,
        help="An argument passed to the agent CLI (repeatable).",
        doc="an argument passed to the agent CLI (repeatable)",
        group=AGENTS,
        flag="--agent-arg",
        arg="ARG",
        repo=NEVER,
    )
    fallback_agent: str | None = setting(
        None,
        parse.choice(*_AGENT_NAMES),
        "Agent that runs an iteration when the agent hits its usage limit.",
        doc="the agent that runs an iteration while the agent is at its usage limit",
        group=AGENTS,
        arg="NAME",
        repo=NEVER,
    )
    usage_limit_wait: float = setting(
        21600.0,
        parse.parse_duration,
        "Longest wait for an agent's usage limit to reset (default 6h; then exit 1).",
        doc="longest wait for an agent CLI's usage limit to reset; a later reset stops the run "
        "(exit 1, resumable)",
        group=AGENTS,
        arg="DURATION",
        repo=LOWER,
        example="6h",
        bound=(lambda v: v >= 0, "cannot be negative; 0 never waits"),
    )
    # A webhook URL is its own credential: only the operator gives it, and it is never shown.
    notify: list[str] = setting(
        parser=parse.notify_targets,
        factory=list,
        help="Post to this webhook URL (or run cmd:COMMAND) when the run ends, a guard trips "
        "or a usage limit waits (repeatable).",
        doc="a webhook URL (Slack, Discord or any JSON endpoint) or `cmd:COMMAND` told when "
        "the run ends, a guard trips or a usage limit waits (see [Overnight runs](#overnight-runs))",
        group=VIEW,
        flag="--notify",
        arg="URL",
        repo=NEVER,
    )
    # --- `ralph harden` (campaign.py): per campaign, so the operator's alone ---
    phases: list[str] = setting(
        parser=_phases,
        factory=lambda: list(PHASES),
        help="The campaign's phases, in order (default: "
        + ",".join(PHASES)
        + "): the built-in loops, then the task-list run over the tasks they filed.",
        doc="the campaign's phases in order: the built-in loops, then `remediate`, the task "
        "list they filed",
        group=CAMPAIGN,
        arg="LIST",
        repo=NEVER,
        command="harden",
        readme_default="all five",
    )
    phase_max_iterations: int | None = setting(
        None,
        parse.whole,
        "Iterations at most per phase, instead of each prompt's own (front matter).",
        doc="iterations at most per phase, instead of each prompt's own `max_iterations`",
        group=CAMPAIGN,
        arg="N",
        repo=NEVER,
        bound=(lambda v: v >= 1, "must be at least 1"),
        command="harden",
        readme_default="the prompt's",
    )
    stop_on_failure: bool = setting(
        False,
        parse.boolean,
        "Stop the campaign at a phase that ends without its promise (default: report it and "
        "go on to the next phase).",
        doc="stop the campaign at a phase that ends without its promise, instead of going on",
        group=CAMPAIGN,
        flag="--stop-on-failure",
        repo=NEVER,
        command="harden",
        readme_default="off",
    )
    description: str = setting(
        "",
        parse.text,
        doc="shown in reports",
        group=LOOP,
        flag=None,
        repo=ANY,
    )

    def to_dict(self) -> dict[str, Any]:
        from .views.notify import describe_target  # small; only for the shown form of a secret

        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        # Journal, logs and --dry-run get the targets' shown form, never the URLs themselves.
        data["notify"] = [describe_target(t) for t in self.notify]
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


def _declared() -> dict[str, Setting]:
    out: dict[str, Setting] = {}
    for f in fields(RunConfig):
        spec = f.metadata.get("setting")
        if spec is None:
            continue
        spec = dict(spec)
        if spec["flag"] == _AUTO:
            dashed = "--" + f.name.replace("_", "-")
            switch = spec["parse"] is parse.boolean
            spec["flag"] = f"{dashed}/--no-{f.name.replace('_', '-')}" if switch else dashed
        default = f.default
        if default is MISSING:
            factory = f.default_factory
            assert callable(factory)
            default = factory()
        out[f.name] = Setting(name=f.name, default=default, **spec)
    return out


SETTINGS: dict[str, Setting] = _declared()

# The command-line options, in --help order.
OPTIONS: tuple[Setting, ...] = tuple(
    s for s in SETTINGS.values() if s.flag is not None and s.command == "run"
)
# The options only `ralph harden` takes (it takes the run's too, see launch.py).
HARDEN_OPTIONS: tuple[Setting, ...] = tuple(
    s for s in SETTINGS.values() if s.flag is not None and s.command == "harden"
)


def help_default(help_text: str) -> str | None:
    """The default a help text states: `(default 10)` -> `10`."""
    match = re.search(r"\(default:? (.+?)(?=[:;,)])", help_text)
    return match.group(1) if match else None
