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
from pathlib import Path
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadkit import (
    DEFAULT_POSTGRES,
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
    return PEOPLE | {u: {"name": u.lower(), "email": f"{u.lower()}@example.com"} for u in people(4 * n, 0)}


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


def row(name: str, sent: list[tuple[float, float, int]], effects: dict[str, float], who: list[str]) -> list[str]:
    """Print the row; what went wrong, if anything."""
    missing = [user for user in who if user not in effects]
    errors = sum(status != 200 for _, _, status in sent)
    times = [(effects[user] - sent[i][0]) * 1000 for i, user in enumerate(who) if user in effects]
    span = max(effects.values(), default=sent[0][0]) - sent[0][0]
    rate = len(times) / span if span > 0 else float("nan")
    median, p99, top = summary(times) if times else (float("nan"),) * 3
    print(f"{name:<34} {len(who):>5} {rate:>8.0f} {median:>10.1f} {p99:>9.1f} {top:>9.1f}")
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
def bare_bolt_then(work: Callable[[dict[str, Any]], None]) -> Iterator[str]:
    """A bare Bolt app served as the bot is (waitress, 8 threads), whose command listener acks and then runs
    ``work(command)`` in a pool of 8 threads, as the bot's after-ack work runs: yields its events URL."""
    app = bare_app()
    after_ack = ThreadPoolExecutor(8)

    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        ack()
        after_ack.submit(work, command)

    app.command("/breakglass")(on_command)
    try:
        with served(app) as url:
            yield url
    finally:
        after_ack.shutdown()


# A request's I/O, as counted over this benchmark (an SQLAlchemy statement counter, the stand-in's calls): the
# statements of its transactions in order (the replay check, the hourly cap, the storing transaction, the run's
# finish, the last look), its Web API calls (users.info, the approval message, its permalink, the requester's DM,
# the note where it was asked) and the answer through its response_url.
IO_TRANSACTIONS = (1, 1, 7, 2, 4)
IO_WEB_API_CALLS = 5


@contextmanager
def floor_io(slack_url: str, database_url: str) -> Iterator[str]:
    """A bare Bolt app, served and run as ``floor_bolt``, whose work after the ack is a request's I/O and nothing
    else: ``IO_TRANSACTIONS`` of plain statements through psycopg (a connection kept per thread), the Web API calls
    over kept-alive connections, and the answer. What a request costs on this machine before any of the bot's own
    work: the ORM, rendering, sealing, the courier's bookkeeping. Yields its events URL."""
    import psycopg
    import urllib3

    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE floor_requests (id serial PRIMARY KEY, requester text, body text, ts text)")
        setup.execute("CREATE INDEX ON floor_requests (requester)")
    pool = urllib3.PoolManager(maxsize=16, block=False, retries=False)
    kept = threading.local()
    opened: list[psycopg.Connection[Any]] = []

    def call(url: str, **args: str) -> dict[str, Any]:
        body = json.dumps(args).encode()
        headers = {"Authorization": f"Bearer {BOT_TOKEN}", "Content-Type": "application/json; charset=utf-8"}
        answer: dict[str, Any] = json.loads(pool.request("POST", url, body=body, headers=headers).data or b"{}")
        return answer

    def statement(connection: psycopg.Connection[Any], user: str) -> None:
        connection.execute("SELECT count(*) FROM floor_requests WHERE requester = %s", (user,)).fetchall()

    def work(command: dict[str, Any]) -> None:
        user, response_url = command["user_id"], command["response_url"]
        if not hasattr(kept, "connection"):
            kept.connection = psycopg.connect(dsn)
            opened.append(kept.connection)
        connection = kept.connection
        for step, count in enumerate(IO_TRANSACTIONS):
            with connection.transaction():
                connection.execute("INSERT INTO floor_requests (requester, body) VALUES (%s, %s)", (user, "x" * 200))
                for _ in range(count - 1):
                    statement(connection, user)
            if step == 1:  # between the cap and the storing transaction: the directory
                call(f"{slack_url}users.info", user=user)
        text = f"{user.lower()} (`{user}`) asks for {RESOURCE}"
        call(f"{slack_url}chat.postMessage", channel="C0APPROVALS", text=text)
        for _ in range(IO_WEB_API_CALLS - 2):
            call(f"{slack_url}chat.postMessage", channel=user, text=text)
        pool.request("POST", response_url, body=b'{"text": "sent"}', headers={"Content-Type": "application/json"})

    try:
        with bare_bolt_then(work) as url:
            yield url
    finally:
        for connection in opened:
            connection.close()


def run(n: int, clients: int, postgres: str | None, kinds: list[str], replicas: int = 1) -> int:
    receiver = receiver_elsewhere(WEBHOOK_SECRET, BACKEND_MS / 1000)
    slack = slack_elsewhere(BOT_TOKEN, directory(n))
    respond = slack.url.removesuffix("api/") + "respond/"
    failures: list[str] = []
    others = []
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
                print(f"{clients} clients, {n} people each run; backend {BACKEND_MS} ms a call; {replicas} replica(s)")
                print(f"{'':<34} {'n':>5} {'per s':>8} {'median ms':>10} {'p99 ms':>9} {'max ms':>9}")
                with floor_bolt(slack.url) as floor:
                    asking = people(n, 2 * n)
                    sent = fire(floor, bodies(asking, respond, emergency=False), clients, SIGNING_SECRET)
                    posted = wait(lambda: approvals(slack.ask(), asking), len(asking))
                    failures += row("floor: bare Bolt app, one post", sent, posted, asking)
                if postgres:
                    with floor_io(slack.url, url) as floor:
                        asking = people(n, 3 * n)
                        sent = fire(floor, bodies(asking, respond, emergency=False), clients, SIGNING_SECRET)
                        posted = wait(lambda: approvals(slack.ask(), asking), len(asking))
                        failures += row("floor: a request's I/O alone", sent, posted, asking)

                if "requests" in kinds:
                    asking = people(n, 0)
                    sent = fire(events, bodies(asking, respond, emergency=False), clients, SIGNING_SECRET)
                    posted = wait(lambda: approvals(slack.ask(), asking), len(asking))
                    failures += row("requests: command to approval message", sent, posted, asking)
                if "emergencies" in kinds:
                    breaking = people(n, n)
                    sent = fire(events, bodies(breaking, respond, emergency=True), clients, SIGNING_SECRET)
                    granted = wait(lambda: grants(receiver.ask(), breaking), len(breaking))
                    failures += row("emergencies: command to backend call", sent, granted, breaking)
            finally:
                for other in others:
                    other.stop()
                bot.stop()
    finally:
        receiver.stop()
        slack.stop()
    print(f"\ntarget: at least {TARGET_PER_S:.0f} a second for each")
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
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BREAKGLASS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="the PostgreSQL server to make the run's database on; '' for SQLite",
    )
    parser.add_argument(
        "--only", choices=["requests", "emergencies"], help="measure one kind only (each is measured after the other)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="replicas on the one database, the clients spread over them (1)"
    )
    parser.add_argument("--quick", action="store_true", help="a short run for CI: 40 of each")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = min(args.n, 40)
    if args.n < 1 or args.clients < 1:
        parser.error("--n and --clients must be at least 1")
    kinds = [args.only] if args.only else ["requests", "emergencies"]
    if args.replicas > 1 and not args.postgres:
        parser.error("--replicas share one database: PostgreSQL, not SQLite")
    return run(args.n, args.clients, args.postgres or None, kinds, max(args.replicas, 1))


if __name__ == "__main__":
    sys.exit(main())
