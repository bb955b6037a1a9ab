"""Where the work that follows an acknowledgement runs: never in the thread that acknowledges.

Bolt answers Slack with a listener's ``ack()``. A listener that went on to do its work before answering (the
database, the backend, Slack's Web API) made its ack, and under a burst every ack queued behind it, wait for work that
followed other acks. So a listener acknowledges, then hands the rest here, and returns: Bolt runs it in the request's
own thread (``process_before_response``, bot/slack/app.py) and answers as it returns. At most ``WORK_SLOTS`` pieces
of post-ack work run at once outside their calls to backends and pagers (``bot/slots.py``), which bounds what
competes with acks for the interpreter however many requests arrive; work waiting on a backend or a pager gives its
place up meanwhile, so a backend that hangs holds only the work that reached it, not everyone's.

Acks come first (``AcksFirst``): while one is being made, post-ack work pauses at its next step (a transaction or a
Slack call) for at most ``GIVE_WAY`` seconds. Python's threads have no priorities, and eight threads of post-ack work
wanting the interpreter made every ack wait its turn behind them.

Work runs in a copy of the caller's context, so its log lines keep the request, resource and actor they were about.
A failure is logged, never raised into the pool: the person's answer is the work's own business (``replies.answer``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from bot.services.deadline import call_within
from bot.slots import Slots

T = TypeVar("T")

log = logging.getLogger("breakglass.slack.after_ack")

WORK_SLOTS = 8  # post-ack work running at once outside its calls to backends and pagers
# Threads for post-ack work: a backend that hangs holds one per person whose work reached it, so there are many more
# than places; work beyond them waits for one (a thread costs little while it waits).
WORK_THREADS = 64

GIVE_WAY = 0.25  # seconds post-ack work waits at a step for acks to pass: under a steady stream it still moves on

# What a check made before an ack (a form's, that may ask Slack for a user group or read the database) may take:
# Bolt waits for the listener, which holds one of the server's few request threads meanwhile, so a slow Slack must
# not hold it longer than Slack waits for the answer anyway.
CHECK_WITHIN = 2.0  # seconds

Later = Callable[[Callable[[], object]], None]


def checked_in_time(check: Callable[..., T], *args: Any) -> T:
    """``check(*args)`` before an ack, given ``CHECK_WITHIN`` seconds: raises ``Overdue`` past that (the check
    goes on in a thread of its own and ends when its lookup does; it only reads)."""
    return call_within(CHECK_WITHIN, check, *args)


class AcksFirst:
    """Counts the acknowledgements being made; threads that do post-ack work wait at their next step while any is."""

    def __init__(self, give_way: float = GIVE_WAY) -> None:
        self._acking = 0
        self._quiet = threading.Condition()
        self._mine = threading.local()
        self._give_way = give_way

    @contextlib.contextmanager
    def acking(self) -> Iterator[None]:
        with self._quiet:
            self._acking += 1
        try:
            yield
        finally:
            with self._quiet:
                self._acking -= 1
                if not self._acking:
                    self._quiet.notify_all()

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """The calling thread's work follows acks: it gives way to them at each step until the block ends."""
        before = getattr(self._mine, "defers", False)
        self._mine.defers = True
        try:
            yield
        finally:
            self._mine.defers = before

    def give_way(self) -> None:
        """Called at each step of any work: waits only in a thread doing post-ack work, and only while acks are
        being made."""
        if not self._acking or not getattr(self._mine, "defers", False):  # a racy read: at worst one step early
            return
        with self._quiet:
            self._quiet.wait_for(lambda: not self._acking, timeout=self._give_way)


class AfterAck:
    def __init__(
        self, slots: int = WORK_SLOTS, acks_first: AcksFirst | None = None, threads: int = WORK_THREADS
    ) -> None:
        self.acks_first = acks_first or AcksFirst()
        self.slots = Slots(slots, max(threads, slots))
        self._pending = 0
        self._idle = threading.Condition()
        self._closed = False

    def __call__(self, work: Callable[[], object]) -> None:
        """Run ``work`` soon, in a thread of this pool. After ``close``: not at all (a stopping bot starts nothing)."""
        context = contextvars.copy_context()
        with self._idle:
            if self._closed:
                log.warning("stopping: work after an acknowledgement was not started")
                return
            self._pending += 1
            self.slots.submit(lambda: context.run(self._run, work))

    def _run(self, work: Callable[[], object]) -> None:
        try:
            with self.acks_first.deferring():
                work()
        except Exception:  # a listener's own answer covers what it expects; this is only what slipped past it
            log.exception("work after an acknowledgement failed")
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no work is queued or running; False if ``timeout`` seconds passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, grace: float) -> bool:
        """Start nothing new; give what is queued or running up to ``grace`` seconds. True if it all finished."""
        with self._idle:
            self._closed = True
        finished = self.wait_idle(grace)
        dropped = self.slots.stop()
        if dropped:
            log.warning("stopping: %s pieces of work after an acknowledgement were not started", dropped)
            with self._idle:
                self._pending -= dropped
                self._idle.notify_all()
        return finished
