"""A dead replica is known dead within seconds: claims of a replica whose heartbeat stopped are taken over at "dead
after" (6 s), not when their 30 s lease ends; a replica whose own heartbeat could not be written starts no backend
call; and exactly one of the dead holder and its successor ever calls the backend.

Time is the injected clock's, and the heartbeat is written here when the scheduler would write it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.clock import ManualClock
from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services import claims, heartbeat, revoking
from bot.services.deps import Deps, Tuning
from bot.store import replicas
from bot.store.models import AuditEvent, Replica
from tests.e2e.helpers import ALICE, BOB, view

DEFAULTS = Tuning()
BEAT = DEFAULTS.heartbeat
DEAD_AFTER = DEFAULTS.dead_after
MS = timedelta(milliseconds=1)


class RecordedAlarms:
    def __init__(self) -> None:
        self.moments: list[datetime] = []

    def wake_at(self, when: datetime) -> None:
        self.moments.append(when)


def deps(bot: LocalBot) -> Deps:
    assert bot.runtime is not None
    return bot.runtime.deps


def emergency(bot: LocalBot, duration: str = "30m") -> int:
    bot.command(BOB, f"orders-db {duration} INC-4211 checkout failing --emergency")
    request_id = max(v for v in range(1, 100) if bot.request_message(v, "C0SECURITY") is not None)
    assert view(bot, request_id).status is Status.ACTIVE
    return request_id


def takeovers(bot: LocalBot) -> list[dict[str, object]]:
    with deps(bot).db.transaction() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "claim_taken_over")).all()
        return [dict(event.detail) for event in events]


def test_the_claim_of_a_replica_whose_heartbeat_stopped_is_taken_over_at_dead_after(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    clock = ManualClock()
    dead, survivor = make_bot(clock=clock), make_bot(clock=clock)
    alarms = RecordedAlarms()
    deps(survivor).alarms = alarms
    request_id = emergency(dead)
    heartbeat.beat(deps(dead))
    last_seen = clock.now()
    assert claims.claim_revoke(deps(dead), request_id, end_reason="revoked", actor=ALICE)
    # ...and the holder dies before calling the backend: its heartbeat stops here, its lease runs for 30 s more.

    heartbeat.beat(deps(survivor))
    assert alarms.moments == [], "a holder seen just now is alive: no alarm for it"
    clock.advance(BEAT * 2)
    heartbeat.beat(deps(survivor))
    assert alarms.moments == [last_seen + DEAD_AFTER], "the alarm is set for the moment the holder counts as dead"

    clock.set(last_seen + DEAD_AFTER - MS)
    assert survivor.sweep().revoked == 0
    assert receiver.events("revoke") == []
    clock.set(last_seen + DEAD_AFTER)
    assert survivor.sweep().revoked == 1

    assert len(receiver.events("revoke")) == 1
    assert view(survivor, request_id).status is Status.REVOKED
    [taken] = takeovers(survivor)
    assert taken["because"] == "heartbeat" and taken["last_seen"] == last_seen.isoformat()
    assert taken["previous"] == deps(dead).tuning.instance and taken["replica"] == deps(survivor).tuning.instance

    # The dead holder comes back to life (a stalled process): whether fenced or beating again, it calls nothing.
    assert revoking.finish_revoke(deps(dead), request_id) is None
    heartbeat.beat(deps(dead))
    assert revoking.finish_revoke(deps(dead), request_id) is None
    assert len(receiver.events("revoke")) == 1


def test_a_holder_without_a_heartbeat_keeps_its_claim_for_its_lease(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    """Replicas of an older version write no heartbeat: their claims wait for the lease, as before."""
    clock = ManualClock()
    old, new = make_bot(clock=clock), make_bot(clock=clock)
    request_id = emergency(old)
    claimed_at = clock.now()
    assert claims.claim_revoke(deps(old), request_id, end_reason="revoked", actor=ALICE)

    while clock.now() < claimed_at + DEFAULTS.lease - BEAT:
        clock.advance(BEAT)
        heartbeat.beat(deps(new))
        assert new.sweep().revoked == 0
    clock.set(claimed_at + DEFAULTS.lease)
    heartbeat.beat(deps(new))
    assert new.sweep().revoked == 1

    assert len(receiver.events("revoke")) == 1
    [taken] = takeovers(new)
    assert taken["because"] == "lease" and "last_seen" not in taken


def test_a_replica_that_could_not_write_its_heartbeat_starts_no_backend_call(
    bot: LocalBot, receiver: WebhookReceiver
) -> None:
    request_id = emergency(bot, "1h")
    heartbeat.beat(deps(bot))
    assert claims.claim_revoke(deps(bot), request_id, end_reason="revoked", actor=ALICE)

    # Two beats missed: others may count us dead one beat from now, so the claim in hand is not started...
    bot.clock.advance(DEAD_AFTER - BEAT)
    assert deps(bot).heartbeat.fenced(bot.clock.now(), DEFAULTS)
    assert revoking.finish_revoke(deps(bot), request_id) is None
    assert receiver.events("revoke") == []

    # ...until the heartbeat is written again: the claim not started is handed back and taken up at once, not when
    # its lease (renewed 4 s ago) ends.
    heartbeat.beat(deps(bot))
    assert bot.sweep().revoked == 1
    assert [call.body["grant_id"] for call in receiver.events("revoke")] == [view(bot, request_id).uid]
    assert takeovers(bot) == [], "our own claim, taken back: no takeover"


def test_a_fenced_replica_claims_no_due_work(bot: LocalBot, receiver: WebhookReceiver) -> None:
    request_id = emergency(bot, "30m")
    heartbeat.beat(deps(bot))
    bot.clock.advance(timedelta(minutes=30))  # expired, and our heartbeat 30 minutes old

    assert bot.sweep().revoked == 0
    assert view(bot, request_id).status is Status.ACTIVE, "not even claimed, so a live replica may take it at once"
    assert receiver.events("revoke") == []
    heartbeat.beat(deps(bot))
    assert bot.sweep().revoked == 1


def test_one_beat_short_of_the_fence_the_work_goes_on(bot: LocalBot, receiver: WebhookReceiver) -> None:
    request_id = emergency(bot, "30m")
    heartbeat.beat(deps(bot))
    bot.clock.advance(timedelta(minutes=30) - (DEAD_AFTER - BEAT) + MS)  # the grant's end, a beat and more ago
    heartbeat.beat(deps(bot))
    bot.clock.advance(DEAD_AFTER - BEAT - MS)
    assert not deps(bot).heartbeat.fenced(bot.clock.now(), DEFAULTS)
    assert bot.sweep().revoked == 1
    assert [call.body["grant_id"] for call in receiver.events("revoke")] == [view(bot, request_id).uid]


def test_rows_of_long_dead_replicas_are_pruned_and_a_clean_stop_leaves_none(
    make_bot: Callable[..., LocalBot],
) -> None:
    bot = make_bot()
    now = bot.clock.now()
    with deps(bot).db.transaction() as session:
        replicas.beat(session, "long-gone", now - heartbeat.PRUNE_AFTER - MS)
        replicas.beat(session, "lately-gone", now - heartbeat.PRUNE_AFTER + timedelta(minutes=1))
    heartbeat.beat(deps(bot))
    assert seen(bot) == {"lately-gone", deps(bot).tuning.instance}

    bot.stop()
    assert seen(bot) == {"lately-gone"}


def seen(bot: LocalBot) -> set[str]:
    with deps(bot).db.transaction() as session:
        return set(session.scalars(select(Replica.instance)))


def test_every_replica_sets_alarms_for_what_falls_due_before_its_next_sweep_not_only_its_own(
    make_bot: Callable[..., LocalBot],
) -> None:
    maker = make_bot()  # the replica that granted: its own alarms die with it
    clock = maker.clock
    request_id = emergency(maker, "30m")
    expires_at = view(maker, request_id).expires_at
    assert expires_at is not None
    survivor = make_bot(clock=clock)
    assert survivor.runtime is not None
    alarms = RecordedAlarms()
    survivor.runtime.deps.alarms = alarms

    survivor.runtime.sweeper.tick()
    assert expires_at not in alarms.moments  # half an hour away: the sweeps before it will see to it

    clock.advance(expires_at - clock.now() - survivor.runtime.sweeper.lookahead / 2)
    survivor.runtime.sweeper.tick()
    assert expires_at in alarms.moments  # due before the next periodic sweep: an alarm of its own
