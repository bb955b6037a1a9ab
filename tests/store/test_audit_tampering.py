"""Property: a chain of random events (hostile text, any Unicode, nested detail, any time zone) always verifies as
written; after any one change made with SQL straight to the table (an edited field, a deleted, inserted or
renumbered event, two events swapped) verify fails and names the first event that no longer holds."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.store.chain import GENESIS, UNKEYED, canonical, instant, key_id_of, plain_json
from bot.store.db import Database
from bot.store.models import AuditEvent
from bot.store.verify import verify
from tests.store.chain_tools import PAYLOAD, chained, edit, forge, remove, reset, shift
from tests.store.conftest import OLD_KEY

# What a database can hold at all: no NUL (PostgreSQL refuses it in text) and no lone surrogates (not UTF-8).
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
HOSTILE = st.sampled_from(['=HYPERLINK("http://x")', "<!channel>", "\u202etxt.exe", "'; DROP TABLE audit_events;--"])


def text(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(st.text(TEXT, max_size=max_size), HOSTILE.map(lambda s: s[:max_size]))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text(20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text(10), inner, max_size=3),
    max_leaves=8,
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
EVENT = st.fixed_dictionaries(
    {
        "at": st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=ZONES),
        "actor": text(64),
        "action": text(32),
        "request_id": st.none() | st.integers(1, 2**31 - 1),
        "resource": st.none() | text(64),
        "reason": st.none() | text(300),
        "detail": st.dictionaries(text(10), JSON, max_size=4),
    }
)
TRANSACTIONS = st.lists(st.lists(EVENT, min_size=1, max_size=3), min_size=1, max_size=4)
TAMPERINGS = (
    "edit",
    "renumber",
    "delete",
    "delete_and_close_gap",
    "insert",
    "append",
    "insert_unchained",
    "swap_seqs",
    "swap_contents",
)
FIELDS = (*PAYLOAD, "prev_hash", "hash", "key_id")


def write(db: Database, transactions: list[list[dict[str, Any]]]) -> None:
    reset(db.engine)
    for events in transactions:
        with db.transaction() as session:
            session.add_all(AuditEvent(**event) for event in events)


def payload(row: Any) -> tuple[Any, ...]:
    return (instant(row.at), *(row._mapping[name] for name in PAYLOAD[1:-1]), plain_json(row.detail))


def different(data: st.DataObject, field: str, old: Any) -> Any:
    """A new value for ``field`` that the event's hash would notice."""
    choices: dict[str, st.SearchStrategy[Any]] = {
        "at": st.integers(1, 10**12).map(lambda us: old + timedelta(microseconds=us)),
        "actor": text(64),
        "action": text(32),
        "request_id": st.none() | st.integers(1, 2**31 - 1),
        "resource": st.none() | text(64),
        "reason": st.none() | text(300),
        "detail": st.dictionaries(text(10), JSON, max_size=3),
        "prev_hash": st.sampled_from([GENESIS, "a" * 64]) | st.binary(min_size=32, max_size=32).map(bytes.hex),
        "hash": st.binary(min_size=32, max_size=32).map(bytes.hex),
        "key_id": st.sampled_from([UNKEYED, key_id_of(OLD_KEY), "0" * 16]) | st.none(),
    }
    same = (lambda v: plain_json(v) == plain_json(old)) if field == "detail" else (lambda v: v == old)
    return data.draw(choices[field].filter(lambda v: not same(v)), label=f"new {field}")


def tamper(db: Database, data: st.DataObject) -> tuple[int | None, int | None]:
    """One change; returns the (seq, id) verify must name first, or (None, None) if the change is invisible."""
    rows = chained(db.engine)
    n = len(rows)
    kind = data.draw(st.sampled_from(TAMPERINGS), label="tampering")
    k = data.draw(st.integers(1, n), label="event")
    row = rows[k - 1]
    if kind == "edit":
        field = data.draw(st.sampled_from(FIELDS), label="field")
        edit(db.engine, k, **{field: different(data, field, row._mapping[field])})
        return k, row.id
    if kind == "renumber":
        to = data.draw(st.integers(-5, 0) | st.integers(n + 1, n + 20), label="to")
        edit(db.engine, k, seq=to)
        return (to, row.id) if to < k else (k, None)
    if kind in ("delete", "delete_and_close_gap"):
        remove(db.engine, k)
        if kind == "delete_and_close_gap" and k < n:
            shift(db.engine, k + 1, -1)
        return k, None
    if kind == "insert":  # a forged event at k, later ones moved up; linked to the event before it, as best it can
        shift(db.engine, k, 1)
        prev = rows[k - 2].hash if k > 1 else GENESIS
        forged = forge(db.engine, k, prev_hash=prev, key_id=row.key_id)
        forged_row = next(r for r in chained(db.engine) if r.id == forged)
        edit(db.engine, k, hash=hashlib.sha256(canonical(forged_row)).hexdigest())
        return k, forged
    if kind == "append":
        return n + 1, forge(db.engine, n + 1, prev_hash=rows[-1].hash, key_id=row.key_id)
    if kind == "insert_unchained":
        return None, forge(db.engine, None)
    if n == 1:
        return None, None  # nothing to swap with
    j = data.draw(st.sampled_from([other for other in range(1, n + 1) if other != k]), label="other")
    i, j = sorted((k, j))
    first, second = rows[i - 1], rows[j - 1]
    if kind == "swap_seqs":
        edit(db.engine, i, seq=-1)
        edit(db.engine, j, seq=i)
        edit(db.engine, -1, seq=j)
        return i, second.id
    if payload(first) == payload(second):
        return None, None  # swapping equal contents changes nothing
    edit(db.engine, i, **{name: second._mapping[name] for name in PAYLOAD})
    edit(db.engine, j, **{name: first._mapping[name] for name in PAYLOAD})
    return i, first.id


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(transactions=TRANSACTIONS, data=st.data())
def test_any_single_change_is_detected_and_the_first_broken_event_named(
    db: Database, transactions: list[list[dict[str, Any]]], data: st.DataObject
) -> None:
    write(db, transactions)
    untouched = verify(db.engine, db.seal, batch=4)
    assert untouched.ok, untouched.line()
    assert untouched.events == sum(map(len, transactions))

    seq, event_id = tamper(db, data)

    verdict = verify(db.engine, db.seal, batch=4)
    if seq is None and event_id is None:
        assert verdict.ok, verdict.line()
        return
    assert verdict.broken is not None, "the change went unnoticed"
    assert verdict.broken.seq == seq, verdict.line()
    if event_id is not None and verdict.broken.id is not None:
        assert verdict.broken.id == event_id, verdict.line()
