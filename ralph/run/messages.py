"""What an iteration is told and what is taken from its answer: the runner's system prompt,
the iteration's message (prompt, where the loop stands, the gate's feedback, the operator's
guidance) and the one-line summary of the agent's final message (commit message, report)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..redact import redact
from ..text import clean, short
from . import promise
from .agent import IterationOutcome

SYSTEM_PROMPT = """\
You are an autonomous engineer working in the git repository at {root}. You run in a loop: \
each iteration starts a fresh conversation with the same task, and nothing you say is \
remembered; only the repository's files (progress notes, code, git history) carry over. \
Nobody will answer questions: decide and act. Use the tools to read, run and change things; \
do one solid piece of the task per iteration, record progress in the repository, then end \
your turn. Your final message starts with a one-line summary of what this iteration did (it \
becomes the commit message). The runner commits; do not run git commands that change history.
When, and only when, the whole task is complete and verified, include \
<promise>{token}</promise> in your final message. Never write that tag otherwise."""


def system_prompt(root: Path, token: str) -> str:
    """The runner's short system prompt; constant for a run, so it caches across iterations."""
    return SYSTEM_PROMPT.format(root=root, token=token or "DONE")


def iteration_message(
    prompt: str,
    i: int,
    max_iterations: int,
    feedback: str | None,
    guidance: Sequence[str] = (),
) -> str:
    """The first (only) user message of an iteration: the prompt, where the loop stands, the
    gate's feedback and the operator's guidance (`ralph steer`)."""
    limit = str(max_iterations) if max_iterations else "unlimited"
    parts = [prompt.rstrip(), f"[ralph] Iteration {i} of {limit}."]
    if feedback:
        parts.append(feedback)
    if guidance:
        notes = "\n".join(f"- {' '.join(text.split())}" for text in guidance)
        parts.append(
            "[operator] Guidance from the person running this loop (`ralph steer`); it takes "
            f"precedence over the task where they conflict:\n{notes}"
        )
    return "\n\n".join(parts)


def summary_line(outcome: IterationOutcome, expected: str = "") -> str:
    """One line for the commit message and report, from the agent's final message; a promise
    other than `expected` (e.g. BLOCKED) is named at its end."""
    expected = promise.normalise(expected)
    others = [t for t in promise.promises_in(outcome.final_text or "") if t != expected]
    note = "".join(f" [promise: {token}]" for token in dict.fromkeys(others))
    # Escape sequences in the agent's words must not reach git log, the journal or a terminal.
    return clean(_first_line(outcome, redact) + note)


def _first_line(outcome: IterationOutcome, redact: Callable[[str], str]) -> str:
    for line in (outcome.final_text or "").splitlines():
        line = re.sub(r"<promise>.*?</promise>", "", line)
        line = line.strip().lstrip("#*->` ").strip().strip("*`").strip()
        # Redacted before it is cut: a secret cut in two would no longer be recognised.
        line = redact(line)
        if line:
            return line[:72] + ("…" if len(line) > 72 else "")
    if outcome.outcome == "refused" and outcome.error:
        return short(redact(outcome.error), 72)
    labels = {
        "max_turns": "no final message (turn limit reached)",
        "refused": "the model refused",
        "context_exceeded": "context window exceeded",
        "failed": "model call failed",
        "stopped": "stopped by a budget",
    }
    return labels.get(outcome.outcome, "no summary")
