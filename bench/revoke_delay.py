"""How late access is revoked: from a grant's ``expires_at`` to the backend receiving the revoke call.

Real time and the real scheduler. The bot is built with ``bot.runtime.build`` and a system clock, serves HTTP on
a free port, talks to the Slack Web API stand-in, and grants through the ``webhook`` adapter to a local
``WebhookReceiver``. Grants are driven through Slack as a person would: a signed ``--emergency`` slash command, or
(every fourth grant by default) a signed request followed by a signed Approve click. Each lasts 2-4 s.

Two configurations, measured one after the other in the same run:

* alarms: the normal mode. One APScheduler date job per expiry wakes the sweep; the periodic sweep runs every
  ``--alarms-sweep-interval`` seconds (15 by default, the bot's default) as a safety net.
* sweep only (baseline): no alarms (``NoAlarms``), the periodic sweep every ``--sweep-interval`` seconds (2).

    python bench/revoke_delay.py
    python bench/revoke_delay.py --grants 50 --sweep-interval 5
"""

from __future__ import annotations

import argparse
import math
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadkit import MonotonicToWall

from bot import runtime
from bot.clock import SystemClock, as_utc
from bot.devtools.local_bot import BOT_TOKEN, GROUPS, PEOPLE, SIGNING_SECRET
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookCall, WebhookReceiver
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.services.common import load_view
from bot.services.ports import NoAlarms
from bot.settings import Settings
from bot.slack.ids import ActionId

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
# One requester per grant: a person holds at most one live grant of a resource (the rest are refused).
REQUESTERS = [f"U0BENCH{n:03d}" for n in range(1000)]
BENCH_PEOPLE = PEOPLE | {user: {"name": user.lower(), "email": f"{user.lower()}@example.com"} for user in REQUESTERS}
APPROVER = "U0ALICE01"
RESOURCE = "bench-db"
POLICY = f"""
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 1s
  default_duration: 3s
  max_duration: 1h
review:
  required: none                  # no review reminders: only revokes fall due
resources:
  {RESOURCE}:
    description: Benchmark resource behind a webhook
    adapter: webhook
    params:
      url: ${{BENCH_WEBHOOK_URL}}
      secret: ${{BENCH_WEBHOOK_SECRET}}
      timeout: 5
    approvers: [{APPROVER}]
    emergency: true
"""
_REQUEST_ID = re.compile(r"#(\d+)")


@dataclass(frozen=True)
class Config:
    name: str
    alarms: bool
    sweep_interval: float


@dataclass(frozen=True)
class Result:
    config: Config
    delays_ms: list[float]
    elapsed: float


class Person:
    """Someone in Slack: signed slash commands and clicks, answers read from the stand-in's response URLs."""

    def __init__(self, user_id: str, sender: SlackSender, slack: SlackStandIn) -> None:
        self.user_id = user_id
        self.sender = sender
        self.slack = slack
        self._answers = 0

    def _answer_url(self) -> tuple[str, str]:
        self._answers += 1
        name = f"{self.user_id}-{self._answers}"
        return name, self.slack.response_url(name)

    def _answer(self, name: str) -> str:
        answers = self.slack.wait_for(lambda s: s.responses(name), timeout=10)
        return str(answers[-1].get("text", ""))

    def command(self, text: str) -> str:
        name, url = self._answer_url()
        response = self.sender.command(text, user_id=self.user_id, user_name=self.user_id, response_url=url)
        response.raise_for_status()
        return self._answer(name)

    def click(self, action: ActionId, request_id: int, channel: str, ts: str) -> str:
        name, url = self._answer_url()
        response = self.sender.click(action.value, str(request_id), self.user_id, channel, ts, response_url=url)
        response.raise_for_status()
        return self._answer(name)


