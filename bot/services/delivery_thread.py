"""The delivery thread: background work (the sweep, a wave's records, the shipper) hands the courier's work to one
thread of its own, so a Slack outage never holds up a revoke. A person's thread delivers its request's messages
itself (bot/services/delivery.py), so they see the effect in Slack before the bot answers."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session

from bot.services.delivery import Courier
from bot.services.ports import Held
from bot.services.snapshots import RequestView
from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.delivery")


class BackgroundCourier:
    """Hands delivery to one thread of its own, so background work never waits on Slack."""

    def __init__(self, courier: Courier) -> None:
        self.courier = courier
        self._changed = threading.Condition()
        self._kicked = False
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def hold(self, session: Session, current: RequestView, created: bool = True) -> Held | None:
        return None  # background work never waits on Slack: the delivery thread claims its rows as any sender would

    def deliver(self, request_id: int | None, held: Held | None = None) -> None:
        self.kick()

    def kick(self) -> None:
        with self._changed:
            if self._closed:
                return  # the rows stay owed; the next start delivers them
            self._kicked = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._kicked and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                self._kicked, self._busy = False, True
            try:
                self.courier.drain()
            except Exception as error:  # the rows stay owed and the next kick tries again
                database_outage.failed(log, "delivering Slack messages", error)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the thread has nothing in hand. True if it got there within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._kicked and not self._busy, timeout=timeout)

    def close(self, grace: float) -> None:
        self.flush(grace)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
