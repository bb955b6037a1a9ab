"""PagerDuty over its REST API v2 (on-call, incidents) and Events API v2 (pages).

What this module keeps true: the REST key and the routing key travel only in a header or the event body, never in
a URL or an error's text; every failure is ``OnCallUnavailable``; a page that was accepted is a page, even when
its incident's link cannot be found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from bot.oncall._http import call, field, malformed
from bot.oncall.base import Incident, OnCallUnavailable, Page

VENDOR = "pagerduty"
PAGE_LIMIT = 100  # the most PagerDuty lists in one answer
MAX_PAGES = 50  # a listing that keeps saying "more" past this is not one to trust
SUMMARY_MAX = 1024  # Events API v2 payload.summary
DEDUP_KEY_MAX = 255  # Events API v2 dedup_key


class PagerDutyOnCall:
    """The ``OnCall`` port for PagerDuty. Safe to share between threads only as far as ``requests.Session`` is."""

    def __init__(
        self,
        token: str,
        *,
        api_url: str = "https://api.pagerduty.com",
        events_url: str = "https://events.pagerduty.com",
        routing_key: str | None = None,
        routing_key_env: str = "PAGERDUTY_ROUTING_KEY",
        timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.events_url = events_url.rstrip("/")
        self.routing_key_env = routing_key_env
        self.timeout = timeout
        self._routing_key = routing_key
        self._rest = session or requests.Session()
        self._rest.headers.update(
            {"Authorization": f"Token token={token}", "Accept": "application/vnd.pagerduty+json;version=2"}
        )
        # The Events API takes its key in the body: a session of its own keeps the REST key off those calls.
        self._events = requests.Session()

    def __repr__(self) -> str:
        return f"PagerDutyOnCall(api_url={self.api_url!r}, events_url={self.events_url!r})"

    def close(self) -> None:
        self._rest.close()
        self._events.close()

    def on_call(self, schedule: str) -> frozenset[str]:
        params = [("schedule_ids[]", schedule), ("include[]", "users"), ("earliest", "true")]
        emails: set[str] = set()
        for entry in self._list("/oncalls", "oncalls", params):
            user = field(entry.get("user"), dict, VENDOR, "GET", "/oncalls", "oncalls[].user")
            email = field(user.get("email"), str, VENDOR, "GET", "/oncalls", "oncalls[].user.email")
            emails.add(email.strip().lower())
        return frozenset(emails)

    def open_incidents(self, services: Sequence[str] = ()) -> list[Incident]:
        params = [("statuses[]", "triggered"), ("statuses[]", "acknowledged")]
        params += [("service_ids[]", service) for service in services]
        return [self._incident(entry) for entry in self._list("/incidents", "incidents", params)]

    def page(self, schedule: str, summary: str, key: str, details: dict[str, str]) -> Page:
        if not self._routing_key:
            raise OnCallUnavailable(
                f"{VENDOR} POST /v2/enqueue: environment variable {self.routing_key_env} (the routing key) is not set"
            )
        dedup_key = key[:DEDUP_KEY_MAX]
        custom = {**details, "schedule": schedule}
        event = {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": summary[:SUMMARY_MAX],
                "source": "breakglass",
                "severity": "critical",
                "custom_details": custom,
            },
        }
        answer = call(
            self._events,
            VENDOR,
            "POST",
            f"{self.events_url}/v2/enqueue",
            "/v2/enqueue",
            timeout=self.timeout,
            expect=(202,),
            json_body=event,
        )
        field(answer, dict, VENDOR, "POST", "/v2/enqueue", "the answer")
        return Page(key=dedup_key, url=self._incident_link(dedup_key), details=custom)

    def _incident_link(self, dedup_key: str) -> str | None:
        """The web link of the incident the page opened, if PagerDuty already shows it (events are processed
        asynchronously, so it may not yet); any failure here only loses the link."""
        try:
            answer = call(
                self._rest,
                VENDOR,
                "GET",
                f"{self.api_url}/incidents",
                "/incidents",
                timeout=self.timeout,
                params=[("incident_key", dedup_key)],
            )
            incidents = field(
                answer.get("incidents") if isinstance(answer, dict) else None,
                list,
                VENDOR,
                "GET",
                "/incidents",
                "incidents",
            )
        except OnCallUnavailable:
            return None
        for incident in incidents:
            if isinstance(incident, dict) and isinstance(incident.get("html_url"), str):
                return str(incident["html_url"])
        return None

    def _list(self, path: str, key: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every entry of a classic-paginated listing (offset/limit/more)."""
        entries: list[dict[str, Any]] = []
        offset = 0
        for _ in range(MAX_PAGES):
            paged = [*params, ("limit", str(PAGE_LIMIT)), ("offset", str(offset))]
            answer = call(self._rest, VENDOR, "GET", f"{self.api_url}{path}", path, timeout=self.timeout, params=paged)
            answer = field(answer, dict, VENDOR, "GET", path, "the answer")
            batch = field(answer.get(key), list, VENDOR, "GET", path, key)
            for entry in batch:
                entries.append(field(entry, dict, VENDOR, "GET", path, f"{key}[]"))
            if answer.get("more") is not True or not batch:
                return entries
            offset += len(batch)
        raise malformed(VENDOR, "GET", path, f"more than {MAX_PAGES} pages")

    @staticmethod
    def _incident(entry: dict[str, Any]) -> Incident:
        where = (VENDOR, "GET", "/incidents")
        incident_id = field(entry.get("id"), str, *where, "incidents[].id")
        title = field(entry.get("title"), str, *where, "incidents[].title")
        service = entry.get("service")
        service_id = service.get("id") if isinstance(service, dict) else None
        urgency, url = entry.get("urgency"), entry.get("html_url")
        return Incident(
            id=incident_id,
            title=title,
            services=(service_id,) if isinstance(service_id, str) else (),
            urgency=urgency if isinstance(urgency, str) else None,
            url=url if isinstance(url, str) else None,
        )
