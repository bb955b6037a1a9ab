"""What the approval flow of issue 13 costs in Slack calls, and how late its reminders go out.

Part 1, Slack calls per request (a clock that only moves when told). The real bot through ``LocalBot``, on a policy
with ``log`` resources, the directory cache cold at the start of each flow (a fresh bot each). Four flows:

* one step: request, one Approve, the expiry warning, the expiry;
* two steps: request, Approve at step 1, Approve at step 2, warning, expiry;
* emergency: ``--emergency``, warning, expiry;
* reminded: a request left pending until one reminder (``remind_approvers_every``, 15m by default) went out.

Every Web API call the stand-in received is counted by method (``response_url`` answers are not Web API calls and
are shown apart). The in-run baseline is the same flow without what issue 13 added on the wire: the replies in the
approval message's thread (``chat.postMessage`` with ``thread_ts``) and ``chat.getPermalink``.

Part 2, reminder timing error (real time, the real scheduler), built like bench/revoke_delay.py: ``runtime.build``
with a system clock, ``start_alarms()``, HTTP on a free port, signed slash commands. ``--requests`` requests are made
over ``--spread`` seconds and left pending until each has had ``--reminders`` reminders. The policy refuses
``remind_approvers_every`` below 1m, so the bench replaces the parsed resource with
``resource.model_copy(update={"remind_approvers_every": timedelta(seconds=every)})`` (and the policy with
``policy.model_copy(update={"resources": ...})``). The error of one reminder is the moment the stand-in received its
thread reply minus ``created_at + k x every`` (``created_at`` from the database, via ``load_view``).

Why ``--every`` defaults to 16 s and not less: a pending request's moments get their alarm from a sweep's look-ahead
(twice the sweep interval); neither making a request nor sending a reminder sets one. With ``every`` at least the
sweep interval, as in production (1m or more against 15 s), a periodic sweep always sets the alarm in time. With
``every`` shorter than the alarms configuration's sweep interval the bench would measure that gap instead, so it says
so when asked for it.

Two configurations in the same run:

* alarms: the normal mode; the periodic sweep every ``--alarms-sweep-interval`` seconds (15, the bot's default);
* sweep only (baseline): ``NoAlarms``, the periodic sweep every ``--sweep-interval`` seconds (2).

    python bench/approval_flow.py
    python bench/approval_flow.py --quick
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from revoke_delay import MonotonicToWall, percentile, request_id, wait_until  # bench/ is on the path of a script

from bot import runtime
from bot.clock import ManualClock, SystemClock, as_utc
from bot.devtools.local_bot import BOT_TOKEN, GROUPS, PEOPLE, SIGNING_SECRET, LocalBot
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import ApiCall, SlackStandIn
from bot.domain.states import Status
from bot.policy import Policy, parse_policy
from bot.services.common import load_view
from bot.services.ports import NoAlarms
from bot.settings import Settings
from bot.slack.ids import ActionId

BOB, ALICE, CAROL, ERIN = "U0BOB", "U0ALICE01", "U0CAROL", "U0ERIN"
FLOW_POLICY = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
review:
  required: none                  # reviews after an emergency are their own flow, not counted here
resources:
  orders-db:
    description: Orders database
    adapter: log
    approvers: [S0SRELEADS, U0ALICE01]
    emergency: true
  payments-db:
    description: Payments database
    adapter: log
    approval_steps:
      - name: team lead
        approvers: [S0SRELEADS]
      - name: security
        approvers: [S0SECURITY]
"""
THREAD_REPLY = "chat.postMessage (thread)"
# Issue 13's additions on the wire: what the in-run baseline leaves out.
ISSUE_13 = (THREAD_REPLY, "chat.getPermalink")

# One requester per request, as in bench/revoke_delay.py: each stays pending, and nobody asks twice at once.
REQUESTERS = [f"U0BENCH{n:03d}" for n in range(1000)]
BENCH_PEOPLE = PEOPLE | {user: {"name": user.lower(), "email": f"{user.lower()}@example.com"} for user in REQUESTERS}
RESOURCE = "bench-db"
REMIND_POLICY = f"""
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
defaults:
  min_duration: 5m
  default_duration: 1h
  max_duration: 4h
review:
  required: none
resources:
  {RESOURCE}:
    description: Benchmark resource nobody approves
    adapter: log
    approvers: [S0SRELEADS, U0ALICE01]
    remind_approvers_every: 1m    # replaced by --every once parsed
"""


# -- part 1: Slack calls per request -----------------------------------------------------------------------------


