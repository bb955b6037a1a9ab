"""Checking the audit chain end to end: every event in seq order, in batches (memory stays flat), then the head.

The first thing that does not hold is reported, naming the event: a hash that does not match its contents (edited,
or forged without the key), a seq that is missing (deleted), out of order or beyond the head (inserted), an event
outside the chain, a key id none of the configured keys has, a head that fails its MAC or disagrees with the last
event, or an earlier checkpoint (``--expect SEQ:HASH``) the chain no longer contains. Once the chain holds, the
captured activity is checked against the hashes its events chained (bot/store/verify_activity.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import Connection

from bot.store.audit import SYSTEM
from bot.store.chain import ADOPTED, GENESIS, HEAD_ALTERED, UNKEYED, AuditSeal, Head, canonical, head_message, read_head
from bot.store.models import AuditEvent

_EVENTS = AuditEvent.__table__


@dataclass(frozen=True)
class Break:
    kind: str  # edited, missing, misplaced, inserted, unchained, unknown_key, head, checkpoint, activity
    seq: int | None
    id: int | None
    message: str

    def line(self) -> str:
        where = f" at seq {self.seq}" if self.seq is not None else ""
        which = f" (id {self.id})" if self.id is not None else ""
        return f"BROKEN{where}{which}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class Verdict:
    events: int  # chained events checked
    head: Head | None
    broken: Break | None = None
    adopted: int = 0  # seq 1..adopted were written before the chain existed; proven only from their adoption on
    adopted_at: datetime | None = None
    waiting: int = 0  # events from before the chain that the next seal will adopt
    keyed: bool = True
    activity: int = 0  # batches of captured activity whose rows still match their event's sha256

    @property
    def ok(self) -> bool:
        return self.broken is None

    def line(self) -> str:
        if self.broken is not None:
            return self.broken.line()
        assert self.head is not None
        span = f"seq 1..{self.events} intact" if self.events else "nothing sealed yet"
        text = f"OK: {self.events} events, {span}; head {self.head.seq}:{self.head.hash}"
        if self.adopted:
            when = f" on {self.adopted_at:%Y-%m-%d %H:%M} UTC" if self.adopted_at else ""
            text += (
                f"; seq 1..{self.adopted} predate the chain and are proven unchanged only since they were "
                f"adopted{when} (seq {self.adopted + 1})"
            )
        if self.waiting:
            text += f"; {self.waiting} events from before the chain wait for the first seal"
        if self.activity:
            text += f"; {self.activity} batches of captured activity match their hashes"
        if not self.keyed:
            text = "UNKEYED " + text + " (a chain without a key proves nothing against anyone with write access)"
        return text


def parse_checkpoint(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as a successful verify prints it."""
    seq, _, digest = text.strip().partition(":")
    digest = digest.lower()
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("expected SEQ:HASH as `breakglass audit verify` prints the head, e.g. 120:9f2c…(64 hex)")
    return int(seq), digest


def has_chain(engine: Engine) -> bool:
    return inspect(engine).has_table("audit_chain_head")


def verify(engine: Engine, seal: AuditSeal, expect: tuple[int, str] | None = None, batch: int = 2000) -> Verdict:
    with engine.connect() as connection:
        return _Walk(connection, seal, expect).run(batch)


