"""Drills at the service seam, against a real PostgreSQL backend: a drill that passes, one that fails because the
backend kept the access, one whose adapter cannot verify, the schedule with two runners, and the policy's checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.adapters import registry
from bot.adapters.base import Adapter, GrantContext, Receipt
from bot.adapters.postgres import PostgresAdapter
from bot.clock import ManualClock
from bot.domain.rules import Refused
from bot.domain.states import Status
from bot.policy import Policy, PolicyError, parse_policy
from bot.services.delivery import Courier
from bot.services.deps import Deps, Tuning
from bot.services.drill_schedule import DrillScheduler
from bot.services.drills import Trigger, run_drill
from bot.slack.drill_notices import report
from bot.store import drills, queries, schema
from bot.store.db import Database
from bot.store.models import AuditEvent, Review
from bot.testing.services import AUDIT, FixedDirectory, RecordingNotifier
from tests.e2e.pg_backend import PgBackend, pg_backend_fixture  # noqa: F401 (the pg_backend fixture)

REVIEWERS = ["U0REVIEW1", "S0SECTEAM"]
STEPS = ["grant", "verify", "revoke", "verify_gone", "alerts"]


def policy_yaml(pg: PgBackend, principal: str, every: str = "7d") -> str:
    return (
        "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\n"
        f"review: {{required: emergency, reviewers: [{', '.join(REVIEWERS)}]}}\n"
        "resources:\n"
        + pg.resource_yaml("orders-db", {})
        + "    emergency: true\n"
        + f"drills:\n  - resource: orders-db\n    every: '{every}'\n    principal: {principal}\n"
    )


class KeepsAccess(PostgresAdapter):
    """A backend whose revoke answers success and does nothing; asking it (verify) is still the real query."""

    def revoke(self, ctx: GrantContext, receipt: Receipt) -> None:
        pass


def make_deps(
    directory: Path, policy: Policy, clock: ManualClock, instance: str = "one", swap: dict[str, Adapter] | None = None
) -> Deps:
    db = Database.from_url(f"sqlite:///{directory / 'breakglass.db'}")
    schema.upgrade(db.engine)
    adapters = {**registry.build_all(policy, os.environ), **(swap or {})}
    deps = Deps(
        db=db,
        policy=policy,
        adapters=adapters,
        notifier=RecordingNotifier(),
        directory=FixedDirectory([]),
        clock=clock,
        tuning=Tuning(instance=instance, grant_retry_pause=0.01),
    )
    deps.courier = Courier(deps)  # messages go out as soon as they are owed, as in the bot
    return deps


@pytest.fixture
def login(pg_backend: PgBackend) -> str:
    return pg_backend.login("bge_drill")


@pytest.fixture
def policy(pg_backend: PgBackend, login: str) -> Policy:
    return parse_policy(policy_yaml(pg_backend, login))


@pytest.fixture
def deps(tmp_path: Path, policy: Policy) -> Iterator[Deps]:
    made = make_deps(tmp_path, policy, ManualClock())
    yield made
    made.db.dispose()


def notifier(deps: Deps) -> RecordingNotifier:
    assert isinstance(deps.notifier, RecordingNotifier)
    return deps.notifier


def events(deps: Deps, request_id: int | None) -> list[AuditEvent]:
    with deps.db.transaction() as session:
        found = session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id))
        return list(found)


def test_a_drill_passes_against_postgres_and_leaves_no_access(deps: Deps, pg_backend: PgBackend, login: str) -> None:
    result = run_drill(deps, "orders-db", None, Trigger.CLI, "ops-person")

    assert result.passed, result.steps
    assert [step.name for step in result.steps] == STEPS
    assert all(step.seconds >= 0 for step in result.steps)
    assert not pg_backend.holds(login)
    assert result.request_id is not None
    with deps.db.transaction() as session:
        request = queries.get(session, result.request_id)
        assert request is not None and request.drill and request.emergency
        assert request.status == Status.REVOKED.value and request.principal == login
        assert session.get(Review, result.request_id) is None  # no review owed for a drill
        assert drills.last_successes(session) == {"orders-db": result.finished_at}
    trail = events(deps, result.request_id)
    actions = [event.action for event in trail]
    assert actions[:3] == ["requested", "emergency", "granted"] and "drill_passed" in actions
    assert "review_due" not in actions
    assert all(event.detail.get("drill") is True for event in trail)
    sent = notifier(deps).sent
    assert ("post", result.request_id, AUDIT) in sent  # the emergency alert went to the audit channel
    assert not [kind for kind, number, _ in sent if kind == "requester" and number == result.request_id]
    [owed] = notifier(deps).drills
    assert owed["passed"] and owed["mentions"] == []
    text = report(owed)
    assert "`orders-db` *passed*" in text and "by ops-person from the CLI" in text
    for line in ("grant:", "verify access exists:", "revoke:", "verify access is gone:", "alerts went out:"):
        assert line in text
    assert "<@U0REVIEW1>" not in text


def test_a_drill_fails_when_the_backend_keeps_the_access(
    tmp_path: Path, policy: Policy, pg_backend: PgBackend, login: str
) -> None:
    built = registry.build_all(policy, os.environ)["orders-db"]
    assert isinstance(built, PostgresAdapter)
    deps = make_deps(tmp_path, policy, ManualClock(), swap={"orders-db": KeepsAccess(built.params)})
    try:
        result = run_drill(deps, "orders-db", None, Trigger.SCHEDULE, "schedule")
        assert not result.passed
        by_name = {step.name: step for step in result.steps}
        assert by_name["grant"].ok and by_name["verify"].ok and by_name["alerts"].ok
        assert not by_name["revoke"].ok and "still has access" in by_name["revoke"].detail
        assert not by_name["verify_gone"].ok and "still has access" in by_name["verify_gone"].detail
        assert pg_backend.holds(login)  # the backend really kept it
        with deps.db.transaction() as session:
            request = queries.get(session, result.request_id or 0)
            assert request is not None and request.status == Status.REVOKE_FAILED.value  # the sweep retries it
            assert drills.last_successes(session) == {}
        assert "drill_failed" in [event.action for event in events(deps, result.request_id)]
        [owed] = notifier(deps).drills
        text = report(owed)
        assert "*failed*" in text and "on schedule" in text
        assert "<@U0REVIEW1>" in text and "<!subteam^S0SECTEAM>" in text
        assert "❌ revoke:" in text and "❌ verify access is gone:" in text
    finally:
        pg_backend.revoke(pg_backend.role, login)
        deps.db.dispose()


def test_a_drill_that_cannot_verify_does_not_pass(tmp_path: Path) -> None:
    policy = parse_policy(
        "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\n"
        "resources:\n  demo:\n    adapter: log\n    approvers: [U0ALICE01]\n"
        "drills:\n  - {resource: demo, every: 1d, principal: drill_bot}\n"
    )
    deps = make_deps(tmp_path, policy, ManualClock())
    try:
        result = run_drill(deps, "demo", None, Trigger.CLI, "ops")
        assert not result.passed
        verify = next(step for step in result.steps if step.name == "verify")
        assert verify.detail.startswith("cannot verify")
        assert [s.name for s in result.steps if s.ok] == ["grant", "revoke", "alerts"]
    finally:
        deps.db.dispose()


def test_a_resource_without_a_drill_is_refused_and_nothing_is_done(deps: Deps) -> None:
    with pytest.raises(Refused, match="no resource 'nope'"):
        run_drill(deps, "nope", None, Trigger.CLI, "ops")
    with deps.db.transaction() as session:
        assert drills.recent(session) == []


def test_the_schedule_runs_each_drill_once_per_period_with_two_runners(
    tmp_path: Path, policy: Policy, pg_backend: PgBackend, login: str
) -> None:
    clock = ManualClock()
    one = make_deps(tmp_path, policy, clock, instance="replica-1")
    two = make_deps(tmp_path, policy, clock, instance="replica-2")
    runners = [DrillScheduler(one), DrillScheduler(two)]
    try:
        assert [r.tick() for r in runners] == [[], []]  # planned a period ahead, not run at start
        clock.advance(timedelta(days=6, hours=23))
        assert [r.tick() for r in runners] == [[], []]
        clock.advance(timedelta(hours=1))
        ran = [r.tick() for r in runners]
        assert sorted(len(results) for results in ran) == [0, 1]
        [result] = ran[0] + ran[1]
        assert result.passed and result.trigger is Trigger.SCHEDULE and result.actor == "schedule"
        clock.advance(timedelta(days=1))
        assert [r.tick() for r in runners] == [[], []]  # once per period
        clock.advance(timedelta(days=6))
        assert sum(len(r.tick()) for r in runners) == 1
        with one.db.transaction() as session:
            assert len(drills.recent(session)) == 2
        assert not pg_backend.holds(login)
    finally:
        one.db.dispose()
        two.db.dispose()


def test_a_cron_drill_runs_at_its_next_moment(tmp_path: Path, pg_backend: PgBackend, login: str) -> None:
    policy = parse_policy(policy_yaml(pg_backend, login, every="0 3 * * MON"))
    clock = ManualClock()  # starts at a fixed moment; its next Monday 03:00 UTC is when the drill falls due
    deps = make_deps(tmp_path, policy, clock)
    try:
        runner = DrillScheduler(deps)
        assert runner.tick() == []
        following = policy.drills[0].next_after()(clock.now())
        assert following.weekday() == 0 and (following.hour, following.minute) == (3, 0)
        clock.advance(following - clock.now() - timedelta(seconds=1))
        assert runner.tick() == []
        clock.advance(timedelta(seconds=1))
        assert len(runner.tick()) == 1
        assert runner.tick() == []
    finally:
        deps.db.dispose()


@pytest.mark.parametrize(
    ("drill", "said"),
    [
        ("{resource: nope, every: 7d, principal: p}", "drills[0].resource: no resource 'nope'"),
        ("{resource: demo, level: write, every: 7d, principal: p}", "drills[0].level: demo has no level 'write'"),
        ("{resource: demo, every: '0 3 * * FUNDAY', principal: p}", "drills[0].every: '0 3 * * FUNDAY' is not a cron"),
        ("{resource: demo, every: often, principal: p}", "drills[0].every: 'often' is neither a duration"),
        ("{resource: demo, every: 5m, principal: p}", "drills[0].every: at least 1h"),
    ],
)
def test_policy_mistakes_in_drills_name_their_key(drill: str, said: str) -> None:
    text = (
        "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\n"
        "resources:\n  demo:\n    adapter: log\n    approvers: [U0ALICE01]\n"
        f"drills:\n  - {drill}\n"
    )
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    assert said in str(raised.value)
