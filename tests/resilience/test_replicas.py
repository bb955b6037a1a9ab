"""Two `breakglass serve` processes on one PostgreSQL database: every grant revoked once, every reminder sent once,
and when one replica dies mid-work the other finishes its claims after their leases end."""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.devtools.slack_standin import ApiCall, SlackStandIn
from bot.domain.states import Status
from bot.store.models import Request, Review
from tests.resilience.harness import LEASE, SWEEP_INTERVAL, Fleet, fleet, wall_time

pytestmark = pytest.mark.postgres  # replicas share one PostgreSQL database; SQLite is for a single process

GRANTS = 300
REVIEWS = 40


def add_grants(running: Fleet, count: int, expires_at: datetime) -> list[str]:
    """Active grants, as the grant path leaves them, all expiring at one moment."""
    uids = [str(uuid.uuid4()) for _ in range(count)]
    now = datetime.now(UTC)
    with running.db.transaction() as session:
        session.add_all(
            Request(
                uid=uid,
                resource="orders-db",
                requester_id="U0BOB",
                requester_name="bob",
                reason="INC-4211 load test",
                duration_seconds=int((expires_at - now).total_seconds()) + 1,
                emergency=False,
                status=Status.ACTIVE.value,
                created_at=now,
                decided_at=now,
                granted_at=now,
                expires_at=expires_at,
                warned_at=now,
                receipt={},
                revoke_attempts=0,
            )
            for uid in uids
        )
    return uids


def add_due_reviews(running: Fleet, count: int, remind_at: datetime) -> list[int]:
    """Emergency grants that ended and owe a review whose reminder falls due at ``remind_at``."""
    now = datetime.now(UTC)
    with running.db.transaction() as session:
        requests = [
            Request(
                uid=str(uuid.uuid4()),
                resource="orders-db",
                requester_id="U0BOB",
                reason="INC-1 emergency",
                duration_seconds=60,
                emergency=True,
                status=Status.EXPIRED.value,
                created_at=now - timedelta(hours=2),
                expires_at=now - timedelta(hours=1),
                ended_at=now - timedelta(hours=1),
                revoke_attempts=0,
            )
            for _ in range(count)
        ]
        session.add_all(requests)
        session.flush()
        session.add_all(
            Review(request_id=r.id, status="due", requested_at=now, next_reminder_at=remind_at, reminders_sent=0)
            for r in requests
        )
        return [r.id for r in requests]


def revokes_by_grant(running: Fleet) -> dict[str, list[datetime]]:
    found: dict[str, list[datetime]] = {}
    for call in running.backend.events("revoke"):
        found.setdefault(call.body["grant_id"], []).append(wall_time(call))
    return found


def spread(delays: list[float]) -> str:
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"median {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
    )


def test_two_replicas_revoke_each_grant_once_and_remind_once(postgres_url: str, tmp_path: Path) -> None:
    with fleet(postgres_url, tmp_path) as running:
        first, second = running.replica("replica-a"), running.replica("replica-b")
        running.start(first)  # creates the schema
        expires_at = datetime.now(UTC) + timedelta(seconds=4)
        uids = add_grants(running, GRANTS, expires_at)
        reviews = add_due_reviews(running, REVIEWS, expires_at)
        running.start(second)
        first.terminate()
        running.start(first)  # both now know every alarm from the database

        rows = running.wait_until_settled(timeout=60)
        assert Counter(r.status for r in rows) == {"expired": GRANTS + REVIEWS}
        revokes = revokes_by_grant(running)
        assert sorted(revokes) == sorted(uids)
        assert all(len(times) == 1 for times in revokes.values()), "a grant was revoked more than once"

        running.slack.wait_for(lambda slack: len(reminders(slack)) >= REVIEWS, timeout=60)
        time.sleep(SWEEP_INTERVAL * 2)  # a second reminder would show up by now
        assert len(reminders(running.slack)) == REVIEWS
        events = running.audit()
        reminded = Counter(e.request_id for e in events if e.action == "review_reminded")
        assert reminded == dict.fromkeys(reviews, 1)
        by_replica = Counter(e.detail.get("replica") for e in events if e.action == "expiring")
        delays = [(times[0] - expires_at).total_seconds() for times in revokes.values()]
    print(f"\n{GRANTS} grants expiring together, two replicas: revoke delay {spread(delays)}; by replica {by_replica}")


def reminders(slack: SlackStandIn) -> list[ApiCall]:
    return [call for call in slack.posts_to("U0BOB") if "Reminder" in str(call.args.get("text", ""))]


def test_when_a_replica_dies_mid_work_the_other_finishes_its_claims(postgres_url: str, tmp_path: Path) -> None:
    with fleet(postgres_url, tmp_path) as running:
        doomed, survivor = running.replica("replica-a"), running.replica("replica-b")
        running.start(doomed)
        running.backend.respond_with(delay=0.3)  # slow enough that the kill finds work claimed and in flight
        expires_at = datetime.now(UTC) + timedelta(seconds=2)
        uids = add_grants(running, 100, expires_at)
        # The alarms are set at start or when a grant is made; these rows came in behind the replica's back, so
        # its periodic sweep finds them. The survivor starts only once the doomed replica has claimed the work and
        # died: started together, whichever sweeps first takes all of it, and a kill of the other proves nothing;
        # started before the kill, it may take over claims whose lease ran out while the doomed one still lived.
        running.backend.wait_for(lambda calls: len(calls) >= 10, timeout=60)
        killed_at = doomed.kill()
        with running.db.transaction() as session:
            orphaned = session.query(Request).filter_by(status="revoking", claimed_by="replica-a").count()
        assert orphaned, "the doomed replica held no claim when it died"
        survivor_started = datetime.now(UTC)
        running.start(survivor)

        rows = running.wait_until_settled(timeout=60)
        assert {r.status for r in rows} == {"expired"}
        revokes = revokes_by_grant(running)
        assert sorted(revokes) == sorted(uids)
        for times in revokes.values():
            # A second revoke only for a grant whose first went out from the replica that died before it could
            # record the answer: made before the survivor started. (Not "before the kill": the receiver stamps a
            # call when it reads it, which on a busy machine can be a few ms after a sender that wrote it died.)
            assert len(times) == 1 or (len(times) == 2 and times[0] < survivor_started)
        events = running.audit()
        taken = [e for e in events if e.action == "claim_taken_over"]
        assert taken and all(e.detail["previous"] == "replica-a" and e.detail["replica"] == "replica-b" for e in taken)
        claimed_at = {e.request_id: e.at for e in events if e.action == "expiring"}
        lease = timedelta(seconds=LEASE)
        assert all(e.at >= claimed_at[e.request_id] + lease for e in taken), "taken over before the lease ended"
        assert all(e.at > killed_at for e in taken)
        resent = sum(len(times) > 1 for times in revokes.values())
        delays = [(times[-1] - expires_at).total_seconds() for times in revokes.values()]
    print(
        f"\nreplica killed mid-work: {orphaned} claims orphaned, {len(taken)} taken over after the lease, "
        f"{resent} revokes sent again; revoke delay {spread(delays)}"
    )
