"""The bash tool without a sandbox: exit codes, caps, timeouts, interrupts, environment."""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ralph.tools import bash as bash_module
from ralph.tools.bash import NOTE_ROOM, BashTool, CappedOutput
from ralph.tools.sandbox import make_sandbox
from tests.helpers import HANG, closed_after_test, interrupt_when, wait_for


def bash(
    root: Path, *, timeout: float = 20, cap: int = 2000, env: tuple[str, ...] = ()
) -> BashTool:
    tool = BashTool(make_sandbox("none", root, "on", env), timeout=timeout, output_cap=cap)
    return closed_after_test(tool)


@pytest.fixture
def tool(git_repo: Path) -> Iterator[BashTool]:
    tool = bash(git_repo)
    yield tool
    tool.close()


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie left for a non-reaping init counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_definition_is_anthropics_schema_less_tool(tool: BashTool) -> None:
    assert tool.definition() == {"type": "bash_20250124", "name": "bash"}


def test_runs_in_the_repository_root_with_stderr_merged(tool: BashTool, git_repo: Path) -> None:
    result = tool.run({"command": "pwd; echo to-err >&2; echo to-out"})
    assert result.content == f"{git_repo}\nto-err\nto-out"
    assert (result.exit_code, result.is_error) == (0, False)


def test_non_zero_exit_is_reported_not_raised(tool: BashTool) -> None:
    result = tool.run({"command": "echo failing; exit 3"})
    assert result.content == "failing\n[exit code 3]"
    assert (result.exit_code, result.is_error) == (3, False)
    assert tool.run({"command": "false"}).content == "[exit code 1]"


def test_killed_by_a_signal_is_reported_like_a_shell(tool: BashTool) -> None:
    result = tool.run({"command": "kill -9 $$"})
    assert result.exit_code == 137 and "[exit code 137]" in result.content


def test_empty_output_says_so(tool: BashTool) -> None:
    assert tool.run({"command": "true"}).content == "(no output)"


def test_stdin_is_dev_null(tool: BashTool) -> None:
    # A read from anything but /dev/null would block until the 20 s timeout, not say rc=1.
    result = tool.run({"command": "read answer; echo rc=$?"})
    assert result.content == "rc=1"


def test_working_directory_carries_over_and_resets(tool: BashTool, git_repo: Path) -> None:
    (git_repo / "sub" / "inner").mkdir(parents=True)
    tool.run({"command": "cd sub"})
    assert tool.run({"command": "cd inner && pwd"}).content == f"{git_repo}/sub/inner"
    assert tool.run({"command": "pwd; exit 4"}).content == f"{git_repo}/sub/inner\n[exit code 4]"
    assert tool.run({"command": "pwd", "restart": True}).content == str(git_repo)
    tool.run({"command": "cd sub/inner"})
    tool.close()
    assert tool.run({"command": "pwd"}).content == str(git_repo)


def test_a_removed_working_directory_falls_back_to_the_root(tool: BashTool, git_repo: Path) -> None:
    (git_repo / "tmpdir").mkdir()
    tool.run({"command": "cd tmpdir"})
    (git_repo / "tmpdir").rmdir()
    assert tool.run({"command": "pwd"}).content == str(git_repo)


def test_restart_alone_and_malformed_input(tool: BashTool) -> None:
    assert "restarted" in tool.run({"restart": True}).content
    for bad in ({}, {"command": ""}, {"command": 5}, {"restart": "yes"}):
        result = tool.run(bad)
        assert result.is_error and '"command"' in result.content


def test_output_cap_keeps_head_and_tail_with_a_marker(tool: BashTool) -> None:
    script = "print('HEAD-START'); print('m' * 50000); print('TAIL-END')"
    result = tool.run({"command": f'{sys.executable} -c "{script}"'})
    total = len("HEAD-START\n") + 50001 + len("TAIL-END\n")
    assert result.content.startswith("HEAD-START\nmmm")
    assert result.content.endswith("mmm\nTAIL-END")
    assert f"{total - 2000 + NOTE_ROOM} bytes cut" in result.content
    assert f"was {total} bytes" in result.content
    assert len(result.content.encode()) <= 2000


def test_output_under_the_cap_is_untouched(tool: BashTool) -> None:
    result = tool.run({"command": "printf 'a%.0s' $(seq 2000)"})
    assert result.content == "a" * 2000


def test_binary_output_is_described_not_shown(tool: BashTool) -> None:
    result = tool.run({"command": "head -c 5000 /dev/urandom; exit 3"})
    assert result.content.startswith("[binary output: 5000 bytes, not shown")
    assert result.content.endswith("[exit code 3]")
    assert result.exit_code == 3


