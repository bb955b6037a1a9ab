"""Publishes Home tabs from a thread of its own: when someone opens theirs, and when a request on it changes.

The ``Homes`` port (bot/services/ports.py). Callers only hand over a user or a request id and return at once; the
worker takes everything handed over since its last round together, so a burst collapses: a person who opened the tab
twenty times, or whose requests changed ten times in a second, gets one page built and published. A change is
published only for the people it concerns who have opened their Home tab lately (bot/services/home.py). Nothing here
raises into a caller: a page that cannot be built or published is logged, and the next visit or change publishes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.services import home
from bot.services.deps import Deps
from bot.slack.home import home_view
from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.slack.home")

SETTLE = 0.05  # seconds the worker waits after a kick, so what one change sets off arrives as one round


class HomeRefresher:
    def __init__(self, deps: Deps, client: WebClient) -> None:
        self.deps = deps
        self.client = client
        self._changed = threading.Condition()
        self._opened: set[str] = set()
        self._requests: set[int] = set()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- the port ----------------------------------------------------------------------------------------------

    def opened(self, user_id: str) -> None:
        self._hand_over(lambda: self._opened.add(user_id))

    def changed(self, request_id: int) -> None:
        self._hand_over(lambda: self._requests.add(request_id))

    def _hand_over(self, add: Callable[[], None]) -> None:
        with self._changed:
            if self._closed:
                return
            add()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="home-tabs", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    # -- the worker --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._changed:
                while not (self._opened or self._requests) and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                self._busy = True
            time.sleep(SETTLE)
            with self._changed:
                opened, self._opened = self._opened, set()
                requests, self._requests = self._requests, set()
            try:
                self._round(opened, requests)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _round(self, opened: set[str], requests: set[int]) -> None:
        first: dict[str, bool] = {}
        for user in sorted(opened):
            try:
                first[user] = home.visit(self.deps, user)
            except Exception as error:  # their page is still worth showing
                self._failed(f"recording {user}'s visit to the Home tab", error)
                first[user] = False
        watching: set[str] = set()
        if requests:
            try:
                watching = home.concerned(self.deps, requests)
            except Exception as error:
                self._failed("finding whose Home tabs a change concerns", error)
        for user in sorted(set(first) | watching):
            self.publish(user, first_visit=first.get(user, False))

    def publish(self, user_id: str, *, first_visit: bool = False) -> bool:
        """Build ``user_id``'s page and publish it; False (logged) when either failed."""
        try:
            view = home_view(home.page(self.deps, user_id, first_visit=first_visit))
        except Exception as error:
            self._failed(f"building {user_id}'s Home tab", error)
            return False
        try:
            self.client.views_publish(user_id=user_id, view=view)
        except SlackApiError as error:
            log.warning("Slack did not publish %s's Home tab (%s)", user_id, error.response.get("error"))
            return False
        except Exception as error:  # Slack out of reach: the next visit or change publishes it
            log.warning("could not publish %s's Home tab (%s)", user_id, type(error).__name__)
            return False
        return True

    def _failed(self, doing: str, error: Exception) -> None:
        database_outage.failed(log, doing, error, kind="publishing Home tabs")

    # -- for tests and shutdown ----------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over has been published (or failed). True if done within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not (self._opened or self._requests or self._busy) or self._closed, timeout=timeout
            )

    def close(self, grace: float = 5.0) -> None:
        self.flush(grace)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
