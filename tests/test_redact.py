"""The one redaction function: runner secrets by value, and common token shapes."""

from __future__ import annotations

import re
import time

import pytest

from ralph.redact import (
    FRAGMENT,
    REDACTED,
    contains_secret,
    is_secret_name,
    redact,
    redact_obj,
    secret_values,
)

ANTHROPIC = "sk-ant-api03-" + "Ab1_-" * 18
OPENAI = "sk-proj-" + "Zz9" * 16
OPENAI_LEGACY = "sk-" + "A1b2C3d4E5" * 4
GITHUB = {p: f"{p}_" + "a1B2c3D4e5" * 4 for p in ("ghp", "gho", "ghs", "ghu", "ghr")}
GITHUB_PAT = "github_pat_11ABCDEFG0" + "x_Y" * 20
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SESSION_ID = "ASIAY34FZKBOKMUTVV7A"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    "token",
    [ANTHROPIC, OPENAI, OPENAI_LEGACY, *GITHUB.values(), GITHUB_PAT, AWS_KEY_ID, AWS_SESSION_ID],
)
def test_token_shapes_are_redacted_in_context(token: str) -> None:
    text = f"export KEY={token}\nurl: https://x:{token}@host/ and ({token})."
    out = redact(text, {})
    assert token not in out
    assert out == f"export KEY={REDACTED}\nurl: https://x:{REDACTED}@host/ and ({REDACTED})."


def test_private_key_block_is_redacted_whole_and_surroundings_kept() -> None:
    text = f"before\n{PRIVATE_KEY}\nafter"
    assert redact(text, {}) == f"before\n{REDACTED}\nafter"
    rsa = PRIVATE_KEY.replace("OPENSSH", "RSA")
    assert redact(rsa, {}) == REDACTED


def test_private_key_cut_off_by_an_output_cap_is_redacted_to_the_end() -> None:
    cut = "log line\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert redact(cut, {}) == f"log line\n{REDACTED}"


