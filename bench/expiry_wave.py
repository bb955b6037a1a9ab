"""An expiry wave: many grants over several resources ending within the same second, behind a slow backend.

A bot built by ``bot.runtime.build`` with default settings and a system clock, on PostgreSQL (a database made for
the run on the server ``--postgres`` names) or SQLite, revokes through the ``webhook`` adapter to a local receiver
that takes ``--backend-ms`` (50) a call. The grants are written straight into the database as ``finish_grant``
leaves them (going through Slack would only make the setup slow), each with the alarm a grant sets, all expiring
within ``--within`` (1 s) of each other a few seconds after the bot is ready.

Each figure is one grant's delay from its ``expires_at`` to the receiver getting its revoke call. Beside it, the
limit the lanes allow: the same grants served by ``resources x BREAKGLASS_BACKEND_CONCURRENCY`` calls at once that
each take exactly the backend's time and nothing else. Every grant must be revoked exactly once and end EXPIRED.

    python bench/expiry_wave.py                      # 1,000 grants over 10 resources, on PostgreSQL
    python bench/expiry_wave.py --grants 200
    python bench/expiry_wave.py --quick              # CI: 100 grants; fails only on a lost or doubled revoke
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadkit import (
    MonotonicToWall,
    active_grant,
    add_postgres_option,
    bot_settings,
    database,
    insert_grants,
    receiver_elsewhere,
    slack_elsewhere,
    spread,
    summary,
)

from bot import runtime
from bot.clock import SystemClock, as_utc
from bot.devtools.local_bot import BOT_TOKEN, PEOPLE
from bot.domain.states import Status
from bot.policy import parse_policy
from bot.store.models import Request

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
TARGET_P99_MS = 2000.0


def policy_text(resources: int) -> str:
    lines = ["channels:", "  approvals: C0APPROVALS", "  audit: C0SECURITY", "review:", "  required: none"]
    lines.append("resources:")
    for n in range(resources):
        lines += [
            f"  wave-{n}:",
            "    description: Benchmark resource behind a webhook",
            "    adapter: webhook",
            "    params:",
            "      url: ${BENCH_WEBHOOK_URL}",
            "      secret: ${BENCH_WEBHOOK_SECRET}",
            "      timeout: 5",
            "    approvers: [U0ALICE01]",
            "    emergency: true",
        ]
    return "\n".join(lines) + "\n"


def lane_limit(expiries: dict[str, list[datetime]], width: int, call: timedelta) -> list[float]:
    """The delays (ms) if each resource's ``width`` lanes did nothing but back-to-back backend calls."""
    delays = []
    for moments in expiries.values():
        free = [moments[0]] * width  # when each lane is next free
        for due in sorted(moments):
            start = max(due, heapq.heappop(free))
            heapq.heappush(free, start + call)
            delays.append((start - due).total_seconds() * 1000)
    return delays


