"""A local stand-in for the Slack Web API, for the tests and for `breakglass demo`.

Point a real ``slack_sdk.WebClient`` at it (``WebClient(token=..., base_url=standin.api_url)``): it
answers the few Web API methods Breakglass uses with Slack-shaped JSON, keeps the posted messages so
they can be updated, records every call, and can inject HTTP faults (500, 502, 503, 429 + Retry-After) and slow
answers (to make a client time out), connections dropped after the call was carried out (``drop_next``), and a
whole outage (``outage``). Posted messages keep their ``metadata``, and ``conversations.history`` returns them;
replies in a thread (``thread_ts``) are kept too and read with ``thread``. Modals opened with ``views.open`` are kept
(``views``), each with the trigger id it was opened with: a trigger is used once, and one issued by
``issue_trigger`` knows whose click it came from. ``views.update`` replaces a modal (``current_view``) and
``views.publish`` a person's Home tab (``home``); every view is held to Slack's size limits (``view_problem``).
It also serves ``response_url`` endpoints
(``standin.response_url(name)``) and records what is posted to them.

Bodies are accepted form-encoded or as JSON, as slack_sdk sends them (multipart uploads are not
supported); the token is taken from ``Authorization: Bearer ...`` or from a ``token`` field.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

T = TypeVar("T")

TEAM_ID = "T0TEST"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
JSON_FIELDS = ("blocks", "attachments", "metadata", "view")  # fields slack_sdk sends as JSON strings in forms
APP_ID = "A0BREAKGLASS"
WORKSPACE_URL = "https://breakglass-test.slack.com/"
FAULT_STATUSES = (429, 500, 502, 503)
DROPPED = -1  # _dispatch's status for a call whose connection is closed without an answer


@dataclass(frozen=True)
class ApiCall:
    """One Web API call as received (``at``: when it arrived). ``failed``: answered with an injected HTTP fault;
    ``error``: answered ``{"ok": false, "error": ...}``."""

    method: str
    args: dict[str, Any]
    at: float  # time.monotonic()
    failed: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.error is None


@dataclass
class Message:
    """Current state of a message posted with chat.postMessage."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    updates: int = 0
    metadata: dict[str, Any] | None = None
    broadcast: bool = False  # a thread reply also shown in the channel (reply_broadcast)

    @property
    def in_channel(self) -> bool:
        """Whether the channel itself shows it (its history lists it): a top-level message or a broadcast reply."""
        return self.thread_ts is None or self.thread_ts == self.ts or self.broadcast


@dataclass(frozen=True)
class OpenedView:
    """A modal opened with views.open: the view as Slack answered it (with its ``id``, ``hash`` and empty
    ``state``), the trigger it was opened with, and whose click that trigger came from (None: not known here)."""

    id: str
    trigger_id: str
    user: str | None
    view: dict[str, Any]
    at: float  # time.monotonic()


def dm_channel(channel: str) -> str:
    """Posting to a user id goes to the DM with that user; its channel id here is "D" + user id."""
    return "D" + channel if channel[:1] in ("U", "W") else channel


# Slack's limits on a view (https://api.slack.com/reference/surfaces/views, .../block-kit/blocks): what it refuses
# with invalid_arguments, checked here so that a page too large for Slack fails under test as it would for real.
MAX_VIEW_BLOCKS = 100
MAX_METADATA = 3000
MAX_SECTION_TEXT = 3000
MAX_TITLE = 24
MAX_BUTTON_TEXT = 75
MAX_OPTIONS = 100


def view_problem(view: dict[str, Any]) -> str | None:
    """Why Slack would refuse this view (its error code), or None."""
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or len(blocks) > MAX_VIEW_BLOCKS:
        return "invalid_arguments"
    if len(str(view.get("private_metadata") or "")) > MAX_METADATA:
        return "invalid_arguments"
    for key in ("title", "submit", "close"):
        text = view.get(key)
        if isinstance(text, dict) and len(str(text.get("text") or "")) > MAX_TITLE:
            return "invalid_arguments"
    for block in blocks:
        if not isinstance(block, dict):
            return "invalid_arguments"
        text = block.get("text")
        if isinstance(text, dict) and len(str(text.get("text") or "")) > MAX_SECTION_TEXT:
            return "invalid_arguments"
        elements = [*(block.get("elements") or []), *([block["accessory"]] if block.get("accessory") else [])]
        if block.get("element"):
            elements.append(block["element"])
        for element in elements:
            label = element.get("text") if isinstance(element, dict) else None
            if (
                element.get("type") == "button"
                and isinstance(label, dict)
                and len(str(label.get("text") or "")) > MAX_BUTTON_TEXT
            ):
                return "invalid_arguments"
            if len(element.get("options") or []) > MAX_OPTIONS:
                return "invalid_arguments"
    return None


