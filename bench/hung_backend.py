"""A backend that hangs, beside one that answers: how long an emergency on the healthy one waits for its grant.

A bot built by ``bot.runtime.build`` with default settings, serving HTTP, on PostgreSQL (a database made for the run
on the server ``--postgres`` names) or SQLite, with two resources behind two webhook receivers: ``healthy-db``
(50 ms a call, in a process of its own, like the Slack stand-in) and ``stuck-db``, whose receiver holds every call
until the run releases it. First, as the baseline, ``--n`` people break the glass on ``healthy-db`` one after the
other. Then ``--stuck`` (16, twice the places post-ack work has) people break it on ``stuck-db``, every one of their
grant calls is seen waiting on the hung backend, and ``--n`` more people break it on ``healthy-db`` one after the
other. Each figure is one emergency's time from its signed ``/breakglass`` command to the healthy backend's grant
call. Before post-ack work gave up its place while it waited on a backend (``bot/slots.py``), the second row waited
for the hang to end: 21 s with a 5 s call timeout and three attempts.

    python bench/hung_backend.py
    python bench/hung_backend.py --quick        # CI: fails only if an emergency on the healthy backend is not granted
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadkit import (
    Elsewhere,
    add_postgres_option,
    bot_settings,
    database,
    fire,
    receiver_elsewhere,
    slack_elsewhere,
    summary,
)

from bot import runtime
from bot.clock import SystemClock
from bot.devtools.local_bot import BOT_TOKEN, PEOPLE, SIGNING_SECRET
from bot.devtools.slack_requests import slash_command
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.policy import parse_policy
from bot.slack.after_ack import WORK_SLOTS

SECRET = "bench-webhook-secret-0123456789"
BACKEND_MS = 50
HUNG_TIMEOUT_S = 60  # the stuck backend's call timeout: longer than the run, so its calls stay in flight throughout
POLICY = f"""
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
resources:
  healthy-db:
    description: Behind a backend that answers in {BACKEND_MS} ms
    adapter: webhook
    params: {{url: "${{HEALTHY_URL}}", secret: "${{SECRET}}", timeout: 5}}
    approvers: [U0ALICE01]
    emergency: true
  stuck-db:
    description: Behind a backend that stops answering
    adapter: webhook
    params: {{url: "${{STUCK_URL}}", secret: "${{SECRET}}", timeout: {HUNG_TIMEOUT_S}}}
    approvers: [U0ALICE01]
    emergency: true
"""


def person(n: int) -> str:
    return f"U0HUNG{n:04d}"


def emergency(resource: str, n: int, respond: str) -> str:
    who = person(n)
    return slash_command(
        text=f"{resource} 1h INC-{n} down --emergency", user_id=who, user_name=who.lower(), response_url=f"{respond}{n}"
    )


def one_by_one(events: str, healthy: Elsewhere, numbers: range, respond: str) -> list[float]:
    """Each person's emergency on healthy-db, the next sent once the last was granted: ms from command to grant."""
    waits = []
    for n in numbers:
        # When it was sent, on the machine's monotonic clock (the receiver stamps its calls with the same clock); the
        # client's process starts before, and that is not the bot's time.
        [(sent, _, _)] = fire(events, [emergency("healthy-db", n, respond)], 1, SIGNING_SECRET)
        deadline, wanted = sent + HUNG_TIMEOUT_S / 2, ("grant", person(n))
        while not (granted := [at for event, _, at, _, _, who in healthy.ask() if (event, who) == wanted]):
            if time.monotonic() > deadline:
                raise SystemExit(f"FAILED: the emergency of {person(n)} on healthy-db was never granted")
            time.sleep(0.005)
        waits.append((granted[0] - sent) * 1000)
    return waits


def run(n: int, stuck: int, postgres: str | None) -> int:
    people = PEOPLE | {person(i): {"name": person(i).lower()} for i in range(2 * n + stuck)}
    healthy = receiver_elsewhere(SECRET, BACKEND_MS / 1000)
    slack = slack_elsewhere(BOT_TOKEN, people)
    respond = slack.url.removesuffix("api/") + "respond/"
    try:
        with WebhookReceiver(SECRET) as hung, database(postgres) as url:
            environ = {"HEALTHY_URL": healthy.url, "STUCK_URL": hung.url, "SECRET": SECRET}
            bot = runtime.build(bot_settings(url, slack.url), environ, clock=SystemClock(), policy=parse_policy(POLICY))
            try:
                events = f"http://127.0.0.1:{bot.serve_http(host='127.0.0.1', port=0, block=False)}/slack/events"
                before = one_by_one(events, healthy, range(n), respond)
                hung.hang(10 * HUNG_TIMEOUT_S)  # held until released below
                fire(events, [emergency("stuck-db", n + i, respond) for i in range(stuck)], stuck, SIGNING_SECRET)
                hung.wait_for(stuck, timeout=HUNG_TIMEOUT_S / 2)
                waiting = hung.in_flight
                during = one_by_one(events, healthy, range(n + stuck, 2 * n + stuck), respond)
                still_waiting = hung.in_flight
                hung.release()
            finally:
                bot.stop(grace=5)
    finally:
        healthy.stop()
        slack.stop()
    print(f"post-ack work has {WORK_SLOTS} places; the hung backend's calls waiting: {waiting}, then {still_waiting}")
    print(
        f"{'an emergency on healthy-db, command to grant call':<52} {'n':>4} {'median ms':>10} {'p99 ms':>8} {'max':>8}"
    )
    for name, waits in (
        ("with nothing else going on (the baseline)", before),
        (f"while {stuck} wait on stuck-db", during),
    ):
        median, p99, top = summary(waits)
        print(f"{name:<52} {len(waits):>4} {median:>10.1f} {p99:>8.1f} {top:>8.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20, help="emergencies on the healthy backend, before and during (20)")
    parser.add_argument("--stuck", type=int, default=2 * WORK_SLOTS, help="emergencies on the hung one (16)")
    add_postgres_option(parser)
    parser.add_argument("--quick", action="store_true", help="a short run for CI: 3 before and during, 8 stuck")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.stuck = 3, WORK_SLOTS
    if args.n < 1 or args.stuck < 1:
        parser.error("--n and --stuck must be at least 1")
    return run(args.n, args.stuck, args.postgres or None)


if __name__ == "__main__":
    sys.exit(main())
