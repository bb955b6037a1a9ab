"""An Opsgenie stand-in on loopback, for tests and the demo: the REST paths Breakglass uses::

    with OpsgenieStandIn("genie-key") as og:
        og.set_on_call("sched-1", ["ada@example.com"])
        og.open_incident("inc-1", "Database down", service="svc-db", priority="P1")
        client = OpsgenieOnCall("genie-key", api_url=og.url, web_url="https://acme.app.opsgenie.com")

It answers in Opsgenie's documented JSON shapes: ``GET /v2/schedules/{id}/on-calls`` (``flat=true`` gives
``data.onCallRecipients``; an unknown schedule is 404), ``GET /v1/incidents`` (``query=status:open``,
``offset``/``limit``, ``paging.next`` while there are more), ``POST /v2/alerts`` (202 with a ``requestId``; an
alias that is already open adds to that alert instead of making another) and ``GET /v2/alerts/requests/{id}``.
Calls need ``Authorization: GenieKey <key>`` (401 otherwise). ``processing_lag(True)`` answers request statuses
404, as Opsgenie does before it has processed a request. ``outage(True)`` answers 503 to everything,
``malformed(True)`` answers 200 with a body that is not what Opsgenie documents, ``next_links_to(base)`` points
``paging.next`` at another host, and after ``stop()`` calls fail to connect (``url`` still names the old address).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from bot.clock import Clock, SystemClock
from bot.devtools.loopback import LoopbackService

PRIORITIES = ("P1", "P2", "P3", "P4", "P5")


@dataclass
class _Incident:
    id: str
    message: str
    services: list[str]
    priority: str
    status: str
    created_at: str


@dataclass
class _Alert:
    id: str
    alias: str
    status: str = "open"
    count: int = 1


@dataclass
class _State:
    on_call: dict[str, list[str]] = field(default_factory=dict)
    incidents: dict[str, _Incident] = field(default_factory=dict)
    alerts: list[_Alert] = field(default_factory=list)
    requests: dict[str, tuple[str, str]] = field(default_factory=dict)  # request id -> (alert id, alias)
    pages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    down: bool = False
    malformed_body: str | None = None
    processing_lag: bool = False
    next_base: str | None = None


class OpsgenieStandIn(LoopbackService):
    """Single use: ``start()`` once, ``stop()`` once (or use it as a context manager)."""

    name = "opsgenie stand-in"

    def __init__(self, key: str, *, page_limit: int = 100, clock: Clock | None = None) -> None:
        self.key = key
        self.page_limit = page_limit  # the Incident API lists at most 100 an answer; smaller makes clients page
        self.clock = clock or SystemClock()
        self._state = _State()
        self._lock = threading.Lock()
        super().__init__()

    @property
    def url(self) -> str:
        """The API base (``api_url``)."""
        return super().url

    # -- scripting ------------------------------------------------------------------------------------------------

    def set_on_call(self, schedule: str, emails: list[str]) -> None:
        """Who is on call for ``schedule`` from now on (an empty list: nobody; a schedule never set is unknown)."""
        with self._lock:
            self._state.on_call[schedule] = list(emails)

    def open_incident(self, id: str, title: str, *, service: str | Sequence[str] = (), priority: str = "P3") -> None:
        """An open incident; ``service`` is the impacted service id, or several."""
        services = [service] if isinstance(service, str) else list(service)
        with self._lock:
            self._state.incidents[id] = _Incident(id, title, services, priority, "open", self._now())

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

    def processing_lag(self, on: bool = True) -> None:
        """While on, request statuses answer 404: the alert exists but its id is not known yet."""
        with self._lock:
            self._state.processing_lag = on

    def next_links_to(self, base: str | None) -> None:
        """``paging.next`` links point at ``base`` instead of this stand-in (None: back to this one)."""
        with self._lock:
            self._state.next_base = base

    # -- what was received --------------------------------------------------------------------------------------

    @property
    def pages(self) -> list[dict[str, Any]]:
        """The bodies of the alerts created with POST /v2/alerts that were accepted."""
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

    def alert_id(self, alias: str) -> str | None:
        """The id of the open alert with ``alias``, if any."""
        with self._lock:
            return next((a.id for a in self._state.alerts if a.alias == alias and a.status == "open"), None)

    def alert_count(self, alias: str) -> int:
        """How many times the open alert with ``alias`` was created (Opsgenie's dedup count), 0 if none."""
        with self._lock:
            return next((a.count for a in self._state.alerts if a.alias == alias and a.status == "open"), 0)

    # -- serving --------------------------------------------------------------------------------------------------

    def _now(self) -> str:
        return self.clock.now().isoformat().replace("+00:00", "Z")

    def _reply(self, status: int, body: dict[str, Any]) -> tuple[int, str]:
        return status, json.dumps({**body, "took": 0.01, "requestId": str(uuid.uuid4())})

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, str]:
        """(status, JSON text) for one call."""
        url = urlsplit(target)
        params = parse_qs(url.query, keep_blank_values=True)
        parts = [unquote(part) for part in url.path.split("/")]
        with self._lock:
            state = self._state
            state.calls.append((method, url.path, params))
            if state.down:
                return self._reply(503, {"message": "Service Unavailable"})
            if state.malformed_body is not None:
                return 200, state.malformed_body
            if headers.get("authorization") != f"GenieKey {self.key}":
                return self._reply(401, {"message": "Could not authenticate"})
            if method == "GET" and len(parts) == 5 and parts[1:3] == ["v2", "schedules"] and parts[4] == "on-calls":
                return self._on_calls(parts[3], params)
            if method == "GET" and url.path == "/v1/incidents":
                return self._incidents(params)
            if method == "POST" and url.path == "/v2/alerts":
                return self._create_alert(raw)
            if method == "GET" and len(parts) == 5 and parts[1:4] == ["v2", "alerts", "requests"]:
                return self._request_status(parts[4])
            return self._reply(404, {"message": "Not Found"})

    def _on_calls(self, schedule: str, params: dict[str, list[str]]) -> tuple[int, str]:
        if params.get("scheduleIdentifierType", ["id"])[0] != "id" or schedule not in self._state.on_call:
            return self._reply(404, {"message": f"No schedule exists with identifier [{schedule}]"})
        emails = self._state.on_call[schedule]
        data: dict[str, Any] = {"_parent": {"id": schedule, "name": schedule, "enabled": True}}
        if params.get("flat", ["false"])[0] == "true":
            data["onCallRecipients"] = list(emails)
        else:
            data["onCallParticipants"] = [{"id": f"user-{n}", "name": e, "type": "user"} for n, e in enumerate(emails)]
        return self._reply(200, {"data": data})

    def _incidents(self, params: dict[str, list[str]]) -> tuple[int, str]:
        query = params.get("query", [""])[0].strip()
        status = query.removeprefix("status:") if query.startswith("status:") else None
        if query and status is None:
            return self._reply(422, {"message": "This stand-in understands only query=status:<status>"})
        try:
            offset = max(0, int(params.get("offset", ["0"])[0]))
            limit = min(self.page_limit, max(1, int(params.get("limit", ["20"])[0])))
        except ValueError:
            return self._reply(422, {"message": "offset and limit must be numbers"})
        matching = [i for i in self._state.incidents.values() if status is None or i.status == status]
        data = [
            {
                "id": i.id,
                "tinyId": str(n),
                "message": i.message,
                "status": i.status,
                "tags": [],
                "createdAt": i.created_at,
                "updatedAt": i.created_at,
                "priority": i.priority,
                "ownerTeam": "",
                "responders": [],
                "extraProperties": {},
                "impactedServices": list(i.services),
                "links": {"web": f"{self.url}/incident/detail/{quote(i.id)}", "api": f"{self.url}/v1/incidents/{i.id}"},
            }
            for n, i in enumerate(matching[offset : offset + limit], start=offset + 1)
        ]
        base = self._state.next_base or self.url

        def link(at: int) -> str:
            return f"{base}/v1/incidents?" + urlencode({"query": query, "offset": at, "limit": limit})

        paging = {"first": link(0), "last": link(max(0, (len(matching) - 1) // limit * limit))}
        if offset + limit < len(matching):
            paging["next"] = link(offset + limit)
        return self._reply(200, {"data": data, "paging": paging})

    def _create_alert(self, raw: bytes) -> tuple[int, str]:
        try:
            alert = json.loads(raw)
        except ValueError:
            return self._reply(400, {"message": "Body is not JSON"})
        if not isinstance(alert, dict):
            return self._reply(422, {"message": "Request body must be an object"})
        message, alias = alert.get("message"), alert.get("alias")
        if not isinstance(message, str) or not 0 < len(message) <= 130:
            return self._reply(422, {"message": "Message must be 1 to 130 characters"})
        if alias is not None and (not isinstance(alias, str) or len(alias) > 512):
            return self._reply(422, {"message": "Alias can be at most 512 characters"})
        if alert.get("priority", "P3") not in PRIORITIES:
            return self._reply(422, {"message": "Priority should be one of P1..P5"})
        responders = alert.get("responders", [])
        if not isinstance(responders, list) or not all(
            isinstance(r, dict) and r.get("type") in ("team", "user", "escalation", "schedule") for r in responders
        ):
            return self._reply(422, {"message": "Responders are invalid"})
        self._state.pages.append(alert)
        alias = alias or str(uuid.uuid4())
        existing = next((a for a in self._state.alerts if a.alias == alias and a.status == "open"), None)
        if existing is None:
            existing = _Alert(str(uuid.uuid4()), alias)
            self._state.alerts.append(existing)
        else:
            existing.count += 1  # Opsgenie de-duplicates an open alias instead of opening another alert
        request_id = str(uuid.uuid4())
        self._state.requests[request_id] = (existing.id, alias)
        return 202, json.dumps({"result": "Request will be processed", "took": 0.01, "requestId": request_id})

    def _request_status(self, request_id: str) -> tuple[int, str]:
        known = self._state.requests.get(request_id)
        if known is None or self._state.processing_lag:
            return self._reply(404, {"message": "Request not found. It might not be processed, yet."})
        alert_id, alias = known
        data = {
            "success": True,
            "action": "Create",
            "processedAt": self._now(),
            "integrationId": "standin-integration",
            "isSuccess": True,
            "status": "Created alert",
            "alertId": alert_id,
            "alias": alias,
        }
        return self._reply(200, {"data": data})
