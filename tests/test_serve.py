"""`breakglass serve` as the Procfile runs it: a real process, real HTTP, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import requests

from bot.devtools.local_bot import GROUPS, PEOPLE
from bot.devtools.ports import free_port
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import SlackStandIn

SECRET = "serve-test-signing-secret-0123"


def test_serve_answers_slack_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "breakglass.yml").write_text(files("bot").joinpath("defaults/breakglass.yml").read_text())
    port = free_port()
    with SlackStandIn(users=PEOPLE, groups=GROUPS) as slack:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bg.db'}",
            "PORT": str(port),
            "BREAKGLASS_AUDIT_KEY": "serve-test-audit-key-0123456789abcdef",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60  # ends as soon as it listens
            while True:
                try:
                    health = requests.get(f"{base}/healthz", timeout=10)
                    break
                except (requests.ConnectionError, requests.Timeout):  # not listening yet, or slow to start answering
                    assert server.poll() is None, server.stderr.read() if server.stderr else "serve exited"
                    assert time.monotonic() < deadline, "serve did not start listening"
                    time.sleep(0.1)
            assert health.json() == {"ok": True, "database": "up", "slack": "up"}

            reply = SlackSender(base, SECRET).command(
                "orders-db 30m INC-1 fix", user_id="U0BOB", response_url=slack.response_url("serve")
            )
            assert reply.status_code == 200, reply.text
            assert "Asking for `orders-db`" in reply.text, (reply.headers, reply.text)
            slack.wait_for(lambda s: s.responses("serve"))  # the work after the ack finished too
            assert slack.posts_to("C0APPROVALS")

            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0  # returns as soon as it exits
        finally:
            if server.poll() is None:
                server.kill()
        logs = server.stderr.read() if server.stderr else ""
        assert "Traceback" not in logs and SECRET not in logs and "xoxb-test-token" not in logs
        assert "Warning" not in logs and "WARNING" not in logs  # nothing at start or stop that would alarm an operator
