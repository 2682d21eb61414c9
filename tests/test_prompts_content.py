"""The built-in hardening prompts: front matter, the one promise, gate artifacts, skeletons,
and coverage of every item of the hardening checklists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ralph.run.gate import check_artifact, heading_matches, parse_artifacts, unchecked_items
from ralph.run.prompt import BUILTIN_DIR, builtin_names, load_prompt, split_front_matter
from tests.helpers import HANG

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed" / "hardening-mode.md"

# name -> (completion token, max_iterations, progress file)
PROMPTS: dict[str, tuple[str, int, str]] = {
    "security": ("SECURITY_AUDIT_COMPLETE", 30, "sdlc/security-audit.md"),
    "observability": ("OBSERVABILITY_COMPLETE", 30, "sdlc/observability.md"),
    "incident-response": ("INCIDENT_RESPONSE_READY", 25, "sdlc/incident-response.md"),
    "reliability": ("RELIABILITY_COMPLETE", 30, "sdlc/reliability.md"),
}

# The four checklists of the seed document ../shared/seed/hardening-mode.md, section
# "Hardening Checklist", copied verbatim (tests must not depend on files outside the repo).
# Each item: (item, the prompt that covers it, a keyword that must appear in that prompt's
# progress-file Checklist, so the completion gate enforces it).
CHECKLISTS: dict[str, list[tuple[str, str, str]]] = {
    "Security Hardening": [
        ("Penetration test completed", "security", "Penetration test"),
        ("OWASP Top 10 addressed", "security", "OWASP Top 10"),
        ("Dependency vulnerabilities patched", "security", "Dependency vulnerabilities"),
        ("Secrets rotated and vaulted", "security", "Secrets rotated"),
        ("WAF/DDoS protection enabled", "security", "WAF/DDoS"),
        ("Security headers configured", "security", "Security headers"),
        ("Input validation comprehensive", "security", "Input validation"),
        ("Output encoding in place", "security", "Output encoding"),
        ("CORS properly configured", "security", "CORS"),
        ("Rate limiting implemented", "security", "Rate limiting"),
    ],
    "Reliability Hardening": [
        ("99.9% uptime architecture designed", "reliability", "99.9% uptime"),
        ("Auto-scaling configured", "reliability", "Auto-scaling"),
        ("Database failover tested", "reliability", "Database failover"),
        ("Backup/restore verified", "reliability", "Backup/restore"),
        ("Disaster recovery plan documented", "reliability", "Disaster recovery plan"),
        ("Load testing completed", "reliability", "Load testing"),
        ("Circuit breakers implemented", "reliability", "Circuit breakers"),
        ("Graceful degradation planned", "reliability", "Graceful degradation"),
        ("Health checks comprehensive", "reliability", "Health checks"),
        ("Connection pooling optimized", "reliability", "Connection pooling"),
    ],
    "Observability Hardening": [
        ("APM with distributed tracing", "observability", "distributed tracing"),
        ("Structured logging (JSON)", "observability", "Structured logging (JSON)"),
        ("Log aggregation configured", "observability", "Log aggregation"),
        ("Error tracking (Sentry, etc.)", "observability", "Error tracking"),
        ("Real user monitoring", "observability", "Real user monitoring"),
        ("Synthetic monitoring", "observability", "Synthetic monitoring"),
        ("Custom dashboards created", "observability", "dashboards"),
        ("SLOs/SLAs defined", "observability", "SLOs/SLAs"),
        ("Alerting rules comprehensive", "observability", "Alerting rules"),
        ("On-call rotation established", "incident-response", "On-call rotation"),
    ],
    "Operational Hardening": [
        ("Runbooks for all critical paths", "incident-response", "all critical paths"),
        ("Incident response plan tested", "incident-response", "plan tested"),
        ("Post-mortem process defined", "incident-response", "Post-mortem process"),
        ("Change management documented", "reliability", "Change management"),
        ("Rollback procedures verified", "reliability", "Rollback procedures"),
        ("Communication plan ready", "incident-response", "Communication plan"),
        ("Status page configured", "incident-response", "Status page"),
        ("Documentation complete", "reliability", "Documentation complete"),
        ("Team trained", "incident-response", "Team trained"),
        ("Compliance verified (if applicable)", "incident-response", "Compliance verified"),
    ],
}

# The steps of the seed's three loops (and the reliability prompt's own), as phrases each
# prompt body must mention (case-insensitive).
LOOP_STEPS: dict[str, list[str]] = {
    "security": [
        "scanners",
        "Injection",
        "Broken authentication",
        "Sensitive data exposure",
        "XML external entities",
        "Broken access control",
        "Security misconfiguration",
        "XSS",
        "Insecure deserialization",
        "known vulnerabilities",
        "Insufficient logging",
        "pip-audit",
        "npm audit",
        "bandit",
        "semgrep",
        "gitleaks",
        "Update vulnerable packages",
        "Security headers",
        "CORS",
        "Rate limiting",
        "Input validation",
        "sdlc/security-audit.md",
        "Taskmaster",
        "OWASP Top 10:2025",
        "SSRF",
        "169.254.169.254",
        "lockfiles",
        "full commit SHA",
        "curl | sh",
        "provenance",
        "threat model",
        "fail closed",
    ],
    "observability": [
        "/health",
        "liveness",
        "/ready",
        "readiness",
        "checks each dependency",
        "Structured JSON",
        "correlation id",
        "Levels set by an environment variable",
        "Log aggregation",
        "Application metrics",
        "Business metrics",
        "Infrastructure metrics",
        "threshold",
        "notification channel",
        "escalation policy",
        "operational dashboard",
        "business metrics dashboard",
        "sdlc/observability.md",
    ],
    "incident-response": [
        "P0",
        "P1",
        "P2",
        "P3",
        "Response procedures per severity",
        "templates",
        "Status page",
        "Escalation paths",
        "database.md",
        "high-traffic.md",
        "third-party-outage.md",
        "deployment-failure.md",
        "security-incident.md",
        "Post-mortem process and template",
        "sdlc/incident-response.md",
        "sdlc/runbooks/",
    ],
    "reliability": [
        "timeout",
        "circuit breaker",
        "fallback",
        "load test",
        "restore drill",
        "RPO",
        "rollback",
        "sdlc/reliability.md",
    ],
}

TASKMASTER_FIELDS = [
    "id", "title", "description", "status", "priority", "dependencies", "details", "testStrategy",
]  # fmt: skip
ARTIFACT_KEYS = {"path", "headings", "checklist", "contains", "min", "boxes"}
# The body is sent every iteration: keep it short. The security prompt checks two OWASP
# editions (the seed document's 2017 list and the current 2025 one), with a step for each;
# incident response covers the most checklist items of the other three.
MAX_WORDS = {"security": 1550, "incident-response": 1250}
DEFAULT_MAX_WORDS = 1200

# OWASP Top 10:2025 (https://owasp.org/Top10/2025/): each category and words its step in the
# security prompt must contain, concrete enough to act on.
OWASP_2025: dict[str, list[str]] = {
    "A01 Broken Access Control": ["SSRF", "allow-list", "169.254.169.254", "127.0.0.1"],
    "A02 Security Misconfiguration": ["debug mode", "default credentials", "XXE"],
    "A03 Software Supply Chain Failures": [
        "lockfiles", "pinned", "permissions:", "commit SHA", "curl | sh", "provenance",
    ],
    "A04 Cryptographic Failures": ["salted KDF", "homemade crypto", "TLS", "keys in code"],
    "A05 Injection": ["string formatting", "shell commands", "XSS"],
    "A06 Insecure Design": ["threat model", "abuse cases", "tests"],
    "A07 Authentication Failures": ["brute-force", "session"],
    "A08 Software or Data Integrity Failures": ["deserialization", "integrity check", "CI"],
    "A09 Security Logging and Alerting Failures": ["failed logins", "alert"],
    "A10 Mishandling of Exceptional Conditions": [
        "fail closed", "stack traces", "timeout", "error paths",
    ],
}  # fmt: skip
_FRONT = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.DOTALL)


def _read(name: str) -> tuple[dict[str, Any], str]:
    """Front matter (parsed by plain yaml, independently of ralph) and body of a prompt."""
    text = (BUILTIN_DIR / f"{name}.md").read_text(encoding="utf-8")
    match = _FRONT.match(text)
    assert match, f"{name}.md must start with --- front matter ---"
    front = yaml.safe_load(match.group(1))
    assert isinstance(front, dict)
    return front, match.group(2)


def _fenced_after(body: str, heading: str) -> tuple[str, str]:
    """The `## heading ...` line's remainder and the ```markdown block right after it."""
    match = re.search(
        rf"^## {re.escape(heading)}([^\n]*)\n+```markdown\n(.*?)^```$", body, re.DOTALL | re.M
    )
    assert match, f"no '## {heading}' section followed by a ```markdown block"
    return match.group(1).strip(), match.group(2)


