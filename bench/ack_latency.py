"""How long the bot takes to acknowledge a slash command and a button click, over real HTTP.

Runs the real bot (``LocalBot``: waitress + Bolt + SQLite in a temporary directory, the packaged policy) against
the Slack Web API stand-in, and times the round trip of each signed POST to ``/slack/events`` until its response
(the ack Slack waits for, at most 3 s). The baseline is ``GET /healthz`` on the same server, sampled between the
Slack requests so that it runs under the same background load: the cost of HTTP + WSGI + one ``SELECT 1``.

    python bench/ack_latency.py            # 200 commands and 200 clicks
    python bench/ack_latency.py --n 1000
"""

from __future__ import annotations

import argparse
import importlib.resources
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bot.devtools.local_bot import LocalBot, Reply
from bot.policy import Policy, parse_policy
from bot.slack.ids import ActionId

SLACK_ACK_LIMIT_MS = 3000.0
REQUESTER = "U0BOB"  # on call: may request orders-db
APPROVER = "U0ALICE01"
OUTSIDER = "U0DAVE"  # neither requester nor approver of anything


@dataclass(frozen=True)
class Kind:
    """One kind of Slack request: what it sends, and whether a private answer follows the ack."""

    name: str
    send: Callable[[LocalBot, int, int], Reply]  # (bot, sequence number, target request id) -> reply
    answered_later: bool  # work runs after the ack and ends with a POST to the response_url


COMMANDS = [
    Kind("cmd: request", lambda bot, i, _: bot.command(REQUESTER, f"orders-db 1h INC-{i} bench", wait=False), True),
    Kind("cmd: unknown resource", lambda bot, i, _: bot.command(REQUESTER, f"nope-{i} 1h INC-1", wait=False), False),
    Kind("cmd: bad duration", lambda bot, i, _: bot.command(REQUESTER, "orders-db 9h INC-1 bench", wait=False), False),
    Kind("cmd: list", lambda bot, i, _: bot.command(REQUESTER, "list", wait=False), True),
    Kind("cmd: mine", lambda bot, i, _: bot.command(REQUESTER, "mine", wait=False), True),
]
CLICKS = [
    # Refused at click time, so the target request stays pending and every click does the same work.
    Kind("click: approve own", lambda bot, i, rid: bot.click(REQUESTER, ActionId.APPROVE, rid, wait=False), True),
    # Deny opens a form only for an approver: the outsider's click is refused, answered through its response_url.
    Kind("click: not approver", lambda bot, i, rid: bot.deny(OUTSIDER, rid, "not during the freeze", wait=False), True),
]


@dataclass
class Samples:
    name: str
    ms: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.ms.append(seconds * 1000)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def packaged_policy() -> Policy:
    text = importlib.resources.files("bot").joinpath("defaults/breakglass.yml").read_text(encoding="utf-8")
    return parse_policy(text, source="bot/defaults/breakglass.yml")


def check(reply: Reply, kind: str) -> None:
    if reply.status != 200:
        raise SystemExit(f"{kind}: HTTP {reply.status} ({reply.ack!r})")


def healthz(session: requests.Session, url: str) -> float:
    started = time.perf_counter()
    response = session.get(url, timeout=10)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"/healthz: HTTP {response.status_code}")
    return elapsed


def run(n: int) -> int:
    policy = packaged_policy()
    with tempfile.TemporaryDirectory(prefix="breakglass-bench-") as tmp:
        bot = LocalBot(policy, f"sqlite:///{Path(tmp) / 'bench.db'}")
        bot.start()
        try:
            return measure(bot, n)
        finally:
            bot.stop()


def measure(bot: LocalBot, n: int) -> int:
    expected_answers = 0

    # Warm-up: one of each, waiting for the private answer, so caches, connection pools and imports are warm.
    first = bot.command(REQUESTER, "orders-db 1h INC-1 warm-up")
    check(first, "warm-up")
    target = int(first.text.split("#", 1)[1].split()[0])  # "📨 Request #1 for ..." -> 1
    expected_answers += 1
    for kind in COMMANDS[1:] + CLICKS:
        reply = kind.send(bot, 0, target)
        check(reply, kind.name)
        expected_answers += kind.answered_later
    bot.slack.wait_for(lambda s: len(s.responses()) >= expected_answers, timeout=10)

    samples = {kind.name: Samples(kind.name) for kind in COMMANDS + CLICKS}
    baseline = Samples("GET /healthz (baseline)")
    # requests.post in SlackSender opens a new connection per request; so does a fresh get here.
    health_url = bot.base_url + "/healthz"
    started = time.perf_counter()
    for i in range(n):
        for kinds in (COMMANDS, CLICKS):
            kind = kinds[i % len(kinds)]
            reply = kind.send(bot, i + 2, target)
            check(reply, kind.name)
            samples[kind.name].add(reply.ack_seconds)
            expected_answers += kind.answered_later
        with requests.Session() as session:
            baseline.add(healthz(session, health_url))
    sending = time.perf_counter() - started

    # Everything acknowledged must also finish: wait for every private answer before stopping.
    bot.slack.wait_for(lambda s: len(s.responses()) >= expected_answers, timeout=30)
    drained = time.perf_counter() - started
    failures = [r for r in bot.slack.responses() if isinstance(r, dict) and "went wrong" in str(r.get("text"))]

    commands = Samples("all commands", [ms for kind in COMMANDS for ms in samples[kind.name].ms])
    clicks = Samples("all clicks", [ms for kind in CLICKS for ms in samples[kind.name].ms])
    rows = [baseline, *samples.values(), commands, clicks]
    print_table(rows, baseline)

    worst = max(max(commands.ms), max(clicks.ms))
    print(
        f"\nworst ack: {worst:.1f} ms = {worst / SLACK_ACK_LIMIT_MS:.1%} of Slack's {SLACK_ACK_LIMIT_MS:.0f} ms limit"
        f" ({SLACK_ACK_LIMIT_MS / worst:.0f}x headroom)"
    )
    print(
        f"{n} commands + {n} clicks + {n} health checks sent in {sending:.1f} s; "
        f"all {expected_answers} private answers in after {drained:.1f} s; "
        f"{len(failures)} answered 'something went wrong'"
    )
    return 1 if failures or worst >= SLACK_ACK_LIMIT_MS else 0


def print_table(rows: list[Samples], baseline: Samples) -> None:
    base = statistics.median(baseline.ms)
    width = max(len(row.name) for row in rows)
    print(f"{'kind':<{width}}  {'n':>5}  {'median ms':>9}  {'p99 ms':>8}  {'max ms':>8}  {'x baseline':>10}")
    for row in rows:
        median = statistics.median(row.ms)
        print(
            f"{row.name:<{width}}  {len(row.ms):>5}  {median:>9.2f}  {percentile(row.ms, 0.99):>8.2f}"
            f"  {max(row.ms):>8.2f}  {median / base:>10.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200, help="slash commands to send, and as many clicks (default 200)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    return run(args.n)


if __name__ == "__main__":
    sys.exit(main())
