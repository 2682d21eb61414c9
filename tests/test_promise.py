"""Completion detection: exactly when the final message carries the configured promise."""

from __future__ import annotations

import pytest

from ralph.promise import check, normalise, promises_in, prompt_promises

TOKEN = "SECURITY_AUDIT_COMPLETE"


@pytest.mark.parametrize(
    "message",
    [
        "All done. <promise>SECURITY_AUDIT_COMPLETE</promise>",
        "<promise>SECURITY_AUDIT_COMPLETE</promise>",
        "Summary\n\n<promise>  SECURITY_AUDIT_COMPLETE \n</promise>\n",
        "text `code` then <promise>SECURITY_AUDIT_COMPLETE</promise>",
        "```\nexample\n```\nfinished <promise>SECURITY_AUDIT_COMPLETE</promise>",
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