def run(grants: int, resources: int, within: float, backend_ms: float, postgres: str | None, lead: float) -> int:
    receiver = receiver_elsewhere(WEBHOOK_SECRET, backend_ms / 1000)
    slack = slack_elsewhere(BOT_TOKEN, PEOPLE)
    environ = {"BENCH_WEBHOOK_URL": receiver.url, "BENCH_WEBHOOK_SECRET": WEBHOOK_SECRET}
    to_wall = MonotonicToWall()
    failures: list[str] = []
    try:
        with database(postgres) as url:
            settings = bot_settings(url, slack.url)
            bot = runtime.build(settings, environ, clock=SystemClock(), policy=parse_policy(policy_text(resources)))
            try:
                bot.start_alarms()
                bot.serve_http(host="127.0.0.1", port=0, block=False)
                now = bot.deps.now()
                first = now + timedelta(seconds=lead)
                names = [f"wave-{n}" for n in range(resources)]
                moments = spread(first, grants, timedelta(seconds=within))
                rows = [active_grant(i, names[i % resources], now, moments[i]) for i in range(grants)]
                insert_grants(bot.deps.db.engine, rows)
                for moment in sorted(set(moments)):  # as finish_grant does for each grant it makes
                    bot.deps.alarms.wake_at(moment)
                if bot.deps.now() >= first:
                    raise SystemExit(f"setting up took longer than --lead ({lead:g} s): raise it")
                expires = {str(r["uid"]): as_utc(r["expires_at"]) for r in rows}  # type: ignore[arg-type]

                deadline = time.monotonic() + lead + within + 120
                while {c[1] for c in receiver.ask() if c[0] == "revoke"} < expires.keys():
                    if time.monotonic() > deadline:
                        raise SystemExit("not every grant was revoked within two minutes")
                    time.sleep(0.1)
                started = time.monotonic()
                while _expired(bot) < grants and time.monotonic() - started < 60:
                    time.sleep(0.05)
                recorded = time.monotonic() - started
                calls = [c for c in receiver.ask() if c[0] == "revoke"]
                per_grant = Counter(str(c[1]) for c in calls)
                at = {str(c[1]): to_wall(c[2]) for c in reversed(calls)}
                expired = _expired(bot)
            finally:
                bot.stop()
    finally:
        receiver.stop()
        slack.stop()

    delays = [(at[uid] - due).total_seconds() * 1000 for uid, due in expires.items()]
    by_resource: dict[str, list[datetime]] = {}
    for row in rows:
        by_resource.setdefault(str(row["resource"]), []).append(expires[str(row["uid"])])
    width = bot.deps.tuning.lane_width
    limit = lane_limit(by_resource, width, timedelta(milliseconds=backend_ms))
    span = (max(at.values()) - min(expires.values())).total_seconds()
    print(
        f"{grants} grants over {resources} resources expiring within {within:g} s; backend {backend_ms:g} ms a call;"
        f" {width} lanes a resource"
    )
    print(f"{'':<34} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    for name, values in (("expiry to revoke call", delays), ("the limit the lanes allow", limit)):
        median, p99, top = summary(values)
        print(f"{name:<34} {median:>10.1f} {p99:>8.1f} {top:>8.1f}")
    print(
        f"\n{grants / span:.0f} revokes/s from the first expiry to the last revoke call;"
        f" all recorded EXPIRED {recorded:.2f} s after the last call"
    )
    print(f"target: p99 <= {TARGET_P99_MS:.0f} ms")
    doubled = sum(1 for n in per_grant.values() if n > 1)
    if doubled:
        failures.append(f"{doubled} grants had their revoke called more than once")
    if expired < grants:
        failures.append(f"only {expired} of {grants} grants were recorded EXPIRED")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def _expired(bot: runtime.Runtime) -> int:
    with bot.deps.db.transaction() as session:
        return int(session.scalar(select(func.count()).where(Request.status == Status.EXPIRED.value)) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--grants", type=int, default=1000, help="grants that expire (1000)")
    parser.add_argument("--resources", type=int, default=10, help="resources they are spread over (10)")
    parser.add_argument("--within", type=float, default=1.0, help="seconds over which they expire (1)")
    parser.add_argument("--backend-ms", type=float, default=50.0, help="each webhook call takes this long (50)")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds from start to the first expiry (5)")
    add_postgres_option(parser)
    parser.add_argument("--quick", action="store_true", help="a short run for CI: 100 grants")
    args = parser.parse_args(argv)
    if args.quick:
        args.grants, args.lead = min(args.grants, 100), 3.0
    if args.grants < 1 or args.resources < 1 or args.within < 0 or args.backend_ms < 0 or args.lead <= 0:
        parser.error("--grants and --resources must be at least 1, --lead positive, the others not negative")
    return run(args.grants, args.resources, args.within, args.backend_ms, args.postgres or None, args.lead)


if __name__ == "__main__":
    sys.exit(main())
