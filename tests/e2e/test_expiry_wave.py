"""A wave of expiries: claimed in one statement, each revoked exactly once, its backend call made from what the claim
read while the claim is certainly ours, and recorded afterwards in batches by the recorder.

bench/expiry_wave.py measures how fast; these say what must hold whatever the speed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services import claims, heartbeat, recorder, revoking
from bot.services.deps import Deps, Tuning
from bot.services.recorder import Recorder
from bot.store import queries, schema
from bot.store.db import make_engine
from bot.store.models import AuditEvent, Request
from tests.e2e.helpers import dm_texts, view

WAVE = 8
PEOPLE = [f"U0WAVE{n:03d}" for n in range(WAVE)]
POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
review:
  required: none
resources:
  wave-db:
    description: A database many hold at once
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 10
    approvers: [U0ALICE01]
    emergency: true
"""


@pytest.fixture
def wave_bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    bot = make_bot(policy=parse_policy(POLICY))
    for person in PEOPLE:
        bot.slack.add_user(person, person.lower(), f"{person.lower()}@example.com")
    return bot


def active_grant(n: int, resource: str, granted_at: datetime, expires_at: datetime) -> dict[str, object]:
    user = f"U0WAVE{n:03d}"
    return {
        "uid": f"00000000-0000-0000-0000-{n:012d}",
        "resource": resource,
        "requester_id": user,
        "principal": user.lower(),
        "reason": "INC-1 wave",
        "duration_seconds": 600,
        "emergency": True,
        "status": Status.ACTIVE.value,
        "created_at": granted_at,
        "granted_at": granted_at,
        "expires_at": expires_at,
        "revoke_attempts": 0,
    }


def insert_rows(engine: Engine, rows: list[dict[str, object]], **values: object) -> None:
    with engine.begin() as connection:
        connection.execute(insert(Request), [row | values for row in rows])


def deps(bot: LocalBot) -> Deps:
    assert bot.runtime is not None
    return bot.runtime.deps


def grant_all(bot: LocalBot, people: list[str] = PEOPLE) -> list[int]:
    """Each of ``people`` breaks the glass; the new requests' ids."""
    before = alerted(bot)
    for person in people:
        bot.command(person, "wave-db 10m INC-1 wave --emergency")
    ids = [r for r in alerted(bot) if r not in before]
    assert len(ids) == len(people) and all(view(bot, r).status is Status.ACTIVE for r in ids)
    return ids


def alerted(bot: LocalBot) -> list[int]:
    return [r for r in range(1, 100) if bot.request_message(r, "C0SECURITY") is not None]


def actions(bot: LocalBot, action: str) -> int:
    with deps(bot).db.transaction() as session:
        return int(session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0)


def test_a_wave_is_claimed_together_and_each_grant_revoked_once_and_recorded(
    wave_bot: LocalBot, receiver: WebhookReceiver
) -> None:
    ids = grant_all(wave_bot)
    wave_bot.clock.advance(timedelta(minutes=10))

    assert wave_bot.sweep().revoked == WAVE
    assert wave_bot.sweep().revoked == 0, "nothing left to do, nothing done twice"

    calls = Counter(call.body["grant_id"] for call in receiver.events("revoke"))
    assert sorted(calls) == sorted(view(wave_bot, r).uid for r in ids) and set(calls.values()) == {1}
    assert all(view(wave_bot, r).status is Status.EXPIRED for r in ids)
    assert actions(wave_bot, "expiring") == WAVE and actions(wave_bot, "expired") == WAVE
    for person in PEOPLE:  # each holder is told, by the recorder's messages
        assert any("expired" in text.lower() for text in dm_texts(wave_bot, person)), person


def test_only_expired_grants_of_a_wave_are_claimed(wave_bot: LocalBot, receiver: WebhookReceiver) -> None:
    early = grant_all(wave_bot, PEOPLE[:4])
    wave_bot.clock.advance(timedelta(minutes=5))
    late = grant_all(wave_bot, PEOPLE[4:8])
    wave_bot.clock.advance(timedelta(minutes=5))

    assert wave_bot.sweep().revoked == 4
    assert all(view(wave_bot, r).status is Status.EXPIRED for r in early)
    assert all(view(wave_bot, r).status is Status.ACTIVE for r in late)