def _error(code: str) -> dict[str, Any]:
    return {"ok": False, "error": code}


def _parse_args(content_type: str, body: bytes, query: str) -> dict[str, Any]:
    """Request arguments from the query string and a form or JSON body (raises ValueError on bad JSON)."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    text = body.decode("utf-8")
    if "json" in content_type:
        args.update(json.loads(text) if text else {})
    else:
        args.update(parse_qsl(text, keep_blank_values=True))
    for key in JSON_FIELDS:
        value = args.get(key)
        if isinstance(value, str) and value.startswith(("[", "{")):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


class _Server(ThreadingHTTPServer):
    """Keeps connections open between calls, as Slack does; closes them all when stopped, so a client that kept one
    finds Slack gone (refused), not a server that lingers in a thread."""

    daemon_threads = True
    standin: SlackStandIn

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: a client's connection serves many calls
    disable_nagle_algorithm = True  # headers and body go out in two writes: without it the body waits for an ACK

    def log_message(self, format: str, *args: Any) -> None:  # silence http.server's request log
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        standin = self.server.standin
        if url.path.startswith("/api/"):
            try:
                args = _parse_args(self.headers.get("Content-Type", ""), body, url.query)
            except ValueError:
                self._send(400, json.dumps(_error("invalid_json")).encode(), "application/json")
                return
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            token = args.pop("token", None) or bearer
            status, payload, headers, stall = standin._dispatch(url.path.removeprefix("/api/"), args, token)
            if status == DROPPED:  # carried out and recorded; the client never hears back
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if stall:
                time.sleep(stall)  # the call is done and recorded; only the answer is late
            self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)
        elif url.path.startswith("/respond/"):
            standin._record_response(unquote(url.path.removeprefix("/respond/")), body)
            self._send(200, b"ok", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        with contextlib.suppress(ConnectionError):  # the client gave up waiting (a stalled answer)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)


class SlackStandIn:
    """Slack Web API stand-in on 127.0.0.1 (ephemeral port), served from a daemon thread."""

    def __init__(
        self,
        token: str = "xoxb-test-token",
        users: dict[str, dict[str, Any]] | None = None,
        groups: dict[str, list[str]] | None = None,
        port: int = 0,  # a fixed port lets a test bring Slack "back" at the address a bot was already given
    ) -> None:
        self.token = token
        self.port = port
        self._users = {uid: dict(info) for uid, info in (users or {}).items()}
        self._groups = {gid: list(members) for gid, members in (groups or {}).items()}
        self._cond = threading.Condition(threading.RLock())
        self._calls: list[ApiCall] = []
        self._messages: dict[tuple[str, str], Message] = {}
        self._responses: list[tuple[str, Any]] = []
        self._faults: dict[str, list[tuple[int, int, str | None]]] = {}
        self._errors: dict[str, list[str]] = {}
        self._stalls: dict[str, list[float]] = {}
        self._drops: dict[str, int] = {}
        self._down = False
        self._down_methods: tuple[str, ...] | None = None
        self._ts_seq = 0
        self._views: list[OpenedView] = []
        self._triggers: dict[str, str] = {}  # trigger id -> the user whose click it came from
        self._used_triggers: set[str] = set()
        self._homes: dict[str, list[dict[str, Any]]] = {}  # user id -> every Home tab published for them, oldest first
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SlackStandIn:
        if self._server is None:
            self._server = _Server(("127.0.0.1", self.port), _Handler)
            self._server.standin = self
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="slack-standin",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def close_connections(self) -> None:
        """Close every connection clients keep open, as Slack's edge does to one left idle; the server stays up."""
        if self._server is not None:
            self._server.close_connections()

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("SlackStandIn is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """What ``WebClient(base_url=...)`` takes (ends with a slash)."""
        return self.base_url + "/api/"

    def response_url(self, name: str) -> str:
        """A ``response_url`` to put in payloads; what is POSTed there shows up in ``responses(name)``."""
        return f"{self.base_url}/respond/{name}"

    # -- directory and faults -------------------------------------------------------------------

    def add_user(self, id: str, name: str, email: str | None = None, real_name: str | None = None) -> None:
        with self._cond:
            self._users[id] = {"name": name, "real_name": real_name or name, "email": email}

    def set_group(self, group_id: str, members: list[str]) -> None:
        with self._cond:
            self._groups[group_id] = list(members)

    def issue_trigger(self, user: str) -> str:
        """A trigger id for a click by ``user`` (put it in the payload): a view opened with it is ``user``'s."""
        trigger = f"{secrets.randbelow(10**11)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"
        with self._cond:
            self._triggers[trigger] = user
        return trigger

    def fail_next(
        self, method: str, n: int = 1, status: int = 500, retry_after: int = 1, channel: str | None = None
    ) -> None:
        """The next ``n`` calls of ``method`` (to ``channel`` only, when given) answer HTTP ``status`` (500, 502,
        503, or 429 with Retry-After) without acting, as Slack does."""
        if status not in FAULT_STATUSES:
            raise ValueError(f"status must be one of {FAULT_STATUSES}")
        with self._cond:
            self._faults.setdefault(method, []).extend([(status, retry_after, channel)] * n)

    def error_next(self, method: str, code: str, n: int = 1) -> None:
        """The next ``n`` calls of ``method`` answer HTTP 200 with ``{"ok": false, "error": code}`` without acting,
        as Slack does for errors it does not mean to be retried (``fatal_error``, ``internal_error``)."""
        with self._cond:
            self._errors.setdefault(method, []).extend([code] * n)

    def stall_next(self, method: str, n: int = 1, seconds: float = 1.0) -> None:
        """The next ``n`` calls of ``method`` are acted on and recorded at once, but answered only ``seconds``
        later: a client with a shorter timeout gives up on a call that Slack did carry out."""
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        with self._cond:
            self._stalls.setdefault(method, []).extend([seconds] * n)

    def drop_next(self, method: str, n: int = 1) -> None:
        """The next ``n`` calls of ``method`` are carried out and recorded, then the connection is closed without an
        answer: the client cannot tell whether Slack acted."""
        with self._cond:
            self._drops[method] = self._drops.get(method, 0) + n

    def outage(self, down: bool = True, methods: tuple[str, ...] | None = None) -> None:
        """While down, every Web API call (or only those of ``methods``) answers 503 without acting, as during a Slack
        incident."""
        with self._cond:
            self._down = down
            self._down_methods = methods

    def clear_faults(self) -> None:
        """Forget pending faults, stalls, drops and an outage: Slack is back (calls and messages are kept)."""
        with self._cond:
            self._faults.clear()
            self._errors.clear()
            self._stalls.clear()
            self._drops.clear()
            self._down = False

    # -- inspection -----------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[ApiCall]:
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def messages(self, channel: str | None = None, *, replies: bool = False) -> list[Message]:
        """The messages a channel shows (thread replies too with ``replies``), oldest first."""
        with self._cond:
            wanted = channel and dm_channel(channel)
            return [
                replace(m)
                for m in self._messages.values()
                if (wanted is None or m.channel == wanted) and (replies or m.in_channel)
            ]

    def message(self, channel: str, ts: str) -> Message | None:
        with self._cond:
            found = self._messages.get((dm_channel(channel), ts))
            return replace(found) if found else None

    def posts_to(self, channel: str) -> list[ApiCall]:
        """Successful chat.postMessage calls to ``channel`` (a user id and its DM channel are the same)."""
        wanted = dm_channel(channel)
        return [c for c in self.calls("chat.postMessage") if c.ok and dm_channel(c.args["channel"]) == wanted]

    def dms(self, user: str) -> list[ApiCall]:
        return self.posts_to(dm_channel(user))

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies posted in the thread of message ``ts`` (not the message itself), oldest first."""
        with self._cond:
            wanted = dm_channel(channel)
            replies = [m for m in self._messages.values() if m.channel == wanted and m.thread_ts == ts and m.ts != ts]
            return [replace(m) for m in sorted(replies, key=lambda m: m.ts)]

    def views(self, user: str | None = None) -> list[OpenedView]:
        """Modals opened so far (for ``user``'s clicks only, when given), oldest first."""
        with self._cond:
            return [v for v in self._views if user is None or v.user == user]

    def view_for(self, trigger_id: str) -> OpenedView | None:
        """The modal opened with ``trigger_id``, if one was."""
        with self._cond:
            return next((v for v in self._views if v.trigger_id == trigger_id), None)

    def current_view(self, view_id: str) -> dict[str, Any] | None:
        """The modal with ``view_id`` as it stands now (after any ``views.update``)."""
        with self._cond:
            return next((v.view for v in reversed(self._views) if v.id == view_id), None)

    def home(self, user: str) -> dict[str, Any] | None:
        """The Home tab last published for ``user`` (``views.publish``), or None."""
        with self._cond:
            pages = self._homes.get(user)
            return pages[-1] if pages else None

    def homes(self, user: str) -> list[dict[str, Any]]:
        """Every Home tab published for ``user``, oldest first."""
        with self._cond:
            return list(self._homes.get(user) or [])

    def ephemerals(self, user: str | None = None) -> list[ApiCall]:
        return [c for c in self.calls("chat.postEphemeral") if c.ok and (user is None or c.args.get("user") == user)]

    def responses(self, name: str | None = None) -> list[Any]:
        """Bodies POSTed to response URLs (parsed JSON; the raw text if not JSON)."""
        with self._cond:
            return [body for n, body in self._responses if name is None or n == name]

    def named_responses(self) -> list[tuple[str, Any]]:
        """(name, body) of every POST to a response URL, oldest first."""
        with self._cond:
            return list(self._responses)

    def wait_for(self, predicate: Callable[[SlackStandIn], T], timeout: float = 30.0) -> T:
        """Wait until ``predicate(self)`` is truthy and return its value; TimeoutError with a dump if not.

        Returns as soon as the predicate holds, so the long default costs nothing unless the test is failing; a
        short one would fail a passing test on a busy machine.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate(self)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout}s\n{self.dump()}")
                self._cond.wait(min(remaining, 0.1))
            return result

    def dump(self, last: int = 25) -> str:
        """A readable summary of the recent calls and responses."""
        with self._cond:
            calls, responses = self._calls[-last:], self._responses[-last:]
            lines = [f"last {len(calls)} of {len(self._calls)} Slack API calls:"]
            for c in calls:
                flag = " [HTTP fault]" if c.failed else f" -> {c.error}" if c.error else ""
                lines.append(f"  {c.at:.3f} {c.method}{flag} {json.dumps(c.args, default=str)[:300]}")
            lines.append(f"{len(self._views)} views opened: {[v.view.get('callback_id') for v in self._views]}")
            lines.append(f"{len(self._responses)} response_url posts:")
            lines += [f"  {n}: {json.dumps(body, default=str)[:300]}" for n, body in responses]
            return "\n".join(lines)

    def clear(self) -> None:
        """Forget calls, messages, responses and pending faults (the directory is kept)."""
        with self._cond:
            self._calls.clear()
            self._messages.clear()
            self._responses.clear()
            self._views.clear()
            self._homes.clear()
            self._used_triggers.clear()
            self._faults.clear()
            self._errors.clear()
            self._stalls.clear()
            self._drops.clear()
            self._down = False

    # -- request handling (called from server threads) ------------------------------------------

    def _record(self, call: ApiCall) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _record_response(self, name: str, body: bytes) -> None:
        text = body.decode("utf-8")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        with self._cond:
            self._responses.append((name, parsed))
            self._cond.notify_all()

    def _dispatch(self, method: str, args: dict[str, Any], token: str) -> tuple[int, dict, dict[str, str], float]:
        """Answer one API call: (HTTP status, JSON body, extra headers, seconds to wait before answering)."""
        with self._cond:
            now = time.monotonic()
            stalls = self._stalls.get(method)
            stall = stalls.pop(0) if stalls else 0.0
            if self._down and (self._down_methods is None or method in self._down_methods):
                self._record(ApiCall(method, args, now, failed=True))
                return 503, _error("service_unavailable"), {}, 0.0
            faults = self._faults.get(method) or []
            fault = next((f for f in faults if f[2] is None or f[2] == args.get("channel")), None)
            if fault is not None:
                faults.remove(fault)
                status, retry_after, _ = fault
                self._record(ApiCall(method, args, now, failed=True))
                if status == 429:
                    return 429, _error("ratelimited"), {"Retry-After": str(retry_after)}, stall
                return status, _error("internal_error" if status == 500 else "service_unavailable"), {}, stall
            errors = self._errors.get(method)
            if errors:
                result = _error(errors.pop(0))
            elif token != self.token:
                result = _error("invalid_auth")
            else:
                handler = getattr(self, "_api_" + method.replace(".", "_"), None)
                result = handler(args) if handler else _error("unknown_method")
            self._record(ApiCall(method, args, now, error=None if result["ok"] else result["error"]))
            if self._drops.get(method):
                self._drops[method] -= 1
                return DROPPED, {}, {}, 0.0
            return 200, result, {}, stall

    def _next_ts(self) -> str:
        self._ts_seq += 1
        micros = self._ts_seq * 100
        return f"{1_700_000_000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    @staticmethod
    def _message_json(m: Message, metadata: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "text": m.text,
            "blocks": m.blocks,
        }
        body |= {"metadata": m.metadata} if metadata and m.metadata else {}
        return body | {"ts": m.ts} | ({"thread_ts": m.thread_ts} if m.thread_ts else {})

    def _api_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": WORKSPACE_URL,
            "team": "Breakglass Test",
            "team_id": TEAM_ID,
            "user": "breakglass",
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return _error("channel_not_found")
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return _error("no_text")
        text, blocks, thread_ts = args.get("text") or "", args.get("blocks") or [], args.get("thread_ts")
        metadata = args.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and metadata.get("event_type")):
            return _error("invalid_metadata_format")
        broadcast = str(args.get("reply_broadcast")).lower() in ("1", "true") and bool(thread_ts)
        m = Message(
            dm_channel(args["channel"]),
            self._next_ts(),
            text,
            blocks,
            thread_ts or None,
            metadata=metadata,
            broadcast=broadcast,
        )
        self._messages[(m.channel, m.ts)] = m
        return {"ok": True, "channel": m.channel, "ts": m.ts, "message": self._message_json(m)}

    def _api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        m = self._messages.get((dm_channel(args.get("channel") or ""), args.get("ts") or ""))
        if m is None:
            return _error("message_not_found")
        if "text" in args:
            m.text = args["text"] or ""
        if "blocks" in args:
            m.blocks = args["blocks"] or []
        m.updates += 1
        message = self._message_json(m)
        return {"ok": True, "channel": m.channel, "ts": m.ts, "text": m.text, "message": message}

    def _api_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Newest first, ``limit`` at a time, paged by ``cursor``; metadata only with ``include_all_metadata``."""
        channel = args.get("channel") or ""
        if channel[:1] in ("U", "W"):
            return _error("channel_not_found")  # history is read from a conversation id, never a user id
        # As Slack's history: what the channel shows, not the replies inside threads.
        shown = (m for m in self._messages.values() if m.channel == channel and m.in_channel)
        return self._paged(sorted(shown, key=lambda m: m.ts)[::-1], args)

    def _api_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """The thread of message ``ts``: the parent first, then its replies, oldest first, ``limit`` at a time."""
        channel, ts = args.get("channel") or "", args.get("ts") or ""
        if channel[:1] in ("U", "W"):
            return _error("channel_not_found")
        parent = self._messages.get((channel, ts))
        if parent is None:
            return _error("thread_not_found")
        replies = (m for m in self._messages.values() if m.channel == channel and m.thread_ts == ts and m.ts != ts)
        return self._paged([parent, *sorted(replies, key=lambda m: m.ts)], args)

    def _paged(self, messages: list[Message], args: dict[str, Any]) -> dict[str, Any]:
        """One page of ``messages`` as Slack's conversation reads answer: ``limit`` from ``cursor``."""
        try:
            limit = max(1, min(int(args.get("limit") or 100), 999))
            start = int(args.get("cursor") or 0)
        except ValueError:
            return _error("invalid_cursor")
        with_metadata = str(args.get("include_all_metadata")).lower() in ("1", "true")
        page = messages[start : start + limit]
        more = start + limit < len(messages)
        answer: dict[str, Any] = {"ok": True, "messages": [self._message_json(m, with_metadata) for m in page]}
        answer |= {"has_more": more, "response_metadata": {"next_cursor": str(start + limit) if more else ""}}
        return answer

    def _api_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = dm_channel(args.get("channel") or ""), args.get("message_ts") or ""
        if (channel, ts) not in self._messages:
            return _error("message_not_found")
        permalink = f"{WORKSPACE_URL}archives/{channel}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": channel, "permalink": permalink}

    def _api_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger, view = args.get("trigger_id") or "", args.get("view")
        if not isinstance(trigger, str) or not trigger:
            return _error("invalid_trigger_id")
        if trigger in self._used_triggers:
            return _error("exchanged_trigger_id")
        if not isinstance(view, dict) or view.get("type") != "modal" or not isinstance(view.get("title"), dict):
            return _error("invalid_arguments")
        if problem := view_problem(view):
            return _error(problem)
        self._used_triggers.add(trigger)
        view_id = f"V{len(self._views) + 1:010d}"
        opened = view | {
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "private_metadata": view.get("private_metadata") or "",
            "callback_id": view.get("callback_id") or "",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        self._views.append(OpenedView(view_id, trigger, self._triggers.get(trigger), opened, time.monotonic()))
        return {"ok": True, "view": opened}

    def _api_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id, view, hash_ = args.get("view_id") or "", args.get("view"), args.get("hash")
        if not isinstance(view, dict) or view.get("type") != "modal" or not isinstance(view.get("title"), dict):
            return _error("invalid_arguments")
        if problem := view_problem(view):
            return _error(problem)
        for index in range(len(self._views) - 1, -1, -1):
            opened = self._views[index]
            if opened.id != view_id:
                continue
            if hash_ and hash_ != opened.view.get("hash"):
                return _error("hash_conflict")  # someone else updated it since the caller read it
            updated = (
                opened.view
                | view
                | {
                    "id": view_id,
                    "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
                    "private_metadata": view.get("private_metadata") or "",
                    "callback_id": view.get("callback_id") or "",
                    "state": opened.view.get("state") or {"values": {}},
                }
            )
            self._views.append(replace(opened, view=updated, at=time.monotonic()))
            return {"ok": True, "view": updated}
        return _error("not_found")

    def _api_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user, view = args.get("user_id") or "", args.get("view")
        if user not in self._users and not str(user).startswith(("U", "W")):
            return _error("user_not_found")
        if not isinstance(view, dict) or view.get("type") != "home":
            return _error("invalid_arguments")
        if problem := view_problem(view):
            return _error(problem)
        pages = self._homes.setdefault(user, [])
        if args.get("hash") and pages and args["hash"] != pages[-1].get("hash"):
            return _error("hash_conflict")
        view_id = pages[-1]["id"] if pages else f"VH{len(self._homes):09d}"
        published = view | {
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "private_metadata": view.get("private_metadata") or "",
            "callback_id": view.get("callback_id") or "",
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        pages.append(published)
        return {"ok": True, "view": published}

    def _api_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return _error("channel_not_found")
        if not args.get("user"):
            return _error("user_not_found")
        return {"ok": True, "message_ts": self._next_ts()}

    def _api_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            return _error("users_list_not_supplied")
        channel = dm_channel(users[0]) if len(users) == 1 else "G" + "".join(sorted(users))
        return {"ok": True, "channel": {"id": channel}}

    def _api_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = args.get("user") or ""
        info = self._users.get(uid)
        if info is None:
            return _error("user_not_found")
        return {"ok": True, "user": self._user_json(uid, info)}

    def _api_users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args.get("email") or "").strip().lower()
        for uid, info in self._users.items():
            if email and str(info.get("email") or "").lower() == email:
                return {"ok": True, "user": self._user_json(uid, info)}
        return _error("users_not_found")

    @staticmethod
    def _user_json(uid: str, info: dict[str, Any]) -> dict[str, Any]:
        name = info.get("name") or uid.lower()
        real_name = info.get("real_name") or name
        profile = {"real_name": real_name, "display_name": name}
        if info.get("email"):
            profile["email"] = info["email"]
        user = {"id": uid, "team_id": TEAM_ID, "name": name, "real_name": real_name, "profile": profile}
        return user | {"deleted": False, "is_bot": False}

    def _api_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        members = self._groups.get(args.get("usergroup") or "")
        if members is None:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(members)}
