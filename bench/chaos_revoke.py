"""How late access is revoked when the backend fails one call in ten while replicas are killed: from a grant's
``expires_at`` to the backend receiving the revoke that succeeds.

Issue 11 saw 81 s "with a backend failing 10% of calls while replicas were killed". This measures that figure with
the bot's default settings (sweep interval 15 s, lease 30 s, heartbeat 2 s, dead after 6 s, revoke retries after
1, 2, 4, 8 s ...). Real `breakglass serve` processes (the harness of tests/resilience), two replicas sharing one
PostgreSQL database (BREAKGLASS_TEST_POSTGRES_URL or --postgres-url), the Slack stand-in, and a webhook backend
that takes 0.3 s to answer and answers 503 to a seeded random tenth of all calls (``WebhookReceiver.fail_fraction``).
The latency gives a kill a chance to land while a call is in flight.

Short emergency grants (3-6 s), each by a person of its own (one live grant per person and resource), are sent
to whichever replica is up. Meanwhile a killer SIGKILLs one replica every 10-20 s, alternately, and starts it again
a second later (``--down``) under a new pid (a new name, as without BREAKGLASS_INSTANCE), so its claims and its
alarms die with it. After the last grant has expired the killer stops, and the run waits until every request is final.

A baseline is measured first in the same run: the same workload, shorter, with no failures and no kills.

    python bench/chaos_revoke.py                    # 60 grants with chaos, 20 without (about 3.5 min)
    python bench/chaos_revoke.py --grants 120 --seed 2
    python bench/chaos_revoke.py --down 20          # a dead replica stays away longer than a sweep interval

Exits non-zero only when the bench itself cannot run; slow figures, and grants never revoked, are printed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the resilience harness lives with the tests

from bench.takeover import DEFAULTS, SWEEP_INTERVAL, database
from bot.clock import as_utc
from bot.devtools.local_bot import BOT_TOKEN, GROUPS, PEOPLE, SIGNING_SECRET
from bot.devtools.slack_requests import SlackSender
from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import FINAL, Status
from bot.services.deps import Tuning
from bot.store.models import Request
from tests.resilience.harness import WEBHOOK_SECRET, Fleet, Replica, wall_time

RESOURCE = "chaos-db"
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
    adapter: webhook
    params:
      url: ${{WEBHOOK_URL}}
      secret: ${{BREAKGLASS_WEBHOOK_SECRET}}
      timeout: 5
    approvers: [S0SRELEADS]
    emergency: true
"""
# Every replica with the bot's defaults, and a new name on each start: a restart is a new replica, as without
# BREAKGLASS_INSTANCE, so the dead one's claims are taken over by heartbeat rather than reclaimed by name.
REPLICA_SETTINGS: dict[str, str | None] = {**DEFAULTS, "BREAKGLASS_INSTANCE": None}
DURATIONS = (3, 4, 5, 6)  # seconds, cycled


@dataclass(frozen=True)
class Workload:
    name: str
    grants: int
    failing: float  # fraction of backend calls answered 503
    kills: bool


@dataclass(frozen=True)
class Options:
    every: float  # seconds between grants
    latency: float  # seconds the backend takes to answer each call
    down: float  # seconds a killed replica stays dead before it is started again
    seed: int  # of the backend's failures and of the killer's timing
    settle: float  # seconds to wait at the end for every revoke


@dataclass
class Outcome:
    workload: Workload
    lags: list[float]  # seconds from expires_at to the first revoke the backend accepted, per granted request
    resent_lags: list[float]  # the same to the last accepted revoke, for grants whose revoke was accepted twice
    never_granted: list[tuple[int, str, str]]  # id, status, why
    not_revoked: list[tuple[int, str]]
    calls: Counter[tuple[str, int]] = field(default_factory=Counter)  # (event, status) -> count
    stored: int = 0  # requests in the database: a command acked by a replica killed before it stored it is lost
    lost: list[str] = field(default_factory=list)  # commands acknowledged and never stored, with what happened
    kills: list[datetime] = field(default_factory=list)
    worst: list[str] = field(default_factory=list)  # the slowest grants, with what happened to them
    takeovers: int = 0
    audit: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0


def person(n: int) -> str:
    return f"U0CHAOS{n:03d}"


