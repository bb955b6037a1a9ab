"""`breakglass serve` reloads its policy file as a real process: when the file changes, and on SIGHUP. A valid file
takes effect for the next request and the audit channel hears what changed; an invalid one is refused (said once
while it sits there, again when asked with SIGHUP) and the policy in force keeps serving."""

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
from bot.services.policy_reload import POLL_EVERY

SECRET = "serve-reload-signing-secret-0123"
AUDIT = "C0SECURITY"
SCRATCH = """  scratch-db:
    description: A scratch database, added while the bot runs
    adapter: demo-db
    params: {database: scratch}
    approvers: [U0ALICE01]
"""


def audit_posts(slack: SlackStandIn, starts: str) -> list[str]:
    return [c.args.get("text", "") for c in slack.posts_to(AUDIT) if c.args.get("text", "").startswith(starts)]


def wait_listening(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60  # ends as soon as it listens
    while True:
        try:
            requests.get(f"{base}/healthz", timeout=10)
            return
        except (requests.ConnectionError, requests.Timeout):
            assert server.poll() is None, server.stderr.read() if server.stderr else "serve exited"
            assert time.monotonic() < deadline, "serve did not start listening"
            time.sleep(0.1)


def test_serve_reloads_on_change_and_on_sighup_and_refuses_an_invalid_file(tmp_path: Path) -> None:
    policy = tmp_path / "breakglass.yml"
    original = files("bot").joinpath("defaults/breakglass.yml").read_text()
    policy.write_text(original)
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
            wait_listening(base, server)
            sender = SlackSender(base, SECRET)

            def ask(user: str, name: str) -> str:
                """What the person reads in the end: the answer that follows the acknowledgement."""
                url = slack.response_url(name)
                reply = sender.command(f"scratch-db 30m INC-1 {name}", user_id=user, response_url=url)
                assert reply.status_code == 200, reply.text
                [answer] = slack.wait_for(lambda s: s.responses(name), timeout=30)
                return str(answer.get("text") if isinstance(answer, dict) else answer)

            assert "There is no resource 'scratch-db'" in ask("U0DAVE", "before")  # not in the policy yet

            # The file changes: taken within a poll, said in the audit channel, and in force for the next request.
            policy.write_text(original + SCRATCH)
            [reloaded] = slack.wait_for(lambda s: audit_posts(s, "🔄 Policy reloaded"), timeout=30)
            assert "added `scratch-db`" in reloaded, reloaded
            assert "#" in (said := ask("U0DAVE", "after")) and "no resource" not in said, said

            # An invalid file: refused once while it sits there; the policy in force keeps serving.
            policy.write_text(original.replace("approvers: [S0SRELEADS]\n", "approvers: [nobody]\n") + SCRATCH)
            [refused] = slack.wait_for(lambda s: audit_posts(s, "⛔ Policy reload refused"), timeout=30)
            assert "resources.payments-admin.approvers" in refused, refused
            time.sleep(2.5 * POLL_EVERY)  # polled again meanwhile, and quiet about a file it has refused
            assert len(audit_posts(slack, "⛔ Policy reload refused")) == 1
            assert "#" in (said := ask("U0CAROL", "still")) and "no resource" not in said, said

            # SIGHUP: asked for, the refused file is checked and reported again (nothing else could have said it).
            server.send_signal(signal.SIGHUP)
            slack.wait_for(lambda s: len(audit_posts(s, "⛔ Policy reload refused")) == 2, timeout=30)
            assert server.poll() is None  # SIGHUP no longer ends the process

            # Fixed, and reloaded on SIGHUP or the poll, whichever comes first: once only.
            policy.write_text(original)
            server.send_signal(signal.SIGHUP)
            slack.wait_for(lambda s: len(audit_posts(s, "🔄 Policy reloaded")) == 2, timeout=30)
            back = audit_posts(slack, "🔄 Policy reloaded")[1]
            assert "removed `scratch-db`" in back, back
            time.sleep(2.5 * POLL_EVERY)
            assert len(audit_posts(slack, "🔄 Policy reloaded")) == 2

            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=60) == 0
        finally:
            if server.poll() is None:
                server.kill()
        logs = server.stderr.read() if server.stderr else ""
        assert "Traceback" not in logs and SECRET not in logs and "xoxb-test-token" not in logs
