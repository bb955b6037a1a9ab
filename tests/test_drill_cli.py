"""`breakglass drill` as an operator runs it: a real process, a real backend program (the command adapter, keeping its
grants in a file) and a SQLite database. Exit 0 when the drill passes, 1 when it fails (the program's revoke keeps the
access), 2 when it cannot be run; each step printed with its time. Without Slack the report stays owed; with Slack
configured (the stand-in on loopback) the command sends the alert and the report itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.devtools.slack_standin import SlackStandIn
from bot.settings import VARIABLES
from bot.store import schema
from bot.store.db import Database
from bot.store.models import DrillRun, OutboxMessage

AUDIT_KEY = "drill-cli-audit-key-0123456789abcdefghij"

# grant adds the principal to the file, revoke removes it (unless KEEP is set), verify says whether it is there.
BACKEND = """\
import json, os, sys
event = json.load(sys.stdin)
path = os.environ["HELD_FILE"]
held = set(json.load(open(path))) if os.path.exists(path) else set()
if event["event"] == "grant":
    held.add(event["principal"])
elif event["event"] == "revoke" and not os.environ.get("KEEP"):
    held.discard(event["principal"])
elif event["event"] == "verify":
    print(json.dumps({"active": event["principal"] in held}))
json.dump(sorted(held), open(path, "w"))
"""


def policy(directory: Path, keep: bool) -> str:
    program = json.dumps([sys.executable, str(directory / "backend.py")])
    env = {"HELD_FILE": str(directory / "held.json"), **({"KEEP": "1"} if keep else {})}
    return (
        "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\n"
        "review: {reviewers: [U0REVIEW1]}\n"
        "resources:\n  gate:\n    adapter: command\n    approvers: [U0ALICE01]\n"
        f"    params: {{grant: {program}, revoke: {program}, verify: {program}, env: {json.dumps(env)}}}\n"
        "drills:\n  - {resource: gate, every: 7d, principal: drill_bot}\n"
    )


def run(
    directory: Path, *args: str, keep: bool = False, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, on a database the bot has migrated (the CLI migrates nothing)."""
    if not (directory / "breakglass.db").exists():
        db = Database.from_url(f"sqlite:///{directory / 'breakglass.db'}")
        schema.upgrade(db.engine)
        db.dispose()
    (directory / "backend.py").write_text(BACKEND, encoding="utf-8")
    (directory / "breakglass.yml").write_text(policy(directory, keep), encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name not in VARIABLES}
    env |= {
        "DATABASE_URL": f"sqlite:///{directory / 'breakglass.db'}",
        "BREAKGLASS_POLICY": str(directory / "breakglass.yml"),
        "BREAKGLASS_AUDIT_KEY": AUDIT_KEY,
        **(environ or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", "drill", *args],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def held(directory: Path) -> list[str]:
    path = directory / "held.json"
    return list(json.loads(path.read_text())) if path.exists() else []


def stored(directory: Path) -> tuple[list[DrillRun], list[OutboxMessage]]:
    db = Database.from_url(f"sqlite:///{directory / 'breakglass.db'}")
    try:
        with db.transaction() as session:
            runs = list(session.scalars(select(DrillRun)))
            owed = list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "drill")))
            session.expunge_all()
            return runs, owed
    finally:
        db.dispose()


def test_a_passing_drill_exits_0_and_prints_each_step(tmp_path: Path) -> None:
    done = run(tmp_path, "gate")
    assert done.returncode == 0, done.stderr
    for step in ("grant", "verify access exists", "revoke", "verify access is gone", "alerts went out"):
        assert step in done.stdout
    assert "passed in" in done.stdout
    assert held(tmp_path) == []
    runs, owed = stored(tmp_path)
    assert [(r.label, r.passed, r.trigger) for r in runs] == [("gate", True, "cli")]
    [report] = owed
    assert report.done_at is None and report.channel == "C0SECURITY"  # no Slack here: the bot sends it later


def test_with_slack_configured_the_alert_and_report_are_sent_from_the_command(tmp_path: Path) -> None:
    with SlackStandIn(token="xoxb-drill-cli") as slack:
        done = run(tmp_path, "gate", environ={"SLACK_BOT_TOKEN": "xoxb-drill-cli", "SLACK_API_URL": slack.api_url})
        posted = [str(call.args.get("text")) for call in slack.posts_to("C0SECURITY")]
    assert done.returncode == 0, done.stderr
    assert "sent to the audit channel" in done.stdout
    assert posted[0].startswith("🚨 BREAK-GLASS") and "Breakglass drill (cli)" in posted[0]
    assert posted[1].startswith("🧪 Drill of `gate` *passed*")
    _, owed = stored(tmp_path)
    assert [report.outcome for report in owed] == ["sent"]


def test_a_drill_whose_backend_keeps_the_access_exits_1(tmp_path: Path) -> None:
    done = run(tmp_path, "gate", keep=True)
    assert done.returncode == 1, done.stderr
    assert "FAILED" in done.stdout and "still has access" in done.stdout
    assert held(tmp_path) == ["drill_bot"]
    runs, _ = stored(tmp_path)
    assert [r.passed for r in runs] == [False]


@pytest.mark.parametrize(
    ("target", "said"),
    [("nope", "no resource 'nope'"), ("Gate!", "is not RESOURCE or RESOURCE:LEVEL"), ("gate:write", "no drill of")],
)
def test_a_drill_that_cannot_run_exits_2_in_one_line(tmp_path: Path, target: str, said: str) -> None:
    done = run(tmp_path, target)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("breakglass: ") and said in line
    assert held(tmp_path) == []


def test_help_shows_an_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "drill", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "breakglass drill orders-db:read" in done.stdout
