"""What Prometheus metrics add to a request's and a revoke's time, and what a scrape costs.

The real bot through ``LocalBot`` (waitress + Bolt over signed HTTP, the Slack stand-in, SQLite in a temporary
directory, the ``webhook`` adapter to a local ``WebhookReceiver``), with a clock that moves only when told. Each
round, one person breaks the glass (``--emergency``: the request is stored, granted through the backend and
announced in Slack before the answer) and then revokes it (``/breakglass revoke N``: the backend's revoke and the
Slack messages, inline). Each figure is the client-side time from the signed POST until the private answer has
reached the stand-in's ``response_url``, so it includes all the work the command does, not only the ack.

Two configurations, alternated round by round in the same run and on the same bot and database, so drift and a
growing database affect both alike:

* metrics: as `serve` runs, ``PrometheusMetrics`` behind every seam (backend calls, requests settled, revokes, every
  Slack Web API call);
* no metrics (baseline): ``NoMetrics`` at the same seams (``Deps.metrics`` and the metered Slack clients). The seams'
  own wrappers stay, so the difference is what counting into Prometheus costs.

End-to-end times on a shared machine drift by more than counting costs, so the cost is also taken apart: each
``Metrics`` call is timed in a loop (``--calls`` times; Prometheus against ``NoMetrics``), and so is the per-request
copy of Bolt's client that makes it count, and the number of counted events per round is read from the registry.
Their product is what metrics add to a round, free of the noise.

At the end, ``--scrapes`` GET /metrics are timed with all the rounds' rows in the database (the database gauges are
read at each scrape), against GET /healthz (one ``SELECT 1``) as a baseline.

    python bench/metrics_overhead.py
    python bench/metrics_overhead.py --rounds 400
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import requests
from revoke_delay import percentile  # bench/ is on the path of a script
from slack_sdk import WebClient

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.metrics import PrometheusMetrics
from bot.policy import parse_policy
from bot.services.ports import Metrics, NoMetrics, Settled
from bot.slack.metered import MeteredWebClient, metered

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
COPY = "client copy (per Bolt request)"
REQUESTERS = [f"U0BENCH{n:04d}" for n in range(5000)]
POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
review:
  required: none
resources:
  bench-db:
    description: Benchmark resource behind a webhook
    adapter: webhook
    params:
      url: ${BENCH_WEBHOOK_URL}
      secret: ${BENCH_WEBHOOK_SECRET}
      timeout: 5
    approvers: [U0ALICE01]
    emergency: true
"""


def switch(bot: LocalBot, metrics: Metrics) -> None:
    """Count into ``metrics`` at every seam: the services' port and every metered Slack client."""
    assert bot.runtime is not None
    deps = bot.runtime.deps
    deps.metrics = metrics  # Bolt's per-request clients ask for it per request
    clients = [getattr(deps.notifier, "client", None), getattr(deps.directory, "client", None)]
    if bot.runtime.slack_link is not None:
        clients.append(bot.runtime.slack_link.client)
    for client in clients:
        if isinstance(client, MeteredWebClient):
            client.metrics = metrics