def test_invalid_utf8_in_text_is_dropped_and_stays_within_the_cap(tool: BashTool) -> None:
    # Mostly text with a stray Latin-1 byte per line: still text, but each bad byte would
    # become a three-byte U+FFFD and push the result past the cap.
    script = "import sys; sys.stdout.buffer.write(b'caf\\xe9 ok\\n' * 5000); sys.exit(1)"
    result = tool.run({"command": f'{sys.executable} -c "{script}"'})
    assert "\ufffd" not in result.content
    assert result.content.startswith("caf ok\ncaf ok\n")
    assert result.content.endswith("caf ok\n\n[exit code 1]") or result.content.endswith(
        "caf ok\n[exit code 1]"
    )
    assert len(result.content.encode()) <= 2000


def test_100_mb_of_output_stays_bounded(git_repo: Path) -> None:
    tool = bash(git_repo, cap=30_000)
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = tool.run({"command": "head -c 100000000 /dev/zero | tr '\\0' x; echo; echo LAST"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < HANG  # a bound for a hang, not a speed test
    assert "was 100000006 bytes" in result.content
    assert result.content.startswith("xxx") and result.content.endswith("xxx\nLAST")
    assert f"{99_970_006 + NOTE_ROOM} bytes cut" in result.content
    assert len(result.content.encode()) <= 30_000
    assert peak < 5_000_000, f"peak Python memory {peak} bytes"


def test_capped_output_memory_is_bounded() -> None:
    out = CappedOutput(1000)
    for _ in range(10_000):
        out.feed(b"y" * 4096)
        assert len(out.head) + len(out.tail) <= 500 + 2 * 500 + 4096
    assert out.total == 40_960_000 and len(out.text()) < 1300


class PassesWhen:
    """`time` for ralph.tools.bash whose clock jumps a day ahead once `ready()`: a command's
    deadline passes when the test's event has happened, however long the start took."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready
        self.based = False

    def monotonic(self) -> float:
        now = time.monotonic()
        if not self.based:  # the first reading sets the deadline: never a day ahead (when the
            self.based = True  # command was quick to be ready, the deadline went with it)
            return now
        return now + (86_400.0 if self.ready() else 0.0)


def test_timeout_kills_the_whole_process_group(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deadline passes once the command has started its background processes (their pids
    # written), not after a fixed time a loaded machine may need just to start bash.
    pids = [git_repo / "bg.pid", git_repo / "sub.pid"]
    monkeypatch.setattr(bash_module, "time", PassesWhen(lambda: all(p.exists() for p in pids)))
    tool = bash(git_repo, timeout=HANG)
    result = tool.run(
        {"command": "sleep 600 & echo $! > bg.tmp; (sleep 600; touch late.txt) & echo $! > sub.tmp; "
                    "mv bg.tmp bg.pid; mv sub.tmp sub.pid; sleep 600"}
    )  # fmt: skip
    assert result.is_error and result.exit_code == 124
    assert f"timed out after {HANG:g} s" in result.content and "process group" in result.content
    for name in ("bg.pid", "sub.pid"):
        pid = int((git_repo / name).read_text())
        wait_for(lambda: gone(pid), f"the background process of {name} to die")  # noqa: B023


def test_background_processes_do_not_outlive_their_command(tool: BashTool, git_repo: Path) -> None:
    started = time.monotonic()
    result = tool.run({"command": "sleep 600 & echo $! > bg.pid; echo started"})
    # Not the 600 s of the background sleep, nor the tool's 20 s timeout (a timeout would say
    # so): a bound far above what a loaded machine takes.
    assert result.content == "started" and time.monotonic() - started < HANG
    pid = int((git_repo / "bg.pid").read_text())
    wait_for(lambda: gone(pid), "the background sleep to die")


def test_interrupt_while_waiting_kills_the_group_then_propagates(git_repo: Path) -> None:
    pidfile = git_repo / "bg.pid"
    tool = bash(git_repo, timeout=3600)
    took = interrupt_when(
        pidfile.exists,
        lambda: tool.run({"command": "sleep 3600 & echo $! > bg.tmp && mv bg.tmp bg.pid; wait"}),
    )
    assert took < HANG  # not the 3600 s timeout or sleep: a bound a loaded machine keeps
    pid = int(pidfile.read_text())
    wait_for(lambda: gone(pid), "the background sleep to die")


def test_runner_secrets_do_not_reach_the_agent(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-api03-fake-anthropic-key-000000",
        "GITHUB_TOKEN": "ghs_fakefakefakefakefakefakefakefake0000",
        "AWS_SECRET_ACCESS_KEY": "fake/aws/secret/access/key/000000",
        "MY_SERVICE_SECRET": "fake-service-secret-000",
        "NPM_TOKEN": "npm_fake_token_0000000",
        "RALPH_NOT_PASSED": "not-passed-value",
        "RALPH_PASSED": "passed-value",
        "LANG": "C.UTF-8",
        "TZ": "Europe/Paris",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(git_repo.parent / "user-home"))
    tool = bash(git_repo, env=("RALPH_PASSED", "NOT_RALPH"))
    try:
        result = tool.run({"command": "env; touch ~/written && echo home-ok"})
        home = tool.run({"command": "echo $HOME"}).content
    finally:
        tool.close()
    names = {line.split("=", 1)[0] for line in result.content.splitlines() if "=" in line}
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "NPM_TOKEN"):
        assert name not in names
    assert not any(value in result.content for value in secrets.values() if "fake" in value)
    assert "[REDACTED]" not in result.content  # absent, not merely masked
    assert "RALPH_PASSED=passed-value" in result.content and "RALPH_NOT_PASSED" not in names
    assert {"PATH", "HOME", "LANG", "TZ"} <= names
    assert names <= {"PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ", "RALPH_PASSED"} | {
        "GIT_TERMINAL_PROMPT",
        "PAGER",
        "GIT_PAGER",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
    }
    assert "home-ok" in result.content
    assert home != str(git_repo.parent / "user-home") and "ralph-home-" in home
    assert not Path(home).exists(), "the private HOME is removed when the tool closes"
    assert os.environ["ANTHROPIC_API_KEY"].startswith("sk-ant-")  # the runner keeps its own


def test_runner_secret_values_in_output_are_redacted(
    tool: BashTool, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "runner-secret-value-42")
    (git_repo / "config.ini").write_text("token=runner-secret-value-42\naws=AKIAIOSFODNN7EXAMPLE\n")
    content = tool.run({"command": "cat config.ini"}).content
    assert content == "token=[REDACTED]\naws=AKIAIOSFODNN7EXAMPLE"


# Writes 200 MB to every descriptor the shell has beyond stdin, stdout and stderr, whatever
# its number (the red team's `head -c 3G /dev/zero >&6` hit the runner's cwd report file).
FLOOD_EVERY_FD = (
    'for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] 2>/dev/null || continue; '
    'head -c 200000000 /dev/zero >&"$n" 2>/dev/null; echo "flooded $n"; done; cd sub'
)


def flood_peak(tool: BashTool) -> tuple[str, int]:
    """What the flood command printed, and the runner's peak Python memory while it ran."""
    tracemalloc.start()
    try:
        result = tool.run({"command": FLOOD_EVERY_FD})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result.content, peak


def test_writing_to_any_inherited_descriptor_does_not_grow_the_runner(
    tool: BashTool, git_repo: Path
) -> None:
    (git_repo / "sub").mkdir()
    output, peak = flood_peak(tool)
    assert "flooded" in output  # the report descriptor was there to be flooded
    assert peak < 5_000_000, f"peak Python memory {peak} bytes"
    assert tool.cwd == git_repo / "sub"  # the final directory is still reported


# Processes that leave the command's session: `setsid -f`, and a double fork through a
# subshell that exits at once (its orphan goes to init, or to a subreaper). Each holds an
# exclusive lock on its file for as long as it lives.
ESCAPES = {
    "setsid.lock": "setsid -f flock setsid.lock sleep 300",
    "double.lock": "(setsid sh -c 'flock double.lock sleep 300 &' &)",
    "nohup.lock": "nohup setsid flock nohup.lock sleep 300 >/dev/null 2>&1 &",
}


def lock_released(path: Path, wait: float = HANG) -> bool:
    """Whether the lock on `path` is free within `wait` seconds (its holder died)."""
    import fcntl

    deadline = time.monotonic() + wait
    with path.open("a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)


def assert_no_process_outlives_its_command(tool: BashTool, root: Path) -> None:
    held = " && ".join(f"! flock -n {name} true" for name in ESCAPES)
    # The command ends once every holder has its lock (the script's text never says
    # "all-held": only the echo does).
    wait = f"for i in $(seq 200); do {held} && break; sleep 0.05; done\n{held} && echo all-'held'"
    result = tool.run({"command": "\n".join([*ESCAPES.values(), wait])})
    assert result.content == "all-held", result.content
    for name in ESCAPES:
        assert lock_released(root / name), f"{ESCAPES[name]} outlived its command"


def test_no_process_outlives_its_command_even_in_a_session_of_its_own(
    tool: BashTool, git_repo: Path
) -> None:
    assert_no_process_outlives_its_command(tool, git_repo)
