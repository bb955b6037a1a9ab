"""Work that mostly waits, let in a few at a time by what it runs, not by how long it waits.

The work that follows an acknowledgement spends most of its time waiting on other systems: a backend's grant, Slack's
Web API, a pager. When a fixed number of threads did that work, the number bounded two things at once: how much work
competes with acknowledgements for the interpreter, and how many people's work may wait at once. Eight emergencies
on a backend that hangs then held every thread, and an emergency on a healthy backend waited for the hang to end
(21 s with a 5 s call timeout and three attempts; a minute and more with the default 20 s).

``Slots`` bounds only the first. Work starts once fewer than ``size`` pieces of it are running outside a blocking
call; a blocking call (``blocking()``, around each backend and pager call: the calls that may hang for their whole
timeout) gives its place to the next piece while it waits. Coming back from the call never waits for a place: the
work may hold a lock, a claim or a row that a running piece wants, and waiting for that piece to finish would never
end. So the bound is on what starts: at most ``size`` run at once, plus those just back from a call and finishing.

Slack's calls keep their place. They are quick, and a slow Slack slows everyone's work alike; giving the place up at
each of a request's five calls let so many requests run at once that a burst spent a fifth more CPU on each
(connections and the audit seal's lock contended) and carried 37 to 43 requests a second instead of 47 to 53.

The place is the calling thread's, so any code may call ``blocking()`` without knowing whether it runs as such work:
outside ``Slots.taken`` it does nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_here = threading.local()  # .slots: the Slots whose place this thread holds now, if any


class Slots:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one slot")
        self.size = size
        self._running = 0
        self._changed = threading.Condition()

    @property
    def running(self) -> int:
        """Pieces of work running now outside a blocking call."""
        return self._running

    @contextlib.contextmanager
    def taken(self) -> Iterator[None]:
        """Run the block once fewer than ``size`` are running; its blocking calls give the place up meanwhile."""
        with self._changed:
            self._changed.wait_for(lambda: self._running < self.size)
            self._running += 1
        before, _here.slots = getattr(_here, "slots", None), self
        try:
            yield
        finally:  # blocking() has given the place back by now: the blocks nest
            _here.slots = before
            self._leave()

    def _leave(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify()

    def _back(self) -> None:
        with self._changed:
            self._running += 1


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Around a call that waits on another system: the calling work's place goes to the next piece until it returns.
    Nested calls give up nothing more; outside ``Slots.taken`` this does nothing."""
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
