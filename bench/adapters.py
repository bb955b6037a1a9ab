"""What one grant and one revoke cost on real backends, against a bare round trip to the same server.

For each backend on loopback (PostgreSQL, MariaDB, Redis), in the same run:

* baseline: a new connection and one trivial command (``SELECT 1`` / ``PING``), the least any adapter call does;
* grant and revoke: the adapter's real calls for a fresh principal (temporary logins for PostgreSQL and MariaDB,
  an ACL user for Redis, since those do the most work: create, grant, password, backstop, drop, kill).

    BREAKGLASS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
    BREAKGLASS_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \\
    BREAKGLASS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 python bench/adapters.py --rounds 40

The bot runs every backend call in a lane of its own with a deadline, so these figures say how many grants and
revokes a second one lane can carry, and how much of a call is the backend's own connection cost.
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

from bot.adapters.base import Adapter
from bot.testing.contract import grant_context


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


def report(name: str, baseline: list[float], grants: list[float], revokes: list[float]) -> None:
    base = statistics.median(baseline)
    for label, samples in (("baseline", baseline), ("grant", grants), ("revoke", revokes)):
        median = statistics.median(samples)
        print(f"{name:9} {label:8} median {median:7.2f} ms  p99 {p99(samples):7.2f} ms  x{median / base:5.1f}")


def cycle(adapter: Adapter, rounds: int) -> tuple[list[float], list[float]]:
    contexts = [grant_context(f"bench{uuid.uuid4().hex[:10]}") for _ in range(rounds)]
    receipts = []
    grants = []
    for ctx in contexts:
        started = time.perf_counter()
        receipts.append(adapter.grant(ctx))
        grants.append((time.perf_counter() - started) * 1000)
    revokes = []
    for ctx, receipt in zip(contexts, receipts, strict=True):
        started = time.perf_counter()
        adapter.revoke(ctx, receipt)
        revokes.append((time.perf_counter() - started) * 1000)
    return grants, revokes


def postgres(url: str, rounds: int) -> None:
    import psycopg

    from bot.adapters.postgres import PostgresAdapter, PostgresParams

    role = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            where = urlparse(url)
            params = PostgresParams(
                host=where.hostname or "127.0.0.1",
                port=where.port or 5432,
                database=where.path.lstrip("/"),
                user=where.username or "postgres",
                roles=[role],
                login="temporary",
                login_prefix="bench_",
            )
            baseline = timed(lambda: psycopg.connect(url, autocommit=True).close(), rounds)
            grants, revokes = cycle(PostgresAdapter(params), rounds)
            report("postgres", baseline, grants, revokes)
        finally:
            admin.execute(f"DROP ROLE {role}")


def mysql(url: str, rounds: int) -> None:
    import pymysql

    from bot.adapters.mysql import MysqlAdapter, MysqlParams

    where = urlparse(url)
    connect = {"host": where.hostname, "port": where.port or 3306, "user": where.username or "root", "password": ""}
    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(**connect, autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE {database}")
    try:
        params = MysqlParams(
            host=connect["host"],
            port=connect["port"],
            user=connect["user"],
            target=f"{database}.*",
            privileges=("SELECT",),
            login="temporary",
            login_prefix="bench_",
        )

        def bare() -> None:
            connection = pymysql.connect(**connect)
            connection.cursor().execute("SELECT 1")
            connection.close()

        baseline = timed(bare, rounds)
        grants, revokes = cycle(MysqlAdapter(params), rounds)
        report("mysql", baseline, grants, revokes)
    finally:
        admin.cursor().execute(f"DROP DATABASE {database}")
        admin.close()


def redis_acl(url: str, rounds: int) -> None:
    import redis

    from bot.adapters.redis_acl import RedisAdapter, RedisParams

    where = urlparse(url)
    params = RedisParams(host=where.hostname or "127.0.0.1", port=where.port or 6379, rules=["~bench:*", "+get"])

    def bare() -> None:
        client = redis.Redis(host=params.host, port=params.port)
        client.ping()
        client.close()

    baseline = timed(bare, rounds)
    grants, revokes = cycle(RedisAdapter(params), rounds)
    report("redis", baseline, grants, revokes)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    backends = {
        "BREAKGLASS_TEST_POSTGRES_URL": postgres,
        "BREAKGLASS_TEST_MYSQL_URL": mysql,
        "BREAKGLASS_TEST_REDIS_URL": redis_acl,
    }
    ran = 0
    for variable, run in backends.items():
        url = os.environ.get(variable)
        if not url:
            print(f"skipped: set {variable}", file=sys.stderr)
            continue
        run(url, args.rounds)
        ran += 1
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
