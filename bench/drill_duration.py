"""How long a drill takes per adapter: the whole emergency path (store, grant, verify, revoke, verify gone, alerts),
run N times through ``bot/services/drills.py`` against each real backend on loopback.

    BREAKGLASS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
    BREAKGLASS_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \\
    BREAKGLASS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 python bench/drill_duration.py --runs 40

The bot's own database is a SQLite file (what the demo and most tests use); Slack is a notifier that records, with
the courier sending as in the bot, so the figures are the backend's and the bot's, not Slack's. ``log`` cannot be asked
whether access exists, so its drills end "cannot verify" (not passed); it is timed all the same, as the floor of what
a drill costs in the bot itself. Per backend: the median and p99 of the whole drill, and the
median of each step.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bot.adapters import registry
from bot.clock import SystemClock
from bot.policy import Policy
from bot.services.delivery import Courier
from bot.services.deps import Deps, Tuning
from bot.services.drills import Trigger, run_drill
from bot.store import schema
from bot.store.db import Database
from bot.testing.services import FixedDirectory, RecordingNotifier

STEPS = ("grant", "verify", "revoke", "verify_gone", "alerts")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def deps_for(directory: Path, adapter: str, params: dict[str, Any]) -> Deps:
    policy = Policy.model_validate(
        {
            "channels": {"approvals": "C0APPROVALS", "audit": "C0SECURITY"},
            "resources": {"target": {"adapter": adapter, "params": params, "approvers": ["U0ALICE01"]}},
            "drills": [{"resource": "target", "every": "7d", "principal": "drill_bench"}],
        }
    )
    db = Database.from_url(f"sqlite:///{directory / f'{adapter}.db'}")
    schema.upgrade(db.engine)
    deps = Deps(
        db=db,
        policy=policy,
        adapters=registry.build_all(policy, os.environ),
        notifier=RecordingNotifier(),
        directory=FixedDirectory([]),
        clock=SystemClock(),
        tuning=Tuning(grant_retry_pause=0.01),
    )
    deps.courier = Courier(deps)
    return deps


def measure(name: str, directory: Path, adapter: str, params: dict[str, Any], runs: int) -> None:
    deps = deps_for(directory, adapter, params)
    totals: list[float] = []
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    outcomes: dict[str, int] = {}
    try:
        run_drill(deps, "target", None, Trigger.CLI, "bench")  # warm-up: connections, imports, first statements
        for _ in range(runs):
            result = run_drill(deps, "target", None, Trigger.CLI, "bench")
            totals.append(result.seconds * 1000)
            for step in result.steps:
                steps[step.name].append(step.seconds * 1000)
            verdict = "passed" if result.passed else "failed: " + ", ".join(s.name for s in result.steps if not s.ok)
            outcomes[verdict] = outcomes.get(verdict, 0) + 1
    finally:
        deps.db.dispose()
    median = statistics.median(totals)
    per_step = "  ".join(f"{step} {statistics.median(v):6.1f}" for step, v in steps.items() if v)
    print(f"{name:9} drill median {median:7.1f} ms  p99 {p99(totals):7.1f} ms  | {per_step}  | {outcomes}")


@contextmanager
def postgres(url: str) -> Iterator[dict[str, Any]]:
    import psycopg

    role = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            where = urlparse(url)
            yield {
                "host": where.hostname or "127.0.0.1",
                "port": where.port or 5432,
                "database": where.path.lstrip("/"),
                "user": where.username or "postgres",
                "sslmode": "disable",
                "roles": [role],
                "login": "temporary",
                "login_prefix": "bench_",
            }
        finally:
            admin.execute(f"DROP ROLE {role}")


@contextmanager
def mysql(url: str) -> Iterator[dict[str, Any]]:
    import pymysql

    where = urlparse(url)
    host, port, user = where.hostname or "127.0.0.1", where.port or 3306, where.username or "root"
    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host=host, port=port, user=user, password="", autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE {database}")
    try:
        yield {
            "host": host,
            "port": port,
            "user": user,
            "target": f"{database}.*",
            "privileges": ["SELECT"],
            "login": "temporary",
            "login_prefix": "bench_",
        }
    finally:
        admin.cursor().execute(f"DROP DATABASE {database}")
        admin.close()


@contextmanager
def redis_acl(url: str) -> Iterator[dict[str, Any]]:
    where = urlparse(url)
    yield {"host": where.hostname or "127.0.0.1", "port": where.port or 6379, "rules": ["~bench:*", "+get"]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    logging.getLogger("breakglass").setLevel(logging.CRITICAL)  # a "cannot verify" line per log/demo-db run
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        measure("log", directory, "log", {}, args.runs)
        measure("demo-db", directory, "demo-db", {"database": f"bench{uuid.uuid4().hex[:6]}"}, args.runs)
        backends = {
            "BREAKGLASS_TEST_POSTGRES_URL": ("postgres", "postgres", postgres),
            "BREAKGLASS_TEST_MYSQL_URL": ("mariadb", "mysql", mysql),
            "BREAKGLASS_TEST_REDIS_URL": ("redis", "redis", redis_acl),
        }
        for variable, (name, adapter, made) in backends.items():
            url = os.environ.get(variable)
            if not url:
                print(f"skipped {name}: set {variable}", file=sys.stderr)
                continue
            with made(url) as params:
                measure(name, directory, adapter, params, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