@pytest.mark.parametrize(
    "text",
    [
        "a risk-assessment-framework-document-for-the-team",
        "task-runner-configuration-values-here-x",
        "sk-short",
        "ghp_tooShort",
        "AKIA-not-a-key",
        "BAKIAIOSFODNN7EXAMPLEX",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text, {}) == text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("ANTHROPIC_API_KEY", True),
        ("ANTHROPIC_AUTH_TOKEN", True),
        ("GITHUB_TOKEN", True),
        ("GH_TOKEN", True),
        ("NPM_TOKEN", True),
        ("STRIPE_SECRET", True),
        ("SIGNING_KEY", True),
        ("DB_PASSWORD", True),
        ("PASSWORD_FILE_CONTENTS", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_SESSION_TOKEN", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("AWS_REGION", False),
        ("AWS_DEFAULT_REGION", False),
        ("AWS_CA_BUNDLE", False),
        ("PATH", False),
        ("HOME", False),
        ("KEYBOARD", False),
        ("TOKENIZER_PATH", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_values_of_secret_variables_are_redacted_and_others_kept() -> None:
    env = {
        "ANTHROPIC_API_KEY": "plain-looking-key-value",
        "DB_PASSWORD": "hunter2hunter2",
        "AWS_REGION": "eu-central-1",
        "HOME": "/home/someone-long",
        "SHORT_TOKEN": "abc1234",  # under 8 characters: too common to redact
    }
    text = (
        "key=plain-looking-key-value pw=hunter2hunter2 region=eu-central-1 "
        "home=/home/someone-long short=abc1234"
    )
    assert redact(text, env) == (
        f"key={REDACTED} pw={REDACTED} region=eu-central-1 home=/home/someone-long short=abc1234"
    )


def test_a_secret_containing_another_is_replaced_whole() -> None:
    env = {"A_TOKEN": "abcdefgh", "B_TOKEN": "abcdefgh-and-more"}
    assert secret_values(env) == ("abcdefgh-and-more", "abcdefgh")
    assert redact("x abcdefgh-and-more y abcdefgh", env) == f"x {REDACTED} y {REDACTED}"


def test_values_with_regex_characters_are_matched_literally() -> None:
    env = {"WEIRD_SECRET": "a.b*c+d?(e)[f]|g"}
    assert redact("v=a.b*c+d?(e)[f]|g; aXbbc", env) == f"v={REDACTED}; aXbbc"


def test_default_environment_is_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_DEPLOY_TOKEN", "value-from-os-environ")
    assert redact("got value-from-os-environ") == f"got {REDACTED}"
    monkeypatch.setenv("RUNNER_DEPLOY_TOKEN", "a-changed-value-now")
    assert redact("got a-changed-value-now and value-from-os-environ") == (
        f"got {REDACTED} and value-from-os-environ"
    )


def test_shapes_off_keeps_token_shapes_but_still_hides_runner_secrets() -> None:
    env = {"GITHUB_TOKEN": GITHUB["ghs"]}
    text = f"runner {GITHUB['ghs']} hard-coded {AWS_KEY_ID}"
    assert redact(text, env, shapes=False) == f"runner {REDACTED} hard-coded {AWS_KEY_ID}"
    assert redact(text, env) == f"runner {REDACTED} hard-coded {REDACTED}"


def test_redact_obj_walks_nested_data_and_keeps_other_types() -> None:
    env = {"MY_API_KEY": "s3cr3t-value-123"}
    data = {
        "input": {"command": "curl -H 'x: s3cr3t-value-123'", "n": 3, "flag": True},
        "rows": [f"token {GITHUB['ghp']}", None, 1.5, ("s3cr3t-value-123",)],
        "s3cr3t-value-123": "key too",
    }
    assert redact_obj(data, env) == {
        "input": {"command": f"curl -H 'x: {REDACTED}'", "n": 3, "flag": True},
        "rows": [f"token {REDACTED}", None, 1.5, (REDACTED,)],
        REDACTED: "key too",
    }
    assert data["input"]["command"] == "curl -H 'x: s3cr3t-value-123'"  # not changed in place


def test_redaction_is_fast_enough_for_every_log_line() -> None:
    env = {f"SERVICE_{i}_TOKEN": f"secret-value-number-{i:04}" for i in range(20)}
    line = "2026-01-01 INFO tool_finished bash exit 0 output: " + "ordinary text " * 20
    # CPU time, not wall time: the machine's load must not decide the outcome.
    started = time.process_time()
    for _ in range(5000):
        redact(line, env)
    elapsed = time.process_time() - started
    assert elapsed < 2.0, f"5000 log lines took {elapsed:.2f} s of CPU"


# --- a runner secret in the forms a command prints it in ------------------------------------

SECRET = "s3/" + "q7Rk+2LmX9vTz4NpB8wY" * 2  # 43 characters, some URL-encoded


def encodings(value: str) -> dict[str, str]:
    """How `printf %s "$SECRET" | ...` shows a secret, each inside other text."""
    import base64
    from urllib.parse import quote

    raw = value.encode()
    return {
        "base64": base64.b64encode(raw).decode(),
        "base64 after other bytes": base64.b64encode(b"user:" + raw).decode(),
        "base64 of a line": base64.b64encode(b"TOKEN=" + raw + b"\n").decode(),
        "base64url": base64.urlsafe_b64encode(b"x" + raw + b"yz").decode(),
        "url-encoded": quote("k=" + value + "&a=/b", safe=""),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "xxd -p": "\n".join(raw.hex()[i : i + 60] for i in range(0, len(raw) * 2, 60)),
        "halves": f"first {value[:22]}\nsecond {value[22:]}",
        "three pieces": f"{value[:14]} | {value[14:29]} | {value[29:]}",
        "base64 -w 20": "\n".join(
            base64.b64encode(raw).decode()[i : i + 20] for i in range(0, 60, 20)
        ),
    }


@pytest.mark.parametrize("form", list(encodings(SECRET)))
def test_a_runner_secret_is_redacted_in_its_encoded_and_split_forms(form: str) -> None:
    env = {"GITHUB_TOKEN": SECRET}
    shown = encodings(SECRET)[form]
    out = redact(f"before {shown} after", env, shapes=False)
    assert REDACTED in out and out.startswith("before ") and out.endswith(" after")
    pieces = [p for p in re.split(r"[\s|]+|first|second", shown) if p]
    for piece in pieces:
        # No piece of FRAGMENT or more characters of the form survives.
        for i in range(len(piece) - FRAGMENT + 1):
            assert piece[i : i + FRAGMENT] not in out, (form, out)
    assert contains_secret(shown, env)


def test_ordinary_text_beside_a_secret_is_kept_and_nothing_else_is_found() -> None:
    env = {"GITHUB_TOKEN": SECRET, "HOME": "/root"}
    text = "pytest -q tests/test_redact.py passed; sha 3f2a9c1e0b7d4f6a8c2e1b0d9f7a6c5e4d3b2a19"
    assert redact(text, env) == text
    assert not contains_secret(text, env)
    assert not contains_secret("", env) and not contains_secret(SECRET, {})
    assert contains_secret(f"reports/{SECRET}.txt", env)


def test_secret_forms_keep_redaction_fast_on_a_full_tool_output() -> None:
    env = {f"SERVICE_{i}_TOKEN": "tok-" + f"{i:04}" * 10 for i in range(10)}
    output = ("ordinary_identifier_names_in_code = compute_something_long(value) # x\n") * 400
    started = time.process_time()  # CPU time: the machine's load must not decide
    for _ in range(10):
        assert redact(output, env, shapes=False) == output
    elapsed = time.process_time() - started
    assert elapsed < 2.0, f"10 outputs of 30 KB took {elapsed:.2f} s"
