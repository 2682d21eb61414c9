"""Accounts service: user search, login, profile and avatar preview over plain WSGI and SQLite.

Run it with `python app.py` (port 8000, or $PORT); the database file is $APP_DB
(default accounts.db) and is created with a few demo users on first start.
"""

import base64
import hashlib
import hmac
import json
import os
import sqlite3
import traceback
from contextlib import closing
from urllib.parse import parse_qs
from urllib.request import urlopen
from wsgiref.simple_server import make_server

DEBUG = True
SECRET_KEY = "dev-secret-please-change-1234"
DB_PATH = os.environ.get("APP_DB", "accounts.db")
LOGIN_WEBHOOK = os.environ.get("APP_LOGIN_WEBHOOK", "")

DEMO_USERS = [
    ("alice", "alice@example.com", "wonderland"),
    ("bob", "bob@example.com", "builder"),
    ("carol", "carol@example.com", "songbird"),
]


def hash_password(password):
    return hashlib.sha256(password.encode()).hexdigest()


def connect(db_path):
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    return conn


def init_db(db_path):
    with closing(connect(db_path)) as conn, conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS users ("
            " id INTEGER PRIMARY KEY,"
            " username TEXT UNIQUE NOT NULL,"
            " email TEXT NOT NULL,"
            " password_hash TEXT NOT NULL)"
        )
        for username, email, password in DEMO_USERS:
            conn.execute(
                "INSERT OR IGNORE INTO users (username, email, password_hash) VALUES (?, ?, ?)",
                (username, email, hash_password(password)),
            )


def sign(username):
    signature = hmac.new(SECRET_KEY.encode(), username.encode(), hashlib.sha256).hexdigest()
    return f"{username}.{signature}"


def verify(token):
    username, _, _ = token.rpartition(".")
    if username and hmac.compare_digest(sign(username), token):
        return username
    return None


def notify_login(username):
    """Tell the audit webhook about a login, when one is configured."""
    if not LOGIN_WEBHOOK:
        return
    import requests  # only needed when a webhook is configured

    requests.post(LOGIN_WEBHOOK, json={"event": "login", "user": username})


def fetch_avatar(url):
    """Download a profile picture so the client can preview it before saving it."""
    with urlopen(url) as response:
        data = response.read()
        content_type = response.headers.get_content_type()
    return {"content_type": content_type, "size": len(data), "data": base64.b64encode(data).decode()}


def search_users(conn, name):
    query = f"SELECT id, username, email FROM users WHERE username LIKE '%{name}%' ORDER BY username"
    return [dict(row) for row in conn.execute(query)]


def find_user(conn, username):
    return conn.execute(
        "SELECT id, username, email, password_hash FROM users WHERE username = ?", (username,)
    ).fetchone()


def read_body(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    if environ.get("CONTENT_TYPE", "").startswith("application/json"):
        return json.loads(raw or b"{}")
    return {key: values[0] for key, values in parse_qs(raw.decode()).items()}


def logged_in_user(conn, environ):
    """The user named by a valid `Authorization: Bearer TOKEN` header, or None."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    username = verify(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
    return find_user(conn, username) if username else None


def route(conn, method, path, environ):
    if method == "GET" and path == "/":
        return "200 OK", {"service": "accounts", "endpoints": ["/users/search", "/login", "/me", "/avatar/preview"]}

    if method == "GET" and path == "/users/search":
        name = parse_qs(environ.get("QUERY_STRING", "")).get("q", [""])[0]
        return "200 OK", {"users": search_users(conn, name)}

    if method == "POST" and path == "/login":
        data = read_body(environ)
        user = find_user(conn, data.get("username", ""))
        password_hash = hash_password(data.get("password", ""))
        if user is None or not hmac.compare_digest(user["password_hash"], password_hash):
            print(f"login failed for {data.get('username')}")
            return "401 Unauthorized", {"error": "invalid username or password"}
        print(f"login ok for {user['username']}")
        notify_login(user["username"])
        return "200 OK", {"token": sign(user["username"])}

    if method == "GET" and path == "/me":
        user = logged_in_user(conn, environ)
        if user is None:
            return "401 Unauthorized", {"error": "login required"}
        return "200 OK", {"id": user["id"], "username": user["username"], "email": user["email"]}

    if method == "POST" and path == "/avatar/preview":
        if logged_in_user(conn, environ) is None:
            return "401 Unauthorized", {"error": "login required"}
        return "200 OK", fetch_avatar(read_body(environ).get("url", ""))

    return "404 Not Found", {"error": "not found"}


def create_app(db_path=DB_PATH):
    init_db(db_path)

    def app(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        print(f"{method} {path}")
        try:
            with closing(connect(db_path)) as conn:
                status, payload = route(conn, method, path, environ)
        except Exception:
            if not DEBUG:
                raise
            body = traceback.format_exc().encode()
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [body]
        body = json.dumps(payload).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Access-Control-Allow-Origin", "*"),
        ]
        start_response(status, headers)
        return [body]

    return app


def main():
    port = int(os.environ.get("PORT", "8000"))
    print(f"accounts service on http://0.0.0.0:{port} (debug={DEBUG})")
    make_server("0.0.0.0", port, create_app()).serve_forever()


if __name__ == "__main__":
    main()
