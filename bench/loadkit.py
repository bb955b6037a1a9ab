"""What the load benchmarks share: a database made for one run, grants put straight into it, and the arithmetic.

The benchmarks run as scripts (``python bench/expiry_wave.py``), so this module is imported by its file name.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from sqlalchemy import Engine, insert
from waitress import wasyncore
from waitress.server import create_server

from bot.devtools.local_bot import BOT_TOKEN, SIGNING_SECRET
from bot.devtools.slack_requests import TEAM_ID, signed_headers
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.settings import Settings
from bot.store.models import Request

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def add_postgres_option(parser: argparse.ArgumentParser) -> None:
    """``--postgres``: the server the load benchmarks make their run's database on (``BREAKGLASS_BENCH_POSTGRES_URL``,
    else the local one); '' for SQLite."""
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BREAKGLASS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="the PostgreSQL server to make the run's database on; '' for SQLite",
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, p99 and max."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2], percentile(ordered, 0.99), ordered[-1]


@contextmanager
def database(postgres: str | None) -> Iterator[str]:
    """SQLite in a temporary directory, or a PostgreSQL database made for this run and dropped after it."""
    if not postgres:
        with tempfile.TemporaryDirectory(prefix="breakglass-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    import psycopg

    where = urlparse(postgres)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield where._replace(path=f"/{name}", scheme="postgresql+psycopg").geturl()
    finally:
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


class MonotonicToWall:
    """Converts ``time.monotonic()`` readings (what the webhook receiver records) to wall-clock UTC datetimes, with
    the offset taken from the tightest of a few back-to-back readings."""

    def __init__(self, samples: int = 50) -> None:
        best: tuple[float, float] | None = None
        for _ in range(samples):
            before = time.monotonic()
            wall = time.time()
            after = time.monotonic()
            if best is None or after - before < best[0]:
                best = (after - before, wall - (before + after) / 2)
        assert best is not None
        self.offset = best[1]

    def __call__(self, monotonic: float) -> datetime:
        return datetime.fromtimestamp(monotonic + self.offset, UTC)


def bot_settings(database_url: str, slack_url: str, audit_key: str | None = None) -> Settings:
    """A bot's settings for a benchmark: the local Slack stand-in, the run's database, default tuning."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_APP_TOKEN="",
        SLACK_API_URL=slack_url,
        DATABASE_URL=database_url,
        BREAKGLASS_AUDIT_KEY=audit_key or secrets.token_urlsafe(48),
    )


def active_grant(n: int, resource: str, granted_at: datetime, expires_at: datetime) -> dict[str, object]:
    """The row of a grant the webhook backend made: what ``finish_grant`` leaves, without going through Slack."""
    user = f"U0LOAD{n:06d}"
    return {
        "uid": str(uuid.uuid4()),
        "resource": resource,
        "requester_id": user,
        "requester_name": user.lower(),
        "requester_email": f"{user.lower()}@example.com",
        "principal": f"{user.lower()}@example.com",
        "reason": f"INC-{n} load",
        "duration_seconds": int((expires_at - granted_at).total_seconds()) or 1,
        "emergency": True,
        "status": Status.ACTIVE.value,
        "created_at": granted_at,
        "decided_at": granted_at,
        "granted_at": granted_at,
        "expires_at": expires_at,
        "warned_at": granted_at,  # warned already: only the revokes fall due
        "receipt": {"webhook": True},
        "live_key": f"{resource}\n{user.lower()}@example.com",
    }


def insert_grants(engine: Engine, rows: Sequence[dict[str, object]], chunk: int = 5000) -> None:
    with engine.begin() as connection:
        for start in range(0, len(rows), chunk):
            connection.execute(insert(Request), list(rows[start : start + chunk]))


def spread(start: datetime, count: int, over: timedelta) -> list[datetime]:
    """``count`` moments evenly over ``over`` from ``start``."""
    step = over / max(count, 1)
    return [start + i * step for i in range(count)]


# -- the stand-ins, in a process of their own ------------------------------------------------------------------------
# A real backend and Slack do not share the bot's interpreter; in its process they would take its GIL turns.


def _serve_receiver(secret: str, hang: float, pipe: multiprocessing.connection.Connection) -> None:
    with WebhookReceiver(secret) as receiver:
        receiver.hang(hang)
        pipe.send(receiver.url)
        sent = 0
        while pipe.recv() != "stop":
            calls = receiver.calls[sent:]
            sent += len(calls)
            pipe.send(
                [(c.event, c.body.get("grant_id"), c.received_at, c.status, c.valid, _user(c.body)) for c in calls]
            )


def _user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return str(user.get("slack_id")) if isinstance(user, dict) else None


def _serve_slack(token: str, users: dict[str, dict[str, str]], pipe: multiprocessing.connection.Connection) -> None:
    slack = SlackStandIn(token=token, users=users).start()
    try:
        pipe.send(slack.api_url)
        sent = answered = 0
        while (asked := pipe.recv()) != "stop":
            if asked == "answers":
                answers = slack.named_responses()[answered:]
                answered += len(answers)
                pipe.send([(name, body.get("text") if isinstance(body, dict) else body) for name, body in answers])
                continue
            posts = slack.calls("chat.postMessage")[sent:]
            sent += len(posts)
            pipe.send([(c.method, str(c.args.get("channel")), json.dumps(c.args, default=str), c.at) for c in posts])
    finally:
        slack.stop()


