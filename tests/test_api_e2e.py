"""End to end over HTTP: the real `ralph-loop` CLI and the real `anthropic` SDK against the
local Messages API server (tests/fakeapi.py), on real temporary git repositories.

The two-iteration run is a process of its own, as a user starts it; the other cases run the
same entry point in this process (`run_here`): none needs a process of its own, and each
would otherwise pay the SDK's import (about 1.7 s of CPU)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ralph.models.base import Usage
from ralph.models.pricing import lookup
from tests.fakeapi import (
    Drop,
    FakeAPI,
    HTTPError,
    Message,
    Recorded,
    Reply,
    Responder,
    raw_tool_use,
    text,
    tool_use,
)
from tests.helpers import clean_env, git, make_repo, only_run, run_cli, run_commits, run_here

KEY = "sk-ant-api03-e2e-test-key-000000000000"
MODEL = "claude-sonnet-5-5"  # the default model, priced in the built-in table
TOKEN = "DONE"
PROMPT = f"Harden this repository. When all is done, output <promise>{TOKEN}</promise>.\n"
APP = 'DEBUG = True\nSECRET_KEY = "dev"\n'
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
              "cache_read_input_tokens")  # fmt: skip


def api_env(api: FakeAPI, **extra: str) -> dict[str, str]:
    """The test environment with only the fake server's URL and key as Anthropic settings."""
    env = {k: v for k, v in clean_env().items() if not k.startswith("ANTHROPIC_")}
    env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=KEY, **extra)
    return env


def setup_repo(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "app.py": APP})
    prompt = tmp_path / "harden.md"
    prompt.write_text(PROMPT)
    return repo, prompt


def ralph(
    repo: Path, prompt: Path, env: dict[str, str], *extra: str, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """`ralph-loop PROMPT --repo REPO ...`: in this process, or with `process` in its own."""
    args = [str(prompt), "--repo", str(repo), "--sandbox", "none", "--retry-window", "30s"]
    return (run_cli if process else run_here)([*args, *extra], cwd=repo, env=env)


def outcomes(run: dict[str, Any]) -> list[str]:
    return [it["outcome"] for it in run["iterations_detail"]]


def branch_of(repo: Path) -> str:
    branches = git(repo, "branch", "--list", "ralph/*", "--format=%(refname:short)").split()
    assert len(branches) == 1, branches
    return branches[0]


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a request's last message."""
    content = body["messages"][-1]["content"]
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def result_text(block: dict[str, Any]) -> str:
    content = block["content"]
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content)


def edit(command: str, path: str, **fields: Any) -> dict[str, Any]:
    return tool_use("str_replace_based_edit_tool", {"command": command, "path": path, **fields})


def bash(command: str) -> dict[str, Any]:
    return tool_use("bash", {"command": command})


# --- a two-iteration run that reads, edits, creates and runs things --------------------------

ITERATION_1 = [
    Message([text("Let me look around."), edit("view", "app.py"), bash("ls && git log --oneline | wc -l")]),
    Message([text("Turn debug off."), edit("str_replace", "app.py", old_str="DEBUG = True",
                                           new_str="DEBUG = False")]),
    Message([bash("python3 -c 'import app; print(app.DEBUG)' > check.txt && cat check.txt")]),
    Message("Turned DEBUG off in app.py.\nMore to do next time."),
]  # fmt: skip
ITERATION_2 = [
    Message([edit("create", "docs/SECURITY.md", file_text="# Security\n\nReport issues privately.\n")]),
    Message([edit("insert", "app.py", insert_line=0, insert_text="import os\n"), bash("cd docs && pwd")]),
    Message([bash("ls")]),
    Message(f"Documented the security policy.\n<promise>{TOKEN}</promise>"),
]  # fmt: skip


@dataclass
class Finished:
    """A finished run: its repository, process, server log and journal view."""

    repo: Path
    proc: subprocess.CompletedProcess[str]
    bodies: list[dict[str, Any]]
    usages: list[dict[str, int]]
    run: dict[str, Any]


@pytest.fixture(scope="module")
def two_iterations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    repo, prompt = setup_repo(tmp_path_factory.mktemp("two"))
    with FakeAPI(auto_cache=True, api_key=KEY) as api:
        api.add(*ITERATION_1, *ITERATION_2)
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "5", process=True)
        yield Finished(repo, proc, api.bodies, list(api.usages), only_run(repo))