def _skeleton(name: str) -> str:
    _, body = _read(name)
    target, block = _fenced_after(body, "Skeleton for")
    assert target == PROMPTS[name][2], "the skeleton is for the progress file"
    return block


def _section(markdown: str, heading: str) -> str:
    """The text under `## heading` up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.DOTALL | re.M)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def test_the_four_prompts_are_the_builtins() -> None:
    # remediate works off the tasks these four file (task-list runs, tests/test_tasklist.py)
    assert builtin_names() == sorted([*PROMPTS, "remediate"])
    assert (BUILTIN_DIR / "README.md").is_file()


def test_checklists_are_the_seeds_forty_items() -> None:
    assert [len(items) for items in CHECKLISTS.values()] == [10, 10, 10, 10]
    names = [item for items in CHECKLISTS.values() for item, _, _ in items]
    assert len(set(names)) == 40
    assert {prompt for items in CHECKLISTS.values() for _, prompt, _ in items} == set(PROMPTS)


def seed_text(path: Path, env: Mapping[str, str]) -> str:
    """The seed document; without it, skip on a laptop but fail in CI (CI puts shared/ beside)."""
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if env.get("CI"):
        pytest.fail(f"CI must compare the checklists with the seed, but {path} is missing")
    pytest.skip(f"the seed document is not beside the repository ({path})")


def test_missing_seed_fails_in_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    missing = tmp_path / "shared" / "seed" / "hardening-mode.md"
    with pytest.raises(pytest.fail.Exception, match="CI must compare"):
        seed_text(missing, {"CI": "true"})
    with pytest.raises(pytest.skip.Exception):
        seed_text(missing, {})
    with pytest.raises(pytest.skip.Exception):
        seed_text(missing, {"CI": ""})
    missing.parent.mkdir(parents=True)
    missing.write_text("seed", encoding="utf-8")
    assert seed_text(missing, {"CI": "true"}) == "seed"


def test_checklist_copy_matches_the_seed() -> None:
    text = seed_text(SEED, os.environ)
    for section, items in CHECKLISTS.items():
        body = re.search(rf"^### {section}\n(.*?)(?=^#|\Z)", text, re.DOTALL | re.M)
        assert body, section
        seed_items = re.findall(r"^- \[ \] (.+)$", body.group(1), re.M)
        assert seed_items == [item for item, _, _ in items], section


@pytest.mark.parametrize(
    ("item", "prompt", "keyword"),
    [entry for items in CHECKLISTS.values() for entry in items],
    ids=[item for items in CHECKLISTS.values() for item, _, _ in items],
)
def test_every_checklist_item_is_in_a_progress_checklist(
    item: str, prompt: str, keyword: str
) -> None:
    """Covered means: a box (or group) in the progress file's Checklist, which the gate checks."""
    checklist = _section(_skeleton(prompt), "Checklist")
    assert keyword.lower() in checklist.lower(), f"{item!r}: {keyword!r} not in {prompt}"


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_front_matter(name: str) -> None:
    token, iterations, progress = PROMPTS[name]
    front, _ = _read(name)
    assert set(front) == {"description", "completion_promise", "max_iterations", "artifacts"}
    assert isinstance(front["description"], str)
    assert front["description"].strip()
    assert "\n" not in front["description"].strip()
    assert front["completion_promise"] == token
    assert front["max_iterations"] == iterations
    # ralph's own loader agrees, and yields the same settings
    spec = load_prompt(name)
    assert spec.settings["completion_promise"] == token
    assert spec.settings["max_iterations"] == iterations
    assert spec.promises == [token]
    assert spec.settings["artifacts"][0]["path"] == progress


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_body_has_exactly_one_promise_with_the_token(name: str) -> None:
    token = PROMPTS[name][0]
    front, body = _read(name)
    tags = re.findall(r"<promise>(.*?)</promise>", body, re.DOTALL)
    assert tags == [token]
    assert body.count("<promise>") == 1
    assert body.count("</promise>") == 1
    assert front["completion_promise"] == tags[0]
    # on a line of its own, outside code, so the agent copies it plainly
    assert re.search(rf"^<promise>{token}</promise>$", body, re.M)


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_artifacts_shape(name: str) -> None:
    front, _ = _read(name)
    raw = front["artifacts"]
    assert isinstance(raw, list)
    assert raw
    for entry in raw:
        assert isinstance(entry, dict), "artifact entries are mappings with a path"
        assert set(entry) <= ARTIFACT_KEYS
        assert isinstance(entry["path"], str)
        assert entry["path"].startswith("sdlc/")
        for key in ("headings", "contains", "boxes"):
            value = entry.get(key, [])
            assert isinstance(value, list)
            assert all(isinstance(v, str) and v for v in value)
        assert isinstance(entry.get("checklist", False), bool)
        assert isinstance(entry.get("min", 1), int)
        assert entry.get("min", 1) >= 1
    first = parse_artifacts(raw, f"{name} artifacts")[0]
    assert first.path == PROMPTS[name][2]
    assert first.checklist, "the progress file's checklist is what the gate enforces"
    assert "Checklist" in first.headings


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_skeleton_checkboxes_are_valid_and_only_in_the_checklist(name: str) -> None:
    skeleton = _skeleton(name)
    box_lines = [line for line in skeleton.splitlines() if re.match(r"\s*[-*+]\s*\[", line)]
    assert len(box_lines) >= 9
    for line in box_lines:
        assert re.fullmatch(r"- \[ \] \S.*", line), f"not an open markdown checkbox: {line!r}"
    assert len(unchecked_items(skeleton)) == len(box_lines)
    checklist = _section(skeleton, "Checklist")
    assert len(unchecked_items(checklist)) == len(box_lines), "boxes outside ## Checklist"


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_body_is_written_for_a_fresh_agent(name: str) -> None:
    _, body = _read(name)
    progress = PROMPTS[name][2]
    orient = re.search(r"\*\*Orient\.\*\*(.*)", body)
    assert orient
    assert progress in orient.group(1)
    assert "skeleton" in orient.group(1)
    lowered = body.lower()
    for phrase in ["no memory", "most important open", "n/a: reason", "needs a human"]:
        assert phrase in lowered, phrase
    for stack in ["Python", "Node", "Go"]:
        assert stack in body
    assert "sdlc/remediation-tasks.md" in body
    assert ".taskmaster/tasks/tasks.json" in body
    for field in TASKMASTER_FIELDS:
        assert f'"{field}"' in body, field
    assert "one-line summary" in body
    assert len(body.split()) <= MAX_WORDS.get(name, DEFAULT_MAX_WORDS)


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_loop_steps_are_in_the_body(name: str) -> None:
    _, body = _read(name)
    missing = [step for step in LOOP_STEPS[name] if step.lower() not in body.lower()]
    assert not missing


