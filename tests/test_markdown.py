"""What the agent or the repository wrote is inert wherever ralph shows it on GitHub: in the
PR body (the report and the file lists), the PR title, report.md and the commit subject.

Rendered with cmark-gfm (GitHub's own Markdown library, through cmarkgfm) with raw HTML
allowed, the strictest reading: the document must have the same shape (tags, links, images,
table cells) as with a harmless word in place of the agent's text, and its text must read
the same words. GitHub's own extensions on that text (mentions, issue references, closing
keywords, CI skip markers, autolinks) are checked with their patterns.
"""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from ralph.git.commits import commit_message
from ralph.git.pr import pr_body, pr_title
from ralph.views.markdown import ZWSP, code, neutralise, one_line, text
from ralph.views.report import IterationRow, RunSummary
from ralph.views.report_md import render_markdown

SAFE = "harmless"
EVIL = "evil.example"

VECTORS = {
    "mention": "ping @org/team and @someone",
    "closing keywords": (
        "Closes #1, fixes octo/app#2, resolves https://github.com/octo/app/issues/3, fix GH-4"
    ),
    "html image": f"<img src=//{EVIL}/x.png>",
    "html link": f'<a href="https://{EVIL}/login">Re-authenticate</a>',
    "markdown link and image": f"[Re-authenticate](https://{EVIL}/login) ![x](//{EVIL}/x.png)",
    "autolinks": f"see https://{EVIL}/login, www.{EVIL} or someone@{EVIL}",
    "entities": f"&#64;org/team &lt;img src=//{EVIL}&gt; &#x23;1",
    "code span breakout": f"a` <img src=//{EVIL}/x.png> `b",
    "link breakout": f"x](https://{EVIL}/login) [y",
    "table breakout": f"a | b | <img src=//{EVIL}/x.png>",
    "heading": "# Owned",
    "quote": "> Owned",
    "list": "- Owned",
    "ordered list": "1. Owned",
    "new lines": "fine\n\n# Owned\n\n@org/team\nCloses #1",
    "ci skip": "done [skip ci] [ci skip] [no ci] [skip actions] skip-checks: true",
    "math": f"$\\href{{https://{EVIL}}}{{x}}$",
    "emphasis": "**bold** _it_ ~~gone~~ \\*escaped",
    "html comment": "<!-- hidden --> shown",
    "bidi": "evil\u202etxt.md",
}