def test_a_call_prepared_before_a_hand_back_asks_the_database_and_makes_no_call(
    wave_bot: LocalBot, receiver: WebhookReceiver
) -> None:
    """A replica fenced (its heartbeat unwritten) hands its idle claims back when it writes again; another replica may
    have taken them since. What the claim prepared must then not be trusted, however young its lease."""
    [request_id] = grant_all(wave_bot, PEOPLE[:1])
    wave_bot.clock.advance(timedelta(minutes=10))
    heartbeat.beat(deps(wave_bot))  # a replica that beats: one that can be fenced
    [work] = claims.claim_due(deps(wave_bot), 10)
    assert work.prepared is not None and work.prepared.trusted(deps(wave_bot), wave_bot.clock.now())

    wave_bot.clock.advance(Tuning().dead_after - Tuning().heartbeat)  # fenced
    heartbeat.beat(deps(wave_bot))  # written again: the claim, not yet started, is handed back
    assert not work.prepared.trusted(deps(wave_bot), wave_bot.clock.now())
    assert revoking.revoke_then(deps(wave_bot), request_id, _never, work.prepared) is None
    assert receiver.events("revoke") == []

    assert wave_bot.sweep().revoked == 1
    assert len(receiver.events("revoke")) == 1


def test_a_prepared_call_is_trusted_only_early_in_its_lease_and_never_while_fenced(wave_bot: LocalBot) -> None:
    grant_all(wave_bot, PEOPLE[:1])
    wave_bot.clock.advance(timedelta(minutes=10))
    heartbeat.beat(deps(wave_bot))  # a replica that beats: one that can be fenced
    [work] = claims.claim_due(deps(wave_bot), 10)
    assert work.prepared is not None
    lease, now, beats = Tuning().lease, wave_bot.clock.now(), deps(wave_bot).heartbeat
    late = now + lease / 3
    beats.written(late)  # beating all along
    assert work.prepared.trusted(deps(wave_bot), late - timedelta(milliseconds=1))
    assert not work.prepared.trusted(deps(wave_bot), late), "past the first third: the lane asks the database"
    beats.written(now)
    fenced = now + Tuning().dead_after - Tuning().heartbeat
    assert work.prepared.trusted(deps(wave_bot), fenced - timedelta(milliseconds=1))
    assert not work.prepared.trusted(deps(wave_bot), fenced)


def _never(request_id: int, attempts: int) -> object:
    raise AssertionError("nothing was confirmed, so nothing is to be recorded")


def test_the_recorder_gives_way_to_running_calls_then_records_in_one_go(wave_bot: LocalBot) -> None:
    ids = grant_all(wave_bot, PEOPLE[:6])
    wave_bot.clock.advance(timedelta(minutes=10))
    claimed = claims.claim_due(deps(wave_bot), 10)
    calls_done = threading.Event()
    asked = threading.Semaphore(0)

    def calls_running() -> bool:
        asked.release()
        return not calls_done.is_set()

    record = Recorder(deps(wave_bot), deps(wave_bot).courier, calls_running, give_way=600)
    try:
        futures = [revoking.revoke_then(deps(wave_bot), w.request_id, record, w.prepared) for w in claimed]
        for _ in range(3):  # it looked, more than once, and found calls still running
            assert asked.acquire(timeout=10)
        assert all(view(wave_bot, r).status is Status.REVOKING for r in ids), "nothing recorded while calls run"
        assert sorted(deps(wave_bot).leases.held()) == ids, "the claims stay held until recorded"

        calls_done.set()
        assert record.flush(timeout=30)
        assert all(f.result(timeout=10).current.status is Status.EXPIRED for f in futures)  # type: ignore[union-attr]
        assert deps(wave_bot).leases.held() == []
    finally:
        record.close(5)