def _serve_replica(
    database_url: str,
    slack_url: str,
    audit_key: str,
    environ: dict[str, str],
    policy: str,
    pipe: multiprocessing.connection.Connection,
) -> None:
    from bot import runtime
    from bot.clock import SystemClock
    from bot.policy import parse_policy

    settings = bot_settings(database_url, slack_url, audit_key)
    bot = runtime.build(settings, environ, clock=SystemClock(), policy=parse_policy(policy))
    try:
        pipe.send(f"http://127.0.0.1:{bot.serve_http(host='127.0.0.1', port=0, block=False)}/slack/events")
        while pipe.recv() != "stop":
            pipe.send([])
    finally:
        bot.stop(grace=2)


class Elsewhere:
    """A stand-in run in a child process: ``url`` is where it listens; ``ask()`` what it recorded (the webhook
    receiver: every call; Slack: every ``chat.postMessage`` as (method, channel, its arguments as JSON, when)), and
    for Slack ``answers()`` what was posted to response URLs.
    Forked, unless ``fresh`` (a bot replica: started from nothing, as a replica on another machine would be)."""

    def __init__(self, target: object, *args: object, fresh: bool = False) -> None:
        self._pipe, theirs = multiprocessing.Pipe()
        context = multiprocessing.get_context("spawn" if fresh else "fork")
        self._process = context.Process(target=target, args=(*args, theirs), daemon=True)
        self._process.start()
        self.url = str(self._pipe.recv())
        self._seen: list[Any] = []
        self._answers: list[tuple[str, Any]] = []

    def ask(self) -> list[Any]:
        """Everything recorded so far, oldest first. Only what is new since the last ask crosses the pipe: a
        benchmark asks every 0.1 s, and sending it all each time cost the machine more as a run went on."""
        self._pipe.send("calls")
        self._seen.extend(self._pipe.recv())
        return list(self._seen)

    def answers(self) -> list[tuple[str, Any]]:
        """Slack's only: (name, text) of each answer POSTed to a response URL so far, oldest first."""
        self._pipe.send("answers")
        self._answers.extend(self._pipe.recv())
        return list(self._answers)

    def stop(self) -> None:
        self._pipe.send("stop")
        self._process.join(5)


def receiver_elsewhere(secret: str, hang: float) -> Elsewhere:
    """A webhook receiver whose every call takes ``hang`` seconds. ``ask()``: (event, grant id, monotonic time it
    came, status, signature valid, the Slack id of the person) for each call; the monotonic clock is the machine's,
    so comparable with ours."""
    return Elsewhere(_serve_receiver, secret, hang)


def replica_elsewhere(
    database_url: str, slack_url: str, audit_key: str, environ: dict[str, str], policy: str
) -> Elsewhere:
    """Another replica of the bot, in a process of its own on the same database; ``url``: its events URL."""
    return Elsewhere(_serve_replica, database_url, slack_url, audit_key, environ, policy, fresh=True)


def slack_elsewhere(token: str, users: dict[str, dict[str, str]]) -> Elsewhere:
    """The Slack Web API stand-in; its ``url`` is the API's base, and ``{url}../respond/<name>`` takes answers."""
    return Elsewhere(_serve_slack, token, users)


def bare_app() -> App:
    """A Bolt app with none of the bot's listeners or middleware, checking signatures as the bot does: the baseline
    the benchmarks measure the bot against."""
    return App(
        signing_secret=SIGNING_SECRET,
        authorize=lambda **_: AuthorizeResult(
            enterprise_id=None, team_id=TEAM_ID, bot_token=BOT_TOKEN, bot_user_id="U0BOT", bot_id="B0BOT"
        ),
    )


@contextmanager
def served(app: App) -> Iterator[str]:
    """A Bolt app served as the bot is (waitress, 8 threads) on a free loopback port; yields its events URL."""
    server = create_server(SlackRequestHandler(app), host="127.0.0.1", port=0, threads=8)
    port = int(server.effective_port)  # type: ignore[union-attr]  # set by waitress, missing from its stubs
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    try:
        yield f"http://127.0.0.1:{port}/slack/events"
    finally:
        # As the bot stops its own (bot/runtime.py): the sockets are closed by the server's loop, through its
        # trigger; closed from here, they were pulled out from under its select() (a traceback at every stop).
        server.task_dispatcher.shutdown()
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))  # type: ignore[union-attr]
        loop.join(timeout=5)


# -- clients, in a process of their own --------------------------------------------------------------------------


def _fire(urls: list[str], bodies: list[str], clients: int, secret: str) -> list[tuple[float, float, int]]:
    def one_client(client: int, share: list[tuple[int, str]]) -> list[tuple[int, float, float, int]]:
        url = urls[client % len(urls)]  # as a load balancer would spread connections over the replicas
        timings = []
        with requests.Session() as session:
            for index, body in share:
                headers = signed_headers(secret, body)  # signed when sent: the bot checks the timestamp
                started = time.monotonic()
                response = session.post(url, data=body.encode(), headers=headers, timeout=30)
                timings.append((index, started, (time.monotonic() - started) * 1000, response.status_code))
        return timings

    numbered = list(enumerate(bodies))
    shares = [numbered[i::clients] for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        done = sorted(t for timings in pool.map(one_client, range(clients), shares) for t in timings)
    return [(sent, ms, status) for _, sent, ms, status in done]


def fire(url: str | list[str], bodies: list[str], clients: int, secret: str) -> list[tuple[float, float, int]]:
    """Send the signed ``bodies`` from ``clients`` threads in a process of their own, each as soon as its last answer
    came: (when it was sent on the machine's monotonic clock, round trip in ms, HTTP status) for each, in order.
    The process comes from a fork server, not a fork of this one: the bot's threads may hold locks at that moment."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as process:
        return process.submit(_fire, [url] if isinstance(url, str) else url, bodies, clients, secret).result()
