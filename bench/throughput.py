"""Throughput: how many requests a second one replica carries from the command to its effect, with 8 clients.

A bot built by ``bot.runtime.build`` with default settings, on PostgreSQL (a database made for the run on the server
``--postgres`` names) or SQLite, serving HTTP; the Slack stand-in and a webhook receiver (50 ms a call) each in a
process of their own, and the clients (8 by default, each sending its next command when the last was answered)
in a third. Each of ``--n`` people sends one signed ``/breakglass`` command:

* requests: ``<resource> 1h INC-n ...``, measured to the approval message posted in the approvals channel;
* emergencies: the same with ``--emergency``, measured to the backend's grant call.

Each row prints requests/s (from the first command sent to the last effect), and the median, p99 and max of each
request's own time from its command to its effect. The target is 100 a second for both. The floor, measured first in
the same run, is what this machine allows any Bolt app: a bare one served the same way, whose command listener acks
and then posts one message to the same Slack stand-in (the least a request's effect can cost, with nothing stored).
On PostgreSQL, two more floors: the same bare app doing a request's I/O, and an emergency's, and nothing else (its
statements, Web API calls, backend call and answer, counted off the bot; ``IoShape``): what that I/O alone costs
on this machine, before any of the bot's own work.

    python bench/throughput.py
    python bench/throughput.py --quick          # CI: 40 of each; fails only if one is lost
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadkit import (
    add_postgres_option,
    bare_app,
    bot_settings,
    database,
    fire,
    receiver_elsewhere,
    replica_elsewhere,
    served,
    slack_elsewhere,
    summary,
)

from bot import runtime
from bot.clock import SystemClock
from bot.devtools.local_bot import BOT_TOKEN, PEOPLE, SIGNING_SECRET
from bot.devtools.slack_requests import slash_command
from bot.policy import parse_policy
from bot.slack.after_ack import WORK_SLOTS

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
BACKEND_MS = 50
TARGET_PER_S = 100.0
RESOURCE = "busy-db"
POLICY = f"""
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
resources:
  {RESOURCE}:
    description: Benchmark resource behind a webhook
    adapter: webhook
    params:
      url: ${{BENCH_WEBHOOK_URL}}
      secret: ${{BENCH_WEBHOOK_SECRET}}
      timeout: 5
    approvers: [U0ALICE01]
    emergency: true
    max_duration: 2h
"""


_REQUESTER = re.compile(r"\(`(U0TP\d{6})`\)")  # the requester field of the message: "<name> (`<id>`)"


def people(n: int, start: int) -> list[str]:
    return [f"U0TP{i:06d}" for i in range(start, start + n)]


def directory(n: int) -> dict[str, dict[str, str]]:
    return PEOPLE | {u: {"name": u.lower(), "email": f"{u.lower()}@example.com"} for u in people(5 * n, 0)}


def bodies(who: list[str], respond: str, emergency: bool) -> list[str]:
    flag = " --emergency" if emergency else ""
    return [
        slash_command(
            text=f"{RESOURCE} 1h INC-{n} throughput{flag}",
            user_id=user,
            user_name=user.lower(),
            response_url=f"{respond}{user}",
        )
        for n, user in enumerate(who)
    ]


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far: by this process (the app being measured: the clients, Slack, the backend and other
    replicas run in processes of their own) and by the whole machine (NaN where /proc/stat is not to be had)."""

    own: float
    machine: float

    @classmethod
    def now(cls) -> Cpu:
        times = os.times()
        return cls(times.user + times.system, _machine_cpu())

    def per_item_ms(self, since: Cpu, items: int) -> tuple[float, float]:
        return 1000 * (self.own - since.own) / items, 1000 * (self.machine - since.machine) / items


def _machine_cpu() -> float:
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


HEADER = (
    f"{'':<38} {'n':>5} {'per s':>8} {'median ms':>10} {'p99 ms':>9} {'max ms':>9} {'own CPU ms':>11} {'CPU ms':>7}"
)


Asked = tuple[list[str], list[str], Callable[[], dict[str, float]]]  # the bodies, the people, where to look