def test_the_model_reads_edits_creates_and_runs_commands(two_iterations: Finished) -> None:
    repo, proc, bodies = two_iterations.repo, two_iterations.proc, two_iterations.bodies
    assert proc.returncode == 0, proc.stderr
    assert len(bodies) == 8
    branch = branch_of(repo)
    commits = run_commits(repo, branch)
    assert [c["subject"] for c in commits] == [
        "ralph(harden): iteration 1/5 — Turned DEBUG off in app.py.",
        "ralph(harden): iteration 2/5 — Documented the security policy.",
    ]
    git(repo, "checkout", "-q", branch)
    assert (repo / "app.py").read_text() == "import os\n" + APP.replace("True", "False")
    assert (repo / "check.txt").read_text() == "False\n"
    assert (repo / "docs" / "SECURITY.md").read_text().startswith("# Security\n")
    # Everything is committed but the cache python wrote, which is never committed (issue 15).
    assert git(repo, "status", "--porcelain") in ("", "?? __pycache__/")
    assert "__pycache__" not in git(repo, "ls-tree", "-r", "--name-only", branch)
    # What the model was told its tools did.
    viewed, listed = (result_text(b) for b in tool_results(bodies[1]))
    assert "DEBUG = True" in viewed and "SECRET_KEY" in viewed
    assert "README.md" in listed and "app.py" in listed and listed.rstrip().endswith("1")
    edited = result_text(tool_results(bodies[2])[0])
    assert edited.startswith("Edited app.py") and "DEBUG = False" in edited
    assert result_text(tool_results(bodies[3])[0]) == "False"
    assert result_text(tool_results(bodies[6])[1]).endswith("/docs")
    assert result_text(tool_results(bodies[7])[0]) == "SECURITY.md"  # the cwd carried over
    for body in bodies:
        assert body["model"] == MODEL and body["stream"] is True
        assert [t["name"] for t in body["tools"]] == ["bash", "str_replace_based_edit_tool"]


def test_each_iteration_starts_with_only_the_prompt(two_iterations: Finished) -> None:
    bodies = two_iterations.bodies
    for index, number in ((0, 1), (4, 2)):
        (message,) = bodies[index]["messages"]
        assert message["role"] == "user"
        (block,) = message["content"]
        assert block["text"].startswith(PROMPT.rstrip())
        assert f"[ralph] Iteration {number} of 5." in block["text"]
    # Nothing of iteration 1 reaches iteration 2.
    assert "Turned DEBUG off" not in json.dumps(bodies[4])
    assert TOKEN in bodies[0]["system"][0]["text"]


def test_later_requests_of_an_iteration_carry_cache_breakpoints(two_iterations: Finished) -> None:
    bodies, usages = two_iterations.bodies, two_iterations.usages
    for index in (1, 2, 3, 5, 6, 7):
        body = bodies[index]
        assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        last = body["messages"][-1]["content"][-1]
        assert last["cache_control"] == {"type": "ephemeral"}, last
        # Two breakpoints in the messages (four in all, the API's limit): the last block and
        # the last block of the previous request, the prompt or the latest tool results.
        marks = [b for m in body["messages"] for b in m["content"] if "cache_control" in b]
        previous = bodies[index - 1]["messages"][-1]["content"][-1]
        assert marks == [previous, last]
        # The server's cache accounting: most of the prompt is a cache read.
        usage = usages[index]
        prompt_tokens = sum(usage[k] for k in TOKEN_KEYS if k != "output_tokens")
        assert usage["cache_read_input_tokens"] > prompt_tokens / 2, usage
    # The system prompt and tools are the same across iterations, so even a fresh
    # iteration's first request reads them from the cache.
    assert usages[4]["cache_read_input_tokens"] > 0


