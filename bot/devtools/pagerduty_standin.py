"""A PagerDuty stand-in on loopback, for tests and the demo: the REST API v2 paths Breakglass reads and the Events
API v2 ``/v2/enqueue`` it pages through, on one port::

    with PagerDutyStandIn("rest-token", routing_key="routing-key") as pd:
        pd.set_on_call("PSCHED1", ["ada@example.com"])
        pd.open_incident("PINC1", "Database down", service="PSVC1", urgency="high")
        client = PagerDutyOnCall("rest-token", api_url=pd.url, events_url=pd.url, routing_key="routing-key")

It answers in PagerDuty's documented JSON shapes: ``/oncalls`` and ``/incidents`` with classic paging
(``limit``/``offset``/``more``, at most ``page_limit`` entries an answer), ``/v2/enqueue`` with 202
``{"status": "success", ...}``. REST calls need ``Authorization: Token token=<token>`` (401 otherwise); events
need the routing key in the body (400 otherwise). A trigger opens an incident whose ``incident_key`` is its dedup
key (unless ``incidents_from_pages(False)``); a repeat with the same key while that incident is open opens no
other. ``outage(True)`` answers 503 to everything, ``malformed(True)`` answers 200 with a body that is not what
PagerDuty documents, and after ``stop()`` calls fail to connect (``url`` still names the old address).
"""

from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.clock import Clock, SystemClock
from bot.devtools.loopback import LoopbackService

SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass
class _Incident:
    id: str
    title: str
    service: str
    urgency: str
    status: str
    incident_key: str | None = None
    created_at: str = ""


@dataclass
class _State:
    on_call: dict[str, list[str]] = field(default_factory=dict)
    incidents: dict[str, _Incident] = field(default_factory=dict)
    pages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    down: bool = False
    malformed_body: str | None = None
    incidents_from_pages: bool = True
    next_number: int = 1


