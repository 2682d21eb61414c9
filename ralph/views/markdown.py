"""Text from the agent or the repository, made inert for GitHub Markdown and plain titles.

The agent writes its summary line, file names, promise tokens and (through the repository)
verify output; all of them reach pull-request bodies and titles, report.md (which CI puts in
the job summary) and commit subjects. On GitHub, such text can notify people (`@org/team`),
link or close issues (`Closes #1`, `GH-1`, an issue URL), skip CI (`[skip ci]` in a commit
or squash title), show images and disguised links (`<img>`, `<a href>`, `[text](url)`), or
break out of the code span or link it was put in. These helpers keep the words readable and
take the meaning away.

- `neutralise`: plain text (titles, commit subjects, code spans): a zero-width space after
  `@` and before an issue number (as Renovate does), inside URL schemes and `www.`, and in
  CI skip markers. It is the raw character, not `&#8203;`, so that it works where entities
  are not decoded (titles, code spans, git).
- `text`: inline Markdown text: `neutralise`, one line, and every character that starts
  Markdown or HTML backslash-escaped (CommonMark lets any ASCII punctuation be escaped).
- `code`: an inline code span whose fence is longer than any backtick run inside it.

No library does this: Markdown libraries render or parse, and GitHub's mentions, issue
references and autolinks are GitHub's own extensions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..redact import redact
from ..text import clean

ZWSP = "\u200b"

# Bidirectional and invisible format controls: they make a file name read as another.
_FORMAT = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(r"@(?=[\w-])")  # @user, @org/team, and e-mail autolinks
_ISSUE = re.compile(r"(#|\bGH-)(?=\d)", re.IGNORECASE)  # #1, owner/repo#1, GH-1
_SCHEME = re.compile(r"\b([a-z][a-z0-9+.-]*:)(?=//)", re.IGNORECASE)  # https://evil
_WWW = re.compile(r"\b(www)(?=\.)", re.IGNORECASE)  # GitHub autolinks www.example.com
# Commit and squash-merge messages with these skip GitHub Actions' push and PR workflows.
_SKIP_CI = re.compile(
    r"\[(?=(?:skip|no) ci\]|ci skip\]|skip actions\]|actions skip\])|\bskip-checks(?=\s*:)",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"([\\`*_~\[\]<>&|$])")
_BLOCK_START = re.compile(r"^(?:[#+=-]|\d{1,9}(?=[.)]))")


def one_line(value: object, environ: Mapping[str, str] | None = None) -> str:
    """`value` redacted, as one line: escape codes, control and bidi characters gone, spaces
    collapsed. Redacted first: a secret with an escape or a zero-width space in it would no
    longer be recognised."""

    line = " ".join(_FORMAT.sub("", clean(value if value is not None else "")).split())
    return redact(line, environ)


def neutralise(value: object, environ: Mapping[str, str] | None = None) -> str:
    """One line of plain text (redacted) that mentions no one, references no issue, links
    nowhere and skips no CI; it reads the same."""
    line = one_line(value, environ)
    line = _MENTION.sub("@" + ZWSP, line)
    line = _ISSUE.sub(lambda m: m[1] + ZWSP, line)
    line = _SCHEME.sub(lambda m: m[1] + ZWSP, line)
    line = _WWW.sub(lambda m: m[1] + ZWSP, line)
    return _SKIP_CI.sub(lambda m: m[0] + ZWSP, line)


def text(value: object, environ: Mapping[str, str] | None = None) -> str:
    """Inline Markdown that renders as the words of `value` and nothing else (one line)."""
    line = _MARKUP.sub(r"\\\1", neutralise(value, environ))
    # A list item or table cell starting with `#`, `-`, `+` or `1.` would become a block.
    match = _BLOCK_START.match(line)
    if match:
        at = match.end() if match[0][0].isdigit() else 0
        line = line[:at] + "\\" + line[at:]
    return line


def code(value: object, environ: Mapping[str, str] | None = None, *, table: bool = False) -> str:
    """An inline code span showing `value` (one line); `table`: inside a GFM table cell,
    where a `|` ends the cell even in a code span unless escaped."""
    line = neutralise(value, environ)
    if not line:
        return "(empty)"
    if table:
        line = line.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if line[0] == "`" or line[-1] == "`" else ""
    return f"{fence}{pad}{line}{pad}{fence}"
