"""`ralph fleet` without a Temporal server: the fleet file, the missing extra, secrets kept
out of workflow inputs, and the pull request's description."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from ralph.errors import UsageError
from ralph.fleet.spec import load_fleet
from tests.helpers import clean_env, run_cli


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_fleet_file_with_defaults_per_repository_settings_and_prompt_files(tmp_path: Path) -> None:
    (tmp_path / "audit.md").write_text("Audit the code. <promise>AUDITED</promise>\n")
    job = load_fleet(
        write(
            tmp_path,
            {
                "max_cost": 25,
                "prompt": "security",
                "settings": {"max_iterations": 8, "max-cost": 5},
                "temporal": {"heartbeat": 30, "attempts": 2, "task_queue": "night"},
                "repositories": [
                    "https://github.com/octo/app.git",
                    {"url": "git@github.com:octo/api.git", "prompt": "audit.md",
                     "settings": {"max_iterations": 2}, "base": "develop", "pr": False},
                ],
            },
        )
    )  # fmt: skip
    assert job.fleet == "nightly" and job.max_cost == 25.0 and job.task_queue == "night"
    assert job.timing.heartbeat_s == 30 and job.timing.attempts == 2
    app, api = job.repos
    assert (app.name, app.prompt, app.prompt_name, app.base) == (
        "app",
        "security",
        "security",
        None,
    )
    assert app.settings == {"max_iterations": 8, "max_cost": 5} and app.pr
    # A prompt file is sent as its text: the workers do not have the submitter's files.
    assert api.prompt.startswith("Audit the code.") and api.prompt_name == "audit"
    assert api.settings == {"max_iterations": 2, "max_cost": 5}
    assert (api.base, api.pr) == ("develop", False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"repositories": []}, "repositories: list at least one repository"),
        ({"prompt": "x <promise>D</promise>", "repositories": ["https://x:ghp_secret@github.com/o/r"]},
         "carries a credential"),
        ({"prompt": "x <promise>D</promise>", "repositories": ["https://ghp_secret@github.com/o/r"]},
         "carries a user name"),
        ({"prompt": "security", "settings": {"notify": ["https://hooks.example/T0KEN"]},
          "repositories": ["https://github.com/o/r"]}, "notification targets are secrets"),
        ({"prompt": "security", "settings": {"max_iterations": "many"},
          "repositories": ["https://github.com/o/r"]}, "max_iterations"),
        ({"prompt": "security", "settings": {"colour": 1}, "repositories": ["https://github.com/o/r"]},
         "unknown setting 'colour'"),
        ({"prompt": "security", "repositories": ["https://github.com/o/r", "https://gitlab.com/p/r"]},
         "two repositories are named 'r'"),
        ({"prompt": "security", "max_cost": 0, "repositories": ["https://github.com/o/r"]},
         "max_cost: 0 is not an amount"),
        ({"repositories": ["https://github.com/o/r"]}, "prompt: give"),
        ({"prompt": "security", "branches": 1, "repositories": ["https://github.com/o/r"]},
         "unknown key 'branches'"),
    ],
)  # fmt: skip
def test_bad_fleet_files_are_refused_naming_the_problem(
    tmp_path: Path, data: object, message: str
) -> None:
    with pytest.raises(UsageError, match=r"nightly\.yaml") as err:
        load_fleet(write(tmp_path, data))
    assert message in err.value.message


def test_submit_with_a_bad_fleet_file_is_exit_2_before_any_connection(tmp_path: Path) -> None:
    path = write(tmp_path, {"prompt": "security", "repositories": ["https://u:p@github.com/o/r"]})
    # Port 1: nothing listens there; the file is refused before Temporal is looked for.
    proc = run_cli(["fleet", "submit", str(path), "--address", "127.0.0.1:1"], cwd=tmp_path,
                   command="ralph")  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("ralph: error: ") and "carries a credential" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_without_the_extra_a_fleet_command_says_how_to_install_it(tmp_path: Path) -> None:
    # A directory that shadows temporalio with nothing importable: as if it were not installed.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'temporalio' or name.startswith('temporalio.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = clean_env(PYTHONPATH=str(hide))
    proc = run_cli(["fleet", "status"], cwd=tmp_path, command="ralph", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "ralph: error: the fleet commands need the Temporal SDK, which is not installed: "
        "pip install 'ralph-hardening[fleet]'\n"
    )


def test_ralph_loop_and_ralph_do_not_import_temporal_at_start_up() -> None:
    import subprocess

    code = "import ralph.cli, sys; print(any(m.startswith('temporalio') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_campaign_entry_needs_no_prompt_and_refuses_one(tmp_path: Path) -> None:
    job = load_fleet(
        write(
            tmp_path,
            {
                "prompt": "security",
                "repositories": [
                    {"url": "https://github.com/o/web", "campaign": True,
                     "settings": {"phases": ["security", "remediate"]}},
                    "https://github.com/o/api",
                ],
            },
        )
    )  # fmt: skip
    web, api = job.repos
    assert (web.campaign, web.prompt_name, web.settings) == (
        True,
        "harden",
        {"phases": ["security", "remediate"]},
    )
    assert (api.campaign, api.prompt) == (False, "security")
    both = {"repositories": [{"url": "https://github.com/o/r", "campaign": True, "prompt": "x"}]}
    with pytest.raises(UsageError, match="not both"):
        load_fleet(write(tmp_path, both))
    bad = {"repositories": [{"url": "https://github.com/o/r", "campaign": "yes"}]}
    with pytest.raises(UsageError, match="campaign: 'yes' is not true or false"):
        load_fleet(write(tmp_path, bad))
