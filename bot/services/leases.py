"""The claims this process holds, kept alive while it works on them.

A claim (``granting`` or ``revoking``) carries a lease. While the work is in hand this process renews the lease;
if the process dies, renewal stops, the lease runs out, and any replica's sweep takes the work over. Only work
actually in hand is renewed, so a claim whose worker was lost cannot be kept alive by accident.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from bot.store import queries
from bot.store.db import Database


class Leases:
    def __init__(self) -> None:
        self._held: set[int] = set()
        self._lock = threading.Lock()

    @contextmanager
    def holding(self, request_id: int) -> Iterator[None]:
        with self._lock:
            self._held.add(request_id)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(request_id)

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
