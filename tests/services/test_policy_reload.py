"""Reloading the policy at the service seam: Deps on SQLite as the runtime builds them (the file's version kept, a
book of versions), the real ``demo-db`` adapter (a toy database in the process, named by its params), a notifier
that records, and a clock that moves only when told. A live grant must be revoked where it was granted, whatever
a reload did to its resource since."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.adapters import registry
from bot.clock import ManualClock
from bot.devtools.demo_database import DemoDatabase
from bot.domain.commands import Ask
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services import decisions, requests
from bot.services.delivery import Courier
from bot.services.deps import Deps, Tuning
from bot.services.policy_book import Loaded, PolicyBook, version_of
from bot.services.policy_reload import Outcome, Reloader
from bot.services.sweep import Sweeper
from bot.store import policy_versions, queries, schema
from bot.store.db import Database
from bot.store.models import AuditEvent
from bot.testing.services import APPROVALS, APPROVER, AUDIT, REQUESTER, FixedDirectory, RecordingNotifier

PRINCIPAL = "zoe"


def policy_text(database: str, *, extra: str = "", max_duration: str = "4h") -> str:
    return f"""
channels: {{approvals: {APPROVALS}, audit: {AUDIT}}}
resources:
  orders-db:
    adapter: demo-db
    params: {{database: {database}, access: write}}
    users: {{{REQUESTER.slack_id}: {PRINCIPAL}}}
    approvers: [{APPROVER.slack_id}]
    emergency: true
    max_duration: {max_duration}
{extra}"""


PAYMENTS = f"""  payments:
    adapter: demo-db
    params: {{database: payments-{uuid.uuid4().hex[:8]}}}
    users: {{{REQUESTER.slack_id}: {PRINCIPAL}}}
    approvers: [{APPROVER.slack_id}]
"""


@dataclass
class Bot:
    deps: Deps
    reloader: Reloader
    notifier: RecordingNotifier
    clock: ManualClock
    path: Path

    def write(self, text: str) -> None:
        self.path.write_text(text, encoding="utf-8")

    def settled_poll(self) -> Outcome:
        """The scheduler's job until it acts: a poll that sees the file move waits for it to hold still."""
        outcome = self.reloader.poll()
        return self.reloader.poll() if outcome.outcome == "settling" else outcome

    def granted(self, duration: str = "1h") -> int:
        ask = Ask("orders-db", duration, "INC-4211 reload test", False)
        asked = requests.submit(self.deps, REQUESTER.slack_id, ask, None)
        current = decisions.decide(self.deps, APPROVER.slack_id, asked.id, approve=True)
        assert current.status is Status.ACTIVE, current.failure
        return current.id

    def version_of_request(self, request_id: int) -> str | None:
        with self.deps.db.transaction() as session:
            request = queries.get(session, request_id)
            assert request is not None
            return request.policy_version

    def status(self, request_id: int) -> Status:
        with self.deps.db.transaction() as session:
            request = queries.get(session, request_id)
            assert request is not None
            return Status(request.status)

    def events(self, action: str) -> list[AuditEvent]:
        with self.deps.db.transaction() as session:
            found = list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all())
            session.expunge_all()
            return found


def start(directory: Path, text: str, db: Database | None = None) -> Bot:
    """What runtime.build does with a policy file: keep its version, build its adapters, open the book."""
    path = directory / "breakglass.yml"
    path.write_text(text, encoding="utf-8")
    if db is None:
        db = Database.from_url(f"sqlite:///{directory / 'breakglass.db'}")
        schema.upgrade(db.engine)
    clock = ManualClock()
    policy = parse_policy(text)
    adapters = registry.build_all(policy, {})
    version = version_of(text)
    with db.transaction() as session:
        policy_versions.remember(session, version, text, clock.now())
    book = PolicyBook(db, {})
    book.add(Loaded(version, policy, adapters))
    notifier = RecordingNotifier()
    deps = Deps(
        db=db,
        policy=policy,
        adapters=adapters,
        notifier=notifier,
        directory=FixedDirectory([REQUESTER, APPROVER]),
        clock=clock,
        tuning=Tuning(grant_retry_pause=0.01),
        version=version,
        book=book,
    )
    deps.courier = Courier(deps)  # messages go out as soon as they are owed, as in the bot
    return Bot(deps, Reloader(deps, path, {}), notifier, clock, path)


@pytest.fixture
def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"old-{tag}", f"new-{tag}"


@pytest.fixture
def bot(tmp_path: Path, names: tuple[str, str]) -> Iterator[Bot]:
    running = start(tmp_path, policy_text(names[0]))
    yield running
    running.deps.db.dispose()


