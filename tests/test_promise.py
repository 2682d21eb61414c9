"""Completion detection: exactly when the final message carries the configured promise."""

from __future__ import annotations

import pytest

from ralph.run.promise import check, normalise, promises_in, prompt_promises

TOKEN = "SECURITY_AUDIT_COMPLETE"


@pytest.mark.parametrize(
    "message",
    [
        "All done. <promise>SECURITY_AUDIT_COMPLETE</promise>",
        "<promise>SECURITY_AUDIT_COMPLETE</promise>",
        "Summary\n\n<promise>  SECURITY_AUDIT_COMPLETE \n</promise>\n",
        "text `code` then <promise>SECURITY_AUDIT_COMPLETE</promise>",
        "```\nexample\n```\nfinished <promise>SECURITY_AUDIT_COMPLETE</promise>",
        # CommonMark: a longer run of the same character closes a fence
        "```\nx\n````\n<promise>SECURITY_AUDIT_COMPLETE</promise>",
        "~~~\nx\n~~~~~\n<promise>SECURITY_AUDIT_COMPLETE</promise>",
        # a backtick run with a backtick after it on the line is inline code, not a fence
        "```make``` passed\n<promise>SECURITY_AUDIT_COMPLETE</promise>",
        # a code span cannot cross a paragraph break or the start of another block
        "`a\n\n<promise>SECURITY_AUDIT_COMPLETE</promise>\n\nb`",
        "`a\n \t\n<promise>SECURITY_AUDIT_COMPLETE</promise>\n\nb`",
        "- edited `app.py\n- <promise>SECURITY_AUDIT_COMPLETE</promise>\n- see `b`",
        "`a\n# Done <promise>SECURITY_AUDIT_COMPLETE</promise>\nb`",
        # an unmatched run of backticks is literal text
        "```a`` <promise>SECURITY_AUDIT_COMPLETE</promise>",
    ],
)
def test_promise_accepted(message: str) -> None:
    assert check(message, TOKEN).found


@pytest.mark.parametrize(
    "message",
    [
        "SECURITY_AUDIT_COMPLETE",  # bare token, even as the whole message
        "I will output SECURITY_AUDIT_COMPLETE when done",
        "`<promise>SECURITY_AUDIT_COMPLETE</promise>`",  # inline code
        "``<promise>SECURITY_AUDIT_COMPLETE</promise>``",
        "Quote:\n```\n<promise>SECURITY_AUDIT_COMPLETE</promise>\n```\nnot yet",  # fenced
        "~~~md\n<promise>SECURITY_AUDIT_COMPLETE</promise>\n~~~",
        "```\n<promise>SECURITY_AUDIT_COMPLETE</promise>",  # unclosed fence runs to the end
        # a shorter run, or the other fence character, does not close a fence
        "````\nx\n```\n<promise>SECURITY_AUDIT_COMPLETE</promise>\n````\ndone",
        "```\n<promise>SECURITY_AUDIT_COMPLETE</promise>\n~~~\n",
        "~~~\n<promise>SECURITY_AUDIT_COMPLETE</promise>\n```\n",
        # a code span may run over a line break inside one paragraph
        "`quoted\n<promise>SECURITY_AUDIT_COMPLETE</promise>` is what I will say",
        # an unmatched run of backticks is literal; the later pair is the code span
        "```a`` <promise>SECURITY_AUDIT_COMPLETE</promise> ``",
        "<promise>security_audit_complete</promise>",  # case-sensitive
        "<promise>SECURITY_AUDIT</promise>",
        "<promise>BLOCKED</promise>",
        "<promise></promise>",
        "",
    ],
)
def test_promise_rejected(message: str) -> None:
    assert not check(message, TOKEN).found


def test_no_final_text_is_not_complete() -> None:
    result = check(None, TOKEN)
    assert not result.found and result.tokens == []


def test_other_token_is_reported() -> None:
    result = check("stuck <promise>BLOCKED</promise>", TOKEN)
    assert not result.found
    assert result.other_tokens == ["BLOCKED"]


def test_whitespace_normalised_on_both_sides() -> None:
    assert check("<promise>ALL   TESTS\n PASS</promise>", " ALL TESTS  PASS ").found
    assert normalise("  a \t b\n c ") == "a b c"


def test_promises_in_ignores_code() -> None:
    text = "`<promise>A</promise>` <promise>B</promise>\n```\n<promise>C</promise>\n```"
    assert promises_in(text) == ["B"]


def test_prompt_promises_reads_inside_fences_and_dedupes() -> None:
    prompt = "```\nOutput <promise>X</promise>\n```\nagain <promise> X </promise> or <promise>Y</promise>"
    assert prompt_promises(prompt) == ["X", "Y"]


# --- the iteration summary ------------------------------------------------------------------


def test_a_secret_across_the_summary_cut_is_redacted_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from ralph.run.agent import IterationOutcome
    from ralph.run.messages import summary_line

    shaped = "sk-ant-api03-" + "x" * 40
    monkeypatch.setenv("DEPLOY_TOKEN", "hunter2-deploy-value-0123")
    lead = "Rotated the key " + "a" * 39  # the secret starts before char 72 and ends after
    for secret in (shaped, "hunter2-deploy-value-0123"):
        line = summary_line(IterationOutcome("ended", final_text=f"{lead} {secret} done"))
        assert "sk-ant" not in line and "hunter2" not in line, line
        assert len(line) <= 73
    line = summary_line(IterationOutcome("ended", final_text=f"Used {shaped}"))
    assert line == "Used [REDACTED]"


def test_another_promise_token_is_named_in_the_summary() -> None:
    from ralph.run.agent import IterationOutcome
    from ralph.run.messages import summary_line

    blocked = IterationOutcome("ended", final_text="Stuck on the DB. <promise>BLOCKED</promise>")
    assert summary_line(blocked, TOKEN) == "Stuck on the DB. [promise: BLOCKED]"
    done = IterationOutcome("ended", final_text=f"All fixed.\n<promise>{TOKEN}</promise>")
    assert summary_line(done, TOKEN) == "All fixed."
    quoted = IterationOutcome("ended", final_text="I won't say `<promise>BLOCKED</promise>`.")
    assert "[promise" not in summary_line(quoted, TOKEN)


def test_a_refusal_summary_says_why() -> None:
    from ralph.run.agent import IterationOutcome
    from ralph.run.messages import summary_line

    refused = IterationOutcome("refused", error="the model refused to continue (category: cyber)")
    assert "category: cyber" in summary_line(refused, TOKEN)