class PagerDutyStandIn(LoopbackService):
    """Single use: ``start()`` once, ``stop()`` once (or use it as a context manager)."""

    name = "pagerduty stand-in"

    def __init__(
        self,
        token: str,
        *,
        routing_key: str = "standin-routing-key",
        page_limit: int = 100,
        clock: Clock | None = None,
        web_url: str | None = None,
    ) -> None:
        self.token = token
        # Where incidents' ``html_url`` point: PagerDuty's are on the account's web host (https://acme.pagerduty.com),
        # never the API's; None: this stand-in's own address.
        self.web_url = web_url.rstrip("/") if web_url else None
        self.routing_key = routing_key
        self.page_limit = page_limit  # PagerDuty lists at most 100 an answer; smaller makes clients page
        self.clock = clock or SystemClock()
        self._state = _State()
        self._lock = threading.Lock()
        super().__init__()

    @property
    def url(self) -> str:
        """The base of both the REST API and the Events API (``api_url`` and ``events_url`` alike)."""
        return super().url

    # -- scripting ------------------------------------------------------------------------------------------------

    def set_on_call(self, schedule: str, emails: list[str]) -> None:
        """Who is on call for ``schedule`` from now on (an empty list: nobody)."""
        with self._lock:
            self._state.on_call[schedule] = list(emails)

    def open_incident(
        self, id: str, title: str, *, service: str = "PSVC1", urgency: str = "high", status: str = "triggered"
    ) -> None:
        with self._lock:
            self._state.incidents[id] = _Incident(id, title, service, urgency, status, created_at=self._now())

    def acknowledge_incident(self, id: str) -> None:
        with self._lock:
            self._state.incidents[id].status = "acknowledged"

    def resolve_incident(self, id: str) -> None:
        with self._lock:
            self._state.incidents[id].status = "resolved"

    def outage(self, down: bool = True) -> None:
        """Every call answers 503 while ``down``."""
        with self._lock:
            self._state.down = down

    def malformed(self, on: bool = True, body: str = "<html>maintenance</html>") -> None:
        """Every call answers 200 with ``body`` (not JSON by default; pass JSON of the wrong shape to test that)."""
        with self._lock:
            self._state.malformed_body = body if on else None

    def incidents_from_pages(self, on: bool = True) -> None:
        """Whether a trigger event opens an incident (off: pages are accepted but no incident shows up yet, as when
        PagerDuty has not processed the event)."""
        with self._lock:
            self._state.incidents_from_pages = on

    # -- what was received --------------------------------------------------------------------------------------

    @property
    def pages(self) -> list[dict[str, Any]]:
        """The bodies of the events received on /v2/enqueue that were accepted."""
        with self._lock:
            return [json.loads(json.dumps(page)) for page in self._state.pages]

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every call received, in order; the path without its query."""
        with self._lock:
            return [(method, path) for method, path, _ in self._state.calls]

    @property
    def calls_with_params(self) -> list[tuple[str, str, dict[str, list[str]]]]:
        """(method, path, query parameters) of every call received."""
        with self._lock:
            return [(method, path, {k: list(v) for k, v in q.items()}) for method, path, q in self._state.calls]

    def incident_status(self, id: str) -> str:
        with self._lock:
            return self._state.incidents[id].status

    # -- serving --------------------------------------------------------------------------------------------------

    def _now(self) -> str:
        return self.clock.now().isoformat().replace("+00:00", "Z")

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, str]:
        """(status, JSON text) for one call."""
        url = urlsplit(target)
        params = parse_qs(url.query, keep_blank_values=True)
        with self._lock:
            state = self._state
            state.calls.append((method, url.path, params))
            if state.down:
                return 503, json.dumps({"error": {"message": "Service Unavailable", "code": 503}})
            if state.malformed_body is not None:
                return 200, state.malformed_body
            if method == "POST" and url.path == "/v2/enqueue":
                return self._enqueue(raw)
            if headers.get("authorization") != f"Token token={self.token}":
                return 401, json.dumps({"error": {"message": "Authentication required", "code": 2006}})
            if method == "GET" and url.path == "/oncalls":
                return 200, json.dumps(self._listing("oncalls", self._oncalls(params), params))
            if method == "GET" and url.path == "/incidents":
                return 200, json.dumps(self._listing("incidents", self._incidents(params), params))
            return 404, json.dumps({"error": {"message": "Not Found", "code": 2100}})

    def _listing(self, key: str, entries: list[dict[str, Any]], params: dict[str, list[str]]) -> dict[str, Any]:
        try:
            offset = max(0, int(params.get("offset", ["0"])[0]))
            limit = min(self.page_limit, max(1, int(params.get("limit", ["25"])[0])))
        except ValueError:
            offset, limit = 0, min(self.page_limit, 25)
        batch = entries[offset : offset + limit]
        more = offset + limit < len(entries)
        return {key: batch, "limit": limit, "offset": offset, "more": more, "total": None}

    def _oncalls(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        schedules = params.get("schedule_ids[]") or list(self._state.on_call)
        full_users = "users" in params.get("include[]", [])
        start = self.clock.now()
        entries = []
        for schedule in schedules:
            for n, email in enumerate(self._state.on_call.get(schedule, []), start=1):
                user_id = f"PU{zlib.crc32(email.encode()):08X}"  # stable across runs, unlike hash()
                user: dict[str, Any] = {
                    "id": user_id,
                    "type": "user" if full_users else "user_reference",
                    "summary": email.split("@")[0],
                    "self": f"{self.url}/users/{user_id}",
                    "html_url": f"{self.url}/users/{user_id}",
                }
                if full_users:  # only a full user object has the email; a reference does not
                    user.update({"name": email.split("@")[0], "email": email})
                entries.append(
                    {
                        "escalation_policy": {"id": "PEP1", "type": "escalation_policy_reference"},
                        "escalation_level": n,
                        "schedule": {"id": schedule, "type": "schedule_reference"},
                        "user": user,
                        "start": start.isoformat().replace("+00:00", "Z"),
                        "end": (start + timedelta(hours=8)).isoformat().replace("+00:00", "Z"),
                    }
                )
        return entries

    def _incidents(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        statuses = params.get("statuses[]") or ["triggered", "acknowledged"]
        services = params.get("service_ids[]")
        keys = params.get("incident_key")
        found = []
        for incident in self._state.incidents.values():
            if keys is None and incident.status not in statuses:
                continue  # PagerDuty ignores the status filter when asked for an incident_key
            if services and incident.service not in services:
                continue
            if keys is not None and incident.incident_key not in keys:
                continue
            found.append(
                {
                    "id": incident.id,
                    "type": "incident",
                    "title": incident.title,
                    "summary": incident.title,
                    "status": incident.status,
                    "urgency": incident.urgency,
                    "incident_key": incident.incident_key,
                    "created_at": incident.created_at,
                    "service": {"id": incident.service, "type": "service_reference"},
                    "html_url": f"{self.web_url or self.url}/incidents/{incident.id}",
                }
            )
        return found

    def _enqueue(self, raw: bytes) -> tuple[int, str]:
        def invalid(error: str) -> tuple[int, str]:
            return 400, json.dumps({"status": "invalid event", "message": "Event object is invalid", "errors": [error]})

        try:
            event = json.loads(raw)
        except ValueError:
            return invalid("Body is not JSON")
        if not isinstance(event, dict):
            return invalid("Event must be a JSON object")
        if event.get("routing_key") != self.routing_key:
            return invalid("Invalid routing key")
        if event.get("event_action") not in EVENT_ACTIONS:
            return invalid("'event_action' is invalid")
        dedup_key = event.get("dedup_key")
        if dedup_key is not None and (not isinstance(dedup_key, str) or not 0 < len(dedup_key) <= 255):
            return invalid("'dedup_key' must be 1 to 255 characters")
        payload = event.get("payload")
        if event["event_action"] == "trigger":
            if not isinstance(payload, dict):
                return invalid("'payload' is missing")
            summary = payload.get("summary")
            if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
                return invalid("'payload.summary' must be 1 to 1024 characters")
            if not isinstance(payload.get("source"), str) or payload.get("severity") not in SEVERITIES:
                return invalid("'payload.source' and 'payload.severity' are required")
        key = dedup_key or f"standin-{len(self._state.pages) + 1}"
        self._state.pages.append(event)
        if event["event_action"] == "trigger" and self._state.incidents_from_pages and isinstance(payload, dict):
            already = any(i.incident_key == key and i.status != "resolved" for i in self._state.incidents.values())
            if not already:
                incident_id = f"PINCPAGE{self._state.next_number}"
                self._state.next_number += 1
                self._state.incidents[incident_id] = _Incident(
                    incident_id, payload["summary"], "PSVCEVENTS", "high", "triggered", key, self._now()
                )
        return 202, json.dumps({"status": "success", "message": "Event processed", "dedup_key": key})