def request_id(answer: str) -> int:
    match = _REQUEST_ID.search(answer)
    if match is None:
        raise SystemExit(f"no request id in the bot's answer: {answer!r}")
    return int(match.group(1))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def measure(config: Config, policy: Policy, grants: int, spread: float, approval_every: int, tmp: Path) -> Result:
    started = time.monotonic()
    to_wall = MonotonicToWall()
    slack = SlackStandIn(token=BOT_TOKEN, users=BENCH_PEOPLE, groups=GROUPS).start()
    receiver = WebhookReceiver(WEBHOOK_SECRET).start()
    bot: runtime.Runtime | None = None
    try:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_APP_TOKEN="",
            SLACK_API_URL=slack.api_url,
            DATABASE_URL=f"sqlite:///{tmp / (config.name.replace(' ', '-') + '.db')}",
            BREAKGLASS_SWEEP_INTERVAL=config.sweep_interval,
            BREAKGLASS_AUDIT_KEY=secrets.token_urlsafe(48),
        )
        environ = {"BENCH_WEBHOOK_URL": receiver.url, "BENCH_WEBHOOK_SECRET": WEBHOOK_SECRET}
        bot = runtime.build(settings, environ, clock=SystemClock(), policy=policy)
        if not config.alarms:
            bot.deps.alarms = NoAlarms()
        bot.start_alarms()
        port = bot.serve_http(host="127.0.0.1", port=0, block=False)
        sender = SlackSender(f"http://127.0.0.1:{port}", SIGNING_SECRET)
        approver = Person(APPROVER, sender, slack)

        ids = []
        first = time.monotonic()
        for i in range(grants):
            # Submissions are paced evenly over `spread` seconds, so that expiries fall at every phase of the sweep.
            time.sleep(max(0.0, first + i * spread / grants - time.monotonic()))
            seconds = 2 + i % 3  # 2 s, 3 s, 4 s, 2 s, ...
            requester = Person(REQUESTERS[i % len(REQUESTERS)], sender, slack)
            if approval_every and i % approval_every == approval_every - 1:
                rid = request_id(requester.command(f"{RESOURCE} {seconds}s INC-{i} bench"))
                view = load_view(bot.deps, rid)
                assert view is not None and view.approval_channel and view.approval_ts
                answer = approver.click(ActionId.APPROVE, rid, view.approval_channel, view.approval_ts)
                if "approval" not in answer:
                    raise SystemExit(f"{config.name}: approving #{rid} failed: {answer!r}")
            else:
                rid = request_id(requester.command(f"{RESOURCE} {seconds}s INC-{i} bench --emergency"))
            ids.append(rid)

        expiries: dict[str, datetime] = {}
        for rid in ids:
            view = load_view(bot.deps, rid)
            if view is None or view.expires_at is None:
                raise SystemExit(f"{config.name}: request #{rid} was never granted ({view and view.status})")
            expiries[view.uid] = as_utc(view.expires_at)

        def all_revoked(calls: list[WebhookCall]) -> bool:
            return {c.body.get("grant_id") for c in calls if c.event == "revoke"} >= expiries.keys()

        # The last expiry is at most 4 s away, the next sweep at most one interval after it; allow for slowness.
        receiver.wait_for(all_revoked, timeout=4 + config.sweep_interval + 10)
        revoked_at: dict[str, datetime] = {}
        for call in receiver.events("revoke"):
            if not call.valid or call.status != 200:
                raise SystemExit(f"{config.name}: a revoke call was refused ({call.status}, valid={call.valid})")
            revoked_at.setdefault(str(call.body["grant_id"]), to_wall(call.received_at))

        for rid in ids:  # the bot records the revoke once the backend has confirmed it
            wait_until(lambda rid=rid: _status(bot, rid) is Status.EXPIRED, timeout=5, what=f"#{rid} expired")
        delays = [(revoked_at[uid] - expires_at).total_seconds() * 1000 for uid, expires_at in expiries.items()]
    finally:
        if bot is not None:
            bot.stop()
        receiver.stop()
        slack.stop()
    return Result(config, delays, time.monotonic() - started)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def _status(bot: runtime.Runtime, rid: int) -> Status | None:
    view = load_view(bot.deps, rid)
    return view.status if view else None


def report(results: list[Result]) -> None:
    width = max(len(r.config.name) for r in results)
    print(f"{'configuration':<{width}}  {'grants':>6}  {'median ms':>9}  {'p99 ms':>8}  {'max ms':>8}  {'min ms':>7}")
    for result in results:
        delays = result.delays_ms
        print(
            f"{result.config.name:<{width}}  {len(delays):>6}  {statistics.median(delays):>9.1f}"
            f"  {percentile(delays, 0.99):>8.1f}  {max(delays):>8.1f}  {min(delays):>7.1f}"
        )
    alarms, baseline = results
    ratio = statistics.median(baseline.delays_ms) / statistics.median(alarms.delays_ms)
    print(
        f"\nmedian delay, sweep only / alarms: {ratio:.0f}x"
        f"  (worst: {max(alarms.delays_ms):.1f} ms with alarms, {max(baseline.delays_ms):.1f} ms sweep only)"
    )
    print("time per configuration: " + ", ".join(f"{r.config.name} {r.elapsed:.1f} s" for r in results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--grants", type=int, default=20, help="grants per configuration (default 20)")
    parser.add_argument(
        "--sweep-interval", type=float, default=2.0, help="sweep interval of the sweep-only baseline (default 2 s)"
    )
    parser.add_argument(
        "--alarms-sweep-interval",
        type=float,
        default=15.0,
        help="sweep interval when alarms are on (default 15 s, the bot's default)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=None,
        help="seconds over which each configuration's grants are submitted (default: the baseline sweep interval)",
    )
    parser.add_argument(
        "--approval-every",
        type=int,
        default=4,
        help="every Nth grant goes through request + Approve click, the others are emergencies; 0: none (default 4)",
    )
    args = parser.parse_args(argv)
    if args.grants < 1 or args.sweep_interval <= 0 or args.alarms_sweep_interval <= 0:
        parser.error("--grants must be at least 1 and the sweep intervals positive")
    if args.approval_every < 0 or (args.spread is not None and args.spread < 0):
        parser.error("--approval-every and --spread must not be negative")

    policy = parse_policy(POLICY, source="bench policy")
    spread = args.sweep_interval if args.spread is None else args.spread
    configs = [
        Config(f"alarms (sweep {args.alarms_sweep_interval:g} s)", True, args.alarms_sweep_interval),
        Config(f"sweep only ({args.sweep_interval:g} s)", False, args.sweep_interval),
    ]
    with tempfile.TemporaryDirectory(prefix="breakglass-bench-") as tmp:
        results = [measure(config, policy, args.grants, spread, args.approval_every, Path(tmp)) for config in configs]
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