def test_token_and_cost_totals_equal_what_the_server_reported(two_iterations: Finished) -> None:
    run, usages = two_iterations.run, two_iterations.usages
    expected = {k: sum(u[k] for u in usages) for k in TOKEN_KEYS}
    assert run["usage"] == expected
    assert run["tokens"] == sum(expected.values())
    assert run["model_calls"] == 8 and run["tool_calls"] == 8
    pricing = lookup(MODEL)
    assert pricing is not None
    cost = sum(pricing.cost(Usage(**{k: u[k] for k in TOKEN_KEYS})) for u in usages)
    assert run["cost_usd"] == pytest.approx(cost, abs=1e-6) and cost > 0
    per_iteration = [it["usage"] for it in run["iterations_detail"]]
    assert {k: sum(u[k] for u in per_iteration) for k in TOKEN_KEYS} == expected
    first = {k: sum(u[k] for u in usages[:4]) for k in TOKEN_KEYS}
    assert per_iteration[0] == first


def test_model_calls_are_summarised_in_the_journal(two_iterations: Finished) -> None:
    with sqlite3.connect(two_iterations.repo / ".ralph" / "ralph.db") as db:
        rows = db.execute(
            "SELECT turn, request_summary, response_summary FROM model_calls ORDER BY id"
        ).fetchall()
    assert len(rows) == 8
    assert all(request and response for _, request, response in rows), rows
    _, request, response = rows[0]
    assert request.startswith("turn 1; 1 messages;") and "chars" in request
    assert response.startswith("stop tool_use; text 'Let me look around.'")
    assert "str_replace_based_edit_tool(toolu_" in response and "bash(toolu_" in response
    _, request, response = rows[1]
    assert request.startswith("turn 2; 3 messages; tool results toolu_")
    assert response.startswith("stop tool_use")
    _, _, response = rows[3]
    assert response.startswith("stop end_turn; text 'Turned DEBUG off in app.py.")


def test_a_turn_of_many_tool_calls_keeps_the_conversation_cached(tmp_path: Path) -> None:
    # 12 parallel calls and their results are 24 blocks, past the cache's 20-block lookback
    # from the last breakpoint: the earlier conversation is still read through the second
    # breakpoint, on the previous request's last block.
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(auto_cache=True, api_key=KEY) as api:
        api.add(
            Message([text("Read the code."), edit("view", "app.py"), bash("cat README.md")]),
            Message([bash(f"echo {k} > f{k}.txt") for k in range(12)]),
            Message(f"Wrote twelve files. <promise>{TOKEN}</promise>"),
        )
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "1")
        usages = list(api.usages)
    assert proc.returncode == 0, proc.stderr
    before = usages[1]
    earlier = sum(before[k] for k in TOKEN_KEYS if k != "output_tokens")
    assert usages[2]["cache_read_input_tokens"] == earlier, usages


# --- stop reasons -------------------------------------------------------------------------------


def test_every_stop_reason(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    continued = "[ralph] Your reply was cut off"
    with FakeAPI(api_key=KEY) as api:
        api.add(
            # Iteration 1: max_tokens (a cut-off tool call is dropped, the model is asked to go
            # on), tool_use, pause_turn (the paused turn is sent back), end_turn.
            Message(
                [text("A long answer"), raw_tool_use("bash", '{"command": "echo cut >> cut.t')],
                stop_reason="max_tokens",
            ),
            Message([bash("echo one > one.txt")]),
            Message([text("Still searching.")], stop_reason="pause_turn"),
            Message("Wrote one.txt."),
            # Iteration 2: a refusal ends it as refused.
            Message("I can't help with that.", stop_reason="refusal"),
            # Iteration 3: the context window is exceeded after some work.
            Message([bash("echo three > three.txt")]),
            Message([text("Reading more")], stop_reason="model_context_window_exceeded"),
            # Iteration 4: a fresh conversation that ends on a stop sequence, with the promise.
            Message(f"All finished. <promise>{TOKEN}</promise>", stop_reason="stop_sequence"),
        )
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "6")
        bodies = api.bodies
    assert proc.returncode == 0, proc.stderr
    assert len(bodies) == 8

    after_cut = bodies[1]["messages"]
    assert after_cut[-2] == {"role": "assistant", "content": [text("A long answer")]}
    assert after_cut[-1]["role"] == "user" and continued in after_cut[-1]["content"][0]["text"]
    after_pause = bodies[3]["messages"][-1]
    assert after_pause["role"] == "assistant"
    assert after_pause["content"][0]["text"] == "Still searching."
    for first in (4, 5, 7):
        assert len(bodies[first]["messages"]) == 1, bodies[first]["messages"]

    run = only_run(repo)
    assert outcomes(run) == ["ended", "refused", "context_exceeded", "ended"]
    refused = run["iterations_detail"][1]
    assert "refused" in (refused["error"] or "") and refused["commit"] is None
    # Why, as the API said it (stop_details) and the model's own words.
    assert "category: cyber" in refused["error"] and "enable malware" in refused["error"]
    assert "I can't help with that." in refused["error"]
    assert "category: cyber" in refused["summary"]
    assert run["iterations_detail"][2]["files_changed"] == ["three.txt"]  # its work committed
    assert run["status"] == "completed"
    branch = branch_of(repo)
    assert [c["iteration"] for c in run_commits(repo, branch)] == ["1", "3"]
    git(repo, "checkout", "-q", branch)
    assert not (repo / "cut.txt").exists()  # the cut-off tool call never ran
    assert (repo / "one.txt").read_text() == "one\n"