def measure(name: str, url: str | list[str], clients: int, asked: Asked) -> list[str]:
    """Send the bodies of ``asked`` (one per person) to ``url`` from ``clients`` clients, wait until its look finds
    each person's effect, and print the row: what went wrong, if anything. The CPU columns are the app's own (this
    process) and the whole machine's over the row, per command."""
    texts, who, look = asked
    before = Cpu.now()
    sent = fire(url, texts, clients, SIGNING_SECRET)
    effects = wait(look, len(who))
    own, machine = Cpu.now().per_item_ms(before, len(who))
    missing = [user for user in who if user not in effects]
    errors = sum(status != 200 for _, _, status in sent)
    times = [(effects[user] - sent[i][0]) * 1000 for i, user in enumerate(who) if user in effects]
    span = max(effects.values(), default=sent[0][0]) - sent[0][0]
    rate = len(times) / span if span > 0 else float("nan")
    median, p99, top = summary(times) if times else (float("nan"),) * 3
    print(f"{name:<38} {len(who):>5} {rate:>8.0f} {median:>10.1f} {p99:>9.1f} {top:>9.1f} {own:>11.1f} {machine:>7.1f}")
    problems = [f"{name}: {len(missing)} of {len(who)} never took effect"] if missing else []
    return problems + ([f"{name}: {errors} commands answered with an error"] if errors else [])


@contextmanager
def floor_bolt(slack_url: str) -> Iterator[str]:
    """A bare Bolt app (``bare_bolt_then``) whose work after the ack posts the approval message: its events URL."""
    client = WebClient(token=BOT_TOKEN, base_url=slack_url)

    def post(command: dict[str, Any]) -> None:
        user = command["user_id"]
        client.chat_postMessage(channel="C0APPROVALS", text=f"{user.lower()} (`{user}`) asks for {RESOURCE}")

    with bare_bolt_then(post) as url:
        yield url


@contextmanager
def bare_bolt_then(work: Callable[[dict[str, Any]], None], threads: int = WORK_SLOTS) -> Iterator[str]:
    """A bare Bolt app served as the bot is (waitress, 8 threads), whose command listener acks and then runs
    ``work(command)`` in a pool of ``threads`` (as many as the bot's post-ack work has): yields its events URL."""
    app = bare_app()
    after_ack = ThreadPoolExecutor(threads)

    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        ack()
        after_ack.submit(work, command)

    app.command("/breakglass")(on_command)
    try:
        with served(app) as url:
            yield url
    finally:
        after_ack.shutdown()


@dataclass(frozen=True)
class IoShape:
    """What one command costs in I/O, as counted over this benchmark (an SQLAlchemy statement counter, the
    stand-in's calls): the statements of each of its transactions in order, its Web API calls (``users.info`` after
    the transaction numbered ``directory_after``, the rest after ``posts_after``), and, for an emergency, the
    backend's grant call after the transaction numbered ``backend_after``. Then the answer through the response_url.
    """

    transactions: tuple[int, ...]
    web_api_calls: int
    directory_after: int
    posts_after: int
    backend_after: int | None = None


# The replay check, the hourly cap, the storing transaction, the run's finish, the last look; users.info, the
# approval message, its permalink, the requester's DM, the note where it was asked.
REQUEST_IO = IoShape(transactions=(1, 1, 7, 2, 4), web_api_calls=5, directory_after=1, posts_after=2)
# The replay check, the hourly cap, the storing and claiming transaction, the claim's renewal before the backend
# call, the grant's record (and the claim of its messages), the run's finish, the last look; users.info, the alert,
# the approval message, its permalink, the requester's DM, the note where it was asked, the alert's thread.
EMERGENCY_IO = IoShape(
    transactions=(1, 1, 10, 2, 12, 2, 4), web_api_calls=7, directory_after=1, posts_after=4, backend_after=3
)


