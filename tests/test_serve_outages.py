"""`breakglass serve` when Slack cannot be reached at start: it serves anyway, in one log line; a token Slack refuses
still stops it, in one line, and so does a database it cannot reach to check its schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import requests

from bot.devtools.slack_standin import SlackStandIn
from tests.test_serve import free_port

TOKEN = "xoxb-serve-outage-token-0123"


def serve(
    tmp_path: Path, api_url: str, token: str = TOKEN, database_url: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    (tmp_path / "breakglass.yml").write_text(files("bot").joinpath("defaults/breakglass.yml").read_text())
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": "serve-outage-signing-secret-0123",
        "SLACK_API_URL": api_url,
        "DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'bg.db'}",
        "PORT": str(port),
        "BREAKGLASS_AUDIT_KEY": "serve-outage-audit-key-0123456789abcdef",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    return process, port


def test_serve_starts_when_slack_is_unreachable_and_says_so_once(tmp_path: Path) -> None:
    server, port = serve(tmp_path, f"http://127.0.0.1:{free_port()}/api/")  # nothing listens there
    try:
        deadline = time.monotonic() + 20  # a slow machine's start-up, not a figure under test
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read() if server.stderr else "serve exited"
                assert time.monotonic() < deadline, "serve did not start listening"
                time.sleep(0.1)
        assert (health.status_code, health.json()) == (200, {"ok": True, "database": "up", "slack": "degraded"})
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
    logs = server.stderr.read() if server.stderr else ""
    assert "Traceback" not in logs and TOKEN not in logs
    said = [line for line in logs.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(said) == 1 and "Slack is unreachable" in said[0], logs


def test_serve_stops_in_one_line_when_slack_refuses_the_token(tmp_path: Path) -> None:
    with SlackStandIn(token="xoxb-the-right-one") as slack:
        server, _ = serve(tmp_path, slack.api_url, token=TOKEN)
        try:
            code = server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
    logs = server.stderr.read() if server.stderr else ""
    assert code == 2, logs
    assert "Traceback" not in logs and TOKEN not in logs
    [line] = [line for line in logs.splitlines() if "SLACK_BOT_TOKEN" in line]
    assert line.startswith("breakglass: SLACK_BOT_TOKEN: Slack refused the token (invalid_auth); expected"), logs


def test_serve_stops_in_one_line_when_it_cannot_reach_its_database_at_start(tmp_path: Path) -> None:
    password = "db-password-never-shown-0123"
    database_url = f"postgresql://breakglass:{password}@127.0.0.1:{free_port()}/breakglass"  # nothing listens
    with SlackStandIn(token=TOKEN) as slack:
        server, _ = serve(tmp_path, slack.api_url, database_url=database_url)
        try:
            code = server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
    logs = server.stderr.read() if server.stderr else ""
    assert code == 1, logs
    assert "Traceback" not in logs and password not in logs and TOKEN not in logs
    assert logs.strip().splitlines()[-1] == (
        "breakglass: DATABASE_URL: cannot reach the database (OperationalError); start again once it answers"
    )
