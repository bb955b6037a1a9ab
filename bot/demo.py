"""`breakglass demo`: the whole story, locally, with no Slack workspace.

The real bot runs over HTTP against a stand-in for the Slack Web API; requests are signed as Slack signs them;
the database is SQLite in a temporary folder; access is to a toy database in the process (`demo-db`), which records
what a watched grant runs, as pgaudit does for PostgreSQL; on-call comes from a PagerDuty stand-in on loopback; time
moves on demand. People type commands, press buttons (on messages, in DMs, on the Home tab) and fill in forms; the
transcript shows what each of them sees, rendered as Slack renders it (bot/devtools/story.py, bot/devtools/transcript),
and ends with what each screen cost in Slack Web API calls.

The policy is the packaged one (bot/defaults/breakglass.yml) plus an `oncall:` section built here: its address is
the stand-in's, known only once it listens, and the packaged file must keep loading for `breakglass serve` with no
PagerDuty key at all.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
import time
from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import yaml

from bot.clock import ManualClock
from bot.devtools.local_bot import PEOPLE, LocalBot
from bot.devtools.pagerduty_standin import PagerDutyStandIn
from bot.devtools.story import Story
from bot.devtools.transcript import use_colour
from bot.policy import Policy, parse_policy
from bot.slack.ids import ActionId
from bot.store import queries
from bot.store.models import AuditEvent
from bot.store.verify import verify

NAMES = {user_id: person["name"] for user_id, person in PEOPLE.items()} | {
    "S0SECURITY": "@security",
    "S0SRELEADS": "@sre-leads",
    "C0APPROVALS": "#approvals",
    "C0SECURITY": "#security",
    "C0INCIDENT": "#incident-4211",
    "C0PAYMENTS": "#payments",
}


SCHEDULE = "PDEMO1"  # the PagerDuty schedule of whoever carries the orders pager
TOKEN_ENV = "DEMO_PAGERDUTY_TOKEN"


def demo_policy(pagerduty_url: str) -> Policy:
    """The packaged policy with PagerDuty (the stand-in at ``pagerduty_url``) deciding who is on call, and whoever is
    on call for ``SCHEDULE`` approved at once on the read level of orders-db."""
    data = yaml.safe_load(files("bot").joinpath("defaults/breakglass.yml").read_text())
    data["oncall"] = {
        "provider": "pagerduty",
        "api_url": pagerduty_url,
        "events_url": pagerduty_url,
        "token_env": TOKEN_ENV,
    }
    data["resources"]["orders-db"]["levels"]["read"]["oncall"] = {"schedule": SCHEDULE, "auto_approve": True}
    return parse_policy(yaml.safe_dump(data, sort_keys=False), "demo policy")


def run_demo(pace: float = 0.0, colour: bool | None = None) -> int:
    """Tell the story; ``colour``: ANSI styles (by default only on a terminal, and never with NO_COLOR set)."""
    logging.basicConfig(level=logging.WARNING)
    colour = use_colour(sys.stdout, os.environ) if colour is None else colour
    started = time.perf_counter()
    clock = ManualClock()
    token = secrets.token_urlsafe(24)  # the stand-in's REST key, given to the bot as a real key would be
    with tempfile.TemporaryDirectory() as folder, PagerDutyStandIn(token, clock=clock) as pagerduty:
        policy = demo_policy(pagerduty.url)
        database = Path(folder) / "demo.db"
        print("Breakglass demo: the real bot over HTTP, stand-ins for Slack and PagerDuty on loopback, SQLite, a toy")
        print("database. The policy is bot/defaults/breakglass.yml, plus an on-call section for the demo:")
        url = pagerduty.url
        print(f"  oncall: {{provider: pagerduty, api_url: {url}, events_url: {url}, token_env: {TOKEN_ENV}}}")
        print(f"  orders-db, level read: oncall: {{schedule: {SCHEDULE}, auto_approve: true}}")
        print("People: bob and carol share the orders pager (carol has it now); alice and carol lead SRE")
        print("(@sre-leads) and approve; dave is a developer; erin is security (@security).")
        pagerduty.set_on_call(SCHEDULE, [PEOPLE["U0CAROL"]["email"]])
        with LocalBot(policy, f"sqlite:///{database}", environ={TOKEN_ENV: token}, clock=clock) as bot:
            story = Story(bot, pagerduty, NAMES, pace, colour)
            _tell(story)
            assert bot.runtime is not None, "LocalBot starts its runtime on entering"
            db = bot.runtime.deps.db
            with db.transaction() as session:
                trail = session.query(AuditEvent).order_by(AuditEvent.seq).all()
                open_ids = queries.overdue_ids(session, bot.clock.now())
            story.step("The audit trail")
            for event in trail:
                ref = f"#{event.request_id}" if event.request_id else ""
                actor = NAMES.get(event.actor, event.actor)
                print(f"  {event.at:%b %d %H:%M} {event.action:<18} {ref:<4} by {actor}")
            verdict = verify(db.engine, db.seal)
            print(f"  `breakglass audit verify` (with this run's random key): {verdict.line()}")
            assert not open_ids, "a grant outlived its expiry"
            assert verdict.ok, verdict.line()
    print("\nWhat each screen cost in Slack Web API calls, over the whole story:")
    for line in story.price_list():
        print(f"  {line}")
    print(f"\nDone in {time.perf_counter() - started:.1f} s.")
    return 0


def _tell(story: Story) -> None:
    bot = story.bot
    story.step("1. Bob asks for the orders database from the incident channel: read, the least level, is the default")
    story.says("U0BOB", "orders-db 30m INC-4211 checkout is failing")

    story.step("2. Bad input is refused at once, saying what is allowed")
    story.says("U0BOB", "orders-db 9h INC-4211 need more time")
    story.says("U0BOB", "orders-db 30m checkout is failing")
    story.says("U0DAVE", "ledger 1h INC-1")

    story.step("3. Bob cannot approve his own request; dave is not an approver")
    story.clicks("U0BOB", ActionId.APPROVE, 1)
    story.clicks("U0DAVE", ActionId.APPROVE, 1)

    story.step("4. Alice approves: read access is granted through the adapter, the message is edited in place")
    story.clicks("U0ALICE01", ActionId.APPROVE, 1)
    story.runs("U0BOB", "SELECT id, status FROM orders WHERE status = 'stuck'")
    story.runs("U0BOB", "UPDATE orders SET status = 'paid' WHERE id = 4211")

    story.step("5. Bob needs to write: one level at a time, so he gives read back and asks for write")
    story.says("U0BOB", "orders-db:write 30m INC-4211 mark the stuck orders paid")
    story.says("U0BOB", "revoke 1")
    story.says("U0BOB", "orders-db:write 30m INC-4211 mark the stuck orders paid")

    story.step("6. Write is approved in two steps, a team lead (@sre-leads) then security (@security), in that order")
    story.clicks("U0ERIN", ActionId.APPROVE, 2)
    story.clicks("U0CAROL", ActionId.APPROVE, 2)
    story.approves_saying("U0ERIN", 2, "OK for the stuck orders only; every statement is recorded")

    story.step("7. A watched session: the database records every statement; the bot posts them in the request's thread")
    story.runs("U0BOB", "SELECT id, status FROM orders WHERE status = 'stuck'")
    story.runs("U0BOB", "UPDATE orders SET status = 'paid' WHERE id IN (4211, 4212)")
    story.runs("U0BOB", "DROP TABLE orders_stuck_tmp")
    story.read(timedelta(minutes=1), "the next read of the session's activity, at most a minute later")

    story.step("8. Bob's Home tab shows what he holds, with its buttons; he is done, so he revokes from his DM")
    story.opens_home("U0BOB")
    story.clicks_in_dm("U0BOB", "Revoke now", ActionId.REVOKE, 2)

    story.step("9. No syntax to learn: a form offers what each may ask for; dave, who never read the README, asks")
    form = story.opens_request_form("U0BOB", via="home")
    if form is not None:  # bob may ask for two resources; a choice redraws the form for the resource chosen
        story.picks_in_form("U0BOB", form, ActionId.PICK_RESOURCE, "payments-admin")
        print("  bob closes the form: nothing is asked, nothing recorded")
    form = story.opens_request_form("U0DAVE", "C0PAYMENTS", "payments")
    if form is not None:  # dave may ask for payments-admin only, and the form offers nothing else
        why = "refund a customer charged twice"
        story.submits_request_form("U0DAVE", form, {"typed-duration": "3h", "reason": why})
        story.submits_request_form("U0DAVE", form, {"duration": "30m", "reason": why})
    story.step("10. Nobody answers dave: after `remind_approvers_every` (15m) the approvers are reminded; alice looks")
    story.wait(timedelta(minutes=15), "nobody decides")
    story.opens_home("U0ALICE01")

    story.step("11. Alice denies, and must say why: a form asks; the reason is on the message and in dave's DM")
    story.denies("U0ALICE01", 3, "refunds go through the support console; payments-admin is for outages")

    story.step("12. A real emergency: bob breaks the glass. Access at once, loud alerts, a review becomes due")
    story.says("U0BOB", "orders-db 30m INC-4212 orders table locked --emergency")
    story.says("U0BOB", "orders-db:write 30m INC-4212 orders table locked --emergency")
    story.runs("U0BOB", "SELECT pid, query FROM pg_locks_demo")
    story.runs("U0BOB", "TRUNCATE orders_lock_queue")
    story.wait(timedelta(minutes=22), "ten minutes before the end, the holder is warned")
    story.wait(timedelta(minutes=8, seconds=30), "the emergency grant runs out; the sweep revokes it within the minute")

    story.step("13. The review is an audit: bob writes what happened, someone else signs it off")
    story.wait(timedelta(hours=24), "a day without a review")
    story.says("U0BOB", "mine")
    story.writes_in_dm_form(
        "U0BOB",
        "Write review",
        ActionId.WRITE_REVIEW,
        4,
        "a migration locked orders; I truncated the lock queue, then added a lock timeout",
    )
    story.says("U0BOB", "review 4 signing off my own review")
    story.says("U0ALICE01", "review 4")
    story.says("U0ALICE01", "review 4 the truncate was the documented fix; lock timeout verified in CHG-88")

    story.step("14. The pager passes to bob: on call now, his read request is approved at once (auto_approve), loudly")
    story.on_call("U0BOB", SCHEDULE)
    story.says("U0BOB", "orders-db 30m INC-4213 checkout latency, reading the slow queries")
    story.runs("U0BOB", "SELECT id, status FROM orders WHERE status = 'stuck'")
    assert bot.runtime is not None
