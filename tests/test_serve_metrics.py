"""`breakglass serve` in Socket Mode, as a real process: connected to Slack over the socket, it takes Slack's requests
there (acked over the socket), still serves /healthz and /metrics on $PORT, never Slack's events endpoint there, and
stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from bot.devtools.local_bot import GROUPS, PEOPLE
from bot.devtools.ports import free_port
from bot.devtools.slack_requests import SlackSender, slash_command
from bot.devtools.socket_mode_standin import APP_TOKEN, SocketModeStandIn, payload_of

BOT_TOKEN = "xoxb-socket-mode-test-token-0123"
SECRET = "socket-mode-signing-secret-0123"


def test_socket_mode_serves_health_and_metrics_but_not_events(tmp_path: Path) -> None:
    (tmp_path / "breakglass.yml").write_text(files("bot").joinpath("defaults/breakglass.yml").read_text())
    port = free_port()
    with SocketModeStandIn(token=BOT_TOKEN, users=PEOPLE, groups=GROUPS) as slack:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": slack.api_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bg.db'}",
            "PORT": str(port),
            "BREAKGLASS_AUDIT_KEY": "socket-mode-audit-key-0123456789abcdef",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60  # a slow machine's start-up; ends as soon as it listens
            while True:
                try:
                    health = requests.get(f"{base}/healthz", timeout=10)
                    break
                except (requests.ConnectionError, requests.Timeout):
                    assert server.poll() is None, server.stderr.read() if server.stderr else "serve exited"
                    assert time.monotonic() < deadline, "serve did not start listening"
                    time.sleep(0.1)
            assert health.json() == {"ok": True, "database": "up", "slack": "up"}
            assert slack.connected.wait(30), "the bot never opened its socket"
            assert slack.calls("apps.connections.open")
            # A command over the socket is acked there, with the answer a typed `help` gets over HTTP.
            acked = slack.deliver("slash_commands", payload_of(slash_command(text="help"))[1], timeout=30)
            assert acked is not None and "/breakglass" in acked.get("text", ""), acked

            scraped = requests.get(f"{base}/metrics", timeout=10)
            assert scraped.status_code == 200
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(scraped.text)
                for sample in family.samples
            }
            assert samples[("breakglass_database_up", ())] == 1
            assert samples[("breakglass_pending_requests", ())] == 0
            # Socket Mode's own calls go through the bot's client too, and are counted.
            opened = ("breakglass_slack_calls_total", (("method", "apps.connections.open"), ("outcome", "ok")))
            assert samples[opened] >= 1

            # No signing secret is checked in Socket Mode, so HTTP must not take Slack's requests at all.
            refused = SlackSender(base, SECRET).command("orders-db 30m INC-1 fix", user_id="U0BOB")
            assert refused.status_code == 404
            assert not slack.calls("chat.postMessage")

            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0  # returns as soon as it exits
        finally:
            if server.poll() is None:
                server.kill()
        logs = server.stderr.read() if server.stderr else ""
        assert "Traceback" not in logs and BOT_TOKEN not in logs and APP_TOKEN not in logs
