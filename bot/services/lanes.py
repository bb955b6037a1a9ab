"""Worker lanes: a few threads per backend, so a slow or hung backend holds up only its own work.

Threads are daemons on purpose: a call stuck in a backend must not keep the process from exiting on SIGTERM.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.lanes")

_STOP = object()


class Lanes:
    def __init__(self, width: int) -> None:
        self.width = max(width, 1)
        self._queues: dict[str, queue.SimpleQueue[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._in_flight: dict[Hashable, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, lane: str, key: Hashable, work: Callable[[], Any]) -> Future[Any] | None:
        """Queue ``work`` on ``lane``. Work with the same key as something still queued or running is dropped
        (None): the sweep finds due work again and again until it is done. The work runs in the caller's context
        (its log context above all: the request it is about), and so does the line logged if it fails."""
        with self._lock:
            if self._closed or key in self._in_flight:
                return None
            future: Future[Any] = Future()
            self._in_flight[key] = future
            self._lane(lane).put((contextvars.copy_context(), key, work, future))
        return future

    def _lane(self, name: str) -> queue.SimpleQueue[Any]:
        lane = self._queues.get(name)
        if lane is None:
            lane = self._queues[name] = queue.SimpleQueue()
            for number in range(self.width):
                thread = threading.Thread(target=self._work, args=(lane,), name=f"lane:{name}:{number}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return lane

    def _work(self, lane: queue.SimpleQueue[Any]) -> None:
        while (item := lane.get()) is not _STOP:
            context, key, work, future = item
            context.run(self._run, key, work, future)

    def _run(self, key: Hashable, work: Callable[[], Any], future: Future[Any]) -> None:
        try:
            if future.set_running_or_notify_cancel():
                future.set_result(work())
        except BaseException as error:
            kind = f"lane work ({key[0]})" if isinstance(key, tuple) and key else "lane work"
            database_outage.failed(log, f"lane work {key}", error, kind=kind)
            future.set_exception(error)
        finally:
            with self._lock:
                self._in_flight.pop(key, None)

    def busy(self, kind: str) -> bool:
        """Whether work whose key starts with ``kind`` is queued or running."""
        with self._lock:
            return any(isinstance(key, tuple) and key[:1] == (kind,) for key in self._in_flight)

    def close(self, grace: float) -> list[Hashable]:
        """Take no more work; cancel what has not started; wait up to ``grace`` seconds for what has. Returns the
        keys of the work still running when time was up."""
        with self._lock:
            self._closed = True
            pending = list(self._in_flight.items())
            for lane in self._queues.values():
                for _ in range(self.width):
                    lane.put(_STOP)
        for _, future in pending:
            future.cancel()
        deadline = threading.Event()
        timer = threading.Timer(grace, deadline.set)
        timer.start()
        for thread in self._threads:
            while thread.is_alive() and not deadline.is_set():
                thread.join(timeout=0.05)
        timer.cancel()
        with self._lock:
            return list(self._in_flight)