def like_the_api(replies: list[Reply]) -> Responder:
    """A responder that rejects what the real API rejects in a request (empty or blank text
    blocks: "text content blocks must be non-empty") and otherwise answers from `replies`."""

    def respond(req: Recorded) -> Reply:
        for message in req.json["messages"]:
            for block in message["content"]:
                if block.get("type") == "text" and not str(block.get("text") or "").strip():
                    return HTTPError(400, message="messages: text content blocks must be non-empty")
        return replies.pop(0)

    return respond


def test_empty_text_blocks_of_a_reply_are_not_sent_back(tmp_path: Path) -> None:
    # The API may answer with an empty text block before a tool call, but rejects one in a
    # request: sent back verbatim, it would fail every later call of the iteration.
    repo, prompt = setup_repo(tmp_path)
    replies: list[Reply] = [
        Message([text(""), bash("echo a > a.txt")]),
        Message([text(" \n"), bash("echo b > b.txt")]),
        Message([text("Cut"), text(""), bash("echo c > c.txt")], stop_reason="max_tokens"),
        Message(f"Done. <promise>{TOKEN}</promise>"),
    ]
    with FakeAPI(api_key=KEY, responder=like_the_api(replies)) as api:
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "2")
        bodies = api.bodies
    assert proc.returncode == 0, proc.stderr
    assert len(bodies) == 4 and not replies
    assert outcomes(only_run(repo)) == ["ended"]
    assert bodies[3]["messages"][-2] == {"role": "assistant", "content": [text("Cut")]}


# --- malformed and failing tool calls ------------------------------------------------------------


def test_tool_input_that_is_not_valid_json_becomes_an_error_result(tmp_path: Path) -> None:
    # The SDK's own stream helper raises a bare ValueError on such input, ending the run with a
    # traceback. The reply is asked for again once; the same again gets error results.
    repo, prompt = setup_repo(tmp_path)
    bad = Message([
        text("Two commands."),
        raw_tool_use("bash", '{"command": "echo \\ud800 > bad.txt"}', id="toolu_surrogate"),
        raw_tool_use("bash", '{"command": "echo cut', id="toolu_cut"),
        bash("echo good > good.txt"),
    ])  # fmt: skip
    with FakeAPI(api_key=KEY) as api:
        api.add(bad, bad, Message(f"Done. <promise>{TOKEN}</promise>"))
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "2")
        bodies = api.bodies
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(bodies) == 3 and bodies[0] == bodies[1]  # retried once, then taken
    assert "not valid JSON" in proc.stderr  # the retry says why
    sent_back = bodies[2]["messages"][1]["content"]
    assert [b.get("input") for b in sent_back[1:]] == [{}, {}, {"command": "echo good > good.txt"}]
    results = tool_results(bodies[2])
    assert [r.get("is_error", False) for r in results] == [True, True, False]
    assert "lone surrogate" in result_text(results[0]) and "nothing ran" in result_text(results[0])
    assert "not valid JSON" in result_text(results[1])
    run = only_run(repo)
    assert outcomes(run) == ["ended"] and run["status"] == "completed"
    assert run["tool_calls"] == 3
    git(repo, "checkout", "-q", branch_of(repo))
    assert (repo / "good.txt").read_text() == "good\n" and not (repo / "bad.txt").exists()


