"""Notifications: a local webhook server receives the end-of-run and guard messages in the
Slack, Discord and generic shapes; failures are bounded, reported and never raised."""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ralph.events import Bus, Recorder
from ralph.views import notify


class Hooks:
    """A loopback webhook server: records every request; /fail/N fails N times first."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.failures: dict[str, int] = {}
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                hooks.requests.append(("POST", self.path, json.loads(body or b"null")))
                if self.path.startswith("/moved"):
                    self.send_response(301)
                    self.send_header("location", "/slack")
                    self.end_headers()
                    return
                if self.path.startswith("/gone"):
                    self.send_response(404)
                    self.end_headers()
                    return
                left = hooks.failures.get(self.path, 0)
                if left:
                    hooks.failures[self.path] = left - 1
                    self.send_response(503)
                    self.end_headers()
                    return
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self) -> None:
                hooks.requests.append(("GET", self.path, None))
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def bodies(self, path: str) -> list[Any]:
        return [body for method, p, body in self.requests if p == path and method == "POST"]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    server = Hooks()
    yield server
    server.server.shutdown()
    server.server.server_close()


def run_events(notifier: notify.Notifier, bus: Bus, *, pr: bool = False) -> None:
    bus.observers.append(notifier)
    bus.emit("run_started", prompt_name="security", repo="/srv/app", branch="ralph/security-1")
    bus.iteration = 2
    bus.emit(
        "guard_tripped", level="warning", guard="stall", message="no file changed in 3 iterations"
    )
    bus.iteration = None
    bus.emit("run_ended", status="stalled", exit_code=5, reason="no progress", iterations=2,
             usage={"input_tokens": 10}, cost_usd=0.0123, duration_s=3.2, resume=None)  # fmt: skip
    if pr:
        bus.emit("pull_request", url="https://github.example/o/r/pull/7", number=7, created=True)
    bus.close()


def make(targets: list[str], bus: Bus, **kw: Any) -> notify.Notifier:
    return notify.Notifier(targets, emit=bus.emit, sender=notify.Sender(sleep=lambda s: None), **kw)


def test_generic_slack_and_discord_shapes_reach_the_server(hooks: Hooks) -> None:
    recorder = Recorder()
    bus = Bus("20261206-010203-abcd", [recorder])
    targets = [f"{hooks.url}/generic", f"slack:{hooks.url}/slack", f"discord:{hooks.url}/discord"]
    run_events(make(targets, bus, report="/srv/app/.ralph/runs/x/report.md"), bus)
    generic = hooks.bodies("/generic")
    assert [b["event"] for b in generic] == ["guard_tripped", "run_ended"]
    end = generic[1]
    assert end["schema"] == "ralph.notification/1"
    assert end["run_id"] == "20261206-010203-abcd" and end["status"] == "stalled"
    assert end["iterations"] == 2 and end["cost_usd"] == 0.0123 and end["exit_code"] == 5
    assert end["branch"] == "ralph/security-1" and end["report"].endswith("report.md")
    assert generic[0]["guard"] == "stall" and generic[0]["iteration"] == 2
    assert end["pr_url"] is None  # no --pr: the key is there, empty
    slack = hooks.bodies("/slack")
    assert set(slack[1]) == {"text"}
    assert "stalled" in slack[1]["text"] and "$0.01" in slack[1]["text"]
    assert "branch: ralph/security-1" in slack[1]["text"]
    discord = hooks.bodies("/discord")
    assert discord[1]["allowed_mentions"] == {"parse": []}
    assert "stalled" in discord[1]["content"]
    assert not recorder.named("notification_failed")


def test_the_end_message_waits_for_the_pull_request_link(hooks: Hooks) -> None:
    bus = Bus("r1", [])
    run_events(make([f"{hooks.url}/generic"], bus, expect_pr=True), bus, pr=True)
    end = hooks.bodies("/generic")[-1]
    assert end["event"] == "run_ended" and end["pr_url"] == "https://github.example/o/r/pull/7"


def test_transient_failures_are_retried_and_permanent_ones_are_not(hooks: Hooks) -> None:
    hooks.failures["/flaky"] = 2
    recorder = Recorder()
    bus = Bus("r1", [recorder])
    run_events(make([f"{hooks.url}/flaky", f"{hooks.url}/gone/secret-token"], bus), bus)
    # Guard message: two 503s then 200; end message: 200 at once.
    assert len(hooks.bodies("/flaky")) == 4
    # A 404 is permanent: one request per message, then a warning that hides the URL's path.
    assert len(hooks.bodies("/gone/secret-token")) == 2
    failed = recorder.named("notification_failed")
    assert len(failed) == 2
    assert all("secret-token" not in json.dumps(e.data) for e in failed)
    assert (
        failed[0].data["target"] == "http://127.0.0.1/…" and "HTTP 404" in failed[0].data["message"]
    )


def test_a_redirect_is_not_followed_and_a_dead_server_does_not_raise(hooks: Hooks) -> None:
    recorder = Recorder()
    bus = Bus("r1", [recorder])
    run_events(make([f"{hooks.url}/moved", "http://127.0.0.1:9/closed"], bus), bus)
    assert not [r for r in hooks.requests if r[0] == "GET"]  # the POST never became a GET
    assert not hooks.bodies("/slack")
    assert len(hooks.bodies("/moved")) == 2  # one try per message: a redirect is permanent
    failed = recorder.named("notification_failed")
    assert len(failed) == 4 and "HTTP 301" in failed[0].data["message"]
    assert recorder.named("run_ended")  # the run's own events all went through


def test_a_command_target_gets_the_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')"
    target = "cmd:" + shlex.join([sys.executable, "-c", script])
    recorder = Recorder()
    bus = Bus("r1", [recorder])
    run_events(make([target, "cmd:/nonexistent/notifier"], bus), bus)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["event"] for g in got] == ["guard_tripped", "run_ended"]
    failed = recorder.named("notification_failed")
    assert failed and all(f.data["target"] == "cmd:notifier" for f in failed)
    assert "not found" in failed[0].data["message"]


def test_chat_shapes_never_ping_anyone() -> None:
    payload = {"event": "run_ended", "run_id": "r", "status": "completed", "iterations": 1,
               "cost_usd": None, "reason": "promise <!channel> @here accepted"}  # fmt: skip
    slack = notify.body_for("slack", payload)["text"]
    assert "<!channel>" not in slack and "@here" not in slack and "cost unknown" not in slack
    assert "unknown" in slack


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("https://hooks.slack.com/services/T/B/X", "slack"),
        ("https://discord.com/api/webhooks/1/abc", "discord"),
        ("https://example.com/hook", "json"),
        ("slack:http://127.0.0.1:8065/hooks/x", "slack"),
        ("cmd:notify-send ralph", "command"),
    ],
)
def test_kind_of_and_description_hide_the_secret_part(target: str, kind: str) -> None:
    assert notify.kind_of(target) == kind
    assert notify.check_target(target) is None
    shown = notify.describe_target(target)
    assert "services" not in shown and "abc" not in shown and "hooks/x" not in shown


@pytest.mark.parametrize("target", ["ftp://x/y", "hooks.slack.com/x", "cmd:", "cmd:'unclosed"])
def test_bad_targets_are_named(target: str) -> None:
    assert notify.check_target(target)


def test_a_run_notifies_its_guard_and_end_and_a_dead_hook_changes_nothing(
    hooks: Hooks, tmp_path: Path
) -> None:
    from tests.helpers import clean_env, make_repo, run_cli, write_script

    repo = make_repo(tmp_path / "repo")
    script = write_script(tmp_path / "s.yaml", [["Looked around; nothing to change yet."]])
    secret_path = "/slack/T0000/B0000/XXXXSECRETXXXX"
    run = run_cli(
        ["Harden it. <promise>DONE</promise>", "--model", f"script:{script}",
         "--sandbox", "none", "--max-iterations", "3", "--stall-limit", "1",
         "--notify", f"slack:{hooks.url}{secret_path}",
         "--notify", f"{hooks.url}/generic", "--notify", f"{hooks.url}/gone"],
        cwd=repo, env=clean_env(),
    )  # fmt: skip
    assert run.returncode == 5, run.stderr  # stalled, whatever the dead hook said
    generic = hooks.bodies("/generic")
    assert [b["event"] for b in generic] == ["guard_tripped", "run_ended"]
    assert generic[1]["status"] == "stalled" and generic[1]["exit_code"] == 5
    assert generic[1]["branch"].startswith("ralph/") and generic[1]["report"].endswith("report.md")
    assert "stalled" in hooks.bodies(secret_path)[1]["text"]
    assert "could not notify http://127.0.0.1/…: HTTP 404" in run.stderr
    # The URLs are secrets: neither the journal nor the report holds them.
    ralph_dir = repo / ".ralph"
    for path in ralph_dir.rglob("*"):
        if path.is_file():
            assert b"XXXXSECRETXXXX" not in path.read_bytes(), path
    report = run_cli(["show", "--report"], cwd=repo, command="ralph").stdout
    assert "could not notify" in report


def test_a_notify_target_in_ralph_yaml_is_refused(tmp_path: Path) -> None:
    from tests.helpers import clean_env, make_repo, run_cli

    repo = make_repo(
        tmp_path / "repo", {"ralph.yaml": "notify: [http://127.0.0.1:9/x]\n", "README.md": "x\n"}
    )
    run = run_cli(["Harden. <promise>DONE</promise>", "--dry-run"], cwd=repo, env=clean_env())
    assert run.returncode == 2 and "notify" in run.stderr and "RALPH_NOTIFY" in run.stderr


def test_a_usage_limit_wait_is_told_as_it_happens(hooks: Hooks) -> None:
    bus = Bus("r1", [])
    notifier = make([f"{hooks.url}/generic", f"discord:{hooks.url}/discord"], bus)
    bus.observers.append(notifier)
    bus.emit("run_started", prompt_name="security", branch="ralph/x")
    bus.iteration = 3
    # As ralph/agents/limits.py emits it while an agent CLI waits for its limit to reset.
    bus.emit("usage_limit_wait", level="warning", agent="claude-code",
             reason="claude-code usage limit", until="04:00 UTC", wait_s=3600.0)  # fmt: skip
    [wait] = hooks.bodies("/generic")  # sent at once, not at the end of the run
    assert wait["event"] == "usage_limit_wait" and wait["iteration"] == 3
    assert wait["until"] == "04:00 UTC" and wait["reason"] == "claude-code usage limit"
    assert "waiting for a usage limit" in hooks.bodies("/discord")[0]["content"]