@dataclass
class FlowCount:
    name: str
    phases: list[tuple[str, list[ApiCall]]] = field(default_factory=list)
    answers: int = 0  # response_url posts: not Web API calls

    def by_method(self) -> Counter[str]:
        counted: Counter[str] = Counter()
        for _, calls in self.phases:
            counted.update(method_of(call) for call in calls)
        return counted

    @property
    def total(self) -> int:
        return sum(self.by_method().values())

    @property
    def baseline(self) -> int:
        methods = self.by_method()
        return self.total - sum(methods[name] for name in ISSUE_13)


def method_of(call: ApiCall) -> str:
    return THREAD_REPLY if call.method == "chat.postMessage" and call.args.get("thread_ts") else call.method


def settle(bot: LocalBot, quiet: float = 0.3, timeout: float = 10.0) -> None:
    """Wait until the stand-in has heard nothing for ``quiet`` seconds: what an action owes Slack runs after its
    ack, in other threads, so a count taken at once would miss some."""
    deadline = time.monotonic() + timeout
    seen = (-1, -1)
    while time.monotonic() < deadline:
        now = (len(bot.slack.calls()), len(bot.slack.responses()))
        if now == seen:
            return
        seen = now
        time.sleep(quiet)
    raise SystemExit("the bot kept calling Slack; cannot count a flow that does not end")


class Counting:
    """Runs a flow's steps on a fresh bot and keeps the Web API calls each step caused."""

    def __init__(self, bot: LocalBot, name: str) -> None:
        self.bot = bot
        self.result = FlowCount(name)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        settle(self.bot)
        calls, answers = len(self.bot.slack.calls()), len(self.bot.slack.responses())
        yield
        settle(self.bot)
        self.result.phases.append((name, self.bot.slack.calls()[calls:]))
        self.result.answers += len(self.bot.slack.responses()) - answers

    def status(self, rid: int) -> Status | None:
        assert self.bot.runtime is not None
        view = load_view(self.bot.runtime.deps, rid)
        return view.status if view else None

    def until(self, rid: int, status: Status) -> None:
        wait_until(lambda: self.status(rid) is status, timeout=10, what=f"#{rid} {status.value}")

    def request(self, text: str) -> int:
        reply = self.bot.command(BOB, text)
        return request_id(reply.text)

    def approve(self, who: str, rid: int) -> None:
        reply = self.bot.click(who, ActionId.APPROVE, rid)
        if "approv" not in reply.text:
            raise SystemExit(f"{self.result.name}: {who} could not approve #{rid}: {reply.text!r}")

    def warning_and_expiry(self, rid: int) -> None:
        """Move time to just after the expiry warning falls due, then to just after the expiry, sweeping each time."""
        bot = self.bot
        assert bot.runtime is not None
        view = load_view(bot.runtime.deps, rid)
        assert view is not None and view.expires_at is not None
        expires_at = as_utc(view.expires_at)
        with self.phase("warning"):
            bot.clock.set(expires_at - bot.runtime.deps.tuning.expiry_warning + timedelta(seconds=1))
            bot.sweep()
        with self.phase("expiry"):
            bot.clock.set(expires_at + timedelta(seconds=1))
            bot.sweep()
            self.until(rid, Status.EXPIRED)


def one_step(run: Counting) -> None:
    with run.phase("request"):
        rid = run.request("orders-db 1h INC-1 checkout down")
    with run.phase("approve"):
        run.approve(ALICE, rid)
        run.until(rid, Status.ACTIVE)
    run.warning_and_expiry(rid)


def two_steps(run: Counting) -> None:
    with run.phase("request"):
        rid = run.request("payments-db 1h INC-2 refunds stuck")
    with run.phase("step 1"):
        run.approve(CAROL, rid)
    with run.phase("step 2"):
        run.approve(ERIN, rid)
        run.until(rid, Status.ACTIVE)
    run.warning_and_expiry(rid)


def emergency(run: Counting) -> None:
    with run.phase("request"):
        rid = run.request("orders-db 1h INC-3 checkout down --emergency")
        run.until(rid, Status.ACTIVE)
    run.warning_and_expiry(rid)


def reminded(run: Counting) -> None:
    bot = run.bot
    with run.phase("request"):
        rid = run.request("orders-db 1h INC-4 checkout down")
    resource = bot.policy.resource("orders-db")
    assert resource is not None and resource.remind_approvers_every is not None
    with run.phase("reminder"):
        report = bot.advance(resource.remind_approvers_every)
        if report.approvers_reminded != 1:
            raise SystemExit(f"reminded: expected one reminder, the sweep says {report}")
    if run.status(rid) is not Status.PENDING:
        raise SystemExit(f"reminded: #{rid} should still be pending")


FLOWS: list[tuple[str, Callable[[Counting], None]]] = [
    ("one step -> expiry", one_step),
    ("two steps -> expiry", two_steps),
    ("emergency -> expiry", emergency),
    ("pending, 1 reminder", reminded),
]


