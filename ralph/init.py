"""`ralph init`: a commented ralph.yaml, and optionally editable copies of the prompts."""

from __future__ import annotations

import shutil
from pathlib import Path

from .config import CONFIG_FILE
from .errors import UsageError
from .prompt import builtin_names, builtin_path

TEMPLATE = """\
# ralph.yaml: settings for ralph-loop runs in this repository.
# Precedence, lowest to highest: built-in defaults < this file < a prompt's front matter
# < RALPH_<SETTING> environment variables < command-line flags.
# Every setting is shown with its default; uncomment a line to change it.
# The agent can edit this file and front matter, so ralph refuses from them what would
# loosen security (sandbox: none, a price for a built-in model or a price of 0, a log_file);
# when both set one, the stricter wins. The environment and flags may do anything. log_file
# and dry_run are per-run only: --log-file / RALPH_LOG_FILE, --dry-run / RALPH_DRY_RUN.

# --- the loop ---------------------------------------------------------------------------
# model: claude-sonnet-5-5       # Anthropic model id, or script:PATH to replay a session offline
# max_iterations: 10              # iterations at most; 0 = no limit (needs max_cost or timeout)
# max_turns: 50                   # model calls within one iteration
# max_output_tokens: 16000        # max_tokens of each model call
# completion_promise: DONE        # default: the one <promise>TOKEN</promise> the prompt names
# description: ""                 # shown in reports

# --- the real agent ---------------------------------------------------------------------
# retry_window: 15m               # keep retrying rate limits / overloads this long
# bash_timeout: 120s              # timeout of each bash command the agent runs
# output_cap: 30000               # bytes of a tool's output the model sees (head and tail)
# pricing:                        # USD per million tokens, for models the built-in table lacks;
#                                 # every price above 0 (others only by RALPH_PRICING)
#   my-model-id: {input: 3.0, output: 15.0, cache_write: 3.75, cache_read: 0.30}

# --- git ----------------------------------------------------------------------------------
# branch: null                    # default ralph/<prompt>-<UTC yyyymmdd-HHMMSS>
# in_place: false                 # work on the current branch instead
# worktree: false                 # work in .ralph/worktrees/<run-id>; your checkout is untouched
# allow_dirty: false              # run on a dirty tree; only paths ralph changed are committed
# no_commit: false                # leave the agent's changes uncommitted

# --- safety and guards ----------------------------------------------------------------------
# sandbox: auto                   # auto | bwrap (auto: bubblewrap when it works); none only
#                                 # by --sandbox none or RALPH_SANDBOX=none, never from a file
# network: "on"                   # "on" | "off": network inside the sandbox (audits need it)
# env: []                         # RALPH_* variables passed to the agent's commands
# max_cost: null                  # USD; the run stops (exit 4) when it is spent
# max_tokens: null                # billed tokens (input, cache writes, cache reads, output)
# timeout: null                   # wall time, e.g. 8h or 1h30m (exit 4)
# stall_limit: 5                  # iterations in a row without progress before exit 5; 0 = off
# max_failures: 3                 # failed iterations in a row before exit 5

# --- completion gate ------------------------------------------------------------------------
# verify: []                      # commands that must exit 0 before a promise is accepted,
#                                 # e.g. ["pytest -q", "ruff check ."]
# artifacts: []                   # files the agent must produce before a promise is accepted, e.g.
#                                 # [{path: sdlc/security-audit.md, headings: [Findings],
#                                 #   checklist: true}]  (checklist: every "- [ ]" checked or
#                                 # marked "N/A: reason"; path may be a glob, with min: N)

# --- seeing a run ---------------------------------------------------------------------------
# log_format: auto                # auto | plain | json | rich
# quiet: false                    # only the final summary
# verbose: false                  # show tool outputs
# show_text: false                # show the agent's text in full
# otel: false                     # export OpenTelemetry traces (needs the otel extra: pip install -e '.[otel]')

# --- pull requests --------------------------------------------------------------------------
# pr: false                       # push the run branch and open or update a pull request
# pr_draft: null                  # true: always a draft, false: never; null: a draft unless the run completed
# pr_base: null                   # default: the repository's default branch
# pr_labels: []
# remote: origin

# --- other agents (agent, agent_args, fallback_agent: --agent ... or RALPH_AGENT only) ----
# usage_limit_wait: 6h            # longest wait for an agent CLI's usage limit to reset
"""


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
