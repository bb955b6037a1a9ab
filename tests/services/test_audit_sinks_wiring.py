"""``audit_sinks:`` from the policy file to the running bot: what the policy refuses, the webhook key kept out of
logs, and the real bot (LocalBot over HTTP) streaming a request's events to a real file and a real HMAC-checking
HTTP receiver, from its own threads once nudged."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.devtools.local_bot import LocalBot
from bot.devtools.sink_receivers import HmacReceiver
from bot.policy import Policy, PolicyError, parse_policy
from bot.redaction import collect
from bot.settings import VARIABLES
from bot.sinks import build_all
from bot.slack import sink_notices
from bot.slack.ids import ActionId

SECRET = "siem-hmac-key-7d1e9b3a5c2f4e6a8b0d"
BASE = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db:
    adapter: log
    approvers: [U0ALICE01]
    requesters: [U0BOB]
    principal: "{email_local}"
"""


def policy_with(sinks: str) -> Policy:
    return parse_policy(BASE + "audit_sinks:\n" + sinks)


def test_two_sinks_may_not_share_a_name() -> None:
    with pytest.raises(PolicyError, match=r"audit_sinks: \[1\]\.name: 'siem' is already the name of audit_sinks\[0\]"):
        policy_with("  - {name: siem, type: file, path: /tmp/a.jsonl}\n  - {name: siem, type: file, path: /tmp/b}\n")


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("{name: s, type: webhook, url: 'http://siem.example.com/x', secret_env: K}", "must be https://"),
        ("{name: s, type: webhook, url: 'https://u:p@siem.example.com/x', secret_env: K}", "user name or password"),
        ("{name: s, type: webhook, url: 'https://siem.example.com/x', secret: abc}", "unknown key"),
        ("{name: s, type: syslog, host: h, protocol: sctp}", "audit_sinks.0.syslog.protocol"),
        ("{name: s, type: pigeon}", "does not match any of the expected tags"),
        ("{name: Bad Name, type: file, path: /x}", "is not a sink name"),
    ],
)
def test_each_mistake_names_its_key(entry: str, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        policy_with(f"  - {entry}\n")


def test_a_webhook_key_missing_from_the_environment_is_named_by_its_path_never_its_value() -> None:
    policy = policy_with(
        "  - {name: file, type: file, path: /tmp/x.jsonl}\n"
        "  - {name: siem, type: webhook, url: 'https://siem.example.com/in', secret_env: SIEM_KEY}\n"
    )
    with pytest.raises(PolicyError, match=r"^audit_sinks\[1\]\.secret_env: environment variable SIEM_KEY is not set$"):
        build_all(policy, {"SIEM_KEY": "  "})
    assert [sink.name for sink in build_all(policy, {"SIEM_KEY": SECRET})] == ["file", "siem"]


def test_the_webhook_key_joins_the_redactor() -> None:
    policy = policy_with("  - {name: siem, type: webhook, url: 'https://siem.example.com/in', secret_env: SIEM_KEY}\n")
    redactor = collect(policy=policy, environ={"SIEM_KEY": SECRET})
    assert SECRET in redactor.secrets
    assert redactor.scrub(f"key={SECRET}") == "key=[redacted]"
    assert SECRET not in repr(build_all(policy, {"SIEM_KEY": SECRET})[0])


def test_the_real_bot_streams_a_request_to_a_file_and_a_signed_webhook(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "audit.jsonl"
    with HmacReceiver(SECRET) as receiver:
        policy = policy_with(
            f"  - {{name: file, type: file, path: '{path}'}}\n"
            f"  - {{name: siem, type: webhook, url: '{receiver.url}', secret_env: SIEM_KEY}}\n"
        )
        with LocalBot(policy, database_url, environ={"SIEM_KEY": SECRET}) as bot:
            runtime = bot.runtime
            assert runtime is not None and runtime.shipper is not None
            assert SECRET in runtime.deps.redactor.secrets
            bot.command("U0BOB", "orders-db 1h INC-7 streaming check")
            assert runtime.shipper.tick()["file"] > 0  # what the request recorded, shipped by a direct turn

            runtime.shipper.start()  # the runtime's own threads, as start_alarms starts them
            try:
                seen = len(path.read_text().splitlines())
                bot.click("U0ALICE01", ActionId.APPROVE, 1)
                runtime.shipper.nudge()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and len(path.read_text().splitlines()) <= seen:
                    time.sleep(0.05)
            finally:
                runtime.shipper.stop()
    shipped = [json.loads(line) for line in path.read_text().splitlines()]
    assert [event["seq"] for event in shipped] == list(range(1, len(shipped) + 1))
    assert len(shipped) > seen and "approved" in {event["action"] for event in shipped}
    assert shipped[0]["action"] == "requested" and shipped[0]["reason"] == "INC-7 streaming check"
    assert receiver.wait_for_seq(len(shipped)) and receiver.rejected == []
    assert receiver.seqs()[: len(shipped)] == list(range(1, len(shipped) + 1))
    assert SECRET not in caplog.text


def test_breakglass_check_lists_a_missing_webhook_key(tmp_path: Path) -> None:
    """`breakglass check`, run for real from an empty directory, names the sink's variable and exits 1."""
    (tmp_path / "breakglass.yml").write_text(
        BASE
        + "audit_sinks:\n  - {name: siem, type: webhook, url: 'https://siem.example.com/in', secret_env: SIEM_KEY}\n"
    )
    environ = {key: value for key, value in os.environ.items() if key not in VARIABLES and key != "SIEM_KEY"}
    environ |= {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": "test-signing-secret"}
    environ |= {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check"], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "audit_sinks[0].secret_env: environment variable SIEM_KEY is not set" in result.stdout


def test_what_the_audit_channel_reads() -> None:
    failing = {
        "sink": "siem",
        "type": "webhook",
        "state": "audit_sink_failing",
        "since": "2026-01-01T09:00:00.000000Z",
        "failures": 10,
        "waiting": 42,
        "last_seq": 7,
        "error": "answered 503 <!channel>",
    }
    text = sink_notices.report(failing)
    assert "*siem* (webhook)" in text and "since 2026-01-01T09:00:00.000000Z" in text and "10 attempts" in text
    assert "42 events are waiting" in text and "none is dropped" in text
    assert "<!channel>" not in text  # the sink's own words are shown inert
    recovered = sink_notices.report(failing | {"state": "audit_sink_recovered", "waiting": 0, "last_seq": 60})
    assert recovered.startswith("✅ Audit sink *siem* (webhook) has caught up") and "seq 60" in recovered


def test_a_reload_that_changes_the_sinks_restarts_the_shipper_and_a_new_sink_starts_at_the_beginning(
    database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "added.jsonl"
    without = parse_policy(BASE)
    with LocalBot(without, database_url) as bot:
        runtime = bot.runtime
        assert runtime is not None and runtime.shipper is None
        bot.command("U0BOB", "orders-db 1h INC-8 before the sink existed")

        added = policy_with(f"  - {{name: added, type: file, path: '{path}'}}\n")
        runtime.follow_sinks(without, added)
        assert runtime.shipper is not None
        runtime.shipper.nudge()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not path.exists():
            time.sleep(0.05)
        shipped = [json.loads(line) for line in path.read_text().splitlines()]
        assert shipped[0]["seq"] == 1 and shipped[0]["reason"] == "INC-8 before the sink existed"

        runtime.follow_sinks(added, without)  # removed: its thread stops and its hold goes back
        assert runtime.shipper is None