def count_calls(tmp: Path) -> list[FlowCount]:
    policy = parse_policy(FLOW_POLICY, source="bench flow policy")
    results = []
    for number, (name, flow) in enumerate(FLOWS):
        with LocalBot(policy, f"sqlite:///{tmp / f'flow-{number}.db'}", clock=ManualClock()) as bot:
            run = Counting(bot, name)
            flow(run)
            results.append(run.result)
    return results


def report_calls(results: list[FlowCount], listing: bool = False) -> None:
    methods = sorted({method for result in results for method in result.by_method()})
    width = max(len(result.name) for result in results)
    widths = [max(len(method), 4) for method in methods]
    header = "  ".join(f"{method:>{w}}" for method, w in zip(methods, widths, strict=True))
    print(f"{'flow':<{width}}  {header}  {'total':>5}  {'baseline':>8}  {'x baseline':>10}")
    for result in results:
        counted = result.by_method()
        cells = "  ".join(f"{counted[method]:>{w}}" for method, w in zip(methods, widths, strict=True))
        ratio = result.total / result.baseline
        print(f"{result.name:<{width}}  {cells}  {result.total:>5}  {result.baseline:>8}  {ratio:>10.2f}")
    print(f"\nbaseline: the same flow without {' and '.join(ISSUE_13)}")
    for result in results:
        steps = ", ".join(f"{name} {len(calls)}" for name, calls in result.phases)
        print(f"{result.name}: {steps}; plus {result.answers} response_url answers (not Web API calls)")
        for name, calls in result.phases if listing else []:
            for call in calls:
                where = call.args.get("channel") or call.args.get("user") or call.args.get("usergroup") or ""
                print(f"    {name:<8} {method_of(call):<26} {where}")


# -- part 2: reminder timing error -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    name: str
    alarms: bool
    sweep_interval: float


@dataclass(frozen=True)
class Result:
    config: Config
    errors_ms: list[float]  # per reminder: received - (created_at + k x every)
    by_k: dict[int, list[float]]
    elapsed: float


def fast_reminders(every: timedelta) -> Policy:
    """The bench policy with ``remind_approvers_every`` below what the policy allows (see the module docstring)."""
    policy = parse_policy(REMIND_POLICY, source="bench reminder policy")
    resource = policy.resources[RESOURCE].model_copy(update={"remind_approvers_every": every})
    return policy.model_copy(update={"resources": {**policy.resources, RESOURCE: resource}})


def measure(config: Config, policy: Policy, requests: int, spread: float, reminders: int, tmp: Path) -> Result:
    started = time.monotonic()
    to_wall = MonotonicToWall()
    resource = policy.resource(RESOURCE)
    assert resource is not None and resource.remind_approvers_every is not None
    every = resource.remind_approvers_every
    slack = SlackStandIn(token=BOT_TOKEN, users=BENCH_PEOPLE, groups=GROUPS).start()
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
        bot = runtime.build(settings, {}, clock=SystemClock(), policy=policy)
        if not config.alarms:
            bot.deps.alarms = NoAlarms()
        bot.start_alarms()
        port = bot.serve_http(host="127.0.0.1", port=0, block=False)
        sender = SlackSender(f"http://127.0.0.1:{port}", SIGNING_SECRET)

        ids = []
        first = time.monotonic()
        for i in range(requests):
            # Paced evenly, so that the moments due fall at every phase of the sweep.
            time.sleep(max(0.0, first + i * spread / requests - time.monotonic()))
            user = REQUESTERS[i % len(REQUESTERS)]
            name = f"{user}-{i}"
            response = sender.command(
                f"{RESOURCE} 1h INC-{i} bench", user_id=user, user_name=user, response_url=slack.response_url(name)
            )
            response.raise_for_status()
            answer = slack.wait_for(lambda s, name=name: s.responses(name), timeout=10)
            ids.append(request_id(str(answer[-1].get("text", ""))))

        created: dict[str, tuple[int, datetime]] = {}  # approval message ts -> (request id, created_at)
        for rid in ids:
            view = load_view(bot.deps, rid)
            if view is None or view.status is not Status.PENDING or not view.approval_ts:
                raise SystemExit(f"{config.name}: request #{rid} is not pending with an approval message")
            created[view.approval_ts] = (rid, as_utc(view.created_at))

        def reminders_of(s: SlackStandIn) -> dict[str, list[ApiCall]]:
            found: dict[str, list[ApiCall]] = {ts: [] for ts in created}
            for call in s.calls("chat.postMessage"):
                thread = call.args.get("thread_ts")
                if call.ok and thread in found and "Reminder" in str(call.args.get("text")):
                    found[thread].append(call)
            return found

        def all_reminded(s: SlackStandIn) -> bool:
            return all(len(calls) >= reminders for calls in reminders_of(s).values())

        late = every.total_seconds() * reminders + config.sweep_interval * reminders
        slack.wait_for(all_reminded, timeout=spread + late + 15)
        errors: list[float] = []
        by_k: dict[int, list[float]] = {}
        for ts, calls in reminders_of(slack).items():
            _, created_at = created[ts]
            for k, call in enumerate(calls[:reminders], start=1):
                error = (to_wall(call.at) - (created_at + k * every)).total_seconds() * 1000
                errors.append(error)
                by_k.setdefault(k, []).append(error)
    finally:
        if bot is not None:
            bot.stop()
        slack.stop()
    return Result(config, errors, by_k, time.monotonic() - started)


