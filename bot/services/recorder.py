"""Recording confirmed revokes in batches, on a thread of their own, so that a lane is free for its next backend
call as soon as the backend has answered.

A revoke's record (the move to ``expired`` or ``revoked``, its audit event, the review it owes, the messages it owes)
is a transaction of a dozen statements and a seal of the audit chain. Done in the lane, it held the lane's next
backend call for as long as it took, and a thousand of them queued on the chain's head one at a time. Here up to
``batch`` revokes share one transaction and one seal.

The claim stays held (its lease renewed) from the backend's answer until the record commits. A process that dies in
between leaves the row ``revoking`` under a claim that runs out: a survivor takes it over and revokes again, which
adapters make safe by being idempotent, exactly as after a death during the backend call itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

from bot.logs import log_context
from bot.services.deps import Deps
from bot.services.ports import Courier
from bot.services.revoking import Ended, after_revoked, record_revoked
from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.recorder")

Waiting = tuple[int, int, "Future[Ended | None]"]  # request id, attempts before, the outcome


class Recorder:
    """``calls_running()`` says whether backend calls are running or queued: the recorder gives way to them (the
    interpreter runs one thread at a time, and a revoke's record costs more of it than its call) for up to
    ``give_way`` seconds, so that in a wave every access ends first and is recorded after."""

    def __init__(
        self,
        deps: Deps,
        courier: Courier,
        calls_running: Callable[[], bool] = lambda: False,
        batch: int = 20,
        give_way: float = 5.0,
    ) -> None:
        self._deps = deps  # read at each batch: the runtime fills some of its parts in after the sweeper is made
        self.courier = courier
        self.calls_running = calls_running
        self.batch = batch
        self.give_way = give_way
        self._waiting: list[Waiting] = []
        self._in_hand: set[int] = set()  # waiting or being recorded: the sweep must not start these again
        self._since: float | None = None  # when the oldest waiting revoke was handed over (monotonic)
        self._changed = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def __call__(self, request_id: int, attempts_before: int) -> Future[Ended | None]:
        """Record this confirmed revoke soon; the future has its outcome. Holds the claim until then."""
        future: Future[Ended | None] = Future()
        self._deps.leases.hold(request_id)
        with self._changed:
            self._in_hand.add(request_id)
            if not self._waiting:
                self._since = time.monotonic()
            self._waiting.append((request_id, attempts_before, future))
            self._changed.notify_all()
        if self._closed:  # closing: nobody is left to record it later
            self._drain()
        return future

    def has(self, request_id: int) -> bool:
        """Whether this revoke is confirmed and waits to be recorded: its row still says ``revoking``, but there is no
        backend call left to make."""
        with self._changed:
            return request_id in self._in_hand

    @property
    def deps(self) -> Deps:
        return replace(self._deps, courier=self.courier)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._closed or bool(self._waiting and not self._busy))
                closed = self._closed
                while not self._closed and self._gives_way():
                    self._changed.wait(0.02)
            self._drain(everything=closed)  # one batch at a time, giving way again before the next
            if closed:
                return

    def _gives_way(self) -> bool:
        waited = time.monotonic() - (self._since or 0)
        return waited < self.give_way and self.calls_running()

    def _drain(self, everything: bool = True) -> None:
        while True:
            with self._changed:
                if self._busy or not self._waiting:
                    return
                taken, self._waiting = self._waiting[: self.batch], self._waiting[self.batch :]
                self._since = time.monotonic() if self._waiting else None
                self._busy = True
            try:
                self._record(taken)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
            if not everything:
                return

    def _record(self, taken: list[Waiting]) -> None:
        try:
            ended = self._together(taken)
        except Exception as error:  # one bad row must not cost the others their record: each on its own
            database_outage.failed(log, f"recording {len(taken)} revokes together", error)
            ended = [self._alone(request_id, attempts) for request_id, attempts, _ in taken]
        deps = self.deps
        for (request_id, _, future), outcome in zip(taken, ended, strict=True):
            try:
                with log_context(request_id=request_id):
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        after_revoked(deps, outcome)
                        future.set_result(outcome)
            finally:
                self._deps.leases.let_go(request_id)
                with self._changed:
                    self._in_hand.discard(request_id)

    def _together(self, taken: list[Waiting]) -> list[Ended | BaseException | None]:
        deps = self.deps
        with deps.db.transaction() as session:
            now = deps.now()
            return [record_revoked(deps, session, request_id, attempts, now) for request_id, attempts, _ in taken]

    def _alone(self, request_id: int, attempts: int) -> Ended | BaseException | None:
        deps = self.deps
        try:
            with deps.db.transaction() as session, log_context(request_id=request_id):
                return record_revoked(deps, session, request_id, attempts, deps.now())
        except Exception as error:  # left revoking under a claim that runs out: a sweep revokes and records again
            database_outage.failed(log, f"recording the revoke of request {request_id}", error)
            return error

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed over so far is recorded; False if time ran out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._waiting and not self._busy, timeout=max(deadline - time.monotonic(), 0)
            )

    def close(self, grace: float) -> bool:
        """Record what is waiting, within ``grace`` seconds; take nothing more on a thread. True if all was."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(grace)
        return not self._thread.is_alive()
