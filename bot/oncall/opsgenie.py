"""Opsgenie over its REST API: who is on call (v2 schedules), open incidents (v1 Incident API), alerts (v2).

What this module keeps true: the key travels only in the ``Authorization`` header, and only to the configured API
host (a paging link to another host is refused, not followed); every failure is ``OnCallUnavailable`` with no key
or query in its text; a page that was accepted is a page, even when its alert's id is not known yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from bot.oncall._http import call, field, malformed
from bot.oncall.base import Incident, OnCallUnavailable, Page

VENDOR = "opsgenie"
PAGE_LIMIT = 100  # the most the Incident API lists in one answer
MAX_PAGES = 50  # a listing that keeps offering a next page past this is not one to trust
MESSAGE_MAX = 130  # alert message
ALIAS_MAX = 512  # alert alias
DESCRIPTION_MAX = 15000  # alert description


class OpsgenieOnCall:
    """The ``OnCall`` port for Opsgenie. Safe to share between threads only as far as ``requests.Session`` is."""

    def __init__(
        self,
        key: str,
        *,
        api_url: str = "https://api.opsgenie.com",
        web_url: str | None = None,
        timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.web_url = web_url.rstrip("/") if web_url else None
        self.timeout = timeout
        self._session = session or requests.Session()
        self._session.headers.update({"Authorization": f"GenieKey {key}", "Accept": "application/json"})

    def __repr__(self) -> str:
        return f"OpsgenieOnCall(api_url={self.api_url!r}, web_url={self.web_url!r})"

    def close(self) -> None:
        self._session.close()

    def on_call(self, schedule: str) -> frozenset[str]:
        path = f"/v2/schedules/{quote(schedule, safe='')}/on-calls"
        answer = self._get(path, [("scheduleIdentifierType", "id"), ("flat", "true")])
        data = field(answer.get("data"), dict, VENDOR, "GET", path, "data")
        recipients = field(data.get("onCallRecipients", []), list, VENDOR, "GET", path, "data.onCallRecipients")
        emails = {field(r, str, VENDOR, "GET", path, "data.onCallRecipients[]").strip().lower() for r in recipients}
        return frozenset(emails)

    def open_incidents(self, services: Sequence[str] = ()) -> list[Incident]:
        wanted = set(services)
        found: list[Incident] = []
        path = "/v1/incidents"
        url: str | None = f"{self.api_url}{path}"
        params: list[tuple[str, str]] | None = [("query", "status:open"), ("limit", str(PAGE_LIMIT))]
        for _ in range(MAX_PAGES):
            if url is None:
                return found
            answer = field(
                call(self._session, VENDOR, "GET", url, path, timeout=self.timeout, params=params),
                dict,
                VENDOR,
                "GET",
                path,
                "the answer",
            )
            for entry in field(answer.get("data"), list, VENDOR, "GET", path, "data"):
                incident = self._incident(field(entry, dict, VENDOR, "GET", path, "data[]"))
                if not wanted or wanted.intersection(incident.services):
                    found.append(incident)
            url, params = self._next(answer.get("paging"), path), None  # the next link carries its own query
        raise malformed(VENDOR, "GET", path, f"more than {MAX_PAGES} pages")

    def page(self, schedule: str, summary: str, key: str, details: dict[str, str]) -> Page:
        alias = key[:ALIAS_MAX]
        alert = {
            "message": summary[:MESSAGE_MAX],
            "alias": alias,
            "description": summary[:DESCRIPTION_MAX],
            "responders": [{"id": schedule, "type": "schedule"}],
            "priority": "P1",
            "details": dict(details),
            "source": "breakglass",
        }
        path = "/v2/alerts"
        answer = call(
            self._session,
            VENDOR,
            "POST",
            f"{self.api_url}{path}",
            path,
            timeout=self.timeout,
            expect=(202,),
            json_body=alert,
        )
        answer = field(answer, dict, VENDOR, "POST", path, "the answer")
        request_id = field(answer.get("requestId"), str, VENDOR, "POST", path, "requestId")
        return Page(key=alias, url=self._alert_link(request_id), details=dict(details))

    def _alert_link(self, request_id: str) -> str | None:
        """The alert's web link, if a web_url is configured and Opsgenie has processed the request already (it does
        so asynchronously); any failure here only loses the link."""
        if self.web_url is None:
            return None
        path = f"/v2/alerts/requests/{quote(request_id, safe='')}"
        try:
            answer = self._get(path, None)
        except OnCallUnavailable:
            return None
        data = answer.get("data")
        alert_id = data.get("alertId") if isinstance(data, dict) else None
        if not isinstance(alert_id, str) or not alert_id:
            return None
        return f"{self.web_url}/alert/detail/{quote(alert_id, safe='')}/details"

    def _get(self, path: str, params: list[tuple[str, str]] | None) -> dict[str, Any]:
        answer = call(self._session, VENDOR, "GET", f"{self.api_url}{path}", path, timeout=self.timeout, params=params)
        return field(answer, dict, VENDOR, "GET", path, "the answer")

    def _next(self, paging: Any, path: str) -> str | None:
        """The next page's URL, or None on the last page. A link to another scheme, host or port is refused: the
        key would go with it, and stopping early would pass a partial list off as the whole."""
        following = paging.get("next") if isinstance(paging, dict) else None
        if following is None:
            return None
        if not isinstance(following, str):
            raise malformed(VENDOR, "GET", path, "paging.next is not a string")
        ours, theirs = urlsplit(self.api_url), urlsplit(following)
        if (theirs.scheme, theirs.netloc.lower()) != (ours.scheme, ours.netloc.lower()):
            raise malformed(VENDOR, "GET", path, "paging.next points to another host")
        return following

    @staticmethod
    def _incident(entry: dict[str, Any]) -> Incident:
        where = (VENDOR, "GET", "/v1/incidents")
        incident_id = field(entry.get("id"), str, *where, "data[].id")
        title = field(entry.get("message"), str, *where, "data[].message")
        impacted = entry.get("impactedServices") or []
        services = tuple(s for s in field(impacted, list, *where, "data[].impactedServices") if isinstance(s, str))
        priority, links = entry.get("priority"), entry.get("links")
        web = links.get("web") if isinstance(links, dict) else None
        return Incident(
            id=incident_id,
            title=title,
            services=services,
            priority=priority if isinstance(priority, str) else None,
            url=web if isinstance(web, str) else None,
        )