def test_bad_tool_calls_come_back_as_errors_and_the_run_goes_on(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    calls = Message([
        tool_use("deploy_to_prod", {"now": True}),  # an unknown tool
        tool_use("bash", {"command": 42}),  # a field of the wrong type
        edit("view", "app.py", view_range="all"),  # the same, in the editor
        bash("echo a\u0000b"),  # a NUL byte: running it raises inside the tool
        bash("echo ok > ok.txt"),
    ])  # fmt: skip
    array = Message([raw_tool_use("bash", '["ls"]'), bash("echo again >> ok.txt")])
    with FakeAPI(api_key=KEY) as api:
        api.add(calls, array, array, Message(f"Done. <promise>{TOKEN}</promise>"))
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "2")
        bodies = api.bodies
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    first = tool_results(bodies[1])
    assert [r.get("is_error", False) for r in first] == [True, True, True, True, False]
    said = [result_text(r) for r in first]
    assert "unknown tool 'deploy_to_prod'" in said[0] and "bash" in said[0]
    assert "bash needs" in said[1]
    assert "view_range" in said[2]
    assert "bash failed" in said[3] and "null" in said[3]
    second = tool_results(bodies[3])  # after the array input was asked for again once
    assert [r.get("is_error", False) for r in second] == [True, False]
    assert "not a JSON object but an array" in result_text(second[0])
    run = only_run(repo)
    assert run["status"] == "completed" and run["tool_calls"] == 7
    git(repo, "checkout", "-q", branch_of(repo))
    assert (repo / "ok.txt").read_text() == "ok\nagain\n"


# --- retries and failures -----------------------------------------------------------------------


def test_a_529_storm_is_ridden_out_without_repeating_work(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    # A dropped connection and an overload `error` event mid-stream (backed off ~0.5-1 s and
    # ~1-2 s: they carry no retry-after), then 529s and a 500 that ask for 20 ms.
    storm: list[Reply] = [Drop(), Message("partial", error_after=4)]
    storm += [HTTPError(529, retry_after_ms=20) for _ in range(5)]
    storm += [HTTPError(500, retry_after_ms=20), HTTPError(529, retry_after_ms=20)]
    with FakeAPI(api_key=KEY) as api:
        api.add(
            Message([bash("echo once >> ran.txt")]),
            *storm,
            Message(f"Survived. <promise>{TOKEN}</promise>"),
        )
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "3")
        bodies = api.bodies
    assert proc.returncode == 0, proc.stderr
    assert len(bodies) == 11
    assert all(b == bodies[1] for b in bodies[2:])  # a retry resends the identical body
    assert len(re.findall(r"retrying in", proc.stderr)) == 9, proc.stderr
    assert "connection error" in proc.stderr and "stream 529 overloaded_error" in proc.stderr
    git(repo, "checkout", "-q", branch_of(repo))
    assert (repo / "ran.txt").read_text() == "once\n"  # the tool ran once
    run = only_run(repo)
    assert run["model_calls"] == 2 and run["tool_calls"] == 1
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        retries = [r[0] for r in db.execute("SELECT retries FROM model_calls ORDER BY id")]
    assert retries == [0, 9]


def test_a_429_retry_after_is_waited_out_and_shown(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key=KEY) as api:
        api.add(HTTPError(429, retry_after=1), Message(f"Done. <promise>{TOKEN}</promise>"))
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "2")
        first, second = api.requests
    assert proc.returncode == 0, proc.stderr
    assert second.at - first.at >= 0.95
    waits = [line for line in proc.stderr.splitlines() if "retrying in" in line]
    assert len(waits) == 1 and "429 rate_limit_error" in waits[0] and "1.0s" in waits[0], waits


def test_a_retry_window_that_runs_out_fails_the_iteration(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key=KEY, default=HTTPError(529, retry_after_ms=50)) as api:
        proc = ralph(repo, prompt, api_env(api), "--retry-window", "1s", "--max-failures", "1")
        requests = len(api.requests)
    assert proc.returncode == 5, proc.stderr
    # Retried (every 50 ms, so a loaded machine still fits one in the second), then given up:
    # at most one request per wait in the window.
    assert 2 <= requests <= 1 / 0.05 + 1
    assert "still failing after" in proc.stderr
    run = only_run(repo)
    assert outcomes(run) == ["failed"] and run["status"] == "failed"


