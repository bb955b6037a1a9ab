"""Acks never wait behind the work that follows other acks: with every thread that runs such work busy, commands and
clicks are still acknowledged, and their work runs once a thread is free (bot/slack/after_ack.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bot.devtools.local_bot import LocalBot
from bot.slack.after_ack import WORK_THREADS
from tests.e2e.helpers import BOB


def test_acks_come_back_while_every_post_ack_thread_is_busy(bot: LocalBot) -> None:
    assert bot.runtime is not None
    later = bot.runtime.after_ack
    release, busy = threading.Event(), threading.Semaphore(0)
    hold: Callable[[], object] = lambda: (busy.release(), release.wait(60))  # noqa: E731
    for _ in range(WORK_THREADS):
        later(hold)
    for _ in range(WORK_THREADS):
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