def test_security_prompt_gives_each_owasp_2025_category_a_concrete_step() -> None:
    _, body = _read("security")
    steps = dict(re.findall(r"^  - \*\*(A\d\d [^*]+)\*\*: (.+)$", body, re.M))
    assert list(steps) == list(OWASP_2025)
    for category, words in OWASP_2025.items():
        missing = [w for w in words if w.lower() not in steps[category].lower()]
        assert not missing, (category, missing)
    # each 2025 box of the skeleton names the 2017 items it absorbs (or says it is new), and
    # together they absorb all ten 2017 items, so nothing is audited twice
    checklist = _section(_skeleton("security"), "Checklist")
    boxes_2025 = re.findall(r"^- \[ \] (A\d\d .*)$", checklist, re.M)
    assert [b.split(" (")[0].split(",")[0] for b in boxes_2025] == list(OWASP_2025)
    absorbed = [m for b in boxes_2025 for m in re.findall(r"\(2017: (.*)\)$", b)]
    new = [b for b in boxes_2025 if b.endswith("(new)")]
    assert len(absorbed) + len(new) == 10
    section_2017 = checklist.split("### OWASP Top 10 (2017)\n", 1)[1].split("\n### ", 1)[0]
    items_2017 = re.findall(r"^- \[ \] (.*)$", section_2017, re.M)
    assert len(items_2017) == 10
    names_2017 = {"XSS", "XXE"} | {line.split(" (")[0] for line in items_2017}
    covered = {name.strip() for group in absorbed for name in group.split(",")}
    assert covered <= names_2017
    assert len(covered) == 10