@contextmanager
def chaos_fleet(database_url: str, folder: Path, people: int) -> Iterator[Fleet]:
    """tests/resilience's fleet, with a person of its own for every grant and the bench's policy."""
    users = {
        **PEOPLE,
        **{
            person(n): {"name": person(n).lower(), "real_name": person(n), "email": f"{person(n).lower()}@example.com"}
            for n in range(people)
        },
    }
    with (
        SlackStandIn(token=BOT_TOKEN, users=users, groups=GROUPS) as slack,
        WebhookReceiver(WEBHOOK_SECRET) as backend,
    ):
        running = Fleet(database_url, folder, slack, backend)
        running.policy_file.write_text(POLICY)
        try:
            yield running
        finally:
            running.stop_all()
        leaks = running.leaked_secrets()
        if leaks:
            raise SystemExit(f"secrets in the bot's output: {'; '.join(leaks)}")


class Replicas:
    """The replicas up now, shared by the person sending commands and the killer."""

    def __init__(self, replicas: list[Replica]) -> None:
        self._up = list(replicas)
        self._lock = threading.Lock()
        self._turn = 0

    def pick(self) -> Replica | None:
        with self._lock:
            if not self._up:
                return None
            self._turn += 1
            return self._up[self._turn % len(self._up)]

    def down(self, replica: Replica) -> None:
        with self._lock:
            self._up.remove(replica)

    def up(self, replica: Replica) -> None:
        with self._lock:
            self._up.append(replica)


class Killer(threading.Thread):
    """SIGKILLs one replica every ``every`` seconds (at random in the range), alternately, and starts it again
    ``down`` seconds later; waits for it to answer before the next interval starts, so one replica is always up."""

    def __init__(self, running: Fleet, up: Replicas, rng: random.Random, every: tuple[float, float], down: float):
        super().__init__(name="killer", daemon=True)
        self.running, self.up, self.rng, self.every, self.down_for = running, up, rng, every, down
        self.stopping = threading.Event()
        self.kills: list[datetime] = []  # when each SIGKILL was sent
        self.victims: list[str] = []  # and to which replica
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            victims = list(self.running.replicas)
            while not self.stopping.wait(self.rng.uniform(*self.every)):
                victim = victims[len(self.kills) % len(victims)]
                self.up.down(victim)
                self.victims.append(victim.name)
                self.kills.append(victim.kill())
                time.sleep(self.down_for)
                self.running.start(victim)
                self.up.up(victim)
        except BaseException as error:  # re-raised by stop(): a replica that cannot start again ends the bench
            self.error = error

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=120)
        if self.error is not None:
            raise RuntimeError("the killer failed") from self.error


