"""What activity capture costs: the time it adds to a grant and to a revoke, and the delay from a statement on the
backend to its line in the approval thread.

Against real backends with capture: PostgreSQL with pgaudit (a private cluster that preloads it, as the adapter
tests start one: tests/adapters/pg_cluster.py, temporary logins) and the loopback Redis 7 (``capture: monitor``),
through the bot's own use cases (``bot.testing.services``: Deps on SQLite, a notifier that notes when each digest
line reaches it):

* grant: ``approve`` of a request, which grants and (with capture) starts the watch, timed end to end; the baseline
  is the same resource without capture, alternated with it in the same run;
* revoke: an early revoke, which with capture also reads last and unwatches; same baseline;
* delay: with the real clock and the reader (``activity.read_due``) running every second, as the scheduler runs it,
  the time from a statement's reply to the moment its digest line is handed to the notifier. The resource reads
  every ``--every`` seconds (5 s, the least the policy allows), so the delay is mostly the wait for the next read.
  A bare round trip (``SELECT 1``, ``PING``) on the same session is the floor.

    BREAKGLASS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 python bench/activity.py --rounds 30 --statements 30
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import redis

from bot.adapters.base import Adapter
from bot.adapters.redis_acl import RedisAdapter, RedisParams
from bot.clock import SystemClock
from bot.services import activity
from bot.services.activity_notes import ActivityNote, Note
from bot.services.delivery import Courier
from bot.services.snapshots import RequestView
from bot.testing.services import RecordingNotifier, Services, services

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the PostgreSQL cluster helpers live with the tests

RUN = uuid.uuid4().hex[:8]
REDIS_BOT = f"bgbench{RUN}"
REDIS_PASSWORD = secrets.token_urlsafe(24)
REDIS_BOT_RULES = ["+acl|setuser", "+acl|deluser", "+acl|whoami", "+acl|dryrun", "+acl|getuser", "+acl|list"]
REDIS_CAPTURE_RULES = ["+monitor", "+client|list"]
REDIS_PREFIX = f"bgb{RUN}-"
PG_PREFIX = f"bgb{RUN}_"


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def line(label: str, samples: list[float], base: float, unit: str = "ms") -> None:
    median = statistics.median(samples)
    print(
        f"{label:52} n {len(samples):4}  median {median:9.2f} {unit}  p99 {p99(samples):9.2f} {unit}  "
        f"x{median / base:6.1f}"
    )


class TimedNotifier(RecordingNotifier):
    """Notes when each digest line reached it (what the courier would hand to Slack)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}

    def tell_activity(
        self, channel: str, thread_ts: str | None, view: RequestView, note: ActivityNote, mark: str
    ) -> Any:
        now = time.perf_counter()
        if note.note is Note.DIGEST:
            for shown in note.lines:
                self.arrived.setdefault(shown.action, now)
        return super().tell_activity(channel, thread_ts, view, note, mark)


def bot_over(directory: Path, adapter: Adapter, principal: str, every: float) -> Services:
    running = services(directory, "cache", adapter, principal, SystemClock(), activity_every=timedelta(seconds=every))
    running.deps.courier = Courier(running.deps)
    running.deps.tuning = replace(running.deps.tuning, requests_per_hour=1_000_000)  # the bench asks a lot
    return running


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return (time.perf_counter() - started) * 1000, result


class Session(Protocol):
    def ping(self) -> None: ...

    def run(self, marker: str) -> None: ...

    def close(self) -> None: ...


class Target(Protocol):
    """A real backend with capture: its adapter with capture on or off, and a session as a granted principal."""

    name: str

    def adapter(self, capture: bool) -> Adapter: ...

    def session(self, adapter: Adapter, principal: str, password: str) -> Session: ...


def closed(adapter: Adapter) -> None:
    close = getattr(adapter, "close", None)
    if close is not None:
        close()