def test_a_valid_reload_takes_effect_for_new_requests(bot: Bot, names: tuple[str, str]) -> None:
    old, new = names
    first = bot.deps.version
    bot.write(policy_text(new, extra=PAYMENTS))

    outcome = bot.reloader.reload()

    assert outcome.outcome == "reloaded"
    assert (outcome.added, outcome.removed, outcome.changed) == (["payments"], [], ["orders-db"])
    assert bot.deps.version == outcome.version != first
    assert "payments" in bot.deps.policy.resources
    request_id = bot.granted()
    assert bot.version_of_request(request_id) == outcome.version
    assert PRINCIPAL in DemoDatabase.named(new).holders and PRINCIPAL not in DemoDatabase.named(old).holders
    # The audit channel heard what changed, and the trail has it.
    [report] = bot.notifier.policy
    assert report["outcome"] == "reloaded" and report["added"] == ["payments"]
    [event] = bot.events("policy_reloaded")
    assert event.detail["version"] == outcome.version and event.detail["previous"] == first
    assert event.detail["changed"] == ["orders-db"]


def test_a_live_grant_is_revoked_through_its_old_params_after_a_reload_moved_it(
    bot: Bot, names: tuple[str, str]
) -> None:
    old, new = names
    request_id = bot.granted()
    first = bot.version_of_request(request_id)
    assert first == bot.deps.version and DemoDatabase.named(old).holders == {PRINCIPAL: "write"}

    bot.write(policy_text(new))  # the same resource, now on another database
    assert bot.reloader.reload().outcome == "reloaded"
    DemoDatabase.named(new).holders[PRINCIPAL] = "read"  # someone else's access there must stay untouched

    ended = requests.end_early(bot.deps, REQUESTER.slack_id, request_id)

    assert ended.status is Status.REVOKED, ended.failure
    assert PRINCIPAL not in DemoDatabase.named(old).holders
    assert DemoDatabase.named(new).holders == {PRINCIPAL: "read"}


def test_a_grant_whose_resource_a_reload_removed_still_expires_on_its_backend(bot: Bot, names: tuple[str, str]) -> None:
    old, _ = names
    request_id = bot.granted("30m")
    bot.write(policy_text("unused").replace("orders-db:", "other-db:"))  # orders-db is gone
    outcome = bot.reloader.reload()
    assert outcome.outcome == "reloaded" and outcome.removed == ["orders-db"] and outcome.added == ["other-db"]
    assert bot.deps.resource("orders-db") is None

    bot.clock.advance(timedelta(minutes=31))
    Sweeper(bot.deps)(wait=True)

    assert bot.status(request_id) is Status.EXPIRED
    assert PRINCIPAL not in DemoDatabase.named(old).holders


def test_after_a_restart_an_old_version_is_loaded_from_the_database_to_revoke(
    tmp_path: Path, bot: Bot, names: tuple[str, str]
) -> None:
    old, new = names
    request_id = bot.granted()
    # The file changed while the bot was down: it starts under the new version, with only that one in its book.
    restarted = start(tmp_path, policy_text(new), db=bot.deps.db)
    assert restarted.deps.book is not None and restarted.deps.book.versions() == [restarted.deps.version]

    ended = requests.end_early(restarted.deps, REQUESTER.slack_id, request_id)

    assert ended.status is Status.REVOKED, ended.failure
    assert PRINCIPAL not in DemoDatabase.named(old).holders
    assert bot.version_of_request(request_id) in restarted.deps.book.versions()


def test_an_extension_keeps_the_limits_it_was_granted_under(bot: Bot, names: tuple[str, str]) -> None:
    from bot.services import extensions

    request_id = bot.granted("1h")
    bot.write(policy_text(names[0], max_duration="1h"))  # lowered below what the grant may reach
    assert bot.reloader.reload().outcome == "reloaded"

    extended = extensions.extend(bot.deps, APPROVER.slack_id, request_id, "2h")

    assert extended.status is Status.ACTIVE
    assert extended.expires_at is not None and extended.granted_at is not None
    assert extended.expires_at - extended.granted_at == timedelta(hours=3)


def test_an_invalid_file_is_refused_the_old_policy_stays_and_the_audit_channel_hears_once(bot: Bot) -> None:
    before, policy = bot.deps.version, bot.deps.policy
    bot.write(policy_text("x").replace(f"approvers: [{APPROVER.slack_id}]", "approvers: [nobody]") + "  bad key: 1\n")

    outcome = bot.settled_poll()

    assert outcome.outcome == "refused"
    assert bot.deps.version == before and bot.deps.policy is policy
    assert any("resources.orders-db.approvers" in problem for problem in outcome.problems), outcome.problems
    [report] = bot.notifier.policy
    assert report["outcome"] == "refused" and report["problems"] == outcome.problems
    [event] = bot.events("policy_refused")
    assert event.detail["kept"] == before and event.detail["problems"] == outcome.problems
    # Polled again, the same refused file says nothing more; asked for (SIGHUP), it is reported again.
    assert bot.reloader.poll().outcome == "unchanged"
    assert len(bot.notifier.policy) == 1
    assert bot.reloader.reload(asked=True).outcome == "refused"
    assert len(bot.notifier.policy) == 2 and len(bot.events("policy_refused")) == 2
    # A request still goes by the policy in force.
    assert bot.version_of_request(bot.granted()) == before


