"""A hard time limit on a call into a backend. Adapters set their own network timeouts too; this is the backstop
for the ones that don't, or that hang somewhere a socket timeout cannot see."""

from __future__ import annotations

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

    threading.Thread(target=run, name="backend-call", daemon=True).start()
    if not finished.wait(seconds):
        raise Overdue(f"no answer within {seconds:g}s", finished, outcome)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
