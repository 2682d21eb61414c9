"""Behaviour of the accounts service through its WSGI interface: no server, no network."""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest
from pathlib import Path
from wsgiref.util import setup_testing_defaults

# Configure the service the way a deployment does: through the environment.
os.environ.setdefault("APP_SECRET_KEY", "test-only-secret-value")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app as accounts  # noqa: E402


def call(application, method, path, query="", body=None, headers=None):
    """Send one request to the WSGI app; return (status code, headers, decoded JSON or text)."""
    data = json.dumps(body).encode() if body is not None else b""
    environ = {}
    setup_testing_defaults(environ)
    environ.update(
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(data)),
            "wsgi.input": io.BytesIO(data),
        }
    )
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    with contextlib.redirect_stdout(io.StringIO()):
        raw = b"".join(application(environ, start_response))
    content_type = seen["headers"].get("Content-Type", "")
    payload = json.loads(raw) if content_type.startswith("application/json") else raw.decode()
    return seen["status"], seen["headers"], payload


class AccountsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        with contextlib.redirect_stdout(io.StringIO()):
            self.app = accounts.create_app(os.path.join(self.tmp.name, "accounts.db"))

    def login(self, username, password):
        return call(self.app, "POST", "/login", body={"username": username, "password": password})

    def test_search_returns_matching_users(self):
        status, _, payload = call(self.app, "GET", "/users/search", query="q=ali")
        self.assertEqual(status, 200)
        self.assertEqual(payload["users"], [{"id": 1, "username": "alice", "email": "alice@example.com"}])

    def test_search_without_a_term_lists_everyone_in_order(self):
        status, _, payload = call(self.app, "GET", "/users/search")
        self.assertEqual(status, 200)
        self.assertEqual([u["username"] for u in payload["users"]], ["alice", "bob", "carol"])

    def test_search_with_no_match_is_empty(self):
        status, _, payload = call(self.app, "GET", "/users/search", query="q=zed")
        self.assertEqual((status, payload), (200, {"users": []}))

    def test_login_then_profile(self):
        status, _, payload = self.login("bob", "builder")
        self.assertEqual(status, 200)
        token = payload["token"]
        status, _, profile = call(self.app, "GET", "/me", headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(status, 200)
        self.assertEqual(profile, {"id": 2, "username": "bob", "email": "bob@example.com"})

    def test_wrong_password_is_rejected(self):
        status, _, payload = self.login("bob", "not-his-password")
        self.assertEqual(status, 401)
        self.assertNotIn("token", payload)

    def test_profile_needs_a_valid_token(self):
        self.assertEqual(call(self.app, "GET", "/me")[0], 401)
        _, _, payload = self.login("alice", "wonderland")
        forged = "bob." + payload["token"].split(".", 1)[1]
        self.assertEqual(call(self.app, "GET", "/me", headers={"Authorization": f"Bearer {forged}"})[0], 401)

    def test_unknown_path_is_not_found(self):
        self.assertEqual(call(self.app, "GET", "/nope")[0], 404)


if __name__ == "__main__":
    unittest.main()