def test_the_same_content_again_is_no_reload(bot: Bot) -> None:
    bot.write(bot.path.read_text(encoding="utf-8"))  # touched, not changed
    assert bot.reloader.reload().outcome == "unchanged"
    assert bot.settled_poll().outcome == "unchanged"
    assert bot.notifier.policy == [] and bot.events("policy_reloaded") == []


def test_an_old_version_is_retired_once_no_request_needs_it(bot: Bot, names: tuple[str, str]) -> None:
    request_id = bot.granted()
    first = bot.deps.version
    bot.write(policy_text(names[1]))
    bot.reloader.reload()
    book = bot.deps.book
    assert book is not None and first in book.versions()

    bot.settled_poll()
    assert first in book.versions()  # the live grant still needs it

    requests.end_early(bot.deps, REQUESTER.slack_id, request_id)
    bot.reloader.poll()
    assert book.versions() == [bot.deps.version]


def test_a_poll_waits_for_a_file_that_is_still_being_written(bot: Bot) -> None:
    bot.write("channels: {approvals: C0APPROVALS")  # half-written: the editor has not finished
    assert bot.reloader.poll().outcome == "settling"
    bot.write(policy_text("finished-db", extra=PAYMENTS))  # finished, and longer: it moved again
    assert bot.reloader.poll().outcome == "settling"
    assert bot.reloader.poll().outcome == "reloaded"
    assert bot.notifier.policy[0]["outcome"] == "reloaded" and len(bot.notifier.policy) == 1


def test_a_webhook_sink_whose_key_is_not_set_refuses_the_file_and_followers_hear_only_of_a_taken_policy(
    bot: Bot, names: tuple[str, str], tmp_path: Path
) -> None:
    heard: list[tuple[list[str], list[str]]] = []
    bot.reloader.followers.append(
        lambda old, new: heard.append(([s.name for s in old.audit_sinks], [s.name for s in new.audit_sinks]))
    )
    sink = "audit_sinks:\n  - {name: siem, type: webhook, url: 'https://siem.example.com/in', secret_env: SIEM_KEY}\n"

    bot.write(policy_text(names[0]) + sink)
    refused = bot.reloader.reload(asked=True)

    assert refused.outcome == "refused"
    assert any("audit_sinks[0].secret_env: environment variable SIEM_KEY is not set" in p for p in refused.problems)
    assert heard == []
    bot.write(policy_text(names[0]) + f"audit_sinks:\n  - {{name: file, type: file, path: '{tmp_path / 'a.jsonl'}'}}\n")
    taken = bot.reloader.reload(asked=True)
    assert taken.outcome == "reloaded" and taken.settings == ["audit_sinks"]
    assert heard == [([], ["file"])]


def test_a_drill_added_by_a_reload_is_scheduled_by_the_tick_already_running(bot: Bot, names: tuple[str, str]) -> None:
    from bot.services.drill_schedule import DrillScheduler

    ticker = DrillScheduler(bot.deps)
    ticker.tick()  # nothing to drill yet
    bot.write(policy_text(names[0]) + "drills:\n  - {resource: orders-db, every: 1h, principal: drill_zoe}\n")
    assert bot.reloader.reload().outcome == "reloaded"

    ticker.tick()  # the drill appears: its first run is one period away
    bot.clock.advance(timedelta(hours=1, seconds=1))
    ticker.tick()

    with bot.deps.db.transaction() as session:
        from bot.store import drills

        assert "orders-db" in drills.last_successes(session)


def test_an_old_version_refused_by_stricter_checks_still_loads_for_its_grants(bot: Bot, names: tuple[str, str]) -> None:
    """This code's checks may be stricter than those an old version passed (a drill every minute is refused now): the
    revoke of a grant made under it must still reach its backend."""
    old_text = policy_text(names[1]) + "drills:\n  - {resource: orders-db, every: '* * * * *', principal: drill_zoe}\n"
    version = version_of(old_text)
    with bot.deps.db.transaction() as session:
        policy_versions.remember(session, version, old_text, bot.clock.now())
    fresh = PolicyBook(bot.deps.db, {})

    loaded = fresh.get(version)

    assert loaded is not None and loaded.policy.drills == []
    assert loaded.policy.resource("orders-db") is not None and "orders-db" in loaded.adapters