def test_security_gate_requires_every_box_of_the_skeleton() -> None:
    """The front matter's `boxes` name each Checklist box of the skeleton, once."""
    front, _ = _read("security")
    [art, _tasks] = parse_artifacts(front["artifacts"])
    labels = re.findall(r"^- \[ \] (.*)$", _section(_skeleton("security"), "Checklist"), re.M)
    assert len(labels) == len(art.boxes) == 29
    for required in art.boxes:
        assert sum(heading_matches(required, label) for label in labels) == 1, required
    assert set(OWASP_2025) <= set(art.boxes)


def test_ralph_prompts_says_which_owasp_editions_are_covered() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ralph"), "prompts"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("security ")]
    assert "OWASP Top 10 (2017 and 2025 editions)" in line
    table = (BUILTIN_DIR / "README.md").read_text(encoding="utf-8")
    [row] = [r for r in table.splitlines() if r.startswith("| `security` |")]
    assert "OWASP Top 10:2025" in row and "2017" in row


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _gate_problems(root: Path, name: str) -> list[str]:
    front, _ = _read(name)
    problems: list[str] = []
    for art in parse_artifacts(front["artifacts"]):
        problems += check_artifact(root, art)
    return problems


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_gate_accepts_the_filled_skeleton_and_nothing_less(name: str, tmp_path: Path) -> None:
    """The skeleton the prompt hands out satisfies its own artifacts once every box is done."""
    progress = PROMPTS[name][2]
    skeleton = _skeleton(name)
    _, body = _read(name)
    if name == "incident-response":
        _, runbook = _fenced_after(body, "Runbook template")
        for rb in ("database", "high-traffic", "third-party-outage", "deployment-failure"):
            _write(tmp_path, f"sdlc/runbooks/{rb}.md", runbook)
    _write(tmp_path, "sdlc/remediation-tasks.md", "# Remediation tasks\n")

    before = _gate_problems(tmp_path, name)
    assert f"{progress}: missing" in before

    _write(tmp_path, progress, skeleton)
    boxes = len(unchecked_items(skeleton))
    problems = _gate_problems(tmp_path, name)
    assert any(f"{boxes} unchecked item(s)" in p for p in problems), problems

    done = skeleton.replace("- [ ] ", "- [x] ")
    _write(tmp_path, progress, done)
    if name == "incident-response":
        assert _gate_problems(tmp_path, name) == [
            "sdlc/runbooks/*.md: 4 file(s) match, at least 5 needed",
            "sdlc/runbooks/security-incident.md: missing",
        ]
        _write(tmp_path, "sdlc/runbooks/security-incident.md", runbook)
    assert _gate_problems(tmp_path, name) == []

    # one box left open fails; the same box marked "N/A: reason" passes
    first = re.search(r"^- \[ \] (.*)$", skeleton, re.M)
    assert first
    _write(tmp_path, progress, done.replace(f"- [x] {first.group(1)}", first.group(0), 1))
    assert _gate_problems(tmp_path, name) == [
        f"{progress}: 1 unchecked item(s) without 'N/A: reason': {first.group(1)[:60]}"
    ]
    na = f"{first.group(0)} N/A: not applicable to this service"
    _write(tmp_path, progress, done.replace(f"- [x] {first.group(1)}", na, 1))
    assert _gate_problems(tmp_path, name) == []

    if name == "security":
        # each 2025 box is required: without it the gate refuses, even though the category's
        # name is still written elsewhere in the file
        for category in OWASP_2025:
            [line] = [ln for ln in done.splitlines() if ln.startswith(f"- [x] {category}")]
            prose = f"Notes: {category} was discussed.\n"
            _write(tmp_path, progress, done.replace(line + "\n", "") + prose)
            assert _gate_problems(tmp_path, name) == [f"{progress}: no box {category!r}"]

    # dropping the whole checklist does not pass as "nothing left to do"
    _write(tmp_path, progress, done.replace(_section(done, "Checklist"), "\n"))
    assert _gate_problems(tmp_path, name)


