"""Start and exit of the real CLI: the SDK is imported in a background thread during the
run's set-up, a Ctrl-C then still ends the run with 130, and the fast exit (os._exit, no
interpreter teardown) leaves the journal, report, summary and JSON log complete."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakeapi import FakeAPI, Message
from tests.helpers import BIN, HANG, clean_env, only_run, repo_and_prompt, write_script

KEY = "sk-ant-api03-start-exit-test-key-000000"
PROMPT = "Harden this repository. When all is done, output <promise>DONE</promise>.\n"

# Loaded by the CLI's interpreter through PYTHONPATH: holds the `anthropic` import (in
# whichever thread makes it) and the main thread's import of ralph.views.report (made during the
# run's set-up, after git and the journal) until HOLD_DIR/go exists, and says where each is.
HOLD = """
import importlib.machinery, os, sys, threading, time
DIR = os.environ["HOLD_DIR"]
HOLD = {"anthropic": "sdk", "ralph.views.report": "setup"}

class Held:
    # Holds the module's execution (its own lock, not the global import lock that
    # find_spec runs under, which would hold every import in the process).
    def __init__(self, real, mark):
        self.real, self.mark = real, mark
    def create_module(self, spec):
        return self.real.create_module(spec)
    def exec_module(self, module):
        with open(os.path.join(DIR, self.mark + ".tmp"), "w") as f:
            f.write(threading.current_thread().name)
        os.replace(os.path.join(DIR, self.mark + ".tmp"), os.path.join(DIR, self.mark))
        deadline = time.monotonic() + 300
        while not os.path.exists(os.path.join(DIR, "go")) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.real.exec_module(module)

class Hold:
    def find_spec(self, name, path=None, target=None):
        mark = HOLD.pop(name, None)
        if mark is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = Held(spec.loader, mark)
        return spec

sys.meta_path.insert(0, Hold())
"""


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ralph-loop ended early ({proc.returncode}):\n{out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {path.name}"
        time.sleep(0.02)
    return path.read_text()


def test_sigint_during_set_up_while_the_sdk_imports_in_the_background(tmp_path: Path) -> None:
    repo, prompt = repo_and_prompt(tmp_path, PROMPT)
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "sitecustomize.py").write_text(HOLD)
    with FakeAPI(api_key=KEY) as api:
        api.add(Message("Done. <promise>DONE</promise>"))
        env = clean_env(
            ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY=KEY, PYTHONPATH=str(hold),
            HOLD_DIR=str(hold),
        )  # fmt: skip
        argv = [str(BIN / "ralph-loop"), str(prompt), "--sandbox", "none"]
        # As from a terminal: SIGINT not ignored, even where the tests were started in the
        # background of a shell without job control (which ignores it, and exec keeps that).
        proc = subprocess.Popen(
            argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            # The SDK's import started off the main thread, and the main thread is still
            # setting the run up: both are held there while the signal arrives.
            assert wait_for(hold / "sdk", proc) == "ralph-sdk-import"
            assert wait_for(hold / "setup", proc) == "MainThread"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=HANG)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert not api.requests  # it never got as far as the model
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err, err
    assert not (hold / "go").exists()  # it ended with the SDK's import still held


@pytest.mark.parametrize("late_signal", [False, True], ids=["quiet-end", "SIGINT-at-the-very-end"])
def test_the_fast_exit_leaves_journal_report_summary_and_json_log_complete(
    tmp_path: Path, late_signal: bool
) -> None:
    repo, prompt = repo_and_prompt(tmp_path, PROMPT)
    script = write_script(
        tmp_path / "s.yaml",
        [
            [{"text": "Working.", "tools": [{"bash": {"command": "echo x > a.txt"}}]}, "Done a."],
            ["Done. <promise>DONE</promise>"],
        ],
    )
    # stdout and stderr are pipes, so block-buffered: whatever the process has not flushed
    # when it leaves by os._exit is lost, which is what this checks does not happen.
    argv = [str(BIN / "ralph-loop"), str(prompt), "--model", f"script:{script}"]
    argv += ["--sandbox", "none", "--log-format", "json"]
    if late_signal:  # the end-of-run notification (sent as the run closes) Ctrl-Cs ralph
        argv += ["--notify", f"cmd:sh -c 'kill -INT $PPID && touch {tmp_path}/sent'"]
    proc = subprocess.run(
        argv, cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "sent").exists() == late_signal
    lines = proc.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line whole, the last one too
    assert [r["event"] for r in records if r["event"] == "run_ended"] == ["run_ended"]
    run = only_run(repo)
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert [it["number"] for it in run["iterations_detail"]] == [1, 2]
    report = repo / ".ralph" / "runs" / run["id"] / "report.md"
    assert run["id"] in report.read_text()
    # The summary, its last line too, reached the pipe.
    assert str(report) in proc.stdout
    assert proc.stdout.endswith("\n") and "git log --stat" in proc.stdout.splitlines()[-1]