def break_glass(running: Fleet, up: Replicas, n: int, seconds: int) -> tuple[str, datetime]:
    """One emergency grant by person n, to a replica that is up; again to another if the first dies under it.
    Returns the replica that acknowledged it, and when."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replica = up.pick()
        if replica is None:
            time.sleep(0.1)
            continue
        try:
            response = SlackSender(replica.url, SIGNING_SECRET).command(
                f"{RESOURCE} {seconds}s INC-{n} chaos bench --emergency",
                user_id=person(n),
                user_name=person(n).lower(),
                channel_id="C0INCIDENT",
                response_url=running.slack.response_url(f"grant-{n}-{time.monotonic_ns()}"),
            )
        except requests.RequestException:
            time.sleep(0.1)  # killed before it answered (or too slow to): as Slack users do, send it again
            continue
        if response.status_code != 200:
            raise SystemExit(f"grant {n}: {replica.name} answered {response.status_code}")
        return replica.name, datetime.now(UTC)
    raise SystemExit(f"grant {n}: no replica answered for 60 s")


def accepted(running: Fleet, event: str) -> set[str]:
    """The grant ids for which the backend accepted ``event``: a grant it accepted is access, whether or not the
    bot lived to record it."""
    return {str(c.body.get("grant_id")) for c in running.backend.events(event) if c.status == 200}


def settled(running: Fleet) -> bool:
    """Every request final, and every grant the backend accepted revoked there."""
    rows = running.requests()
    return all(Status(r.status) in FINAL for r in rows) and accepted(running, "grant") <= accepted(running, "revoke")


def measure(workload: Workload, url: str, folder: Path, options: Options) -> Outcome:
    started = time.monotonic()
    with chaos_fleet(url, folder, workload.grants) as running:
        if workload.failing:
            running.backend.fail_fraction(workload.failing, seed=options.seed)
        running.backend.respond_with(delay=options.latency)
        for name in ("replica-a", "replica-b"):
            running.start(running.replica(name, settings=REPLICA_SETTINGS))
        up = Replicas(running.replicas)
        killer = Killer(running, up, random.Random(options.seed), every=(10.0, 20.0), down=options.down)
        if workload.kills:
            killer.start()
        try:
            acked: dict[int, tuple[str, datetime]] = {}
            first = time.monotonic()
            for n in range(workload.grants):
                time.sleep(max(0.0, first + n * options.every - time.monotonic()))
                acked[n] = break_glass(running, up, n, DURATIONS[n % len(DURATIONS)])
            time.sleep(max(DURATIONS))  # the last grant expires under fire too
        finally:
            if workload.kills:
                killer.stop()
        deadline = time.monotonic() + options.settle
        while not settled(running) and time.monotonic() < deadline:
            time.sleep(0.2)
        return outcome(workload, running, killer, acked, time.monotonic() - started)


def outcome(
    workload: Workload, running: Fleet, killer: Killer, acked: dict[int, tuple[str, datetime]], elapsed: float
) -> Outcome:
    rows: list[Request] = running.requests()
    kills = killer.kills
    lost = []
    for n in sorted(set(acked) - {int(row.requester_id.removeprefix("U0CHAOS")) for row in rows}):
        name, at = acked[n]
        after = [
            (kill - at).total_seconds() for kill, victim in zip(kills, killer.victims, strict=True) if victim == name
        ]
        killed = next((f"killed {gap:.2f} s later" for gap in after if gap >= 0), "not killed after it")
        lost.append(f"{person(n)}'s command, acknowledged by {name}, {killed}")
    granted = accepted(running, "grant")
    revoked_at: dict[str, list[datetime]] = {}  # when the backend accepted each revoke, per grant id
    refused: Counter[str] = Counter()  # failed revoke attempts per grant
    calls: Counter[tuple[str, int]] = Counter()
    for call in running.backend.calls:
        calls[(call.event or "?", call.status)] += 1
        if call.event == "revoke":
            grant_id = str(call.body.get("grant_id"))
            if call.status == 200:
                revoked_at.setdefault(grant_id, []).append(wall_time(call))
            else:
                refused[grant_id] += 1
    lags: dict[int, float] = {}
    resent: list[float] = []
    never: list[tuple[int, str, str]] = []
    open_: list[tuple[int, str]] = []
    stories: dict[int, str] = {}
    for row in rows:
        if row.expires_at is None or row.uid not in granted:
            never.append((row.id, row.status, (row.failure or "")[:200]))
            continue
        expires_at = as_utc(row.expires_at)
        seen = revoked_at.get(row.uid)
        if not seen:
            open_.append((row.id, row.status))
            continue
        lags[row.id] = (min(seen) - expires_at).total_seconds()
        if len(seen) > 1:
            resent.append((max(seen) - expires_at).total_seconds())
        near = [(kill - expires_at).total_seconds() for kill in kills if kill <= min(seen)]
        story = [f"#{row.id}: {lags[row.id]:.2f} s, {refused[row.uid]} failed revoke attempt(s)"]
        if near:
            story.append(f"last kill {near[-1]:+.1f} s from its expiry")
        if row.granted_at is None:
            story.append(f"never recorded as granted (ended {row.status})")
        stories[row.id] = ", ".join(story)
    worst = [stories[rid] for rid in sorted(lags, key=lags.__getitem__, reverse=True)[:5]]
    audit = Counter(event.action for event in running.audit())
    return Outcome(
        workload,
        lags=list(lags.values()),
        resent_lags=resent,
        never_granted=never,
        not_revoked=open_,
        calls=calls,
        stored=len(rows),
        lost=lost,
        kills=kills,
        worst=worst,
        takeovers=audit["claim_taken_over"],
        audit=audit,
        elapsed=elapsed,
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(int(len(ordered) * fraction + 0.999999) - 1, 0))]


def report(outcomes: list[Outcome]) -> None:
    width = max(len(o.workload.name) for o in outcomes)
    print(f"\n{'workload':<{width}}  {'grants':>6}  {'median s':>8}  {'p99 s':>7}  {'max s':>7}  {'min s':>7}")
    for o in outcomes:
        if not o.lags:
            print(f"{o.workload.name:<{width}}  {0:>6}  (no grant revoked)")
            continue
        print(
            f"{o.workload.name:<{width}}  {len(o.lags):>6}  {statistics.median(o.lags):>8.2f}"
            f"  {percentile(o.lags, 0.99):>7.2f}  {max(o.lags):>7.2f}  {min(o.lags):>7.2f}"
        )
    for o in outcomes:
        failed = {event: n for (event, status), n in sorted(o.calls.items()) if status != 200}
        total = sum(o.calls.values())
        print(
            f"\n{o.workload.name}: {o.stored} of {o.workload.grants} commands stored; {total} backend calls, "
            f"{sum(failed.values())} failed {failed or ''}; "
            f"revoke attempts failed: {failed.get('revoke', 0)}; replicas killed: {len(o.kills)}; "
            f"claims taken over (claim_taken_over): {o.takeovers}; revoke_failed audited: {o.audit['revoke_failed']}; "
            f"{o.elapsed:.0f} s"
        )
        if o.resent_lags:
            print(
                f"  {len(o.resent_lags)} grant(s) had their revoke accepted twice (a kill between the backend's answer "
                f"and the commit); the second came at most {max(o.resent_lags):.2f} s after expiry"
            )
        if o.kills:
            print("  slowest: " + "; ".join(o.worst))
        if o.lost:
            print(f"  acknowledged, never stored: {'; '.join(o.lost)}")
        if o.never_granted:
            print(f"  never granted (not counted): {o.never_granted}")
        if o.not_revoked:
            print(f"  NOT REVOKED when the bench gave up waiting: {o.not_revoked}")
    baseline, chaos = outcomes[0], outcomes[-1]
    if baseline is not chaos and baseline.lags and chaos.lags:
        print(
            f"\nworst revoke lag: {max(chaos.lags):.2f} s with failures and kills, "
            f"{max(baseline.lags):.2f} s without (median {statistics.median(chaos.lags):.2f} s vs "
            f"{statistics.median(baseline.lags):.2f} s)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=60, help="grants under failures and kills (default 60)")
    parser.add_argument("--baseline-grants", type=int, default=20, help="grants in the quiet baseline (default 20)")
    parser.add_argument("--every", type=float, default=1.5, help="seconds between grants (default 1.5)")
    parser.add_argument("--failing", type=float, default=0.1, help="fraction of backend calls failing (default 0.1)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the failures and the killer (default 1)")
    parser.add_argument(
        "--latency", type=float, default=0.3, help="seconds the backend takes to answer a call (default 0.3)"
    )
    parser.add_argument(
        "--down", type=float, default=1.0, help="seconds a killed replica stays dead before its restart (default 1)"
    )
    parser.add_argument(
        "--settle", type=float, default=180.0, help="seconds to wait for every revoke at the end (default 180)"
    )
    parser.add_argument("--postgres-url", default=os.environ.get("BREAKGLASS_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    if args.grants < 1 or args.baseline_grants < 0 or args.every <= 0 or not 0 <= args.failing <= 1:
        parser.error("--grants must be at least 1, --every positive and --failing between 0 and 1")
    if args.latency < 0 or args.down < 0 or args.settle <= 0:
        parser.error("--latency and --down must not be negative, --settle must be positive")
    tuning = Tuning()
    print(
        f"defaults: sweep interval {SWEEP_INTERVAL:.0f} s, lease {tuning.lease.total_seconds():.0f} s, heartbeat "
        f"{tuning.heartbeat.total_seconds():.0f} s, dead after {tuning.dead_after.total_seconds():.0f} s, revoke "
        f"retries after {tuning.backoff_base.total_seconds():g} s doubling (jitter -{tuning.jitter:.0%}); "
        f"backend latency {args.latency:g} s; killed replicas down {args.down:g} s; seed {args.seed}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    workloads = [
        Workload("quiet (baseline)", args.baseline_grants, 0.0, kills=False),
        Workload(f"{args.failing:.0%} failing + kills", args.grants, args.failing, kills=True),
    ]
    options = Options(args.every, args.latency, args.down, args.seed, args.settle)
    outcomes = []
    for workload in workloads:
        if workload.grants == 0:
            continue
        print(f"{workload.name}: {workload.grants} grants, one every {args.every:g} s ...", flush=True)
        with (
            tempfile.TemporaryDirectory(prefix="breakglass-chaos-") as folder,
            database("survivor", Path(folder), args.postgres_url) as url,
        ):
            outcomes.append(measure(workload, url, Path(folder), options))
    report(outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
