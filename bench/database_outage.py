"""How fast the bot answers while its database is away: /healthz, and a person's /breakglass command.

The real bot over HTTP (bot/devtools/local_bot.py) on a private PostgreSQL cluster (tests/adapters/pg_cluster.py)
that is stopped under it, as a crashed or unreachable server would be. Two ways of being away:

* stopped: nothing listens on the port, so every connection is refused at once;
* silent: a socket that accepts connections and never says a word (a hung server, a black-holed route), so only the
  connect timeout (2 s, bot/store/db.py) ends each attempt; timed here as the bot's engine connecting, the first
  thing /healthz and a command's replay check do.

Slack allows 3 s for an answer.

    python bench/database_outage.py            # 20 of each
    python bench/database_outage.py --runs 50
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the cluster helper lives with the tests

from bot.devtools.local_bot import SIGNING_SECRET, LocalBot
from bot.devtools.slack_requests import signed_headers, slash_command
from bot.policy import parse_policy
from bot.store.db import make_engine
from tests.adapters.pg_cluster import find_bindir, running_cluster

POLICY = """
channels: {approvals: C0APPROVALS, audit: C0SECURITY}
resources:
  orders-db: {adapter: log, approvers: [U0ALICE01]}
"""


def timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


def measure(bot: LocalBot, runs: int) -> dict[str, list[float]]:
    def health() -> None:
        assert requests.get(f"{bot.base_url}/healthz", timeout=10).status_code == 503

    def command() -> None:
        body = slash_command(text="orders-db 30m INC-1 fix", user_id="U0BOB")
        answer = requests.post(
            f"{bot.base_url}/slack/events", data=body.encode(), headers=signed_headers(SIGNING_SECRET, body), timeout=10
        )
        assert "cannot reach its database" in answer.text, answer.text

    return {"healthz": [timed(health) for _ in range(runs)], "command": [timed(command) for _ in range(runs)]}


def refused(engine: Engine) -> None:
    """What /healthz does first: connect. Against a silent server only the connect timeout ends it."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError:
        return
    raise AssertionError("a silent socket answered")


def report(how: str, figures: dict[str, list[float]]) -> None:
    for what, seconds in figures.items():
        ms = sorted(s * 1000 for s in seconds)
        print(
            f"{how:8} {what:8} n={len(ms)}  median {statistics.median(ms):7.1f} ms  "
            f"p95 {ms[int(len(ms) * 0.95) - 1]:7.1f} ms  max {ms[-1]:7.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL server binaries (initdb) not found", file=sys.stderr)
        return 1
    with running_cluster(bindir) as cluster, LocalBot(parse_policy(POLICY), cluster.url()) as bot:
        cluster.stop()
        report("stopped", measure(bot, args.runs))
        cluster.start()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(512)
        engine = make_engine(f"postgresql://breakglass:unused-0123@127.0.0.1:{silent.getsockname()[1]}/breakglass")
        report("silent", {"connect": [timed(lambda: refused(engine)) for _ in range(max(args.runs // 4, 3))]})
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
