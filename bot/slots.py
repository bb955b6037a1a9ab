"""Work that mostly waits, let in a few at a time by what it runs, not by how long it waits.

The work that follows an acknowledgement spends most of its time waiting on other systems: a backend's grant, Slack's
Web API, a pager. When a fixed number of threads did that work, the number bounded two things at once: how much work
competes with acknowledgements for the interpreter, and how many people's work may wait at once. Eight emergencies
on a backend that hangs then held every thread, and an emergency on a healthy backend waited for the hang to end
(21 s with a 5 s call timeout and three attempts; a minute and more with the default 20 s).

``Slots`` bounds only the first: a pool that runs its work in the order it came, at most ``size`` pieces at once
outside a blocking call (``blocking()``, around each backend and pager call: the calls that may hang for their whole
timeout). A piece waiting in such a call gives its place to the next piece in the queue, on a thread started for it
if none is free (up to ``most`` threads). A piece back from its call goes on at once, over the bound if need be: it
may hold what a running piece wants, and the pool starts nothing new until it is back under the bound. So ``size``
threads do the work while nothing blocks, each taking the next piece itself, as a plain pool would.

Slack's calls keep their place. They are quick, and a slow Slack slows everyone's work alike; giving the place up at
each of a request's five calls let so many requests run at once that a burst spent a fifth more CPU on each
(connections and the audit seal's lock contended) and carried 37 to 43 requests a second instead of 47 to 53.

The place is the calling thread's, so any code may call ``blocking()`` without knowing whether it runs as such work:
elsewhere (a lane, the sweep, an acknowledgement) it does nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator

_here = threading.local()  # .slots: the Slots whose place this thread holds now, if any


IDLE_EXIT = 30.0  # seconds a thread beyond ``size`` waits for work before it ends


class Slots:
    def __init__(self, size: int, most: int) -> None:
        if size < 1 or most < size:
            raise ValueError("at least one slot, and at least as many threads")
        self.size, self.most = size, most
        self._queue: deque[Callable[[], object]] = deque()
        self._changed = threading.Condition()
        self._running = 0  # pieces running outside a blocking call
        self._threads = 0
        self._free = 0  # threads waiting for work
        self._blocked = 0  # pieces waiting in a blocking call: each may have a thread started for the next piece
        self._stopped = False

    @property
    def running(self) -> int:
        """Pieces of work running now outside a blocking call."""
        return self._running

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, work: Callable[[], object]) -> None:
        """Run ``work`` after everything submitted before it, once it has a place. It must not raise."""
        with self._changed:
            if self._stopped:
                return
            self._queue.append(work)
            self._wake()

    def stop(self) -> int:
        """Start nothing more: forget the work not started yet, and let every thread end once its piece is done (a
        stopping bot's threads must not outlive it). How much work was forgotten."""
        with self._changed:
            dropped = len(self._queue)
            self._queue.clear()
            self._stopped = True
            self._changed.notify_all()
            return dropped

    def _startable(self) -> bool:
        return bool(self._queue) and self._running < self.size

    def _wake(self) -> None:
        """Under the lock: see that a thread takes the next piece, if it may start."""
        if not self._startable():
            return
        if self._free:
            self._changed.notify()
        elif self._threads < min(self.most, self.size + self._blocked):
            self._threads += 1
            threading.Thread(target=self._serve, name="after-ack", daemon=True).start()

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._free += 1
                while not self._changed.wait_for(lambda: self._stopped or self._startable(), timeout=IDLE_EXIT):
                    if self._threads > self.size + self._blocked:  # started for a piece that blocked, since back
                        self._free -= 1
                        self._threads -= 1
                        return
                self._free -= 1
                if self._stopped:
                    self._threads -= 1
                    return
                work = self._queue.popleft()
                self._running += 1
            _here.slots = self
            try:
                work()
            finally:
                _here.slots = None
                with self._changed:  # this thread takes the next piece itself: nobody need be woken
                    self._running -= 1

    def _leave(self) -> None:
        """A piece waits on another system: its place goes to the next, on another thread."""
        with self._changed:
            self._running -= 1
            self._blocked += 1
            self._wake()

    def _back(self) -> None:
        with self._changed:
            self._running += 1
            self._blocked -= 1


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Around a call that waits on another system: the calling work's place goes to the next piece until it returns.
    Nested calls give up nothing more; outside a piece of ``Slots`` work this does nothing."""
    slots = getattr(_here, "slots", None)
    if slots is None:
        yield
        return
    _here.slots = None
    slots._leave()
    try:
        yield
    finally:
        slots._back()
        _here.slots = slots