@contextmanager
def floor_io(
    slack_url: str, database_url: str, shape: IoShape, backend_url: str | None = None, threads: int = WORK_SLOTS
) -> Iterator[str]:
    """A bare Bolt app, served and run as ``floor_bolt``, whose work after the ack is a command's I/O (``shape``)
    and nothing else: plain statements through psycopg (a connection kept per thread), the Web API calls and the
    backend call (signed as the webhook adapter signs it) over kept-alive connections, and the answer. What a
    command costs on this machine before any of the bot's own work: the ORM, rendering, sealing, the courier's
    bookkeeping. Yields its events URL."""
    import psycopg
    import urllib3

    from bot.adapters.webhook import sign

    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    table = f"floor_{len(shape.transactions)}_{sum(shape.transactions)}"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, requester text, body text, ts text)")
        setup.execute(f"CREATE INDEX ON {table} (requester)")
    pool = urllib3.PoolManager(maxsize=16, block=False, retries=False)
    kept = threading.local()
    opened: list[psycopg.Connection[Any]] = []

    def call(url: str, **args: str) -> dict[str, Any]:
        body = json.dumps(args).encode()
        headers = {"Authorization": f"Bearer {BOT_TOKEN}", "Content-Type": "application/json; charset=utf-8"}
        answer: dict[str, Any] = json.loads(pool.request("POST", url, body=body, headers=headers).data or b"{}")
        return answer

    def grant(user: str) -> None:
        assert backend_url is not None, "an emergency's floor calls the backend"
        body = json.dumps({"event": "grant", "grant_id": user, "user": {"slack_id": user}}).encode()
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "X-Breakglass-Timestamp": str(stamp)}
        headers["X-Breakglass-Signature"] = sign(WEBHOOK_SECRET, stamp, body)
        pool.request("POST", backend_url, body=body, headers=headers)

    def statement(connection: psycopg.Connection[Any], user: str) -> None:
        connection.execute(f"SELECT count(*) FROM {table} WHERE requester = %s", (user,)).fetchall()

    def work(command: dict[str, Any]) -> None:
        user, response_url = command["user_id"], command["response_url"]
        if not hasattr(kept, "connection"):
            kept.connection = psycopg.connect(dsn)
            opened.append(kept.connection)
        connection = kept.connection
        text = f"{user.lower()} (`{user}`) asks for {RESOURCE}"
        for step, count in enumerate(shape.transactions):
            with connection.transaction():
                connection.execute(f"INSERT INTO {table} (requester, body) VALUES (%s, %s)", (user, "x" * 200))
                for _ in range(count - 1):
                    statement(connection, user)
            if step == shape.directory_after:
                call(f"{slack_url}users.info", user=user)
            if step == shape.backend_after:
                grant(user)
            if step == shape.posts_after:
                call(f"{slack_url}chat.postMessage", channel="C0APPROVALS", text=text)
                for _ in range(shape.web_api_calls - 2):
                    call(f"{slack_url}chat.postMessage", channel=user, text=text)
        pool.request("POST", response_url, body=b'{"text": "sent"}', headers={"Content-Type": "application/json"})

    try:
        with bare_bolt_then(work, threads) as url:
            yield url
    finally:
        for connection in opened:
            connection.close()


