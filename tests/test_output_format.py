"""`--output-format json`: one JSON object on stdout that agrees with git and the journal, as
`claude -p --output-format json` gives scripts."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import clean_env, git, make_repo, run_cli, write_script


def test_json_result_on_stdout_agrees_with_git_and_the_exit_code(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    work = {"text": "Writing notes.", "tools": [{"bash": {"command": "echo a >> NOTES.md"}}]}
    script = write_script(
        tmp_path / "s.yaml",
        [[work, "Wrote notes."], [work, "More notes."]],
        model="claude-sonnet-5-5",  # priced: the cost is a number, rounded
    )
    run = run_cli(
        ["Harden it. <promise>DONE</promise>", "--model", f"script:{script}", "--sandbox",
         "none", "--max-iterations", "2", "--output-format", "json"],
        cwd=repo, env=clean_env(),
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    result = json.loads(run.stdout)  # the whole of stdout is one object
    assert result["exit_code"] == 3 and result["status"] == "max_iterations"
    assert result["iterations"] == 2
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    assert result["branch"] == branch
    shas = git(repo, "rev-list", "--reverse", f"{result['base_commit']}..{branch}").split()
    assert result["commits"] == shas and len(shas) == 2
    assert set(result["usage"]) >= {"input_tokens", "output_tokens"}
    cost = result["cost_usd"]
    assert isinstance(cost, float) and cost > 0 and round(cost, 6) == cost
    assert Path(result["report"]).is_file() and result["run_id"] in result["report"]
