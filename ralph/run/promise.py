"""Completion detection: does an iteration's final message carry the promise?

Only the final assistant message of an iteration counts. Inside it, a promise is a
`<promise>X</promise>` tag outside fenced code blocks and inline code; X is compared with the
configured token after trimming and collapsing whitespace, case-sensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TAG = re.compile(r"<promise>(.*?)</promise>", re.DOTALL)
# A fenced block (CommonMark): a line opening with 3+ backticks or tildes (a backtick fence's
# info string has no backtick) runs to a line holding only a fence of the same character at
# least as long (```` closes ```), or to the end of the message when none does.
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>(?P<ch>`)(?P=ch){2,}(?=[^`\n]*$)|(?P<tch>~)(?P=tch){2,})[^\n]*(?:\n|\Z)"
    r".*?(?:^[ \t]*(?P=fence)(?:(?P=ch)|(?P=tch))*[ \t]*$|\Z)",
    re.DOTALL | re.M,
)
# Where a paragraph ends, a code span cannot go on: a blank line, or a line that starts a new
# block (ATX heading, list item, block quote).
_BLOCK_BREAK = (
    r"\n(?:[ \t]*(?:\n|\Z)|[ \t]{0,3}(?:#{1,6}(?:[ \t]|$)|[-*+][ \t]|\d{1,9}[.)][ \t]|>))"
)
# Inline code: a run of backticks, then anything within the paragraph up to a run as long.
_INLINE = re.compile(
    rf"(?<!`)(`+)(?!`)(?:(?!{_BLOCK_BREAK}).)+?(?<!`)\1(?!`)",
    re.DOTALL | re.M,
)


def normalise(token: str) -> str:
    """Trim and collapse runs of whitespace to one space."""
    return " ".join(token.split())


def strip_code(text: str) -> str:
    """Remove fenced code blocks and inline code spans, where a tag is only quoted."""
    return _INLINE.sub(" ", _FENCE.sub("\n", text))


def promises_in(text: str) -> list[str]:
    """The normalised tokens of every promise tag in `text`, outside code."""
    return [normalise(m.group(1)) for m in _TAG.finditer(strip_code(text))]


@dataclass
class PromiseCheck:
    """What an iteration's final message says about completion."""

    found: bool  # the configured token was promised
    tokens: list[str] = field(default_factory=list)  # every promised token seen
    expected: str = ""

    @property
    def other_tokens(self) -> list[str]:
        """Tokens promised that are not the configured one (e.g. BLOCKED)."""
        return [t for t in self.tokens if t != self.expected]


def check(final_message: str | None, token: str) -> PromiseCheck:
    """Check the final message of an iteration (None when it had no text) for `token`."""
    expected = normalise(token)
    if not final_message or not expected:
        return PromiseCheck(False, [], expected)
    tokens = promises_in(final_message)
    return PromiseCheck(expected in tokens, tokens, expected)


def prompt_promises(prompt: str) -> list[str]:
    """Distinct promise tokens a prompt instructs the agent to output, in order.

    Unlike completion detection this looks inside code blocks too: the seed's prompts are
    written inside fences.
    """
    seen: list[str] = []
    for match in _TAG.finditer(prompt):
        token = normalise(match.group(1))
        if token and token not in seen:
            seen.append(token)
    return seen
