"""`breakglass demo`: the whole story, locally, with no Slack workspace.

The real bot runs over HTTP against a stand-in for the Slack Web API; requests are signed as Slack signs them;
the database is SQLite in a temporary folder; access is to a toy database in the process (`demo-db`), which records
what a watched grant runs, as pgaudit does for PostgreSQL; time moves on demand.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import timedelta
from importlib.resources import files
from pathlib import Path

from bot.devtools.demo_database import DemoDatabase
from bot.devtools.local_bot import PEOPLE, LocalBot, Reply
from bot.devtools.transcript import plain, render_blocks
from bot.policy import parse_policy
from bot.slack.ids import ActionId
from bot.store import queries
from bot.store.models import AuditEvent
from bot.store.verify import verify

NAMES = {user_id: person["name"] for user_id, person in PEOPLE.items()} | {
    "S0SECURITY": "@security",
    "C0APPROVALS": "#approvals",
    "C0SECURITY": "#security",
    "C0INCIDENT": "#incident-4211",
}


class Story:
    def __init__(self, bot: LocalBot, pace: float) -> None:
        self.bot = bot
        self.pace = pace
        self.seen = 0

    def step(self, title: str) -> None:
        print(f"\n\033[1m== {title}\033[0m")
        time.sleep(self.pace)

    def says(self, user: str, text: str, channel: str = "C0INCIDENT") -> Reply:
        print(f"  {NAMES[user]} in {NAMES.get(channel, channel)}: /breakglass {text}")
        reply = self.bot.command(user, text, channel=channel)
        self._private(reply)
        return reply

    def clicks(self, user: str, action: ActionId, request_id: int, channel: str = "C0APPROVALS") -> None:
        label = action.value.split("-")[0].capitalize()
        print(f"  {NAMES[user]} clicks [ {label} ] on request #{request_id} in {NAMES[channel]}")
        self._private(self.bot.click(user, action.value, request_id, channel=channel))

    def _private(self, reply: Reply) -> None:
        if reply.ack:
            print(f"    (only you) {plain(reply.ack, NAMES)}   [acknowledged in {reply.ack_seconds * 1000:.0f} ms]")
        if reply.answer:
            for line in plain(reply.answer, NAMES).splitlines():
                print(f"    (only you) {line}")
        self.slack_activity()

    def runs(self, user: str, statement: str) -> None:
        """The person uses their access: a statement on the demo database, as their backend identity."""
        print(f"  {NAMES[user]} runs on the orders database: {statement}")
        try:
            DemoDatabase.named("orders").run(user, statement, at=self.bot.clock.now())
        except PermissionError as refused:
            print(f"    the database refuses: {refused}")

    def read(self, delta: timedelta, why: str) -> None:
        print(f"  ... {why}: the clock moves on {delta}")
        self.bot.clock.advance(delta)
        self.bot.read_activity()
        self.slack_activity()

    def wait(self, delta: timedelta, why: str) -> None:
        print(f"  ... {why}: the clock moves on {delta}")
        self.bot.advance(delta)
        self.slack_activity()

    def slack_activity(self) -> None:
        """Everything the bot posted or edited in Slack since last time."""
        time.sleep(0.05)  # let the listener threads finish their Slack calls
        calls = [c for c in self.bot.slack.calls() if c.method in ("chat.postMessage", "chat.update")]
        for call in calls[self.seen :]:
            channel = str(call.args.get("channel"))
            where = f"DM to {NAMES[channel]}" if channel.startswith("U") else NAMES.get(channel, channel)
            verb = "edits its message in" if call.method == "chat.update" else "posts to"
            if call.args.get("thread_ts"):
                verb = "replies in a message's thread in"
            print(f"  bot {verb} {where}:")
            blocks = call.args.get("blocks")
            lines = render_blocks(blocks, NAMES) if blocks else plain(str(call.args.get("text")), NAMES).splitlines()
            for line in lines:
                print(f"      │ {line}")
        self.seen = len(calls)


def run_demo(pace: float = 0.0) -> int:
    logging.basicConfig(level=logging.WARNING)
    policy = parse_policy(files("bot").joinpath("defaults/breakglass.yml").read_text(), "demo policy")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "demo.db"
        print("Breakglass demo: the real bot over HTTP, a stand-in Slack API on loopback, SQLite, a toy database.")
        print("People: bob is on call; alice and carol lead SRE and approve; dave is a developer; erin is security.")
        with LocalBot(policy, f"sqlite:///{database}") as bot:
            story = Story(bot, pace)
            _tell(story)
            with bot.runtime.deps.db.transaction() as session:  # type: ignore[union-attr]
                trail = session.query(AuditEvent).order_by(AuditEvent.seq).all()
                open_ids = queries.overdue_ids(session, bot.clock.now())
            story.step("The audit trail")
            for event in trail:
                ref = f"#{event.request_id}" if event.request_id else ""
                actor = NAMES.get(event.actor, event.actor)
                print(f"  {event.at:%b %d %H:%M} {event.action:<16} {ref:<4} by {actor}")
            verdict = verify(bot.runtime.deps.db.engine, bot.runtime.deps.db.seal)  # type: ignore[union-attr]
            print(f"  `breakglass audit verify` (with this run's random key): {verdict.line()}")
            assert not open_ids, "a grant outlived its expiry"
            assert verdict.ok, verdict.line()
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

    story.step("6. Write needs two approvers, and they are shown that read was available: carol and alice approve")
    story.clicks("U0CAROL", ActionId.APPROVE, 2)
    story.clicks("U0ALICE01", ActionId.APPROVE, 2)

    story.step("7. A watched session: the database records every statement; the bot posts them in the request's thread")
    story.runs("U0BOB", "SELECT id, status FROM orders WHERE status = 'stuck'")
    story.runs("U0BOB", "UPDATE orders SET status = 'paid' WHERE id IN (4211, 4212)")
    story.runs("U0BOB", "DROP TABLE orders_stuck_tmp")
    story.read(timedelta(minutes=1), "the next read of the session's activity, at most a minute later")
    story.says("U0BOB", "revoke 2")

    story.step("8. A real emergency: bob breaks the glass. Access at once, loud alerts, a review becomes due")
    story.says("U0BOB", "orders-db 20m INC-4212 orders table locked --emergency")
    story.says("U0BOB", "orders-db:write 20m INC-4212 orders table locked --emergency")
    story.runs("U0BOB", "SELECT pid, query FROM pg_locks_demo")
    story.runs("U0BOB", "TRUNCATE orders_lock_queue")
    story.wait(timedelta(minutes=21), "the emergency grant runs out")

    story.step("9. The review is an audit: bob writes what happened, someone else signs it off")
    story.wait(timedelta(hours=24), "a day without a review")
    story.says("U0BOB", "mine")
    story.says("U0BOB", "review 3 a migration locked orders; I truncated the lock queue, then added a lock timeout")
    story.says("U0BOB", "review 3 signing off my own review")
    story.says("U0ALICE01", "review 3")
    story.says("U0ALICE01", "review 3 the truncate was the documented fix; lock timeout verified in CHG-88")
    assert bot.runtime is not None
