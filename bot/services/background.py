"""A Notifier for background work: notices go out in order from one thread of their own, so a slow or failing
Slack never holds up the next revoke. The database is already committed when a notice is queued."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bot.services.ports import MessageRef, Notice, Notifier
from bot.services.views import RequestView

log = logging.getLogger("breakglass.notices")


class BackgroundNotifier:
    def __init__(self, inner: Notifier) -> None:
        self.inner = inner
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._changed = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def post_request(self, channel: str, view: RequestView) -> MessageRef | None:
        return self.inner.post_request(channel, view)  # the caller needs to know where the message is

    def refresh(self, view: RequestView) -> None:
        self._put(self.inner.refresh, view)

    def tell_requester(self, view: RequestView, notice: Notice) -> None:
        self._put(self.inner.tell_requester, view, notice)

    def send_credentials(self, view: RequestView, credentials: str) -> None:
        self._put(self.inner.send_credentials, view, credentials)

    def tell_channel(self, channel: str, view: RequestView, notice: Notice) -> None:
        self._put(self.inner.tell_channel, channel, view, notice)

    def warn_refusals(self, channel: str, actor: str, count: int, window: timedelta, latest: str) -> None:
        self._put(self.inner.warn_refusals, channel, actor, count, window, latest)

    def _put(self, call: Callable[..., Any], *args: Any) -> None:
        with self._changed:
            if self._closed:
                log.warning("stopping: dropped a notice (%s)", call.__name__)
                return
            self._queue.append((call, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name="notices", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def _deliver(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if not self._queue:
                    return
                call, args = self._queue.popleft()
                self._busy = True
            try:
                call(*args)
            except Exception:  # a Notifier should not raise; if one does, the next notice still goes out
                log.exception("notice %s failed", call.__name__)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notice went out. True if they did within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queue and not self._busy, timeout=timeout)

    def close(self, grace: float) -> None:
        """Deliver what is queued for up to ``grace`` seconds, then stop."""
        self.flush(grace)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