def grant_and_revoke(target: Target, rounds: int, every: float) -> None:
    times: dict[str, list[float]] = {"grant": [], "grant+capture": [], "revoke": [], "revoke+capture": []}
    with tempfile.TemporaryDirectory() as plain_dir, tempfile.TemporaryDirectory() as capture_dir:
        plain_adapter, capturing_adapter = target.adapter(False), target.adapter(True)
        plain = bot_over(Path(plain_dir), plain_adapter, "bench_p", every)
        captured = bot_over(Path(capture_dir), capturing_adapter, "bench_c", every)
        try:
            for _ in range(rounds):
                for bot, suffix in ((plain, ""), (captured, "+capture")):
                    asked = bot.ask("30m")
                    took, granted = timed(lambda bot=bot, asked=asked: bot.approve(asked.id))
                    assert granted.status.value == "active", granted.failure
                    times["grant" + suffix].append(took)
                    took, ended = timed(lambda bot=bot, granted=granted: bot.revoke(granted.id))
                    assert ended.status.value == "revoked", ended.failure
                    times["revoke" + suffix].append(took)
        finally:
            plain.close()
            captured.close()
            closed(plain_adapter)
            closed(capturing_adapter)
    base = statistics.median(times["grant"])
    line(f"{target.name}: grant (baseline: no capture)", times["grant"], base)
    line(f"{target.name}: grant with capture (watch)", times["grant+capture"], base)
    base = statistics.median(times["revoke"])
    line(f"{target.name}: revoke (baseline: no capture)", times["revoke"], base)
    line(f"{target.name}: revoke with capture (read, unwatch)", times["revoke+capture"], base)


def delay(target: Target, statements: int, every: float) -> None:
    adapter = target.adapter(True)
    with tempfile.TemporaryDirectory() as directory:
        bot = bot_over(Path(directory), adapter, "bench_d", every)
        notifier = TimedNotifier()
        bot.deps.notifier = notifier
        bot.notifier = notifier
        stop = threading.Event()

        def reader() -> None:  # the scheduler's job, every second
            while not stop.wait(1.0):
                activity.read_due(bot.deps, tick=timedelta(seconds=1))

        thread = threading.Thread(target=reader, daemon=True)
        try:
            granted = bot.approve(bot.ask("2h").id)
            assert granted.status.value == "active", granted.failure
            session = target.session(adapter, "bench_d", notifier.credentials.get(granted.id, ""))
            thread.start()
            pings = []
            sent: dict[str, float] = {}
            for n in range(statements):
                time.sleep(random.uniform(0.2, every))
                took, _ = timed(session.ping)
                pings.append(took)
                marker = f"bench-{RUN}-{n}-"
                session.run(marker)
                sent[marker] = time.perf_counter()
            deadline = time.monotonic() + every * 3 + 15
            while time.monotonic() < deadline and not all(
                any(marker in shown for shown in notifier.arrived) for marker in sent
            ):
                time.sleep(0.2)
            delays = []
            for marker, at in sent.items():
                arrived = next((t for shown, t in notifier.arrived.items() if marker in shown), None)
                if arrived is None:
                    print(f"{target.name}: never in the thread: {marker}", file=sys.stderr)
                    continue
                delays.append((arrived - at) * 1000)
            session.close()
            bot.revoke(granted.id)
        finally:
            stop.set()
            thread.join(5)
            bot.close()
            closed(adapter)
    base = statistics.median(pings)
    line(f"{target.name}: round trip (floor)", pings, base)
    line(f"{target.name}: statement -> thread (every {every:g} s)", delays, base)
    print(f"{'':52} worst {max(delays) / 1000:.2f} s; activity_every {every:g} s + 1 s reader tick")


# -- Redis: MONITOR ----------------------------------------------------------------------------------------------


class RedisSession:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def ping(self) -> None:
        self.client.ping()

    def run(self, marker: str) -> None:
        self.client.get(f"bench:{marker}")

    def close(self) -> None:
        self.client.close()


