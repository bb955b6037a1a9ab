"""The size of the tables: start, memory and the everyday queries with 100,000 live grants and 1,000,000 audit events.

A PostgreSQL database made for the run (on the server ``--postgres`` names) is filled straight through SQL: live
grants over 20 resources ending over the next eight hours, and an audit trail sealed with the run's key exactly as
the bot seals it (so the bot extends that chain, and does not adopt a million unsealed events at its first write).
Then ``breakglass serve`` is started as a process of its own, as an operator starts it, against a Slack stand-in in
another process:

* start: from the process's launch to ``/healthz`` answering 200, beside the same on an empty database;
* RSS: the process's resident memory once ready, and again after its first periodic sweep;
* queries: ``mine``, the Home tab and the sweep's queries, timed (median, p99, max of ``--repeat`` runs each) and
  each statement explained by PostgreSQL, with the index it uses (a sequential scan of a big table is a failure).

    python bench/scale.py                    # 100,000 grants and 1,000,000 events (about two minutes to fill)
    python bench/scale.py --quick            # CI: 2,000 grants and 20,000 events; fails only on a full scan
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, event, insert, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadkit import active_grant, add_postgres_option, bot_settings, database, insert_grants, slack_elsewhere, summary

from bot import runtime
from bot.clock import SystemClock
from bot.devtools.local_bot import BOT_TOKEN, PEOPLE, SIGNING_SECRET
from bot.devtools.ports import free_port
from bot.policy import parse_policy
from bot.services import home
from bot.services import requests as asks
from bot.store import queries, schema
from bot.store.chain import GENESIS, AuditSeal, canonical, head_message, plain_json
from bot.store.db import make_engine
from bot.store.models import AuditChainHead, AuditEvent

TARGET_START_S = 3.0
TARGET_RSS_MB = 150.0
RESOURCES = 20
ACTIONS = ("requested", "approved", "granted", "expiring", "expired", "review_due")


def policy_text() -> str:
    lines = ["channels:", "  approvals: C0APPROVALS", "  audit: C0SECURITY", "resources:"]
    for n in range(RESOURCES):
        lines += [
            f"  scale-{n}:",
            "    description: A resource of a large estate",
            "    adapter: webhook",
            "    params: {url: 'http://127.0.0.1:9/hooks', secret: '${BENCH_WEBHOOK_SECRET}'}",
            "    approvers: [U0ALICE01]",
            "    emergency: true",
        ]
    return "\n".join(lines) + "\n"


def fill(engine: Engine, grants: int, events: int, key: str) -> None:
    now = datetime.now(UTC)
    rows = [
        active_grant(i, f"scale-{i % RESOURCES}", now - timedelta(minutes=5), now + timedelta(seconds=60 + i % 28800))
        for i in range(grants)
    ]
    insert_grants(engine, rows)
    seal = AuditSeal(key)
    last_hash, chunk = GENESIS, []
    start = now - timedelta(days=365)
    with engine.begin() as connection:
        for seq in range(1, events + 1):
            request_id = seq % max(grants, 1) + 1
            fields: dict[str, Any] = {
                "at": start + timedelta(seconds=seq * 30),
                "actor": "U0LOAD000001",
                "action": ACTIONS[seq % len(ACTIONS)],
                "request_id": request_id,
                "resource": f"scale-{request_id % RESOURCES}",
                "reason": f"INC-{request_id} load",
                "detail": plain_json({"level": None} if seq % 2 else {}),
                "seq": seq,
                "key_id": seal.key_id,
                "prev_hash": last_hash,
            }
            last_hash = fields["hash"] = seal.mac(seal.key_id, canonical(_Sealed(fields)))
            chunk.append(fields)
            if len(chunk) == 20_000 or seq == events:
                connection.execute(insert(AuditEvent), chunk)
                chunk = []
        mac = seal.mac(seal.key_id, head_message(events, last_hash))
        head = {"seq": events, "hash": last_hash, "key_id": seal.key_id, "mac": mac}
        connection.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(**head))
        connection.execute(text("ANALYZE"))


class _Sealed:
    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)


def start_serve(url: str, slack_url: str, key: str, folder: Path, settle: float = 5.0) -> tuple[float, float, float]:
    """Seconds from launch to /healthz 200, RSS (MB) then, and RSS after the first periodic sweep has run."""
    (folder / "breakglass.yml").write_text(policy_text())
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # the checkout measured, when it is not the one installed
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "DATABASE_URL": url,
        "PORT": str(port),
        "BREAKGLASS_AUDIT_KEY": key,
        "BENCH_WEBHOOK_SECRET": "bench-webhook-secret-0123456789",
        "BREAKGLASS_LOG_LEVEL": "WARNING",
    }
    launched = time.monotonic()
    server = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=folder, env=env, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"serve exited: {server.stderr.read().decode() if server.stderr else ''}")
            if time.monotonic() - launched > 120:
                raise SystemExit("serve was not ready within two minutes")
            time.sleep(0.02)
        ready = time.monotonic() - launched
        at_ready = rss_mb(server.pid)
        time.sleep(settle)  # the first periodic sweep runs at start; give it and the alarms it sets time to settle
        return ready, at_ready, rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the everyday queries --------------------------------------------------------------------------------------------


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements run on ``engine`` meanwhile, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and not executemany:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", keep)


_INDEX = re.compile(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)")
_SEQ = re.compile(r"Seq Scan on (\w+)")
BIG = 1000  # rows: a table this size or larger must be read through an index


def plans(engine: Engine, statements: list[tuple[str, Any]]) -> tuple[set[str], set[str]]:
    """The indexes the statements use, and the tables of ``BIG`` rows or more any of them reads end to end (a small
    table, such as an empty outbox, is read whole by any planner, and rightly)."""
    used: set[str] = set()
    scanned: set[str] = set()
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        for statement, parameters in statements:
            plan = "\n".join(row[0] for row in raw.execute("EXPLAIN " + statement, parameters).fetchall())
            used |= set(_INDEX.findall(plan))
            scanned |= set(_SEQ.findall(plan))
        sizes = dict(raw.execute("SELECT relname, reltuples FROM pg_class WHERE relkind = 'r'").fetchall())
    return used, {table for table in scanned if sizes.get(table, 0) >= BIG}


def timed(repeat: int, work: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return times


def queries_report(url: str, key: str, slack_url: str, repeat: int) -> list[str]:
    settings = bot_settings(url, slack_url, key)
    environ = {"BENCH_WEBHOOK_SECRET": "bench-webhook-secret-0123456789"}
    bot = runtime.build(settings, environ, clock=SystemClock(), policy=parse_policy(policy_text()))
    deps, engine = bot.deps, bot.deps.db.engine
    holder, approver = "U0LOAD000042", "U0ALICE01"
    now = deps.now()

    def sweep_queries() -> None:
        with deps.db.transaction() as session:
            queries.lock_due(session, now, now - deps.tuning.lease, deps.tuning.batch)
            queries.upcoming_times(session, now, until=now + timedelta(seconds=30))
            queries.warning_due_ids(session, now + deps.tuning.expiry_warning, deps.tuning.batch)
            queries.reminder_due_ids(session, now, deps.tuning.batch)
            queries.lapsed_ids(session, now, deps.tuning.batch)
            queries.approver_reminders_due_ids(session, now, deps.tuning.batch)
            queries.escalations_due_ids(session, now, deps.tuning.batch)

    work: list[tuple[str, Callable[[], object]]] = [
        ("mine (a holder)", lambda: asks.mine(deps, holder)),
        ("mine (an approver)", lambda: asks.mine(deps, approver)),
        ("Home tab (a holder)", lambda: home.page(deps, holder)),
        ("Home tab (an approver)", lambda: home.page(deps, approver)),
        ("the sweep's queries", sweep_queries),
    ]
    lines, failures = [], []
    try:
        for name, call in work:
            with captured(engine) as statements:
                call()
            used, scanned = plans(engine, statements)
            median, p99, top = summary(timed(repeat, call))
            lines.append(f"{name:<26} {median:>9.1f} {p99:>8.1f} {top:>8.1f}  {', '.join(sorted(used)) or '-'}")
            if scanned:
                failures.append(f"{name}: scans {', '.join(sorted(scanned))} end to end")
    finally:
        bot.stop()
    return lines + [f"FAILED: {failure}" for failure in failures]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--grants", type=int, default=100_000, help="live grants (100000)")
    parser.add_argument("--events", type=int, default=1_000_000, help="audit events (1000000)")
    parser.add_argument("--repeat", type=int, default=50, help="runs of each query (50)")
    add_postgres_option(parser)
    parser.add_argument("--quick", action="store_true", help="a short run for CI: 2,000 grants, 20,000 events")
    args = parser.parse_args(argv)
    if args.quick:
        args.grants, args.events, args.repeat = 2_000, 20_000, 5
    if args.grants < 1 or args.events < 1 or args.repeat < 1:
        parser.error("--grants, --events and --repeat must be at least 1")
    key = secrets.token_urlsafe(48)
    slack = slack_elsewhere(BOT_TOKEN, PEOPLE)
    failures = []
    try:
        with tempfile.TemporaryDirectory(prefix="breakglass-scale-") as tmp:
            with database(args.postgres) as empty:
                settle = 1.0 if args.quick else 5.0
                base = start_serve(empty, slack.url, key, Path(tmp), settle)
            with database(args.postgres) as url:
                engine = make_engine(url)
                schema.upgrade(engine)  # as serve would make it, before the tables are filled
                started = time.monotonic()
                fill(engine, args.grants, args.events, key)
                engine.dispose()
                filled = time.monotonic() - started
                full = start_serve(url, slack.url, key, Path(tmp), settle)
                print(f"{args.grants:,} live grants and {args.events:,} audit events (filled in {filled:.0f} s)\n")
                print(f"{'':<26} {'start s':>9} {'RSS MB':>8} {'RSS MB after a sweep':>21}")
                for name, (ready, rss, later) in (("empty database", base), ("full database", full)):
                    print(f"{name:<26} {ready:>9.2f} {rss:>8.0f} {later:>21.0f}")
                print(f"targets: start <= {TARGET_START_S:g} s, RSS <= {TARGET_RSS_MB:g} MB\n")
                if full[0] > TARGET_START_S and not args.quick:
                    failures.append(f"start took {full[0]:.2f} s")
                if max(full[1:]) > TARGET_RSS_MB and not args.quick:
                    failures.append(f"RSS reached {max(full[1:]):.0f} MB")
                print(f"{'query':<26} {'median ms':>9} {'p99 ms':>8} {'max ms':>8}  indexes used")
                lines = queries_report(url, key, slack.url, args.repeat)
                print("\n".join(line for line in lines if not line.startswith("FAILED")))
                failures += [line.removeprefix("FAILED: ") for line in lines if line.startswith("FAILED")]
    finally:
        slack.stop()
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
