"""`ralph demo`: the offline main job, through the real loop, tools, sandbox, gate, journal and git."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.helpers import git, run_cli, run_commits


def test_demo_hardens_the_app_and_the_gate_rejects_the_early_promise(
    tmp_path: Path, requires_bwrap: None
) -> None:
    repo = tmp_path / "demo"
    proc = run_cli(
        ["demo", "--dir", str(repo), "--sandbox", "bwrap"], cwd=tmp_path, command="ralph"
    )
    assert proc.returncode == 0, proc.stderr
    assert "RECORDED session stands in for the model" in proc.stdout
    assert str(repo) in proc.stdout

    branch = git(repo, "branch", "--show-current")
    assert branch.startswith("ralph/security-")
    commits = run_commits(repo, branch)
    assert [c["iteration"] for c in commits] == ["1", "2", "3"]
    assert (
        git(repo, "log", "--format=%s", "main") == "Vulnerable app: the starting point of the demo"
    )

    app = (repo / "app.py").read_text()
    assert "LIKE ?" in app and "LIKE '%{name}%'" not in app  # SQL injection fixed
    assert "dev-secret-please-change-1234" not in app  # hard-coded secret gone
    assert 'os.environ.get("APP_SECRET_KEY"' in app
    assert "requests==2.32.4" in (repo / "requirements.txt").read_text()
    audit = (repo / "sdlc" / "security-audit.md").read_text()
    assert "## Findings" in audit and "- [x] Injection" in audit
    assert (repo / "sdlc" / "remediation-tasks.md").is_file()

    # The app's own tests pass on the hardened code.
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "-q"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert tests.returncode == 0, tests.stderr

    # The journal shows the early promise in iteration 2 rejected, the one in 3 accepted.
    db = sqlite3.connect(repo / ".ralph" / "ralph.db")
    seen = [
        (it, json.loads(data))
        for it, data in db.execute(
            "SELECT iteration, data FROM events WHERE name = 'promise_seen' ORDER BY id"
        )
    ]
    assert [(it, d["accepted"]) for it, d in seen] == [(2, False), (3, True)]
    assert any("unchecked item" in reason for reason in seen[0][1]["reasons"])
    (status,) = db.execute("SELECT status FROM runs").fetchone()
    assert status == "completed"
    assert ".ralph" not in git(repo, "ls-files")