def test_front_matter_is_what_ralph_loads() -> None:
    """split_front_matter (ralph's parser) and plain yaml read the same settings."""
    for name in PROMPTS:
        text = (BUILTIN_DIR / f"{name}.md").read_text(encoding="utf-8")
        settings, body = split_front_matter(text, name)
        front, plain_body = _read(name)
        assert settings["artifacts"] == front["artifacts"]
        assert body == plain_body


# --- the demo's vulnerable app -------------------------------------------------------------

APP_DIR = Path(__file__).resolve().parents[1] / "ralph" / "demo" / "vulnerable-app"

# The defects the demo and the prompts point at: (file, exact line text).
DEFECTS = [
    ("app.py", "DEBUG = True"),
    ("app.py", 'SECRET_KEY = "dev-secret-please-change-1234"'),
    (
        "app.py",
        "    query = f\"SELECT id, username, email FROM users WHERE username LIKE '%{name}%'"
        ' ORDER BY username"',
    ),
    ("app.py", "            body = traceback.format_exc().encode()"),
    ("app.py", '            ("Access-Control-Allow-Origin", "*"),'),
    ("app.py", "            print(f\"login failed for {data.get('username')}\")"),
    ("app.py", '    requests.post(LOGIN_WEBHOOK, json={"event": "login", "user": username})'),
    ("requirements.txt", "requests==2.19.1"),
    ("app.py", "    with urlopen(url) as response:"),  # SSRF in the avatar preview (2025 A01)
]

