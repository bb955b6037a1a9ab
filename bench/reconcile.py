"""What one reconciliation run costs per 1,000 grants, on the real PostgreSQL adapter, against one listing alone.

Sets up on the loopback server a break-glass role with ``--grants`` logins that the bot's own account made members
(``login: existing``, so every membership is bot-made), and a bot database (SQLite, or ``--database``) holding one
active request for each of them. Then times, in the same run:

* baseline: ``holdings(everything=False)`` alone, the one listing a run makes;
* a run with nothing to take back: the listing, the live grants read from the bot's database, the comparison;
* a run that finds ``--orphans`` memberships no live grant covers and takes each back (re-read live grants, revoke,
  verify, re-read, audit, announce); the orphans are made again, untimed, before each run.

    BREAKGLASS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python bench/reconcile.py --rounds 15

Everything it makes on the server is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlparse

import psycopg
from psycopg import sql

from bot.adapters.postgres import PostgresAdapter, PostgresParams
from bot.clock import ManualClock
from bot.domain.live import live_key
from bot.domain.states import Status
from bot.services.deps import Deps, Tuning
from bot.services.reconcile import reconcile
from bot.store import schema
from bot.store.db import Database
from bot.store.models import Request
from bot.testing.services import FixedDirectory, RecordingNotifier, one_resource_policy

RESOURCE = "orders-db"


def timed(action: Callable[[], object], rounds: int, before: Callable[[], object] = lambda: None) -> list[float]:
    samples = []
    for _ in range(rounds):
        before()
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def names(logins: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(login) for login in logins)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--orphans", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--database", help="the bot's database URL (default: a new SQLite file)")
    args = parser.parse_args()
    url = os.environ.get("BREAKGLASS_TEST_POSTGRES_URL")
    if not url:
        print("set BREAKGLASS_TEST_POSTGRES_URL (see the module docstring)", file=sys.stderr)
        return 2
    run = uuid.uuid4().hex[:8]
    role, bot = f"bench_rc_role_{run}", f"bench_rc_bot_{run}"
    live = [f"bench_rc_live_{run}_{index}" for index in range(args.grants)]
    orphans = [f"bench_rc_gone_{run}_{index}" for index in range(args.orphans)]
    where = urlparse(url)
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(bot)))
            admin.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(role), sql.Identifier(bot)))
            admin.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(bot)))
            with admin.transaction():
                for login in live + orphans:
                    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
            with psycopg.connect(url, user=bot, autocommit=True) as as_bot:  # the bot's grants: bot-made
                as_bot.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), names(live)))

                def leave_orphans() -> None:
                    as_bot.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), names(orphans)))

                params = {
                    "host": where.hostname or "127.0.0.1",
                    "port": where.port or 5432,
                    "database": (where.path or "/postgres").lstrip("/") or "postgres",
                    "user": bot,
                    "sslmode": "disable",
                    "roles": [role],
                }
                adapter = PostgresAdapter(PostgresParams.model_validate(params))
                with tempfile.TemporaryDirectory() as scratch:
                    deps = bot_with_grants(args.database or f"sqlite:///{scratch}/bench.db", adapter, live)
                    reconcile(deps)  # warm up: connections, the statements' first plans
                    rows = [
                        ("baseline: holdings(everything=False)", timed(lambda: adapter.holdings(False), args.rounds)),
                        (
                            f"reconcile, {args.grants} live, nothing to take back",
                            timed(lambda: reconcile(deps), args.rounds),
                        ),
                    ]
                    found: list[int] = []
                    rows.append(
                        (
                            f"reconcile, {args.grants} live, {args.orphans} taken back",
                            timed(lambda: found.append(len(reconcile(deps).revoked)), args.rounds, leave_orphans),
                        )
                    )
                    assert set(found) == {args.orphans}, found
                    deps.db.dispose()
            base = statistics.median(rows[0][1])
            for label, samples in rows:
                median = statistics.median(samples)
                print(f"{label:50} median {median:8.2f} ms  p99 {p99(samples):8.2f} ms  x{median / base:5.1f}")
            per_thousand = statistics.median(rows[1][1]) * 1000 / args.grants
            print(f"reconcile's cost per 1,000 grants (nothing to take back): {per_thousand:.1f} ms")
        finally:
            with admin.transaction():
                for name in [*live, *orphans, bot, role]:
                    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    return 0


def bot_with_grants(database_url: str, adapter: PostgresAdapter, logins: list[str]) -> Deps:
    """The bot's side: a database with one active request per login, and the services' dependencies."""
    clock = ManualClock()
    db = Database.from_url(database_url)
    schema.upgrade(db.engine)
    now = clock.now()
    with db.transaction() as session:
        for login in logins:
            session.add(
                Request(
                    uid=str(uuid.uuid4()),
                    resource=RESOURCE,
                    requester_id="U0BENCH01",
                    principal=login,
                    reason="INC-1 bench",
                    duration_seconds=3600,
                    status=Status.ACTIVE.value,
                    created_at=now,
                    granted_at=now,
                    expires_at=now + timedelta(hours=1),
                    receipt={},
                    live_key=live_key(RESOURCE, login),
                )
            )
    return Deps(
        db=db,
        policy=one_resource_policy(RESOURCE, "postgres", {}),
        adapters={RESOURCE: adapter},
        notifier=RecordingNotifier(),
        directory=FixedDirectory([]),
        clock=clock,
        tuning=Tuning(),
    )


if __name__ == "__main__":
    sys.exit(main())
