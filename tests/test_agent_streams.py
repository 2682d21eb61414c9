"""The JSON-lines parsers of the agent CLIs, in process: what counts as the final message, a
usage limit, a turn limit or a failure, and the events the journal and live view get."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ralph.agents.claude_code import ClaudeStream
from ralph.agents.codex import CodexStream
from ralph.events import Bus, Recorder
from ralph.models.base import Usage
from ralph.run.agent import IterationOutcome
from tests.helpers import clean_env, make_repo, run_cli


def claude(lines: list[dict[str, Any]]) -> tuple[IterationOutcome, ClaudeStream, Recorder]:
    recorder = Recorder()
    out = IterationOutcome("failed")
    stream = ClaudeStream(Bus("run", [recorder]), out, {})
    for line in lines:
        stream.handle(line)
    stream.finish(0, "")
    return out, stream, recorder


def assistant(mid: str, *blocks: dict[str, Any], parent: str | None = None) -> dict[str, Any]:
    usage = {"input_tokens": 100, "output_tokens": 1}
    message = {"id": mid, "model": "claude-opus-5-5", "content": list(blocks), "usage": usage}
    return {"type": "assistant", "message": message, "parent_tool_use_id": parent}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def result(value: str, subtype: str = "success", **extra: Any) -> dict[str, Any]:
    return {"type": "result", "subtype": subtype, "is_error": subtype != "success",
            "result": value, "total_cost_usd": 0.01, **extra}  # fmt: skip


def test_a_promise_from_a_subagent_or_a_tool_result_is_not_the_final_message() -> None:
    task = {"type": "tool_use", "id": "t1", "name": "Task", "input": {"prompt": "look"}}
    tool_result = {"type": "tool_result", "tool_use_id": "t1",
                   "content": [text("sub says <promise>DONE</promise>")]}  # fmt: skip
    out, _, events = claude([
        assistant("m1", task),
        assistant("s1", text("<promise>DONE</promise>"), parent="t1"),
        {"type": "user", "message": {"content": [tool_result]}, "parent_tool_use_id": None},
        assistant("m2", text("Not finished yet.")),
        result("Not finished yet."),
    ])  # fmt: skip
    assert out.outcome == "ended" and out.final_text == "Not finished yet."
    assert out.turns == 2  # the subagent's call is not a top-level turn
    assert len(events.named("model_call")) == 3
    finished = events.named("tool_finished")
    assert finished[0].data["tool"] == "Task" and "promise" in finished[0].data["output"]
    assert out.tool_calls == 1


def test_each_call_is_counted_with_its_final_usage_and_the_cli_cost() -> None:
    start = {"type": "message_start", "message": {"id": "m1", "model": "claude-opus-5-5",
             "usage": {"input_tokens": 1000, "output_tokens": 1}}}  # fmt: skip
    delta = {"type": "message_delta", "usage": {"output_tokens": 250}}
    out, _, events = claude(
        [
            {"type": "stream_event", "event": start, "parent_tool_use_id": None},
            {
                "type": "stream_event",
                "event": {
                    "type": "content_block_delta",
                    "delta": {"type": "text_delta", "text": "Done"},
                },
                "parent_tool_use_id": None,
            },
            assistant("m1", text("Done")),
            {"type": "stream_event", "event": delta, "parent_tool_use_id": None},
            result("Done"),
        ]
    )
    (call,) = events.named("model_call")
    assert call.data["usage"]["input_tokens"] == 1000
    assert call.data["usage"]["output_tokens"] == 250
    assert out.usage == Usage(1000, 250)
    assert out.cost_usd == 0.01  # the CLI's own figure
    assert [e.data["text"] for e in events.named("model_text")] == ["Done"]


def test_a_calls_tools_start_when_the_call_ends_not_when_their_results_arrive() -> None:
    recorder = Recorder()
    stream = ClaudeStream(Bus("run", [recorder]), IterationOutcome("failed"), {})
    use = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "sleep 5"}}
    stream.handle({"type": "stream_event", "parent_tool_use_id": None, "event": {
        "type": "message_start", "message": {"id": "m1", "usage": {"input_tokens": 5}}}})  # fmt: skip
    stream.handle(assistant("m1", use))
    assert recorder.named("tool_started") == []
    stream.handle({"type": "stream_event", "parent_tool_use_id": None,
                   "event": {"type": "message_stop"}})  # fmt: skip
    (started,) = recorder.named("tool_started")
    assert started.data["tool"] == "bash" and started.data["input"]["command"] == "sleep 5"
    assert len(recorder.named("model_call")) == 1


def test_only_a_rejected_rate_limit_event_is_a_usage_limit() -> None:
    warning = {"type": "rate_limit_event",
               "rate_limit_info": {"status": "allowed_warning", "resetsAt": 2_000_000_000}}  # fmt: skip
    said = "You've hit your usage limit, says the agent about some API"
    out, stream, _ = claude([warning, assistant("m1", text(said)), result(said)])
    assert out.outcome == "ended" and stream.limited_until is None
    rejected = {"type": "rate_limit_event",
                "rate_limit_info": {"status": "rejected", "resetsAt": 2_000_000_000}}  # fmt: skip
    out, stream, events = claude([rejected, result("limit", "error_during_execution")])
    assert out.outcome == "usage_limit" and stream.limited_until == 2_000_000_000
    assert out.final_text is None
    assert events.named("usage_limit")[0].data["resets_at"] == 2_000_000_000


def test_turn_limits_failures_and_authentication() -> None:
    out, _, _ = claude([assistant("m1", text("working")), result("", "error_max_turns")])
    assert out.outcome == "max_turns" and out.final_text is None
    out, stream, _ = claude([result("Invalid API key", "error_during_execution",
                                    api_error_status=401)])  # fmt: skip
    assert out.outcome == "failed" and stream.fatal and "401" in stream.fatal
    out, _, _ = claude([assistant("m1", text("half"))])  # killed: no result line
    assert out.outcome == "failed" and out.final_text is None


def codex(
    lines: list[dict[str, Any]], max_turns: int = 50
) -> tuple[IterationOutcome, CodexStream, Recorder]:
    recorder = Recorder()
    out = IterationOutcome("failed")
    stream = CodexStream(Bus("run", [recorder]), out, "gpt-5.5", {}, max_turns)
    for line in lines:
        stream.handle(line)
    stream.finish(0, "")
    return out, stream, recorder


def item(kind: str, iid: str, **fields: Any) -> dict[str, Any]:
    return {"type": "item.completed", "item": {"id": iid, "type": kind, **fields}}


USAGE = {"input_tokens": 1200, "cached_input_tokens": 200, "output_tokens": 30}


def test_codex_final_message_commands_and_usage() -> None:
    command = {"command": "bash -lc 'echo <promise>DONE</promise>'", "exit_code": 0,
               "aggregated_output": "<promise>DONE</promise>\n", "status": "completed"}  # fmt: skip
    out, _, events = codex(
        [
            {"type": "turn.started"},
            item("agent_message", "i0", text="Checking."),
            {
                "type": "item.started",
                "item": {"id": "i1", "type": "command_execution", "command": command["command"]},
            },
            item("command_execution", "i1", **command),
            {"type": "error", "message": "Reconnecting... 1/5"},  # a retry, then it goes on
            item("agent_message", "i2", text="More to do."),
            {"type": "turn.completed", "usage": USAGE},
        ]
    )
    assert out.outcome == "ended" and out.final_text == "More to do."
    assert out.usage == Usage(1000, 30, 0, 200)
    assert out.cost_usd is None  # no price for gpt-5.5 unless `pricing:` gives one
    (finished,) = events.named("tool_finished")
    assert finished.data["tool"] == "bash" and finished.data["exit_code"] == 0


def test_codex_usage_limit_is_its_error_not_the_agents_words() -> None:
    said = item("agent_message", "i0", text="You've hit your usage limit. Try again at 3:00 PM")
    out, stream, _ = codex([said, {"type": "turn.completed", "usage": USAGE}])
    assert out.outcome == "ended" and stream.limited_until is None
    limit = "You’ve hit your usage limit. Upgrade to Pro or try again at 3:00 PM."
    out, stream, _ = codex([{"type": "error", "message": limit},
                            {"type": "turn.failed", "error": {"message": limit}}])  # fmt: skip
    assert out.outcome == "usage_limit" and stream.limited_until is not None
    out, _, _ = codex([{"type": "turn.failed", "error": {"message": "stream disconnected"}}])
    assert out.outcome == "failed" and "stream disconnected" in str(out.error)


def test_codex_max_turns_counts_its_tool_calls() -> None:
    calls = [item("command_execution", f"i{n}", command="true", exit_code=0) for n in range(3)]
    out, stream, _ = codex(calls, max_turns=2)
    assert stream.should_stop() is not None
    assert out.outcome == "max_turns"


def test_dry_run_shows_the_agent_cli_command_with_model_and_agent_args(tmp_path: Path) -> None:
    fake = tmp_path / "claude"
    fake.write_text("#!/bin/sh\necho '2.1.332 (Claude Code)'\n")
    fake.chmod(0o755)
    repo = make_repo(tmp_path / "repo")
    env = clean_env(RALPH_CLAUDE_BIN=str(fake), ANTHROPIC_API_KEY="sk-ant-test")
    args = ["Fix it. <promise>DONE</promise>", "--repo", str(repo), "--agent", "claude-code",
            "--model", "claude-opus-5-5", "--agent-arg", "--mcp-config", "--agent-arg", "m.json",
            "--max-turns", "7", "--dry-run"]  # fmt: skip
    proc = run_cli(args, repo, env=env)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)["request"]
    argv = shown["argv"]
    assert argv[0] == str(fake) and argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--model") + 1] == "claude-opus-5-5"
    assert argv[-2:] == ["--mcp-config", "m.json"]
    assert "<promise>DONE</promise>" in argv[argv.index("--append-system-prompt") + 1]
    assert shown["stdin"].startswith("Fix it.")