# The fixes `ralph demo` makes (parameterised SQL; the secret from the environment, refusing to
# start without it): the app's own tests must pass before and after them.
FIXES = [
    (
        DEFECTS[2][1] + "\n    return [dict(row) for row in conn.execute(query)]",
        '    query = "SELECT id, username, email FROM users WHERE username LIKE ? ORDER BY username"'
        '\n    return [dict(row) for row in conn.execute(query, (f"%{name}%",))]',
    ),
    (DEFECTS[1][1], 'SECRET_KEY = os.environ.get("APP_SECRET_KEY", "")'),
    (
        "def create_app(db_path=DB_PATH):\n",
        "def create_app(db_path=DB_PATH):\n    if not SECRET_KEY:\n"
        '        raise RuntimeError("APP_SECRET_KEY is not set; set it to a long random value")\n',
    ),
]


def _run_app_tests(app_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    clean.update(env, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "unittest", "-v"],
        cwd=app_dir,
        env=clean,
        capture_output=True,
        text=True,
        timeout=HANG,
    )


# Injection through the search endpoint: dumps every password hash while the SQL is formatted.
_EXPLOIT = """
import contextlib, io, json, sys, tempfile
from wsgiref.util import setup_testing_defaults
from urllib.parse import quote
import app
with contextlib.redirect_stdout(io.StringIO()):
    wsgi = app.create_app(tempfile.mkdtemp() + "/a.db")
env = {}
setup_testing_defaults(env)
env["QUERY_STRING"] = "q=" + quote("zzz' UNION SELECT 1, password_hash, 3 FROM users --")
env["PATH_INFO"] = "/users/search"
with contextlib.redirect_stdout(io.StringIO()):
    body = b"".join(wsgi(env, lambda status, headers, exc_info=None: None))
print(len(json.loads(body)["users"]))
"""


