"""What one ``holdings()`` call costs on PostgreSQL with 1,000 holders, against a bare round trip to the same server.

Reconciliation lists each resource's holders once per run (default every 10 minutes). This sets up a role with
``--holders`` members on the loopback server (half granted by the bot's account, so bot-made in ``login: existing``
mode, half by the superuser, as a DBA would), then times, in the same run:

* baseline: a new connection and ``SELECT 1``, the least any adapter call does;
* ``holdings(everything=False)`` and ``holdings(everything=True)`` of the ``existing`` mode adapter.

    BREAKGLASS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python bench/holdings.py --rounds 40

Everything it makes is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlparse

import psycopg
from psycopg import sql

from bot.adapters.postgres import PostgresAdapter, PostgresParams


def timed(action: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    url = os.environ.get("BREAKGLASS_TEST_POSTGRES_URL")
    if not url:
        print("set BREAKGLASS_TEST_POSTGRES_URL (see the module docstring)", file=sys.stderr)
        return 2
    run = uuid.uuid4().hex[:8]
    role, bot, password = f"bench_role_{run}", f"bench_bot_{run}", f"Bench-pw-{uuid.uuid4().hex}"
    members = [f"bench_holder_{run}_{index}" for index in range(args.holders)]
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(bot), sql.Literal(password))
            )
            admin.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(role), sql.Identifier(bot)))
            with admin.transaction():
                for member in members:
                    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(member)))
                standing = members[: len(members) // 2]
                admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), _names(standing)))
            where = urlparse(url)
            params = PostgresParams(
                host=where.hostname or "127.0.0.1",
                port=where.port or 5432,
                database=(where.path or "/postgres").lstrip("/") or "postgres",
                user=bot,
                password=password,
                sslmode="disable",
                roles=[role],
            )
            with psycopg.connect(url, user=bot, password=password, autocommit=True) as as_bot:
                as_bot.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), _names(members[len(standing) :])))
            adapter = PostgresAdapter(params)
            made, every = adapter.holdings(everything=False), adapter.holdings(everything=True)
            assert len(made) == len(members) - len(standing) and len(every) == len(members), (len(made), len(every))

            def baseline() -> None:
                with psycopg.connect(url, user=bot, password=password, autocommit=True) as conn:
                    conn.execute("SELECT 1").fetchone()

            rows = [
                ("baseline (connect + SELECT 1)", timed(baseline, args.rounds)),
                (
                    f"holdings(everything=False), {len(made)} of {len(members)}",
                    timed(lambda: adapter.holdings(False), args.rounds),
                ),
                (f"holdings(everything=True), {len(members)}", timed(lambda: adapter.holdings(True), args.rounds)),
            ]
            base = statistics.median(rows[0][1])
            for label, samples in rows:
                median = statistics.median(samples)
                print(f"{label:44} median {median:7.2f} ms  p99 {p99(samples):7.2f} ms  x{median / base:5.1f}")
        finally:
            with admin.transaction():
                for name in [*members, bot, role]:
                    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    return 0


def _names(names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


if __name__ == "__main__":
    sys.exit(main())
