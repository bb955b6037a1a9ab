"""`breakglass grants | show | revoke` while Slack is down (issue 14): grants are made through Slack by the real bot
over signed HTTP, the bot stops, and an operator acts from the shell on the same database (a SQLite file, and a
schema on PostgreSQL). A revoke must reach the backend (the demo database in this process, a webhook receiver, a
real PostgreSQL role), end the request as the bot would, name the operator in the trail, and leave the Slack
messages in the outbox for a bot started afterwards to send."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import cli
from bot.cli import operator as operator_cli
from bot.cli.offline import offline_deps
from bot.cli.operator_views import GRANT_KEYS
from bot.clock import ManualClock
from bot.devtools.demo_database import DemoDatabase
from bot.devtools.local_bot import RUN_AUDIT_KEY, LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services import offline
from bot.settings import VARIABLES, Settings
from bot.slack.ids import ActionId
from bot.store import outbox
from bot.store.db import make_engine
from bot.store.models import AuditEvent, OutboxMessage, Request
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, dm_texts, state, view
from tests.e2e.pg_backend import PgBackend, pg_backend_fixture  # noqa: F401  (the pg_backend fixture)

SECRET = "webhook-secret-for-the-operator-tests-0123"
POLICY = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
defaults: {min_duration: 5m, default_duration: 1h, max_duration: 4h}
review: {required: all, remind_every: 24h}
resources:
  orders-db:
    adapter: demo-db
    params: {database: DATABASE, access: write, capture: true}
    approvers: [U0ALICE01]
  payments:
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 10
    approvers: [U0ALICE01]
    emergency: true
"""


@dataclass
class Story:
    """Three requests made through Slack, then the bot stopped: #1 Bob's orders-db grant (active, with captured
    statements), #2 Dave's payments request (pending), #3 Carol's emergency payments grant (active)."""

    bot: LocalBot
    clock: ManualClock
    database_url: str
    policy_text: str
    policy_path: Path
    demo: DemoDatabase
    receiver: WebhookReceiver

    @property
    def environ(self) -> dict[str, str]:
        return {"WEBHOOK_URL": self.receiver.url, "BREAKGLASS_WEBHOOK_SECRET": SECRET}

    def run(self, *args: str, **env: str) -> Result:
        environ = {
            "DATABASE_URL": self.database_url,
            "BREAKGLASS_POLICY": str(self.policy_path),
            "BREAKGLASS_AUDIT_KEY": RUN_AUDIT_KEY,
            "COLUMNS": "250",
            **self.environ,
            **env,
        }
        result = CliRunner().invoke(cli, list(args), env=environ, catch_exceptions=False)
        assert RUN_AUDIT_KEY not in result.output and SECRET not in result.output
        return result

    def restart(self) -> LocalBot:
        """A bot started afterwards on the same database, with Slack (the same stand-in) answering again."""
        again = LocalBot(parse_policy(self.policy_text), self.database_url, environ=self.environ, clock=self.clock)
        again.slack = self.bot.slack
        again._names = self.bot._names  # answers are told apart by name in the one stand-in: no name used twice
        self.bot = again.start()
        return again

    def rows(self, model: Any, **where: Any) -> list[Any]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as connection:
                statement = select(model.__table__).filter_by(**where).order_by(model.__table__.c.id)
                return list(connection.execute(statement))
        finally:
            engine.dispose()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture
def story(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Story]:
    demo = DemoDatabase.named(f"orders_{uuid.uuid4().hex[:8]}")
    text = POLICY.replace("DATABASE", demo.name)
    path = tmp_path / "breakglass.yml"
    path.write_text(text)
    clock = ManualClock()
    monkeypatch.setattr(operator_cli, "CLOCK", clock)
    with WebhookReceiver(SECRET) as receiver:
        environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": SECRET}
        bot = LocalBot(parse_policy(text), database_url, environ=environ, clock=clock).start()
        told = Story(bot, clock, database_url, text, path, demo, receiver)
        try:
            bot.command(BOB, "orders-db 1h INC-1 orders stuck")
            bot.click(ALICE, ActionId.APPROVE, 1)
            bot.command(DAVE, "payments 30m INC-2 refunds")
            bot.command(CAROL, "payments 2h INC-3 payments down --emergency")
            principal = view(bot, 1).principal
            assert principal and view(bot, 1).status is Status.ACTIVE and view(bot, 3).status is Status.ACTIVE
            demo.run(principal, "select * from orders where id = 7", at=clock.now())
            demo.run(principal, "update orders set state = 'paid' where id = 7", at=clock.now())
            bot.read_activity()
            bot.stop()
            clock.advance(timedelta(minutes=5))
            yield told
        finally:
            told.bot.stop()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- grants --------------------------------------------------------------------------------------------------------