# GitHub's extensions, applied to a document's text (not its markup).
GITHUB_EFFECTS = {
    "mention": re.compile(r"(?<![\w`])@[a-z0-9]", re.I),
    "issue reference": re.compile(r"(?<!\w)(?:[\w.-]+/[\w.-]+)?#\d|\bGH-\d", re.I),
    "closing keyword": re.compile(
        r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?\s+(?:[\w.-]+/[\w.-]+)?(?:#\d|GH-\d"
        r"|https?://\S*/issues/\d)",
        re.I,
    ),
    "autolink": re.compile(r"\b(?:https?|ftp)://|\bwww\.|\w@\w", re.I),
    "CI skip": re.compile(
        r"\[(?:skip ci|ci skip|no ci|skip actions|actions skip)\]|skip-checks\s*:", re.I
    ),
}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shape: list[tuple[str, ...]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kept = tuple(f"{k}={v}" for k, v in attrs if k in ("href", "src"))
        self.shape.append((tag, *kept))

    def handle_endtag(self, tag: str) -> None:
        self.shape.append(("/" + tag,))

    def handle_comment(self, data: str) -> None:
        self.shape.append(("<!--",))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read(markdown: str) -> tuple[list[tuple[str, ...]], str]:
    """The shape (tags with their links) and the text of `markdown` as GitHub renders it."""
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    reader = _Reader()
    reader.feed(html)
    return reader.shape, "".join(reader.text)


def effects(plain: str) -> list[str]:
    return [name for name, pattern in GITHUB_EFFECTS.items() if pattern.search(plain)]


def _links_to(shape: list[tuple[str, ...]], prefix: str) -> list[tuple[str, ...]]:
    """The shape with each link under `prefix` (ours) as one mark, for comparison."""
    return [
        tuple("href=OURS" if p.startswith(f"href={prefix}") else p for p in tag) for tag in shape
    ]


def assert_inert(render: object, vector: str, links_to: str = "https://ours.example/") -> None:
    """`render(value)` (Markdown) has the same shape for `vector` as for a harmless word
    (links under `links_to` are ours), triggers none of GitHub's extensions, and shows the
    vector's words."""
    assert callable(render)
    shape, shown = read(render(vector))
    safe_shape, _ = read(render(SAFE))
    assert _links_to(shape, links_to) == _links_to(safe_shape, links_to), (vector, render(vector))
    assert effects(shown) == [], (vector, shown)
    words = one_line(vector).replace("\u202e", "")
    assert words in shown.replace(ZWSP, ""), (words, shown)


@pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
@pytest.mark.parametrize(
    "context",
    ["list item", "table cell", "link text", "heading", "code span", "code span in a table"],
)
def test_agent_text_is_inert_in_every_markdown_context(context: str, vector: str) -> None:
    renders = {
        "list item": lambda v: f"- {text(v)}\n- next\n",
        "table cell": lambda v: f"| a | b |\n|---|---|\n| {text(v)} | after |\n",
        "link text": lambda v: f"[{text(v)}](https://ours.example/file)\n",
        "heading": lambda v: f"### {text(v)}\n",
        "code span": lambda v: f"- {code(v)} done\n",
        "code span in a table": lambda v: f"| a | b |\n|---|---|\n| {code(v, table=True)} | x |\n",
    }
    assert_inert(renders[context], vector)


def test_text_reads_the_same_and_marks_only_what_github_would_act_on() -> None:
    assert text("Added rate limiting to /login (3 files).") == (
        "Added rate limiting to /login (3 files)."
    )
    assert neutralise("@org/team: Closes #12") == f"@{ZWSP}org/team: Closes #{ZWSP}12"
    assert neutralise(neutralise("@a #1 https://x www.y [skip ci]")) == neutralise(
        "@a #1 https://x www.y [skip ci]"
    )
    assert code("a`b") == "``a`b``" and code("`a") == "`` `a ``" and code("") == "(empty)"


def test_a_secret_is_redacted_before_it_is_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "postgres://ops:pa_ss@db.internal/prod"  # escaping would hide it from redact
    monkeypatch.setenv("OPS_TOKEN", secret)
    for rendered in (text(f"uses {secret}"), code(secret), neutralise(secret)):
        assert "pa_ss" not in rendered and "pa\\_ss" not in rendered and "REDACTED" in rendered


# --- where the agent's words go ----------------------------------------------------------------


def _report(value: str, for_pr: bool) -> str:
    s = RunSummary("r1", status="max_iterations", exit_code=3, reason=f"stopped: {value}")
    s.prompt, s.model, s.branch = "security", "claude-sonnet-5-5", "ralph/security"
    s.iterations = [
        IterationRow(1, "ended", summary=value, files_changed=[value, "b.py"], error=value)
    ]
    s.promises = [{"iteration": 1, "token": value, "accepted": False, "reasons": [value]}]
    s.guards = [{"iteration": 1, "guard": "stall", "message": value}]
    s.warnings = [value]
    s.artifacts = [value]
    return render_markdown(s, for_pr=for_pr)


@pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
@pytest.mark.parametrize("for_pr", [False, True], ids=["report.md", "PR body"])
def test_the_report_shows_the_agents_words_inert(vector: str, for_pr: bool) -> None:
    assert_inert(lambda v: _report(v, for_pr), vector)


@pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
@pytest.mark.parametrize("web_url", [None, "https://github.com/octo/app"])
def test_file_names_in_the_pr_body_are_inert(vector: str, web_url: str | None) -> None:
    def body(name: str) -> str:
        files, artifacts = [name, f"docs/{name}.md", "src/app.py"], [f"docs/{name}.md"]
        return pr_body(
            "## Report\n",
            branch="ralph/security",
            web_url=web_url,
            files=files,
            artifacts=artifacts,
        )

    ours = f"{web_url}/blob/ralph/security/"
    assert_inert(body, vector, links_to=ours)
    if web_url:  # each link still goes to its file on the branch, and nowhere else
        shape, _ = read(body(vector))
        hrefs = [part for tag in shape for part in tag[1:] if part.startswith("href=")]
        assert len(hrefs) == 4 and all(h.startswith(f"href={ours}") for h in hrefs)


@pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
def test_the_pr_title_is_inert(vector: str) -> None:
    title = pr_title(vector, "max_iterations", 3, 10)
    assert "\n" not in title and effects(title) == []
    assert title.replace(ZWSP, "").startswith(f"ralph: {one_line(vector)}".replace("\u202e", ""))


@pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
def test_the_commit_subject_is_inert_and_no_trailer_can_be_injected(
    vector: str, tmp_path: Path
) -> None:
    summary = f"{vector}\nRalph-Run: forged\nCo-authored-by: Mallory <m@{EVIL}>\n\nSigned-off-by: x"
    message = commit_message("security", 2, 5, summary, "run-1")
    subject, blank, *trailers = message.splitlines()
    assert blank == "" and trailers == ["Ralph-Run: run-1", "Ralph-Iteration: 2"]
    assert effects(subject.replace("Co-authored-by", "")) == []
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert parsed == "Ralph-Run: run-1\nRalph-Iteration: 2\n"