def test_401_ends_the_run_at_once_with_exit_1_and_one_line(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key="sk-ant-api03-the-right-key-0000000000") as api:
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "5")
        requests = len(api.requests)
    assert proc.returncode == 1, proc.stderr
    assert requests == 1  # not retried, and no second iteration
    said = [line for line in proc.stderr.splitlines() if "authentication failed" in line]
    assert said and all("ANTHROPIC_API_KEY" in line for line in said), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    run = only_run(repo)
    assert run["status"] == "error" and len(run["iterations_detail"]) == 1
    assert "authentication failed" in run["reason"]


def test_a_401_mid_iteration_keeps_the_iterations_usage(tmp_path: Path) -> None:
    # The key is revoked after two billed calls: their tokens, cost and tool call must still
    # be in the iteration row and the run's totals, as in the model_call rows.
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key=KEY) as api:
        api.add(
            Message([bash("echo one > one.txt")]),
            Message([bash("echo two > two.txt")]),
            HTTPError(401, message="invalid x-api-key"),
        )
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "3")
        usages = list(api.usages)
    assert proc.returncode == 1, proc.stderr
    assert len(usages) == 2
    expected = {k: sum(u[k] for u in usages) for k in TOKEN_KEYS}
    run = only_run(repo)
    (iteration,) = run["iterations_detail"]
    assert iteration["outcome"] == "failed" and "authentication failed" in iteration["error"]
    assert iteration["usage"] == expected and iteration["turns"] == 2
    assert run["usage"] == expected and run["tool_calls"] == 2
    pricing = lookup(MODEL)
    assert pricing is not None
    cost = sum(pricing.cost(Usage(**{k: u[k] for k in TOKEN_KEYS})) for u in usages)
    assert iteration["cost_usd"] == pytest.approx(cost) and run["cost_usd"] == pytest.approx(cost)


def test_a_400_fails_the_iteration_and_the_next_one_goes_on(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key=KEY) as api:
        api.add(
            HTTPError(400, message="messages.0: bad block"),
            Message(f"Done. <promise>{TOKEN}</promise>"),
        )
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "3")
        requests = len(api.requests)
    assert proc.returncode == 0, proc.stderr
    assert requests == 2  # a 400 is not retried
    run = only_run(repo)
    assert outcomes(run) == ["failed", "ended"]
    error = run["iterations_detail"][0]["error"]
    assert "400" in error and "bad block" in error
    assert "bad block" in proc.stderr


def test_three_400s_in_a_row_trip_the_circuit_breaker(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key=KEY, default=HTTPError(400, message="bad request body")) as api:
        proc = ralph(repo, prompt, api_env(api), "--max-iterations", "10")
        requests = len(api.requests)
    assert proc.returncode == 5, proc.stderr
    assert requests == 3
    run = only_run(repo)
    assert outcomes(run) == ["failed"] * 3 and run["status"] == "failed"
    assert "3 failed iterations in a row" in run["reason"] and "400" in run["reason"]


def test_missing_credentials_exit_2_before_anything_is_created(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key=KEY) as api:
        env = api_env(api)
        del env["ANTHROPIC_API_KEY"]
        proc = ralph(repo, prompt, env)
        assert not api.requests
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ANTHROPIC_API_KEY" in lines[0], proc.stderr
    assert not (repo / ".ralph").exists()
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["main"]


def test_an_auth_token_alone_is_enough(tmp_path: Path) -> None:
    repo, prompt = setup_repo(tmp_path)
    with FakeAPI(api_key=KEY) as api:
        api.add(Message(f"Done. <promise>{TOKEN}</promise>"))
        env = api_env(api, ANTHROPIC_AUTH_TOKEN=KEY)
        del env["ANTHROPIC_API_KEY"]
        proc = ralph(repo, prompt, env)
        (request,) = api.requests
    assert proc.returncode == 0, proc.stderr
    assert request.headers.get("authorization") == f"Bearer {KEY}"