def test_grants_lists_live_and_waiting_requests_in_a_table(story: Story) -> None:
    result = story.run("grants")
    assert result.exit_code == 0, result.output
    lines = [line.split("│") for line in result.stdout.splitlines() if line.count("│") > 5]
    rows = {cells[1].strip(): "│".join(cells) for cells in lines if cells[1].strip()}  # not the cells' second lines
    assert sorted(rows) == ["1", "2", "3"]
    assert "orders-db" in rows["1"] and "Bob Oncall (U0BOB)" in rows["1"] and "active" in rows["1"]
    assert "2026-01-01 09:00" in rows["1"] and "2026-01-01 10:00" in rows["1"]  # granted, expires
    assert "pending" in rows["2"] and "Dave Developer (U0DAVE)" in rows["2"] and "EMERGENCY" not in rows["2"]
    assert "EMERGENCY" in rows["3"]
    assert view_principal(story, 1) in rows["1"]
    # The relative times are on the cells' second lines: granted five minutes ago, expiring in 55 minutes.
    assert "5m ago" in result.stdout and "in 55m" in result.stdout


def view_principal(story: Story, request_id: int) -> str:
    [row] = story.rows(Request, id=request_id)
    return str(row.principal)


def test_grants_json_has_stable_keys_and_filters(story: Story) -> None:
    result = story.run("grants", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [entry["id"] for entry in found] == [1, 2, 3]
    assert all(list(entry) == list(GRANT_KEYS) for entry in found)
    bob = found[0]
    assert bob["label"] == "orders-db" and bob["state"] == "active" and bob["emergency"] is False
    assert bob["requester_id"] == BOB and bob["requester_name"] == "Bob Oncall"
    assert bob["granted_at"] == "2026-01-01T09:00:00+00:00" and bob["expires_at"] == "2026-01-01T10:00:00+00:00"
    assert found[1]["state"] == "pending" and found[1]["granted_at"] is None
    assert found[2]["emergency"] is True

    only_payments = json.loads(story.run("grants", "--json", "--resource", "payments").stdout)
    assert [entry["id"] for entry in only_payments] == [2, 3]
    waiting = json.loads(story.run("grants", "--json", "--waiting").stdout)
    assert [entry["id"] for entry in waiting] == [2]
    live = json.loads(story.run("grants", "--json", "--live").stdout)
    assert [entry["id"] for entry in live] == [1, 3]
    assert story.run("grants", "--resource", "nothing-here").stdout.strip() == (
        "No live grants and no requests waiting for nothing-here."
    )


# -- show ----------------------------------------------------------------------------------------------------------


def test_show_prints_the_request_its_decisions_timeline_and_activity(story: Story) -> None:
    result = story.run("show", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Request #1 · orders-db · active")
    assert "INC-1 orders stuck" in out and "Bob Oncall (U0BOB)" in out
    assert "Decisions" in out and "U0ALICE01" in out and "approved" in out
    timeline = [line.split("│")[3].strip() for line in out.splitlines() if line.count("│") == 6]
    assert timeline[:3] == ["Action", "requested", "approved"] or timeline[:2] == ["requested", "approved"]
    assert "granted" in timeline and "activity_captured" in timeline
    assert "Activity: 2 action(s) seen, 2 kept (still watched)" in out
    assert "update orders set state = 'paid' where id = 7" in out
    assert "Review: none owed" in out


def test_show_json_carries_the_whole_record(story: Story) -> None:
    result = story.run("show", "1", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert set(found) == {"request", "decisions", "timeline", "activity", "review", "slack_owed"}
    assert found["request"]["id"] == 1 and found["request"]["status"] == "active"
    assert found["request"]["principal"] == view_principal(story, 1)
    assert found["request"]["receipt"] == {"database": story.demo.name, "access": "write"}
    assert [(d["approver_id"], d["approve"]) for d in found["decisions"]] == [(ALICE, True)]
    actions = [event["action"] for event in found["timeline"]]
    assert actions.index("requested") < actions.index("approved") < actions.index("granted")
    assert [event["seq"] for event in found["timeline"]] == sorted(event["seq"] for event in found["timeline"])
    assert found["activity"]["seen"] == 2 and found["activity"]["watching"] is True
    assert found["activity"]["kept"][0]["action"] == "select * from orders where id = 7"
    assert found["review"] is None


def test_show_an_unknown_request_is_one_line_and_exit_2(story: Story) -> None:
    result = story.run("show", "999")
    assert result.exit_code == 2
    assert one_line(result.stderr) == "breakglass: there is no request #999; `breakglass grants` lists the live ones"


def test_commands_without_a_policy_or_a_database_say_so_in_one_line(story: Story, tmp_path: Path) -> None:
    no_policy = story.run("grants", BREAKGLASS_POLICY=str(tmp_path / "missing.yml"))
    assert no_policy.exit_code == 2 and "missing.yml" in one_line(no_policy.stderr)
    empty = story.run("grants", DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    assert empty.exit_code == 2
    assert one_line(empty.stderr) == (
        "breakglass: DATABASE_URL: the database has no Breakglass schema; is it the bot's database?"
    )
    down = story.run("show", "1", DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    assert down.exit_code == 2
    assert one_line(down.stderr) == "breakglass: DATABASE_URL: cannot reach the database (OperationalError)"


@pytest.mark.parametrize("command", ["grants", "show", "revoke"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"Example: breakglass {command}" in result.stdout


# -- revoke --------------------------------------------------------------------------------------------------------


def test_revoke_goes_through_the_bot_s_path_and_slack_hears_once_the_bot_is_back(story: Story) -> None:
    principal = view_principal(story, 1)
    assert story.demo.holders.get(principal) == "write"

    result = story.run("revoke", "1", "--reason", "INC-1: Slack is down,\nlaptop lost", "--as", "opsalice")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "Revoked request #1 (orders-db) of Bob Oncall (U0BOB) as cli:opsalice; the backend confirmed it."
    )
    assert "Slack message(s) wait in the outbox" in result.stdout
    assert principal not in story.demo.holders  # the backend really revoked

    [request] = story.rows(Request, id=1)
    assert request.status == "revoked" and request.ended_by == "cli:opsalice" and request.end_reason == "revoked"
    assert request.claimed_by is None and request.lease_until is None
    events = [(e.action, e.actor, e.detail) for e in story.rows(AuditEvent, request_id=1)]
    asked = next(e for e in events if e[0] == "revoke_requested")
    assert asked[1] == "cli:opsalice" and asked[2]["comment"] == "INC-1: Slack is down, laptop lost"
    assert asked[2]["replica"].startswith("cli:")
    assert ("revoked", "cli:opsalice") in [(a, b) for a, b, _ in events]
    assert "review_due" in [a for a, _, _ in events]  # the policy asks a review of every grant
    assert "capture_ended" in [a for a, _, _ in events]  # the last read and the unwatch, as the bot does them
    owed = [row.kind for row in story.rows(OutboxMessage, request_id=1) if row.done_at is None]
    assert {"refresh", "requester", "thread"} <= set(owed)
    assert story.run("audit", "verify").exit_code == 0  # sealed into the chain with the bot's key

    before = len(story.bot.slack.dms(BOB))
    again = story.restart()
    again.sweep()
    told = dm_texts(again, BOB)[before:]
    assert any("revoked by" in text and "cli:opsalice" in text for text in told), told
    assert any("review" in text.lower() for text in told), told
    assert "Revoked by cli:opsalice" in state(again.request_message(1))
    late = again.click(ALICE, ActionId.APPROVE, 1).text  # a click on the old message is told the story
    assert "access was revoked by `cli:opsalice`" in late and "<@cli" not in late
    assert again.runtime is not None
    with again.runtime.deps.db.transaction() as session:
        assert outbox.pending(session, 1) == 0


def test_revoke_refuses_what_it_cannot_revoke_in_one_line(story: Story) -> None:
    pending = story.run("revoke", "2", "--reason", "INC-2", "--as", "ops")
    assert pending.exit_code == 1
    assert one_line(pending.stderr).startswith(
        "breakglass: request #2 (payments) is pending: nothing was granted, so there is nothing to revoke"
    )
    assert story.rows(Request, id=2)[0].status == "pending"

    assert story.run("revoke", "1", "--reason", "INC-1", "--as", "ops").exit_code == 0
    again = story.run("revoke", "1", "--reason", "INC-1 again", "--as", "other")
    assert again.exit_code == 1
    assert one_line(again.stderr) == (
        "breakglass: request #1 (orders-db) already ended: revoked by cli:ops at 2026-01-01 09:05:00 UTC"
    )

    missing = story.run("revoke", "77", "--reason", "INC-9", "--as", "ops")
    assert missing.exit_code == 2 and "there is no request #77" in one_line(missing.stderr)
    blank = story.run("revoke", "3", "--reason", " \u202e\t ", "--as", "ops")
    assert blank.exit_code == 2 and one_line(blank.stderr) == (
        "breakglass: --reason: say why; it goes into the audit trail"
    )
    odd = story.run("revoke", "3", "--reason", "INC-3", "--as", "ops [bold]")
    assert odd.exit_code == 2 and one_line(odd.stderr).startswith("breakglass: --as 'ops [bold]': expected letters")
    no_key = story.run("revoke", "3", "--reason", "INC-3", "--as", "ops", BREAKGLASS_AUDIT_KEY="")
    assert no_key.exit_code == 2 and "BREAKGLASS_AUDIT_KEY" in one_line(no_key.stderr)
    assert story.rows(Request, id=3)[0].status == "active"  # none of these touched it


def test_a_revoke_the_backend_refuses_is_left_to_the_bot_which_retries_it(story: Story) -> None:
    principal = view_principal(story, 3)
    assert story.receiver.has_access(principal)
    story.receiver.fail_next(1, status=500)

    result = story.run("revoke", "3", "--reason", "INC-3 done", LOGNAME="kim")  # who: the login name
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert line.startswith("breakglass: request #3 (payments) is revoke_failed: the backend did not confirm the revoke")
    assert line.endswith("the bot retries it at 2026-01-01 09:05:01 UTC") or "the bot retries it at" in line
    [request] = story.rows(Request, id=3)
    assert request.status == "revoke_failed" and request.claimed_by is None and request.next_attempt_at is not None
    assert story.receiver.has_access(principal)

    again = story.restart()
    again.advance(timedelta(minutes=1))
    assert view(again, 3).status is Status.REVOKED and view(again, 3).ended_by == "cli:kim"
    assert not story.receiver.has_access(principal)


def test_two_operators_at_once_exactly_one_revokes(story: Story) -> None:
    """The first operator's backend call hangs; the second, meanwhile, is told who is revoking it. Then both start
    at the same moment on a fresh grant: one wins, the other is told, and the backend hears one revoke."""
    story.receiver.hang(30)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=story.database_url,
        BREAKGLASS_POLICY=str(story.policy_path),
        BREAKGLASS_AUDIT_KEY=RUN_AUDIT_KEY,
    )
    outcomes: dict[str, object] = {}

    def revoke_as(name: str, request_id: int, start: threading.Barrier | None = None) -> None:
        with offline_deps(settings, story.environ, story.clock, acting=True) as deps:
            if start is not None:
                start.wait()
            try:
                outcomes[name] = offline.revoke(deps, request_id, f"cli:{name}", "INC-3")
            except offline.NotRevoked as refused:
                outcomes[name] = refused

    first = threading.Thread(target=revoke_as, args=("alice", 3))
    first.start()
    story.receiver.wait_for(lambda calls: any(call.event == "revoke" for call in calls))
    second = story.run("revoke", "3", "--reason", "INC-3", "--as", "bob")
    assert second.exit_code == 1
    assert one_line(second.stderr).startswith(
        "breakglass: request #3 (payments) is already being revoked by cli:alice (claimed by cli:"
    )
    story.receiver.release()
    first.join(timeout=30)
    assert getattr(outcomes["alice"], "status", None) is Status.REVOKED
    assert len(story.receiver.events("revoke")) == 1

    story.receiver.respond_with(200)
    story.restart()
    story.bot.command(BOB, "payments 30m INC-4 refunds again")
    clicked = story.bot.click(ALICE, ActionId.APPROVE, 4)
    assert view(story.bot, 4).status is Status.ACTIVE, clicked
    story.bot.stop()
    outcomes.clear()
    start = threading.Barrier(2)
    racers = [threading.Thread(target=revoke_as, args=(name, 4, start)) for name in ("carol", "dave")]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    won = [name for name, outcome in outcomes.items() if not isinstance(outcome, Exception)]
    assert len(won) == 1 and len(outcomes) == 2, outcomes
    assert len(story.receiver.events("revoke")) == 2  # one for #3, one for #4
    assert story.rows(Request, id=4)[0].ended_by == f"cli:{won[0]}"


@pytest.mark.postgres
def test_revoke_takes_a_real_postgresql_role_away(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_backend: PgBackend
) -> None:
    login = pg_backend.login("bge_bob")
    text = "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\nresources:\n" + pg_backend.resource_yaml(
        "orders-pg", {BOB: login}
    )
    path = tmp_path / "breakglass.yml"
    path.write_text(text)
    clock = ManualClock()
    monkeypatch.setattr(operator_cli, "CLOCK", clock)
    with LocalBot(parse_policy(text), database_url, clock=clock) as bot:
        bot.command(BOB, "orders-pg 1h INC-5 replica lag")
        bot.click(ALICE, ActionId.APPROVE, 1)
        assert view(bot, 1).status is Status.ACTIVE
    assert pg_backend.holds(login)

    env = {"DATABASE_URL": database_url, "BREAKGLASS_POLICY": str(path), "BREAKGLASS_AUDIT_KEY": RUN_AUDIT_KEY}
    result = CliRunner().invoke(cli, ["revoke", "1", "--reason", "INC-5", "--as", "dba"], env=env)
    assert result.exit_code == 0, result.output
    assert not pg_backend.holds(login)  # verified by the adapter before the request ended, and again here