def timed(call: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    call(*args)
    return (time.perf_counter() - started) * 1000


def row(name: str, values: list[float], baseline: list[float] | None = None) -> str:
    median = statistics.median(values)
    extra = f"{median - statistics.median(baseline):+10.2f}" if baseline else f"{'':>10}"
    return f"{name:34} {len(values):5} {median:10.2f} {percentile(values, 0.99):10.2f} {extra}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200, help="emergency + revoke rounds (half of them counted)")
    parser.add_argument("--scrapes", type=int, default=100, help="GET /metrics (and /healthz) at the end")
    parser.add_argument("--calls", type=int, default=100_000, help="loop length for one Metrics call's cost")
    args = parser.parse_args()
    if not 2 <= args.rounds <= len(REQUESTERS):
        parser.error(f"--rounds must be between 2 and {len(REQUESTERS)}")

    kinds = ("request", "revoke")
    times: dict[tuple[str, bool], list[float]] = {(kind, on): [] for kind in kinds for on in (False, True)}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, WebhookReceiver(WEBHOOK_SECRET) as receiver:
        environ = {"BENCH_WEBHOOK_URL": receiver.url, "BENCH_WEBHOOK_SECRET": WEBHOOK_SECRET}
        bot = LocalBot(parse_policy(POLICY), f"sqlite:///{Path(tmp) / 'bench.db'}", environ=environ)
        bot.start()
        try:
            for user in REQUESTERS[: args.rounds]:
                bot.slack.add_user(user, user.lower(), f"{user.lower()}@example.com")
            assert bot.runtime is not None
            real = bot.runtime.deps.metrics
            assert isinstance(real, PrometheusMetrics), "serve counts into Prometheus"
            off = NoMetrics()
            # Warm-up, counted in neither: the first request pays for imports and cold caches.
            for user in REQUESTERS[:2]:
                bot.command(user, "bench-db 1h INC-0 warm-up --emergency")
                bot.command(user, f"revoke {newest(bot)}")
            for n, user in enumerate(REQUESTERS[2 : args.rounds]):
                on = n % 2 == 1
                switch(bot, real if on else off)
                times["request", on].append(timed(bot.command, user, f"bench-db 1h INC-{n} bench --emergency"))
                times["revoke", on].append(timed(bot.command, user, f"revoke {newest(bot)}"))
                failures += sum("went wrong" in reply.text for reply in bot.replies[-2:])
            switch(bot, real)
            scrape = [timed(lambda: requests.get(f"{bot.base_url}/metrics", timeout=10)) for _ in range(args.scrapes)]
            health = [timed(lambda: requests.get(f"{bot.base_url}/healthz", timeout=10)) for _ in range(args.scrapes)]
            page = requests.get(f"{bot.base_url}/metrics", timeout=10).text
            # Counted only in the rounds with metrics on, and in the warm-up's two.
            events = counted_events(real) / (2 + len(times["request", True]))
        finally:
            bot.stop()

    print(f"{'what (ms)':34} {'n':>5} {'median':>10} {'p99':>10} {'+median':>10}")
    for kind in kinds:
        print(row(f"{kind}: no metrics (baseline)", times[kind, False]))
        print(row(f"{kind}: metrics", times[kind, True], times[kind, False]))
    costs = event_costs(args.calls)
    copy = costs.pop(COPY)
    per_event = statistics.mean(costs.values())
    print(row("GET /healthz (baseline)", health))
    print(row(f"GET /metrics ({args.rounds} requests stored)", scrape, health))
    print(f"one scrape: {len(page.encode())} bytes, {sum(1 for line in page.splitlines() if line[:1] != '#')} samples")
    print()
    print(f"{'one call, in a loop of ' + str(args.calls):34} {'us':>10}")
    for name, cost in [*costs.items(), (COPY, copy)]:
        print(f"{name:34} {cost:10.2f}")
    print(
        f"per round (request + revoke): {events:.1f} events x {per_event:.2f} us + 2 Bolt requests x {copy:.2f} us"
        f" = {(events * per_event + 2 * copy) / 1000:.3f} ms"
    )
    if failures:
        print(f"{failures} answers said something went wrong", file=sys.stderr)
        return 1
    return 0


def counted_events(metrics: PrometheusMetrics) -> float:
    """Every increment and observation the registry holds (the counters' values and the histograms' counts)."""
    total = 0.0
    for family in metrics.registry.collect():
        if family.name.startswith("breakglass_") and family.type in ("counter", "histogram"):
            suffix = "_total" if family.type == "counter" else "_count"
            total += sum(sample.value for sample in family.samples if sample.name.endswith(suffix))
    return total


def event_costs(calls: int) -> dict[str, float]:
    """Microseconds one call adds over ``NoMetrics``'s, for each kind of event, and for the client copy."""
    real, off = PrometheusMetrics(), NoMetrics()
    late = timedelta(seconds=1)
    kinds: dict[str, Callable[[Metrics], object]] = {
        "backend_call": lambda m: m.backend_call("webhook", "grant", "ok", 0.01),
        "slack_call": lambda m: m.slack_call("chat.postMessage", "ok"),
        "request_settled": lambda m: m.request_settled("bench-db", None, Settled.EMERGENCY, None),
        "revoked": lambda m: m.revoked("bench-db", late),
    }
    costs = {}
    for name, kind in kinds.items():
        costs[name] = (_loop(partial(kind, real), calls) - _loop(partial(kind, off), calls)) * 1e6 / calls
    client = WebClient(token="xoxb-bench", base_url="http://127.0.0.1:9/api/")
    copies = max(calls // 10, 1)
    costs[COPY] = _loop(lambda: metered(client, off), copies) * 1e6 / copies
    return costs


def _loop(call: Callable[[], object], times: int) -> float:
    started = time.perf_counter()
    for _ in range(times):
        call()
    return time.perf_counter() - started


def newest(bot: LocalBot) -> int:
    from sqlalchemy import func, select

    from bot.store.models import Request

    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        return int(session.scalar(select(func.max(Request.id))) or 0)


if __name__ == "__main__":
    sys.exit(main())