def _leaked_rows(app_dir: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(APP_SECRET_KEY="probe-secret-value", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-c", _EXPLOIT], cwd=app_dir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


# SSRF through the avatar preview: a logged-in user reads a file of the host with file://.
_SSRF = """
import base64, contextlib, io, json, sys, tempfile
from wsgiref.util import setup_testing_defaults
import app
with contextlib.redirect_stdout(io.StringIO()):
    wsgi = app.create_app(tempfile.mkdtemp() + "/a.db")
def send(path, body, token=""):
    env = {}
    setup_testing_defaults(env)
    data = json.dumps(body).encode()
    env.update(REQUEST_METHOD="POST", PATH_INFO=path, CONTENT_TYPE="application/json",
               CONTENT_LENGTH=str(len(data)), HTTP_AUTHORIZATION="Bearer " + token)
    env["wsgi.input"] = io.BytesIO(data)
    with contextlib.redirect_stdout(io.StringIO()):
        return json.loads(b"".join(wsgi(env, lambda status, headers, exc_info=None: None)))
token = send("/login", {"username": "alice", "password": "wonderland"})["token"]
print(base64.b64decode(send("/avatar/preview", {"url": sys.argv[1]}, token)["data"]).decode())
"""


def _avatar_preview(app_dir: Path, tmp_path: Path) -> str:
    secret = tmp_path / "host-file.txt"
    secret.write_text("a file of the host", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(APP_SECRET_KEY="probe-secret-value", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-c", _SSRF, secret.as_uri()],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_vulnerable_app_has_its_findable_defects() -> None:
    for name, line in DEFECTS:
        lines = (APP_DIR / name).read_text(encoding="utf-8").splitlines()
        assert line in lines, f"{name}: {line!r}"
    app = (APP_DIR / "app.py").read_text(encoding="utf-8")
    assert "/health" not in app
    assert "/ready" not in app
    assert "import logging" not in app
    assert "X-Content-Type-Options" not in app
    assert "import requests" in app
    assert not (APP_DIR / "sdlc").exists()
    # the seeded secret is obviously fake and is not a token shape the redactor hides
    from ralph.redact import redact

    assert redact(DEFECTS[1][1], environ={}) == DEFECTS[1][1]


def test_vulnerable_app_tests_pass_before_and_after_the_demo_fixes(tmp_path: Path) -> None:
    copy = tmp_path / "app"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    before = _run_app_tests(copy)
    assert before.returncode == 0, before.stderr
    assert "Ran 7 tests" in before.stderr
    assert _leaked_rows(copy) == 3, "the search endpoint is injectable"
    assert _avatar_preview(copy, tmp_path) == "a file of the host", "the preview is an SSRF"

    source = copy / "app.py"
    text = source.read_text(encoding="utf-8")
    for old, new in FIXES:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    source.write_text(text, encoding="utf-8")
    after = _run_app_tests(copy)
    assert after.returncode == 0, after.stderr
    assert "Ran 7 tests" in after.stderr
    assert _leaked_rows(copy) == 0, "parameterised SQL treats the payload as a name"

    # the fixed app refuses to start without its secret
    probe = [sys.executable, "-c", "import app; app.create_app(':memory:')"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    refused = subprocess.run(probe, cwd=copy, env=env, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "APP_SECRET_KEY is not set" in refused.stderr
    assert not list(copy.glob("*.db")), "the tests must not leave a database in the app"


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_remediation_task_example_is_a_task_ralph_reads(name: str, tmp_path: Path) -> None:
    """The task a prompt tells the agent to file in sdlc/remediation-tasks.md is one that
    `ralph harden`'s remediation run (a Markdown task list) reads as a task: its id, title,
    priority, details and verify command (a `## SEC-003` section was read as no task)."""
    from ralph.run import taskfiles

    _, body = _read(name)
    intro = body.index("`sdlc/remediation-tasks.md`: one checklist line per task")
    block = re.search(r"\n\n((?:    [^\n]*\n)+)", body[intro:])
    assert block
    example = "\n".join(line[4:] for line in block.group(1).splitlines()) + "\n"
    path = tmp_path / "remediation-tasks.md"
    path.write_text("# Remediation tasks\n\n" + example)
    task_file = taskfiles.load(path)
    (task,) = task_file.tasks
    assert re.fullmatch(r"(SEC|OBS|REL|IR)-\d{3}", task.id)
    assert task.title and task.title in example and task.is_open
    assert task.priority in (0, 1)  # high or medium: read from its `priority:` line
    assert "Where:" in task.details and "priority" not in task.details
    assert task.verify and task.verify in example
    task_file.set_status(task.id, "done")
    task_file.save()
    assert path.read_text().count(f"- [x] {task.id}:") == 1
