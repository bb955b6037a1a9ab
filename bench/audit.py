"""What sealing audit events into the hash chain costs, and how fast `breakglass audit verify` reads.

For SQLite (a file in a temporary directory) and, when BREAKGLASS_TEST_POSTGRES_URL is set, PostgreSQL (a schema of
its own, dropped at the end), in the same run:

* one transaction as the services write them: a compare-and-set UPDATE of a request and one audit event, through
  ``Database.transaction()`` with a key (sealed), and the same through a plain session on the same engine
  (baseline, not sealed), alternating so both see the same conditions;
* the same with 4 threads at once, as replicas would: the head row lock makes sealed commits take turns;
* verify over ``--events`` sealed events, in events per second.

    python bench/audit.py
    BREAKGLASS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python bench/audit.py --rounds 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text, update
from sqlalchemy.orm import Session, sessionmaker

from bot.store import audit, schema
from bot.store.chain import AuditSeal
from bot.store.db import Database
from bot.store.models import Request
from bot.store.verify import verify

KEY = "bench-audit-key-0123456789abcdef0123456789abcdef"
AT = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
Transaction = Callable[[], AbstractContextManager[Session]]


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def one_change(transaction: Transaction, n: int) -> None:
    with transaction() as session:
        session.execute(update(Request).where(Request.id == 1, Request.status == "active").values(revoke_attempts=n))
        audit.record(session, "revoke_failed", at=AT, request_id=1, resource="orders-db", attempt=n)


def plain_transactions(db: Database) -> Transaction:
    sessions = sessionmaker(db.engine, expire_on_commit=False)  # no seal installed: the baseline

    @contextmanager
    def transaction() -> Iterator[Session]:
        with sessions() as session, session.begin():
            yield session

    return transaction


def single(db: Database, rounds: int) -> dict[str, list[float]]:
    kinds = {"sealed": db.transaction, "not sealed": plain_transactions(db)}
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for n in range(rounds):
        for name, transaction in kinds.items() if n % 2 else reversed(kinds.items()):
            started = time.perf_counter()
            one_change(transaction, n)
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def concurrent(db: Database, threads: int, rounds: int) -> dict[str, float]:
    """Transactions per second with ``threads`` writers at once."""
    rates = {}
    for name, transaction in (("sealed", db.transaction), ("not sealed", plain_transactions(db))):
        start = threading.Barrier(threads + 1)

        def work(transaction: Transaction = transaction, start: threading.Barrier = start) -> None:
            start.wait()
            for n in range(rounds):
                one_change(transaction, n)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        rates[name] = threads * rounds / (time.perf_counter() - started)
    return rates


def fill(db: Database, events: int, per_transaction: int = 500) -> None:
    for first in range(0, events, per_transaction):
        with db.transaction() as session:
            for n in range(first, min(first + per_transaction, events)):
                audit.record(session, "granted", at=AT, actor="U0BOB", request_id=n, resource="orders-db", n=n)


def prepare(url: str) -> Database:
    db = Database.from_url(url, AuditSeal(KEY))
    schema.upgrade(db.engine)
    with db.transaction() as session:  # one request to update, and a first seal so no later one adopts anything
        session.add(
            Request(
                id=1, uid=str(uuid.uuid4()), resource="orders-db", requester_id="U0BOB", reason="INC-1",
                duration_seconds=60, status="active", created_at=AT,
            )
        )  # fmt: skip
        audit.record(session, "granted", at=AT, request_id=1)
    return db


def run(name: str, url: str, rounds: int, events: int, threads: int) -> None:
    db = prepare(url)
    try:
        one_change(db.transaction, 0)  # warm-up: connections, statement caches
        one_change(plain_transactions(db), 0)
        samples = single(db, rounds)
        base = statistics.median(samples["not sealed"])
        for kind in ("not sealed", "sealed"):
            median = statistics.median(samples[kind])
            print(
                f"{name:10} {kind:11} 1 thread   median {median:6.2f} ms  p99 {p99(samples[kind]):6.2f} ms  "
                f"x{median / base:4.2f}"
            )
        rates = concurrent(db, threads, max(rounds // threads, 20))
        for kind in ("not sealed", "sealed"):
            print(f"{name:10} {kind:11} {threads} threads  {rates[kind]:7.0f} transactions/s")
        with db.engine.begin() as connection:  # verify over exactly --events events, all sealed
            connection.execute(text("DELETE FROM audit_events"))
            connection.execute(
                text("UPDATE audit_chain_head SET seq = 0, hash = :g, key_id = NULL, mac = NULL"), {"g": "0" * 64}
            )
        fill(db, events)
        started = time.perf_counter()
        verdict = verify(db.engine, db.seal)
        elapsed = time.perf_counter() - started
        assert verdict.ok and verdict.events == events, verdict.line()
        print(f"{name:10} verify      {events} events in {elapsed:5.2f} s: {events / elapsed:7.0f} events/s")
    finally:
        db.dispose()


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    schema_name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema_name}"))
    try:
        separator = "&" if "?" in base else "?"
        yield f"{base}{separator}options=-csearch_path%3D{schema_name}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema_name} CASCADE"))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="transactions of each kind (default 300)")
    parser.add_argument("--events", type=int, default=20_000, help="events for the verify figure (default 20000)")
    parser.add_argument("--threads", type=int, default=4, help="writers at once (default 4)")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}; {args.rounds} rounds; verify over {args.events} events\n")
    with tempfile.TemporaryDirectory() as folder:
        run("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}", args.rounds, args.events, args.threads)
    postgres = os.environ.get("BREAKGLASS_TEST_POSTGRES_URL")
    if postgres:
        with postgres_schema(postgres) as url:
            run("postgresql", url, args.rounds, args.events, args.threads)
    else:
        print("(set BREAKGLASS_TEST_POSTGRES_URL for PostgreSQL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
