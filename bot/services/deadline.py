"""A hard time limit on a call into a backend. Adapters set their own network timeouts too; this is the backstop
for the ones that don't, or that hang somewhere a socket timeout cannot see."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Overdue(TimeoutError):
    """The call did not answer in time. It may still be running, and may still take effect: ``wait_for_end``
    tells, once it has ended, whether it did."""

    def __init__(self, message: str, finished: threading.Event, outcome: dict[str, Any]) -> None:
        super().__init__(message)
        self._finished = finished
        self._outcome = outcome

    def wait_for_end(self) -> bool:
        """Block until the abandoned call ends; True if it returned (so whatever it did, it did)."""
        self._finished.wait()
        return "value" in self._outcome


def call_within(seconds: float, call: Callable[..., T], *args: Any) -> T:
    """Run ``call(*args)`` and wait at most ``seconds`` for it. A call that overruns is abandoned on a daemon thread
    (Python cannot stop a thread); its caller moves on and retries later, which adapters must allow."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call(*args)
        except BaseException as error:  # handed to the caller, who decides
            outcome["error"] = error
        finally:
            finished.set()

    _threads.run(run)
    if not finished.wait(seconds):
        raise Overdue(f"no answer within {seconds:g}s", finished, outcome)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _Threads:
    """Daemon threads kept for the next call. Starting one per call cost every call (each acknowledgement's check
    for a replay among them) a wait for the new thread to take the interpreter, behind whatever else held it. A
    thread whose call hangs is simply never handed back: the next call starts another."""

    KEEP = 32  # idle threads kept; more than a burst's calls at once, few enough to cost nothing while idle

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self._lock = threading.Lock()
        self.running = 0  # calls started and not yet returned, abandoned ones included

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            self.running += 1
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="backend-call", daemon=True).start()
        inbox.put(job)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            inbox.get()()  # the job catches all it raises (call_within's run)
            with self._lock:
                self.running -= 1
                if len(self._idle) >= self.KEEP:
                    return
                self._idle.append(inbox)


_threads = _Threads()


def calls_running() -> int:
    """Calls made through ``call_within`` that have not returned yet, those abandoned after their time included."""
    return _threads.running
