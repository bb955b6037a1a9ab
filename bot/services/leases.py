"""The claims this process holds, kept alive while it works on them.

A claim (``granting`` or ``revoking``) carries a lease. While the work is in hand this process renews the lease;
if the process dies, renewal stops, the lease runs out, and any replica's sweep takes the work over. Only work
actually in hand is renewed, so a claim whose worker was lost cannot be kept alive by accident.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from bot.store import queries
from bot.store.db import Database


class Leases:
    def __init__(self) -> None:
        self._held: Counter[int] = Counter()  # a claim handed from a lane to the recorder is held by both a moment
        self._lock = threading.Lock()

    @contextmanager
    def holding(self, request_id: int) -> Iterator[None]:
        self.hold(request_id)
        try:
            yield
        finally:
            self.let_go(request_id)

    def hold(self, request_id: int) -> None:
        with self._lock:
            self._held[request_id] += 1

    def let_go(self, request_id: int) -> None:
        with self._lock:
            self._held[request_id] -= 1
            if self._held[request_id] <= 0:
                del self._held[request_id]

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)

    def renew(self, db: Database, holder: str, now: datetime, lease: timedelta) -> int:
        held = self.held()
        if not held:
            return 0
        with db.transaction() as session:
            return queries.renew_claims(session, holder, held, now + lease)


def release(db: Database, holder: str, now: datetime) -> int:
    """Hand back every claim ``holder`` still has, for another replica (or our restart) to take at once."""
    with db.transaction() as session:
        return queries.release_claims(session, holder, now)