class RedisTarget:
    name = "redis"

    def __init__(self, url: str) -> None:
        where = urlparse(url)
        self.host, self.port = where.hostname or "127.0.0.1", where.port or 6379
        self.admin = redis.Redis.from_url(url, decode_responses=True)
        rules = [*REDIS_BOT_RULES, *REDIS_CAPTURE_RULES]
        self.admin.execute_command("ACL", "SETUSER", REDIS_BOT, "reset", "on", f">{REDIS_PASSWORD}", *rules)
        self.params = RedisParams(
            host=self.host,
            port=self.port,
            username=REDIS_BOT,
            password=REDIS_PASSWORD,
            rules=["~bench:*", "+get", "+ping"],
            user_prefix=REDIS_PREFIX,
        )

    def adapter(self, capture: bool) -> Adapter:
        return RedisAdapter(self.params.model_copy(update={"capture": "monitor" if capture else "off"}))

    def session(self, adapter: Adapter, principal: str, password: str) -> Session:
        user = adapter.user_name(principal)  # type: ignore[attr-defined]
        client = redis.Redis(host=self.host, port=self.port, username=user, password=password, decode_responses=True)
        return RedisSession(client)

    def close(self) -> None:
        ours = [u for u in self.admin.execute_command("ACL", "USERS") if u.startswith((REDIS_PREFIX, REDIS_BOT))]
        if ours:
            self.admin.execute_command("ACL", "DELUSER", *ours)
        self.admin.close()


# -- PostgreSQL: pgaudit, on a private cluster that preloads it ------------------------------------------------------


class PostgresSession:
    def __init__(self, connection: Any, table: str) -> None:
        self.connection = connection
        self.table = table

    def ping(self) -> None:
        self.connection.execute("SELECT 1")

    def run(self, marker: str) -> None:
        from psycopg import sql

        statement = sql.SQL("SELECT secret, {} FROM {}").format(sql.Literal(marker), sql.Identifier(self.table))
        self.connection.execute(statement)

    def close(self) -> None:
        self.connection.close()


class PostgresTarget:
    name = "postgres"

    def __init__(self, stack: ExitStack) -> None:
        from tests.adapters.pg_cluster import find_bindir, running_cluster
        from tests.adapters.test_postgres import Backend, prepared
        from tests.adapters.test_postgres_activity import AUDIT_SETTINGS, CAPTURE_GRANTS

        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("postgres: initdb not found (install the PostgreSQL server binaries)")
        cluster = stack.enter_context(running_cluster(bindir, AUDIT_SETTINGS))
        superuser = {
            "host": cluster.host,
            "port": cluster.port,
            "dbname": "postgres",
            "user": cluster.superuser,
            "password": cluster.password,
        }
        backend = Backend(host=cluster.host, port=cluster.port, dbname="postgres", superuser=superuser)
        self.backend = stack.enter_context(contextmanager(prepared)(backend, "CREATEROLE", CAPTURE_GRANTS))

    def adapter(self, capture: bool) -> Adapter:
        from bot.adapters.postgres import PostgresAdapter

        changes: dict[str, Any] = {"login": "temporary", "login_prefix": PG_PREFIX}
        if capture:
            changes["capture"] = "pgaudit"
        return PostgresAdapter(self.backend.params(**changes))

    def session(self, adapter: Adapter, principal: str, password: str) -> Session:
        return PostgresSession(self.backend.connect_as(PG_PREFIX + principal, password), self.backend.table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("postgres", "redis", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=30, help="grants and revokes of each kind")
    parser.add_argument("--statements", type=int, default=30, help="statements timed to the thread")
    parser.add_argument("--every", type=float, default=5.0, help="the resource's activity_every, seconds (>= 5)")
    options = parser.parse_args()
    with ExitStack() as stack:
        targets: list[Target] = []
        if options.backend in ("postgres", "both"):
            targets.append(PostgresTarget(stack))
        if options.backend in ("redis", "both"):
            url = os.environ.get("BREAKGLASS_TEST_REDIS_URL")
            if not url:
                print("set BREAKGLASS_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)", file=sys.stderr)
                return 2
            redis_target = RedisTarget(url)
            stack.callback(redis_target.close)
            targets.append(redis_target)
        for target in targets:
            grant_and_revoke(target, options.rounds, options.every)
            delay(target, options.statements, options.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
