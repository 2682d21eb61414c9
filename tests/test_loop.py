"""The agent's model-call summaries and refusal reasons: short, and redacted before they are cut."""

from __future__ import annotations

from typing import Any

from ralph.models.base import ModelRequest, ModelResponse, Usage
from ralph.run.agent import refusal_reason, request_summary, response_summary

SECRET = "sk-ant-api03-" + "y" * 40


def reply(content: list[dict[str, Any]], stop: str = "end_turn", **extra: Any) -> ModelResponse:
    return ModelResponse(content, stop, Usage(), "claude-test", **extra)


def test_a_secret_across_the_summary_cut_is_redacted_whole() -> None:
    text = "x" * 150 + " " + SECRET
    summary = response_summary(reply([{"type": "text", "text": text}]))
    assert "sk-ant" not in summary and "[REDACTE" in summary
    reason = refusal_reason(reply([{"type": "text", "text": "z" * 290 + " " + SECRET}], "refusal"))
    assert "sk-ant" not in reason


def test_the_response_summary_names_the_stop_text_and_tool_calls() -> None:
    summary = response_summary(
        reply(
            [
                {"type": "text", "text": "Let me\nlook."},
                {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls"}},
            ],
            "tool_use",
        )
    )
    assert summary == "stop tool_use; text 'Let me look.'; tools bash(toolu_1)"


def test_the_request_summary_names_the_turn_messages_and_tool_results() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Go."}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash"}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
        },
    ]
    summary = request_summary(ModelRequest("sys", messages, [], 100, iteration=2, turn=2))
    assert summary.startswith("turn 2; 3 messages; tool results t1; ") and summary.endswith(
        " chars"
    )


def test_a_refusal_reason_has_the_category_explanation_and_words() -> None:
    details = {"type": "refusal", "category": "bio", "explanation": "Lab methods."}
    reason = refusal_reason(
        reply([{"type": "text", "text": "I can't."}], "refusal", stop_details=details)
    )
    assert (
        reason == "the model refused to continue (category: bio): Lab methods.; it said: I can't."
    )
    assert refusal_reason(reply([], "refusal")) == "the model refused to continue"


def test_the_summary_line_carries_no_escape_sequences() -> None:
    from ralph.run.agent import IterationOutcome
    from ralph.run.messages import summary_line

    text = "\x1b[31mFixed\x1b[0m the \x1b]0;pwned\x07title. <promise>BLOCKED</promise>"
    line = summary_line(IterationOutcome("ended", final_text=text), "DONE")
    assert line == "Fixed the title. [promise: BLOCKED]"
