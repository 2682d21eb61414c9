"""`ralph demo`: the offline main job, through the real loop, tools, sandbox, gate, journal and git."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ralph.demo_run import ralph_command
from tests.helpers import BIN, clean_env, git, run_cli, run_commits

# The PATH a user has after the README's install: the venv's bin directory is not on it.
USER_PATH = "/usr/bin:/bin"

# Sends requests to the hardened app in-process (independently of the demo's own tests and
# probe) and prints {name: [status, body]} as JSON.
ATTACKS = r"""
import contextlib, io, json, os, sys, tempfile
from wsgiref.util import setup_testing_defaults
os.environ["APP_SECRET_KEY"] = "x" * 32
sys.path.insert(0, os.getcwd())
import app

application = app.create_app(os.path.join(tempfile.mkdtemp(), "a.db"))
def send(method, path, body=b"", query="", origin=None):
    environ = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query,
                   CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)),
                   **{"wsgi.input": io.BytesIO(body)})
    if origin:
        environ["HTTP_ORIGIN"] = origin
    seen = {}
    def start_response(status, headers, exc_info=None):
        seen.update(status=int(status.split()[0]), headers=dict(headers))
    with contextlib.redirect_stdout(io.StringIO()):  # the app prints each request
        raw = b"".join(application(environ, start_response)).decode()
    return [seen["status"], raw, seen["headers"]]
union = "x%27%20UNION%20SELECT%20id,%20username,%20password_hash%20FROM%20users%20--"
out = {
    "array": send("POST", "/login", b"[]"),
    "bad json": send("POST", "/login", b"{bad"),
    "huge": send("POST", "/login", b"{" + b" " * 10000 + b"}"),
    "long name": send("POST", "/login", json.dumps({"username": "a" * 500, "password": "x"}).encode()),
    "union": send("GET", "/users/search", query="q=" + union),
    "origin": send("GET", "/", origin="https://evil.example"),
}
token = json.loads(send("POST", "/login", json.dumps({"username": "bob", "password": "builder"}).encode())[1])["token"]
def preview(url):
    environ_auth = {"HTTP_AUTHORIZATION": "Bearer " + token}
    body = json.dumps({"url": url}).encode()
    environ = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="POST", PATH_INFO="/avatar/preview", CONTENT_TYPE="application/json",
                   CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(body)}, **environ_auth)
    seen = {}
    def start_response(status, headers, exc_info=None):
        seen.update(status=int(status.split()[0]))
    with contextlib.redirect_stdout(io.StringIO()):
        raw = b"".join(application(environ, start_response)).decode()
    return [seen["status"], raw, {}]
out["ssrf file"] = preview("file:///etc/passwd")
out["ssrf metadata"] = preview("http://169.254.169.254/latest/meta-data/")
print(json.dumps(out))
"""


@dataclass
class Demo:
    """A finished `ralph demo --dir REPO` run."""

    repo: Path
    proc: subprocess.CompletedProcess[str]
    db: sqlite3.Connection

    def bash_calls(self, iteration: int) -> list[tuple[str, str, int]]:
        """(command, output, exit code) of the iteration's bash tool calls."""
        rows = self.db.execute(
            "SELECT input, output, exit_code FROM tool_calls WHERE tool = 'bash' AND iteration = ?"
            " ORDER BY id",
            (iteration,),
        )
        return [(json.loads(i)["command"], out, code) for i, out, code in rows]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    from ralph.tools.probe import bwrap_problem

    problem = bwrap_problem()
    if problem is not None:  # as conftest's requires_bwrap, which a module fixture cannot use
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the bubblewrap tests, but {problem}")
        pytest.skip(f"bubblewrap unavailable: {problem}")
    tmp = tmp_path_factory.mktemp("demo")
    repo = tmp / "demo"
    proc = run_cli(
        ["demo", "--dir", str(repo), "--sandbox", "bwrap"],
        cwd=tmp,
        command="ralph",
        env=clean_env(PATH=USER_PATH),
    )
    assert proc.returncode == 0, proc.stderr
    return Demo(repo, proc, sqlite3.connect(repo / ".ralph" / "ralph.db"))


