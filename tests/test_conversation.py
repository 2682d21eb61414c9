"""The journal keeps each iteration's conversation, redacted, and `ralph show RUN --iteration N`
replays what the model saw and said."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import clean_env, make_repo, run_cli, write_script

SECRET = "sk-test-9f8e7d6c5b4a32100fedcba987654321"


def test_show_iteration_replays_the_conversation_with_secrets_redacted(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    script = write_script(
        tmp_path / "s.yaml",
        [
            [
                {"text": "Looking around.", "tools": [{"bash": {"command": "echo listed-it"}}]},
                f"Added notes; the key {SECRET} stays out. <promise>DONE</promise>",
            ]
        ],
    )
    env = clean_env(FAKE_SERVICE_TOKEN=SECRET)
    run = run_cli(
        ["Harden it. <promise>DONE</promise>", "--model", f"script:{script}", "--sandbox",
         "none", "--max-iterations", "1"],
        cwd=repo, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    shown = run_cli(["show", "--iteration", "1"], cwd=repo, command="ralph", env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    order = [
        "--- system ---", "You are an autonomous engineer", "(tools: bash, str_replace_based_edit_tool)",
        "--- user ---", "Harden it.", "[ralph] Iteration 1 of 1.",
        "--- assistant ---", "Looking around.", "[tool_use bash", '"echo listed-it"',
        "--- user ---", "[tool_result", "listed-it",
        "--- assistant ---", "Added notes",
    ]  # fmt: skip
    at = 0
    for part in order:
        found = text.find(part, at)
        assert found >= 0, (part, text)
        at = found
    assert SECRET not in text and "[REDACTED]" in text
    as_json = json.loads(
        run_cli(["show", "latest", "--iteration", "1", "--json"], cwd=repo, command="ralph").stdout
    )
    assert as_json[0]["attempt"] == 1 and as_json[0]["messages"][0]["role"] == "user"
    missing = run_cli(["show", "--iteration", "7"], cwd=repo, command="ralph", env=env)
    assert missing.returncode == 2 and "no conversation for iteration 7" in missing.stderr
