"""The audit trail's hash chain: the canonical form of an event, the keys, and sealing new events at commit.

Each event gets ``seq`` (its place: 1, 2, 3, ... without gaps), ``prev_hash`` (the hash of the event before it),
``key_id`` and ``hash`` = HMAC-SHA256(key, canonical bytes of all of them and the event's contents). The key is kept
outside the database, so whoever can write to the database cannot change, remove, insert or reorder events and
recompute the chain. The head row (last seq and hash, with a MAC) shows when the newest events were removed.

Sealing happens at the end of each transaction, after its other changes are flushed: lock the head row (the last
lock the transaction takes, so it cannot deadlock with the request rows the sweep locks), chain the new events in
the order they were recorded, move the head. Replicas therefore append one transaction at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import Engine, bindparam, insert, inspect, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import as_utc
from bot.domain.actions import AuditAction
from bot.store.audit import SYSTEM
from bot.store.models import AuditChainHead, AuditEvent

GENESIS = "0" * 64  # the prev_hash of the first event, and the hash of an empty chain's head
UNKEYED = "unkeyed"  # the key_id of a chain sealed with plain SHA-256: unit tests and tools, never `serve`
ADOPTED = "audit_chain_adopted"  # the event that records the chaining of events written before the chain existed
HEAD_ALTERED = AuditAction.AUDIT_HEAD_ALTERED  # the event that records a head found changed without the key

_EVENT = b"breakglass-audit-event-v1\n"  # each kind of message has its own prefix, so no MAC passes for another
_HEAD = b"breakglass-audit-head-v1\n"
_KEY_ID = b"breakglass-audit-key-id-v1"
_PENDING = "breakglass.audit.unsealed"  # session.info: the events this transaction added, in order
_EVENTS = AuditEvent.__table__
_HEAD_ROW = AuditChainHead.__table__


class ChainError(Exception):
    """The chain cannot be extended with this seal: its head was sealed with a key the seal does not have."""


def key_id_of(key: str) -> str:
    """A short name for a key that reveals nothing about it."""
    return hmac.new(key.encode(), _KEY_ID, hashlib.sha256).hexdigest()[:16]


class AuditSeal:
    """The key new events are sealed with, and the retired keys older events were sealed with, by key id.
    ``AuditSeal(None)`` seals with plain SHA-256: a chain anyone with write access can recompute."""

    def __init__(self, key: str | None, previous: Sequence[str] = ()) -> None:
        self._keys: dict[str, bytes | None]
        if key is None:
            self.key_id = UNKEYED
            self._keys = {UNKEYED: None}
        else:
            self.key_id = key_id_of(key)
            self._keys = {key_id_of(old): old.encode() for old in previous}
            self._keys[self.key_id] = key.encode()

    @property
    def keyed(self) -> bool:
        return self.key_id != UNKEYED

    def knows(self, key_id: str | None) -> bool:
        return key_id in self._keys

    def mac(self, key_id: str, message: bytes) -> str:
        key = self._keys[key_id]
        if key is None:
            return hashlib.sha256(message).hexdigest()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def matches(self, key_id: str, message: bytes, expected: str | None) -> bool:
        return expected is not None and hmac.compare_digest(self.mac(key_id, message), expected)

    def __repr__(self) -> str:  # key ids only, never a key
        return f"AuditSeal(key_id={self.key_id!r}, known={sorted(self._keys)!r})"


class Sealed(Protocol):
    """What the hash covers: an AuditEvent, or a row read back from the table."""

    seq: int | None
    key_id: str | None
    prev_hash: str | None
    at: datetime
    actor: str
    action: str
    request_id: int | None
    resource: str | None
    reason: str | None
    detail: Any


def plain_json(value: Any) -> Any:
    """A value as it comes back from a JSON column: tuples are lists, keys are strings."""
    return json.loads(json.dumps({} if value is None else value))


def instant(at: datetime) -> str:
    """UTC to the microsecond, which is what SQLite's text and PostgreSQL's timestamptz both keep."""
    return as_utc(at).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(event: Sealed) -> bytes:
    fields = [
        event.seq,
        event.key_id,
        event.prev_hash,
        instant(event.at),
        event.actor,
        event.action,
        event.request_id,
        event.resource,
        event.reason,
        plain_json(event.detail),
    ]
    return _EVENT + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def head_message(seq: int, last_hash: str) -> bytes:
    return _HEAD + f"{seq}:{last_hash}".encode("ascii")


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    key_id: str | None
    mac: str | None

    @property
    def pristine(self) -> bool:
        """Never sealed: what migration 0004 leaves."""
        return self.mac is None and self.seq == 0 and self.hash == GENESIS


def read_head(connection: Connection | Session, lock: bool = False) -> Head | None:
    statement = select(_HEAD_ROW.c.seq, _HEAD_ROW.c.hash, _HEAD_ROW.c.key_id, _HEAD_ROW.c.mac).where(
        _HEAD_ROW.c.id == 1
    )
    row = connection.execute(statement.with_for_update() if lock else statement).one_or_none()
    return None if row is None else Head(row.seq, row.hash, row.key_id, row.mac)


def unknown_head_key(head: Head | None, seal: AuditSeal) -> str | None:
    """Why this seal cannot extend the chain at all: the head was sealed with a key it does not have (a rotation
    that dropped the old key, or a replica not yet told of the new one). A settings problem, not tampering."""
    if head is None or head.mac is None or seal.knows(head.key_id):
        return None
    return (
        f"the audit chain was last sealed with key id {head.key_id}, which is neither BREAKGLASS_AUDIT_KEY nor one "
        "of BREAKGLASS_AUDIT_PREVIOUS_KEYS"
    )


def altered_head(head: Head | None, seal: AuditSeal) -> str | None:
    """Why the head cannot be trusted, if it cannot: someone changed it without the key."""
    if head is None:
        return "the head row was missing"
    if head.mac is None:
        return None if head.pristine else "the head row had lost its MAC"
    if not seal.matches(str(head.key_id), head_message(head.seq, head.hash), head.mac):
        return "the head row failed its MAC check"
    return None


def check_head(engine: Engine, seal: AuditSeal) -> None:
    """Raise ChainError if this seal could not extend the chain: at start, rather than at the first audited change.
    A database that has no chain yet (not migrated) is left to the migration."""
    if not inspect(engine).has_table(_HEAD_ROW.name):
        return
    with engine.connect() as connection:
        problem = unknown_head_key(read_head(connection), seal)
    if problem:
        raise ChainError(problem)


def install(sessions: sessionmaker[Session], seal: AuditSeal) -> None:
    """Seal every AuditEvent added through these sessions when its transaction commits."""

    def track(session: Session, instance: object) -> None:
        if isinstance(instance, AuditEvent):
            session.info.setdefault(_PENDING, []).append(instance)

    def before_commit(session: Session) -> None:
        if not session.in_nested_transaction():  # a savepoint's release is not the commit
            seal_pending(session, seal)

    sa_event.listen(sessions, "transient_to_pending", track)
    sa_event.listen(sessions, "before_commit", before_commit)


@contextmanager
def events_kept_back(session: Session) -> Iterator[None]:
    """Within: this transaction's new audit events stay out of every flush, to be inserted sealed when it commits
    (one INSERT each), not inserted unsealed now and updated then (two statements each)."""
    waiting = [e for e in session.info.get(_PENDING, []) if e in session.new]
    for event in waiting:
        session.expunge(event)
    try:
        yield
    finally:
        session.add_all(waiting)  # tracked again on the way back in: once is enough
        session.info[_PENDING] = list(dict.fromkeys(session.info.get(_PENDING, [])))


def seal_pending(session: Session, seal: AuditSeal) -> None:
    events: list[AuditEvent] = [e for e in session.info.get(_PENDING, []) if e.seq is None and e in session]
    if not events:
        session.info.pop(_PENDING, None)
        return
    with events_kept_back(session):  # inserted once they are sealed: one statement each, not an INSERT and an UPDATE
        session.flush()  # the changes being recorded, and the row locks they take, come first
        seq, last_hash, first = _start(session, seal, _lock_head(session), events)
        session.add_all(first)  # ahead of the events they come before in the chain, so their rows come first too
        for event in [*first, *events]:
            seq += 1
            event.detail = plain_json(event.detail)  # stored exactly as hashed
            event.seq, event.prev_hash, event.key_id = seq, last_hash, seal.key_id
            event.hash = last_hash = seal.mac(seal.key_id, canonical(event))
    session.flush()
    session.info.pop(_PENDING, None)
    session.execute(
        update(_HEAD_ROW)
        .where(_HEAD_ROW.c.id == 1)
        .values(seq=seq, hash=last_hash, key_id=seal.key_id, mac=seal.mac(seal.key_id, head_message(seq, last_hash)))
    )


def _start(
    session: Session, seal: AuditSeal, head: Head | None, events: list[AuditEvent]
) -> tuple[int, str, list[AuditEvent]]:
    """Where this transaction's events go: after the head, and the events the chain must record first.

    A head changed without the key is not trusted, nor silently re-sealed (that would hide whatever its change
    hid): the chain goes on from the last event actually there, and its next event records what was found, for
    verify to report ever after. Access keeps being revoked meanwhile. Only a head sealed with a key this seal
    does not have stops appends: that is a settings mistake, and `serve` refuses to start with it."""
    problem = unknown_head_key(head, seal)
    if problem:
        raise ChainError(problem)
    altered = altered_head(head, seal)
    if head is not None and altered is None:
        if not head.pristine:
            return head.seq, head.hash, []
        if _tail(session)[0] == 0:
            return _adopt(session, seal, events)
        altered = "the head row had been reset to empty"
    seq, last_hash = _tail(session)
    if head is None:
        session.execute(insert(_HEAD_ROW).values(id=1, seq=0, hash=GENESIS))
    found = {"why": altered, "tail_seq": seq, "tail_hash": last_hash}
    if head is not None:
        found |= {"head_seq": head.seq, "head_hash": head.hash}
    return seq, last_hash, [AuditEvent(at=events[0].at, actor=SYSTEM, action=HEAD_ALTERED, detail=found)]


def _tail(session: Session) -> tuple[int, str]:
    row = session.execute(
        select(_EVENTS.c.seq, _EVENTS.c.hash).where(_EVENTS.c.seq.is_not(None)).order_by(_EVENTS.c.seq.desc()).limit(1)
    ).one_or_none()
    return (0, GENESIS) if row is None else (row.seq, row.hash or GENESIS)


def _lock_head(session: Session) -> Head | None:
    if session.get_bind().dialect.name == "sqlite":
        # A write first, so this transaction holds SQLite's one write lock (waiting for it under busy_timeout)
        # before it reads the head: a read first could be overtaken by another writer and then fail to write.
        session.execute(update(_HEAD_ROW).where(_HEAD_ROW.c.id == 1).values(seq=_HEAD_ROW.c.seq))
        return read_head(session)
    return read_head(session, lock=True)  # SELECT ... FOR UPDATE: the next replica waits here until we commit


def _adopt(
    session: Session, seal: AuditSeal, new: list[AuditEvent], batch: int = 500
) -> tuple[int, str, list[AuditEvent]]:
    """The first seal: chain the events written before the chain existed, oldest id first, then record that it did.
    They are proven unchanged from now on, not before: verify reports where the proof starts."""
    own = [e.id for e in new if e.id is not None]  # this transaction's events that autoflush already inserted
    seq, last_hash, first_id, last_id = 0, GENESIS, None, 0
    connection = session.connection()
    while True:
        statement = select(_EVENTS).where(_EVENTS.c.seq.is_(None), _EVENTS.c.id > last_id)
        if own:
            statement = statement.where(_EVENTS.c.id.not_in(own))
        rows = connection.execute(statement.order_by(_EVENTS.c.id).limit(batch)).all()
        if not rows:
            break
        changes = []
        for row in rows:
            seq += 1
            adopted = SimpleNamespace(**(row._asdict() | {"seq": seq, "prev_hash": last_hash, "key_id": seal.key_id}))
            last_hash = seal.mac(seal.key_id, canonical(adopted))
            changes.append({"row": row.id, "to_seq": seq, "to_prev": adopted.prev_hash, "to_hash": last_hash})
        connection.execute(
            update(_EVENTS)
            .where(_EVENTS.c.id == bindparam("row"))
            .values(
                seq=bindparam("to_seq"), prev_hash=bindparam("to_prev"), hash=bindparam("to_hash"), key_id=seal.key_id
            ),
            changes,
        )
        first_id = first_id or rows[0].id
        last_id = rows[-1].id
    if not seq:
        return 0, GENESIS, []
    found = {"events": seq, "first_id": first_id, "last_id": last_id}
    return seq, last_hash, [AuditEvent(at=new[0].at, actor=SYSTEM, action=ADOPTED, detail=found)]