def test_a_row_that_cannot_be_recorded_costs_the_others_nothing(
    wave_bot: LocalBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = grant_all(wave_bot, PEOPLE[:4])
    wave_bot.clock.advance(timedelta(minutes=10))
    claimed = claims.claim_due(deps(wave_bot), 10)
    real = recorder.record_revoked
    bad = ids[1]

    def record_revoked(deps: Deps, session: object, request_id: int, attempts: int, now: object) -> object:
        if request_id == bad:
            raise RuntimeError("this row cannot be written")
        return real(deps, session, request_id, attempts, now)  # type: ignore[arg-type]

    monkeypatch.setattr(recorder, "record_revoked", record_revoked)
    record = Recorder(deps(wave_bot), deps(wave_bot).courier)
    try:
        futures = [revoking.revoke_then(deps(wave_bot), w.request_id, record, w.prepared) for w in claimed]
        assert record.flush(timeout=30)
    finally:
        record.close(5)
    outcomes = dict(zip(ids, futures, strict=True))
    with pytest.raises(RuntimeError):
        outcomes[bad].result(timeout=10)  # type: ignore[union-attr]
    assert view(wave_bot, bad).status is Status.REVOKING, "left to its lease: a survivor revokes and records again"
    assert all(view(wave_bot, r).status is Status.EXPIRED for r in ids if r != bad)
    assert deps(wave_bot).leases.held() == []


def test_what_waits_to_be_recorded_is_recorded_when_the_recorder_closes(wave_bot: LocalBot) -> None:
    ids = grant_all(wave_bot, PEOPLE[:3])
    wave_bot.clock.advance(timedelta(minutes=10))
    claimed = claims.claim_due(deps(wave_bot), 10)
    record = Recorder(deps(wave_bot), deps(wave_bot).courier, calls_running=lambda: True, give_way=600)
    for work in claimed:
        revoking.revoke_then(deps(wave_bot), work.request_id, record, work.prepared)
    assert all(view(wave_bot, r).status is Status.REVOKING for r in ids)

    assert record.close(30)
    assert all(view(wave_bot, r).status is Status.EXPIRED for r in ids)


def test_a_renewal_does_not_wait_for_rows_the_recorder_has_locked(postgres_url: str) -> None:
    """Found by the two-replica run: a renewal that waited for the recorder's batch (its rows locked until it commits)
    let the leases of every other claim in hand run out, and the other replica revoked them all a second time."""
    engine = make_engine(postgres_url)
    schema.upgrade(engine)
    now = datetime.now(UTC)
    rows = [active_grant(n, "wave-db", now, now) | {"status": Status.REVOKING.value} for n in range(2)]
    insert_rows(engine, rows, claimed_by="replica-a", lease_until=now + timedelta(seconds=3))
    with engine.connect() as ids_reader:
        first, second = ids_reader.execute(select(Request.id).order_by(Request.id)).scalars().all()
    try:
        with engine.begin() as recording:  # the recorder's batch, holding the first row until it commits
            recording.execute(select(Request.id).where(Request.id == first).with_for_update())
            with Session(engine) as session, session.begin():
                session.execute(text("SET LOCAL lock_timeout = '5s'"))  # a wait would fail the test, not hang it
                renewed = queries.renew_claims(session, "replica-a", [first, second], now + timedelta(seconds=6))
        assert renewed == 1
        with engine.connect() as connection:
            leases = dict(connection.execute(select(Request.id, Request.lease_until)).all())
        assert leases[second] == now + timedelta(seconds=6) and leases[first] == now + timedelta(seconds=3)
    finally:
        engine.dispose()


def test_a_claim_whose_record_is_on_its_way_is_not_called_again(wave_bot: LocalBot, receiver: WebhookReceiver) -> None:
    """A revoke confirmed and waiting in the recorder is still ``revoking``: a sweep that claims it again (its lease
    ran out meanwhile) must not make the call a second time."""
    [request_id] = grant_all(wave_bot, PEOPLE[:1])
    wave_bot.clock.advance(timedelta(minutes=10))
    assert wave_bot.runtime is not None
    sweeper = wave_bot.runtime.sweeper
    [work] = claims.claim_due(deps(wave_bot), 10)
    calls_done = threading.Event()
    sweeper.recorder.calls_running = lambda: not calls_done.is_set()
    sweeper.recorder.give_way = 600
    revoking.revoke_then(deps(wave_bot), request_id, sweeper.recorder, work.prepared)
    assert sweeper.recorder.has(request_id)

    wave_bot.clock.advance(Tuning().lease)  # its lease ran out while it waited to be recorded
    sweeper(wait=False)
    calls_done.set()
    assert sweeper.recorder.flush(timeout=30)
    assert len(receiver.events("revoke")) == 1
    assert view(wave_bot, request_id).status is Status.EXPIRED