def run(
    n: int, clients: int, postgres: str | None, kinds: list[str], replicas: int = 1, floor_threads: int = WORK_SLOTS
) -> int:
    receiver = receiver_elsewhere(WEBHOOK_SECRET, BACKEND_MS / 1000)
    slack = slack_elsewhere(BOT_TOKEN, directory(n))
    respond = slack.url.removesuffix("api/") + "respond/"
    failures: list[str] = []
    others = []

    def requests(who: list[str]) -> Asked:
        return bodies(who, respond, emergency=False), who, lambda: approvals(slack.ask(), who)

    def emergencies(who: list[str]) -> Asked:
        return bodies(who, respond, emergency=True), who, lambda: grants(receiver.ask(), who)

    try:
        with database(postgres) as url:
            settings = bot_settings(url, slack.url)
            environ = {"BENCH_WEBHOOK_URL": receiver.url, "BENCH_WEBHOOK_SECRET": WEBHOOK_SECRET}
            bot = runtime.build(settings, environ, clock=SystemClock(), policy=parse_policy(POLICY))
            try:
                port = bot.serve_http(host="127.0.0.1", port=0, block=False)
                audit_key = settings.audit_key.get_secret_value() if settings.audit_key else ""
                others = [replica_elsewhere(url, slack.url, audit_key, environ, POLICY) for _ in range(replicas - 1)]
                events = [f"http://127.0.0.1:{port}/slack/events", *(other.url for other in others)]
                print(
                    f"{clients} clients, {n} people each run; backend {BACKEND_MS} ms a call; {replicas} replica(s);"
                    f" the floors' work in {floor_threads} threads; {cores()} cores"
                )
                print(HEADER)
                with floor_bolt(slack.url) as floor:
                    asked = requests(people(n, 2 * n))
                    failures += measure("floor: bare Bolt app, one post", floor, clients, asked)
                if postgres:
                    with floor_io(slack.url, url, REQUEST_IO, threads=floor_threads) as floor:
                        asked = requests(people(n, 3 * n))
                        failures += measure("floor: a request's I/O alone", floor, clients, asked)
                if "requests" in kinds:
                    asked = requests(people(n, 0))
                    failures += measure("requests: command to approval message", events, clients, asked)
                if "emergencies" in kinds:
                    if postgres:
                        with floor_io(slack.url, url, EMERGENCY_IO, receiver.url, floor_threads) as floor:
                            asked = emergencies(people(n, 4 * n))
                            failures += measure("floor: an emergency's I/O alone", floor, clients, asked)
                    asked = emergencies(people(n, n))
                    failures += measure("emergencies: command to backend call", events, clients, asked)
            finally:
                for other in others:
                    other.stop()
                bot.stop()
    finally:
        receiver.stop()
        slack.stop()
    budget = cores() * 1000 / TARGET_PER_S
    print(
        f"\ntarget: at least {TARGET_PER_S:.0f} a second for each: at most {budget:.0f} ms of the machine's CPU"
        f" (the CPU column) per command on its {cores()} cores, whatever runs on them"
    )
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def approvals(posts: list[tuple[str, str, str, float]], who: list[str]) -> dict[str, float]:
    """When each person's approval message was posted."""
    wanted, found = set(who), dict[str, float]()
    for _, channel, args, at in posts:
        requester = _REQUESTER.search(args) if channel == "C0APPROVALS" else None
        if requester and requester.group(1) in wanted:
            found.setdefault(requester.group(1), at)
    return found


def grants(calls: list[tuple[str | None, object, float, int, bool, str | None]], who: list[str]) -> dict[str, float]:
    wanted, found = set(who), dict[str, float]()
    for event, _, at, _, _, user in calls:
        if event == "grant" and user in wanted:
            found.setdefault(user, at)
    return found


def wait(look: object, count: int, timeout: float = 120.0) -> dict[str, float]:
    assert callable(look)
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, float] = look()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1000, help="commands of each kind (1000)")
    parser.add_argument("--clients", type=int, default=8, help="clients at once (8)")
    add_postgres_option(parser)
    parser.add_argument(
        "--only", choices=["requests", "emergencies"], help="measure one kind only (each is measured after the other)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="replicas on the one database, the clients spread over them (1)"
    )
    parser.add_argument(
        "--floor-threads",
        type=int,
        default=WORK_SLOTS,
        help=f"threads the I/O floors' work runs in ({WORK_SLOTS}, as many as the bot's post-ack work runs at once)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run for CI: 40 of each")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = min(args.n, 40)
    if args.n < 1 or args.clients < 1 or args.floor_threads < 1:
        parser.error("--n, --clients and --floor-threads must be at least 1")
    kinds = [args.only] if args.only else ["requests", "emergencies"]
    if args.replicas > 1 and not args.postgres:
        parser.error("--replicas share one database: PostgreSQL, not SQLite")
    return run(args.n, args.clients, args.postgres or None, kinds, max(args.replicas, 1), args.floor_threads)


if __name__ == "__main__":
    sys.exit(main())
