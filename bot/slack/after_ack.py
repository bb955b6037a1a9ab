"""Where the work that follows an acknowledgement runs: never in the thread that acknowledges.

Bolt runs each listener in a pool of its own (five threads by default) and answers Slack only once the listener calls
``ack()``. A listener that went on to do its work in that thread (the database, the backend, Slack's Web API) held a
thread the next request's ack was waiting for: under a burst, acks queued behind work that followed other acks. So a
listener acknowledges, then hands the rest here. Bolt's pool is sized so that a listener never waits for a thread,
and this pool's few threads are all the post-ack work there is, which bounds what competes with acks for the
interpreter however many requests arrive at once.

Work runs in a copy of the caller's context, so its log lines keep the request, resource and actor they were about.
A failure is logged, never raised into the pool: the person's answer is the work's own business (``replies.answer``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("breakglass.slack.after_ack")

ACK_THREADS = 64  # Bolt's listener pool: only acks run there now, so one per request in flight, more than enough
WORK_THREADS = 8  # post-ack work at once: mostly waiting on the database, a backend or Slack, so a few suffice

Later = Callable[[Callable[[], object]], None]


class AfterAck:
    def __init__(self, workers: int = WORK_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="after-ack")
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
        self._pool.submit(context.run, self._run, work)

    def _run(self, work: Callable[[], object]) -> None:
        try:
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
        self._pool.shutdown(wait=False, cancel_futures=True)
        return finished
