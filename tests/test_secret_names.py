"""A file whose name holds a runner secret (in any form redaction knows) is never committed."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.helpers import make_repo
from tests.test_git_safety import committed, iterate, start

TOKEN = "ghs_" + "Xy7Qp2Lm9Vt4Nb8Wc3Rk" * 2


def test_a_file_named_after_a_runner_secret_is_refused_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n"})
    ws = start(repo)
    encoded = base64.b64encode(TOKEN.encode()).decode().replace("/", "_")
    (repo / f"{TOKEN}.txt").write_text("x\n")
    (repo / "notes").mkdir()
    (repo / "notes" / f"{encoded}").write_text("y\n")
    (repo / "ok.py").write_text("ok\n")
    sha = iterate(ws)
    assert sha and committed(repo, sha) == ["ok.py"]
    (line,) = ws.refusals()  # shown redacted in the report and journal, like all text
    assert line.endswith("(its name holds a runner secret)")
    assert f"{TOKEN}.txt" in line and f"notes/{encoded}" in line
