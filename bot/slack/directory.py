"""People and user groups, looked up through the Slack API and cached briefly.

Group membership decides who may approve, so it is never trusted for longer than a minute.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.adapters.base import Person
from bot.clock import Clock
from bot.services.ports import MembershipUnknown

log = logging.getLogger("breakglass.slack.directory")
GONE = frozenset({"no_such_subteam", "subteam_not_found"})  # Slack's word for a group id that names no group
T = TypeVar("T")


class SlackDirectory:
    def __init__(self, client: WebClient, clock: Clock, ttl: timedelta = timedelta(seconds=60)) -> None:
        self.client = client
        self.clock = clock
        self.ttl = min(ttl, timedelta(seconds=60))
        self._people: dict[str, tuple[datetime, Person]] = {}
        self._groups: dict[str, tuple[datetime, frozenset[str]]] = {}
        self._emails: dict[str, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    def _fresh(self, cache: dict[str, tuple[datetime, T]], key: str) -> T | None:
        with self._lock:
            entry = cache.get(key)
        if entry and self.clock.now() - entry[0] < self.ttl:
            return entry[1]
        return None

    def person(self, user_id: str) -> Person:
        cached = self._fresh(self._people, user_id)
        if cached is not None:
            return cached
        try:
            user = self.client.users_info(user=user_id)["user"]
        except SlackApiError as error:
            log.warning("users.info for %s failed: %s", user_id, error.response.get("error"))
            return Person(user_id)
        except OSError as error:  # network trouble: carry on with what we know
            log.warning("users.info for %s failed: %s", user_id, type(error).__name__)
            return Person(user_id)
        profile = user.get("profile") or {}
        person = Person(
            slack_id=user_id,
            email=profile.get("email"),
            name=profile.get("real_name") or user.get("real_name") or user.get("name"),
            handle=user.get("name"),
        )
        with self._lock:
            self._people[user_id] = (self.clock.now(), person)
        return person

    def members(self, group_ids: list[str]) -> frozenset[str]:
        found: set[str] = set()
        for group_id in group_ids:
            found |= self._group(group_id)
        return frozenset(found)

    def _group(self, group_id: str) -> frozenset[str]:
        cached = self._fresh(self._groups, group_id)
        if cached is not None:
            return cached
        # Failures are not cached: an outage must not lock approvers out for a minute after it ends.
        try:
            members = frozenset(self.client.usergroups_users_list(usergroup=group_id).get("users") or [])
        except SlackApiError as error:
            code = error.response.get("error")
            log.warning("usergroups.users.list for %s failed: %s", group_id, code)
            if code in GONE:  # a group that does not exist has nobody in it; `breakglass check` names it
                return frozenset()
            raise MembershipUnknown(group_id) from None
        except OSError as error:
            log.warning("usergroups.users.list for %s failed: %s", group_id, type(error).__name__)
            raise MembershipUnknown(group_id) from None
        with self._lock:
            self._groups[group_id] = (self.clock.now(), members)
        return members

    def by_email(self, email: str) -> str | None:
        key = email.strip().lower()
        cached = self._fresh(self._emails, key)
        if cached is not None:
            return cached
        try:
            user = self.client.users_lookupByEmail(email=key)["user"]
        except SlackApiError as error:  # users_not_found, or a missing users:read.email scope: nobody, said in the log
            log.warning("users.lookupByEmail failed: %s", error.response.get("error"))
            return None
        except OSError as error:
            log.warning("users.lookupByEmail failed: %s", type(error).__name__)
            return None
        user_id = str(user.get("id") or "")
        if not user_id or user.get("deleted"):
            return None
        with self._lock:
            self._emails[key] = (self.clock.now(), user_id)
        return user_id