def report_timing(results: list[Result], every: timedelta) -> None:
    width = max(len(r.config.name) for r in results)
    columns = f"{'reminders':>9}  {'median ms':>9}  {'p99 ms':>8}  {'max ms':>8}  {'min ms':>7}"
    print(f"{'configuration':<{width}}  {columns}")
    for result in results:
        errors = result.errors_ms
        print(
            f"{result.config.name:<{width}}  {len(errors):>9}  {statistics.median(errors):>9.1f}"
            f"  {percentile(errors, 0.99):>8.1f}  {max(errors):>8.1f}  {min(errors):>7.1f}"
        )
    for result in results:
        medians = ", ".join(f"k={k} {statistics.median(v):.1f}" for k, v in sorted(result.by_k.items()))
        print(f"  {result.config.name}: median by reminder number: {medians} ms")
    alarms, baseline = results
    ratio = statistics.median(baseline.errors_ms) / statistics.median(alarms.errors_ms)
    print(
        f"\nerror = received - (created_at + k x {every.total_seconds():g} s)"
        f"; median, sweep only / alarms: {ratio:.0f}x"
        f"  (worst: {max(alarms.errors_ms):.1f} ms with alarms, {max(baseline.errors_ms):.1f} ms sweep only)"
    )
    print("time per configuration: " + ", ".join(f"{r.config.name} {r.elapsed:.1f} s" for r in results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 requests, 1 reminder each, every 4 s")
    parser.add_argument("--requests", type=int, default=30, help="pending requests per configuration (default 30)")
    parser.add_argument("--reminders", type=int, default=2, help="reminders measured per request (default 2)")
    parser.add_argument(
        "--every", type=float, default=16.0, help="remind_approvers_every in seconds, put in place of the policy's (16)"
    )
    parser.add_argument("--spread", type=float, default=3.0, help="seconds over which requests are made (default 3)")
    parser.add_argument(
        "--sweep-interval", type=float, default=2.0, help="sweep interval of the sweep-only baseline (default 2 s)"
    )
    parser.add_argument(
        "--alarms-sweep-interval",
        type=float,
        default=15.0,
        help="sweep interval when alarms are on (default 15 s, the bot's default)",
    )
    parser.add_argument("--skip-timing", action="store_true", help="count Slack calls only (part 1)")
    parser.add_argument("--list-calls", action="store_true", help="list every counted call, phase by phase")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.reminders, args.every, args.spread, args.alarms_sweep_interval = 5, 1, 4.0, 1.0, 3.0
    if args.requests < 1 or args.reminders < 1 or args.every <= 0 or args.spread < 0:
        parser.error("--requests and --reminders must be at least 1, --every positive, --spread not negative")
    if args.sweep_interval <= 0 or args.alarms_sweep_interval <= 0:
        parser.error("the sweep intervals must be positive")

    with tempfile.TemporaryDirectory(prefix="breakglass-bench-") as tmp:
        print("Slack Web API calls per request (ManualClock; directory cache cold at the start of each flow)\n")
        report_calls(count_calls(Path(tmp)), args.list_calls)
        if args.skip_timing:
            return 0

        every = timedelta(seconds=args.every)
        print(f"\nReminder timing error (real time; {args.requests} requests, remind every {args.every:g} s)\n")
        if args.every < args.alarms_sweep_interval:
            print(
                f"note: every {args.every:g} s < the alarms configuration's sweep interval "
                f"{args.alarms_sweep_interval:g} s: a reminder may fall due before any sweep has set its alarm\n"
            )
        policy = fast_reminders(every)
        configs = [
            Config(f"alarms (sweep {args.alarms_sweep_interval:g} s)", True, args.alarms_sweep_interval),
            Config(f"sweep only ({args.sweep_interval:g} s)", False, args.sweep_interval),
        ]
        results = [measure(c, policy, args.requests, args.spread, args.reminders, Path(tmp)) for c in configs]
    report_timing(results, every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