def test_demo_hardens_the_app_and_the_gate_rejects_the_early_promise(demo: Demo) -> None:
    repo, proc = demo.repo, demo.proc
    assert "RECORDED session stands in for the model" in proc.stdout
    assert str(repo) in proc.stdout

    branch = git(repo, "branch", "--show-current")
    assert branch.startswith("ralph/security-")
    commits = run_commits(repo, branch)
    assert [c["iteration"] for c in commits] == ["1", "2", "3", "4"]
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

    # The app's own tests pass on the hardened code, with the stdlib only.
    tests = subprocess.run(
        ["python3", "-m", "unittest", "-q"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"PATH": USER_PATH, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert tests.returncode == 0, tests.stderr
    assert re.search(r"Ran (\d+) tests", tests.stderr)

    # The journal shows the early promise in iteration 2 rejected, the one in 4 accepted.
    seen = [
        (it, json.loads(data))
        for it, data in demo.db.execute(
            "SELECT iteration, data FROM events WHERE name = 'promise_seen' ORDER BY id"
        )
    ]
    assert [(it, d["accepted"]) for it, d in seen] == [(2, False), (4, True)]
    # 14 of the 2017 list and the hardening items, and the ten of OWASP Top 10:2025
    assert any("24 unchecked item(s)" in reason for reason in seen[0][1]["reasons"])
    (status,) = demo.db.execute("SELECT status FROM runs").fetchone()
    assert status == "completed"
    assert ".ralph" not in git(repo, "ls-files")


def test_every_command_the_session_runs_succeeds(demo: Demo) -> None:
    """Under bubblewrap, with the stdlib only: no command of the recording fails or errors."""
    calls = [call for it in (1, 2, 3, 4) for call in demo.bash_calls(it)]
    assert len(calls) >= 10
    for command, output, code in calls:
        assert code == 0, (command, output)
        assert "Traceback" not in output, (command, output)
        assert "command not found" not in output and "No such file" not in output, command


def test_iteration_1_checks_for_the_scanners(demo: Demo) -> None:
    commands = [command for command, _, _ in demo.bash_calls(1)]
    assert any(c.startswith("command -v bandit semgrep gitleaks") for c in commands), commands
    audit = (demo.repo / "sdlc" / "security-audit.md").read_text()
    dependency_scan = audit.split("## Dependency scan", 1)[1].split("\n## ", 1)[0]
    assert "command -v bandit semgrep gitleaks pip-audit" in dependency_scan


def test_the_hardened_app_validates_input_and_sets_headers(demo: Demo) -> None:
    proc = subprocess.run(
        ["python3", "-c", ATTACKS],
        cwd=demo.repo,
        capture_output=True,
        text=True,
        env={"PATH": USER_PATH, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name in ("array", "bad json", "huge", "long name"):
        status, body, _ = out[name]
        assert status == 400, (name, body)
        assert "error" in json.loads(body) and "Traceback" not in body
    for name in ("ssrf file", "ssrf metadata"):
        status, body, _ = out[name]
        assert status == 400 and "root:" not in body, (name, body)
    status, body, _ = out["union"]
    assert (status, json.loads(body)) == (200, {"users": []})
    _, _, headers = out["origin"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in headers
    assert "Access-Control-Allow-Origin" not in headers
    # The validation tests are in the app's own test file, as the audit says.
    assert (
        "test_malformed_login_bodies_are_rejected" in (demo.repo / "tests/test_app.py").read_text()
    )


def test_the_penetration_probe_really_ran_and_passes_again(demo: Demo) -> None:
    probes = [(c, out, code) for c, out, code in demo.bash_calls(3) if "scripts/probe.py" in c]
    assert len(probes) == 1
    _, output, code = probes[0]
    assert code == 0 and "FAIL" not in output
    assert re.search(r"^9/9 checks pass against http://127\.0\.0\.1:\d+$", output, re.M), output
    for attack in ("UNION payload", "bad JSON", "JSON array", "security headers", "429"):
        assert re.search(rf"^PASS .*{re.escape(attack)}", output, re.M), attack
    again = subprocess.run(
        ["python3", "scripts/probe.py"],
        cwd=demo.repo,
        capture_output=True,
        text=True,
        env={"PATH": USER_PATH, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "9/9 checks pass" in again.stdout


def test_the_waf_box_is_backed_by_a_rule_set(demo: Demo) -> None:
    acl: dict[str, Any] = json.loads((demo.repo / "deploy/waf/web-acl.json").read_text())
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    rate = rules["login-rate-limit"]["Statement"]["RateBasedStatement"]
    assert rate["ScopeDownStatement"]["ByteMatchStatement"]["SearchString"] == "/login"
    assert "Block" in rules["login-rate-limit"]["Action"]
    audit = (demo.repo / "sdlc" / "security-audit.md").read_text()
    (waf,) = [line for line in audit.splitlines() if "WAF/DDoS protection enabled" in line]
    assert waf.startswith("- [x]") and "deploy/waf/web-acl.json" in waf
    assert "deploy/waf/web-acl.json" in audit.split("## Needs a human", 1)[1]


def test_every_ticked_box_points_at_evidence_that_exists(demo: Demo) -> None:
    """Files and tests a ticked box cites are in the repository; an open box is N/A: reason."""
    repo = demo.repo
    audit = (repo / "sdlc" / "security-audit.md").read_text()
    checklist = audit.split("## Checklist", 1)[1].split("\n## ", 1)[0]
    boxes = [line for line in checklist.splitlines() if line.startswith("- [")]
    assert len(boxes) == 29
    tests = "".join(p.read_text() for p in (repo / "tests").glob("test_*.py"))
    for line in boxes:
        if line.startswith("- [ ]"):
            assert "N/A: " in line, line
            continue
        assert line.startswith("- [x] ") and ": " in line, line
        for path in re.findall(r"[\w./-]+/[\w.-]+\.(?:py|json|md)\b", line):
            assert (repo / path).is_file(), (line, path)
        for name in re.findall(r"\b(test_\w+)\b(?!\.)", line):
            assert f"def {name}(" in tests, (line, name)


def test_iteration_4_reproduces_the_ssrf_and_fixes_it_with_a_test(
    demo: Demo, tmp_path: Path
) -> None:
    """A finding from a category the 2017 list lacks (SSRF, OWASP Top 10:2025 A01): shown
    exploitable, fixed, proved by tests that fail on the old code, and ticked."""
    repro = [(out, code) for c, out, code in demo.bash_calls(4) if "/avatar/preview" in c]
    assert [out.split(" ", 1)[0] for out, _ in repro] == ["200", "400"], repro
    assert repro[0][0].startswith("200 root:")  # the host's /etc/passwd, through the app
    audit = (demo.repo / "sdlc" / "security-audit.md").read_text()
    (a01,) = [line for line in audit.splitlines() if "A01 Broken Access Control" in line]
    assert a01.startswith("- [x]") and "SEC-009" in a01
    assert re.search(r"^\| SEC-009 \| high \| app\.py:\d+ \| .*SSRF.* \| fixed \|$", audit, re.M)
    assert "- [x] SEC-009: Stop SSRF" in (demo.repo / "sdlc" / "remediation-tasks.md").read_text()
    # The new tests fail on the code before iteration 4 and pass after it.
    branch = git(demo.repo, "branch", "--show-current")
    old = tmp_path / "before-iteration-4"
    git(demo.repo, "worktree", "add", "-q", "--detach", str(old), f"{branch}~1")
    try:
        (old / "tests" / "test_outbound.py").write_text(
            (demo.repo / "tests" / "test_outbound.py").read_text()
        )
        results = {}
        for name, where in (("before", old), ("after", demo.repo)):
            results[name] = subprocess.run(
                ["python3", "-m", "unittest", "-v", "tests.test_outbound"],
                cwd=where,
                capture_output=True,
                text=True,
                env={"PATH": USER_PATH, "PYTHONDONTWRITEBYTECODE": "1"},
                timeout=120,
                check=False,
            )
    finally:
        git(demo.repo, "worktree", "remove", "--force", str(old))
    assert results["after"].returncode == 0, results["after"].stderr
    before = results["before"].stderr
    assert results["before"].returncode != 0
    for test in (
        "test_internal_urls_are_refused_without_a_request",
        "test_redirects_are_not_followed",
        "test_login_webhook_has_a_timeout_and_cannot_break_login",
    ):
        assert re.search(rf"^{test} .* \.\.\. (FAIL|ERROR)$", before, re.M), before


def test_the_threat_model_names_tests_that_exist(demo: Demo) -> None:
    model = (demo.repo / "sdlc" / "threat-model.md").read_text()
    tests = "".join(p.read_text() for p in (demo.repo / "tests").glob("test_*.py"))
    named = set(re.findall(r"\b(test_\w+)\b", model))
    assert len(named) >= 8
    for name in named:
        assert f"def {name}(" in tests, name


def test_the_closing_hint_runs_as_printed(demo: Demo) -> None:
    """After the README's install ralph is not on PATH: the hint names the full path."""
    (run_id,) = demo.db.execute("SELECT id FROM runs").fetchone()
    hint = f"  {BIN / 'ralph'} show --repo {demo.repo} {run_id} --report"
    assert hint in demo.proc.stdout.splitlines()
    shown = subprocess.run(
        shlex.split(hint),
        capture_output=True,
        text=True,
        env=clean_env(PATH=USER_PATH),
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert run_id in shown.stdout


def test_ralph_command_is_bare_only_when_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = BIN / "ralph"
    monkeypatch.setenv("PATH", USER_PATH)
    assert ralph_command(str(script)) == str(script)
    assert ralph_command(str(BIN / "ralph-loop")) == str(script)  # its sibling
    monkeypatch.setenv("PATH", f"{BIN}:{USER_PATH}")
    assert ralph_command(str(script)) == "ralph"
    spaced = tmp_path / "my venv" / "bin"
    spaced.mkdir(parents=True)
    (spaced / "ralph").write_text("#!/bin/sh\n")
    assert ralph_command(str(spaced / "ralph")) == shlex.quote(str(spaced / "ralph"))
    # python -m ralph: no script beside argv[0]; this interpreter runs the same ralph.
    main = Path(__file__).resolve().parents[1] / "ralph" / "__main__.py"
    assert ralph_command(str(main)) == f"{shlex.quote(sys.executable)} -m ralph"


def test_the_demo_shows_a_simulated_cost_priced_as_the_default_model(demo: Demo) -> None:
    from ralph.demo_run import SESSION
    from ralph.models.script import load_script
    from ralph.settings import DEFAULT_MODEL

    assert load_script(SESSION)[0] == DEFAULT_MODEL  # the session stays priced as the default
    (cost,) = demo.db.execute("SELECT cost_usd FROM runs").fetchone()
    assert cost > 0
    shown = re.search(r"The cost shown, \$(\d+\.\d\d), is simulated", demo.proc.stdout)
    assert shown and float(shown.group(1)) == round(cost, 2), demo.proc.stdout
    assert "cost ?" not in demo.proc.stdout


def test_demo_harden_runs_the_campaign_and_fixes_the_task_the_audit_filed(
    tmp_path: Path,
) -> None:
    """`ralph demo --harden`: the five phases on one branch; the security audit files SEC-004
    and SEC-010, and the remediation run fixes SEC-004 (its verify judged on the commit) with
    a test that fails on the code before the fix, and reports SEC-010 blocked."""
    repo = tmp_path / "demo"
    proc = run_cli(
        ["demo", "--harden", "--dir", str(repo), "--sandbox", "none"],
        cwd=tmp_path,
        command="ralph",
        env=clean_env(PATH=USER_PATH),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "RECORDED session per phase" in out
    for line in [
        "security           completed: promise SECURITY_AUDIT_COMPLETE accepted",
        "reliability        max_iterations: reached --max-iterations 1 without the promise",
        "remediate          completed: all 4 tasks closed (3 done, 1 blocked, 0 deferred; 4 filed",
    ]:
        assert line in out, out
    branch = git(repo, "branch", "--show-current")
    assert branch.startswith("ralph/harden-")
    subjects = git(repo, "log", "--format=%s", f"main..{branch}").splitlines()
    phases = [s.split(":")[0] for s in reversed(subjects)]
    assert phases == ["ralph(security)"] * 4 + [
        "ralph(reliability)", "ralph(observability)", "ralph(incident-response)",
        "ralph(remediate)", "ralph(remediate)",
    ]  # fmt: skip
    tasks = git(repo, "show", f"{branch}:sdlc/remediation-tasks.md")
    assert "- [x] SEC-004: Hash passwords with a slow, salted KDF" in tasks
    assert "- [ ] SEC-010: Install dependencies with hashes (blocked: " in tasks
    # The fix is real: its test fails on the code the audit left, passes on the fix.
    fix = git(repo, "rev-parse", f"{branch}~1")  # remediate's first iteration: SEC-004
    assert "check_password" in git(repo, "show", f"{fix}:app.py")
    assert "sha256" in git(repo, "show", f"{fix}^:app.py")
    before = tmp_path / "before"
    git(repo, "worktree", "add", "-q", "--detach", str(before), f"{fix}^")
    (before / "tests" / "test_passwords.py").write_text(
        git(repo, "show", f"{fix}:tests/test_passwords.py") + "\n"
    )
    for where, expected in ((before, 1), (repo, 0)):
        ran = subprocess.run(
            [sys.executable, "-m", "unittest", "-q", "tests.test_passwords"],
            cwd=where, capture_output=True, text=True,
            env=clean_env(PYTHONDONTWRITEBYTECODE="1"),
        )  # fmt: skip
        assert ran.returncode == expected, ran.stderr
    report = next((repo / ".ralph" / "campaigns").glob("*/report.md")).read_text()
    assert (
        "| SEC-004 | Hash passwords with a slow, salted KDF | done: filed by the campaign's"
        in report
    )
    assert "The hardening document's 40 items:" in report


def test_the_demo_is_paced_in_a_terminal_and_not_when_piped(demo: Demo, tmp_path: Path) -> None:
    """In a terminal each recorded turn takes PACE_S, as a model's would, so the live view can
    be watched; piped (CI, these tests) it runs at full speed."""
    import pty
    import signal
    import time

    from ralph.demo_run import PACE_S, SESSION

    def model_of(db: sqlite3.Connection) -> str:
        return str(db.execute("SELECT model, config FROM runs").fetchone()[1])

    assert f'"model": "script:{SESSION}"' in model_of(demo.db)  # the piped demo: no pace
    repo = tmp_path / "paced"
    main, side = pty.openpty()  # a terminal for its stdout and stderr
    proc = subprocess.Popen(
        [str(BIN / "ralph"), "demo", "--dir", str(repo), "--sandbox", "none"],
        cwd=tmp_path, env=clean_env(PATH=USER_PATH, TERM="xterm", COLUMNS="100"),
        stdin=subprocess.DEVNULL, stdout=side, stderr=side, start_new_session=True,
    )  # fmt: skip
    os.close(side)
    os.set_blocking(main, False)  # drained as it writes; a quiet moment does not block us
    try:
        journal, calls = repo / ".ralph" / "ralph.db", []
        deadline = time.monotonic() + 300  # ends a hang only
        while not calls:
            assert proc.poll() is None and time.monotonic() < deadline
            with contextlib.suppress(OSError):
                os.read(main, 65536)  # keep the terminal drained
            # The file exists before its tables do (the run is creating them): look again.
            if journal.exists():
                with sqlite3.connect(journal) as db, contextlib.suppress(sqlite3.OperationalError):
                    calls = db.execute("SELECT latency_s FROM model_calls").fetchall()
            time.sleep(0.05)
        with sqlite3.connect(journal) as db:
            assert "demo-session.yaml" in model_of(db)
        assert calls[0][0] >= PACE_S  # the first turn took the paced time
    finally:
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                os.read(main, 65536)
            time.sleep(0.05)
        os.close(main)
    assert proc.wait(timeout=60) == 130
