"""Acks never wait behind the work that follows other acks: with every place for such work taken, commands and
clicks are still acknowledged, and their work runs once a place is free (bot/slack/after_ack.py). And work waiting
on a backend holds no place meanwhile (bot/slots.py): a backend that hangs holds back only the work that reached it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.policy import parse_policy
from bot.slack.after_ack import WORK_SLOTS
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.helpers import BOB


def test_acks_come_back_while_every_place_for_post_ack_work_is_taken(bot: LocalBot) -> None:
    assert bot.runtime is not None
    later = bot.runtime.after_ack
    release, busy = threading.Event(), threading.Semaphore(0)
    hold: Callable[[], object] = lambda: (busy.release(), release.wait(60))  # noqa: E731
    for _ in range(WORK_SLOTS):
        later(hold)
    for _ in range(WORK_SLOTS):
        assert busy.acquire(timeout=30)

    # More than Bolt's own pool of five, which used to run the work too: every ack still comes back, each work waits.
    replies = [bot.command(BOB, "mine", wait=False) for _ in range(6)]
    replies += [bot.command(BOB, "orders-db 30m INC-7 ack while busy", wait=False)]
    assert [r.status for r in replies] == [200] * 7
    assert all(r.ack == "" for r in replies[:6]) and "Asking for `orders-db`" in replies[6].ack
    assert bot.slack.responses() == []  # nothing has been answered: the work is queued behind the held threads

    release.set()
    bot.slack.wait_for(lambda s: len(s.responses()) == 7)
    assert later.wait_idle(30)


TWO_BACKENDS = """
channels:
  approvals: C0APPROVALS
  audit: C0SECURITY
resources:
  stuck-db:
    description: Behind a backend that stops answering
    adapter: webhook
    params:
      url: ${WEBHOOK_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 60
    approvers: [U0ALICE01]
    emergency: true
  healthy-db:
    description: Behind a backend that answers
    adapter: webhook
    params:
      url: ${HEALTHY_URL}
      secret: ${BREAKGLASS_WEBHOOK_SECRET}
      timeout: 60
    approvers: [U0ALICE01]
    emergency: true
"""


def test_work_waiting_on_a_backend_that_hangs_holds_back_nobody_elses(
    make_bot: Callable[..., LocalBot], receiver: WebhookReceiver
) -> None:
    """More people break the glass on a hung backend than post-ack work has places: each waits on it, and an
    emergency on another resource is granted meanwhile, not once the hang ends (it used to wait for a thread)."""
    with WebhookReceiver(WEBHOOK_SECRET) as healthy:
        bot = make_bot(policy=parse_policy(TWO_BACKENDS), environ={"HEALTHY_URL": healthy.url})
        stuck = [f"U0STUCK{n:02d}" for n in range(WORK_SLOTS + 2)]
        for person in [*stuck, "U0FINE"]:
            bot.slack.add_user(person, person.lower(), f"{person.lower()}@example.com")
        receiver.hang(600)  # held until released below, however busy the machine
        try:
            for person in stuck:
                reply = bot.command(person, "stuck-db 30m INC-1 it is down --emergency", wait=False)
                assert reply.status == 200
            receiver.wait_for(len(stuck))
            assert receiver.in_flight == len(stuck)  # every one of them waits on the backend

            assert bot.command("U0FINE", "healthy-db 30m INC-2 another fire --emergency", wait=False).status == 200
            healthy.wait_for(lambda calls: any(c.event == "grant" for c in calls))
            bot.slack.wait_for(lambda s: any("healthy-db" in (r.get("text") or "") for r in s.responses()))
            assert receiver.in_flight == len(stuck), "granted while every call to the hung backend still waits"
        finally:
            receiver.release()
        bot.slack.wait_for(lambda s: len(s.responses()) == len(stuck) + 1)