class _Walk:
    def __init__(self, connection: Connection, seal: AuditSeal, expect: tuple[int, str] | None) -> None:
        self.connection = connection
        self.seal = seal
        self.expect = expect
        self.expected = 1
        self.last_hash = GENESIS
        self.last_id: int | None = None
        self.adopted = 0
        self.adopted_at: datetime | None = None

    def verdict(self, head: Head | None, broken: Break | None = None, waiting: int = 0) -> Verdict:
        return Verdict(self.expected - 1, head, broken, self.adopted, self.adopted_at, waiting, keyed=self.seal.keyed)

    def run(self, batch: int) -> Verdict:
        head = read_head(self.connection)
        if head is None:
            return self.verdict(None, Break("head", None, None, "the head row is missing: it was deleted"))
        after: int | None = None
        while True:
            statement = select(_EVENTS).where(_EVENTS.c.seq.is_not(None)).order_by(_EVENTS.c.seq).limit(batch)
            if after is not None:
                statement = statement.where(_EVENTS.c.seq > after)
            rows = self.connection.execute(statement).all()
            for row in rows:
                if row.seq > head.seq:  # appended since the head was read, or inserted past it
                    head = read_head(self.connection) or head
                broken = self.step(row, head)
                if broken:
                    return self.verdict(head, broken)
            if len(rows) < batch:
                break
            after = rows[-1].seq
        broken = self.finish(head)
        if broken:
            return self.verdict(head, broken)
        verdict = self.outside(head)
        if not verdict.ok:
            return verdict
        from bot.store.verify_activity import check  # it builds on Break: imported here, not in a cycle

        matched, broken = check(self.connection, self.expected - 1, batch)
        return replace(verdict, broken=broken, activity=matched)

    def step(self, row: Any, head: Head) -> Break | None:
        seq, expected = row.seq, self.expected
        if seq < expected:
            return Break("misplaced", seq, row.id, f"seq {seq} where seq {expected} was expected (out of order)")
        if seq > expected and expected <= head.seq:
            gap = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
            return Break("missing", expected, None, f"{gap} is gone before seq {seq} (id {row.id}): deleted")
        if seq > head.seq:  # past the head: the head is wrong, or the event was inserted
            inserted = Break("inserted", seq, row.id, f"lies beyond the sealed head (seq {head.seq}): inserted")
            return self.forged_head(head, chained=True) or inserted
        if not self.seal.knows(row.key_id):
            return Break("unknown_key", seq, row.id, _unknown_key(row.key_id))
        if not self.seal.matches(row.key_id, canonical(row), row.hash):
            return Break("edited", seq, row.id, "its contents do not match its hash: edited, or forged without the key")
        if row.prev_hash != self.last_hash:
            return Break(
                "misplaced", seq, row.id, f"sealed after a different event than seq {seq - 1}: moved or replaced"
            )
        if self.expect and self.expect[0] == seq and self.expect[1] != row.hash:
            return Break("checkpoint", seq, row.id, f"the checkpoint saw hash {self.expect[1]} here: rewritten")
        if row.action == HEAD_ALTERED and row.actor == SYSTEM:
            return Break("head", seq, row.id, _altered(row.detail, row.at))
        if row.action == ADOPTED and row.actor == SYSTEM and not self.adopted:
            self.adopted, self.adopted_at = seq - 1, row.at
        self.expected += 1
        self.last_hash, self.last_id = row.hash, row.id
        return None

    def finish(self, head: Head) -> Break | None:
        """After the last event: the head must be authentic and name exactly that event."""
        last = self.expected - 1
        forged = self.forged_head(head, chained=last > 0)
        if forged:
            return forged
        if last < head.seq:
            gap = f"seq {last + 1}" if head.seq == last + 1 else f"seq {last + 1}..{head.seq}"
            return Break("missing", last + 1, None, f"{gap} is gone (the head says {head.seq}): the newest deleted")
        if head.hash != self.last_hash:
            return Break("head", last, self.last_id, "the head's hash is not this event's: the chain was replaced")
        if self.expect and self.expect[0] > last:
            return Break(
                "checkpoint",
                self.expect[0],
                None,
                f"a checkpoint saw seq {self.expect[0]} but the chain ends at {last}: "
                "events were removed and an older head restored",
            )
        return None

    def forged_head(self, head: Head, chained: bool) -> Break | None:
        if head.mac is None:
            if head.pristine and not chained:
                return None
            return Break("head", None, None, "the head row lost its MAC: it was edited or reset")
        if not self.seal.knows(head.key_id):
            return Break("unknown_key", None, None, "the head row: " + _unknown_key(head.key_id))
        if not self.seal.matches(str(head.key_id), head_message(head.seq, head.hash), head.mac):
            return Break("head", None, None, "the head row fails its MAC: it was edited (to hide removed events?)")
        return None

    def outside(self, head: Head) -> Verdict:
        """Events without a seq: before the first seal, the ones it will adopt; after it, inserted."""
        stray = select(func.count(), func.min(_EVENTS.c.id)).where(_EVENTS.c.seq.is_(None))
        count, first = self.connection.execute(stray).one()
        if not count:
            return self.verdict(head)
        if head.pristine:
            return self.verdict(head, waiting=count)
        broken = Break(
            "unchained",
            None,
            first,
            f"not in the chain ({count} such events): inserted directly, or written by a replica still running "
            "a version from before the chain",
        )
        return self.verdict(head, broken)


def _unknown_key(key_id: str | None) -> str:
    if key_id == UNKEYED:
        return "sealed without a key ('unkeyed'): anyone with write access to the database could have written it"
    return (
        f"sealed with key id {key_id}, which is neither BREAKGLASS_AUDIT_KEY nor one of BREAKGLASS_AUDIT_PREVIOUS_KEYS"
    )


def _altered(found: dict[str, Any], at: datetime) -> str:
    said = f"it said seq {found['head_seq']}, " if "head_seq" in found else ""
    return (
        f"when this event was written ({at:%Y-%m-%d %H:%M} UTC) the bot found the head altered: {found.get('why')}; "
        f"{said}the chain ended at seq {found.get('tail_seq')}: events after it may have been removed"
    )
