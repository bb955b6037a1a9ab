"""A bounded fuzz of the real HTTP endpoint: a few hundred requests, signed and not, well formed and not.

What each kind of request may be answered with:

- signed, fresh, well formed: 200 (a /breakglass command, a click on one of our buttons, a replay, another
  workspace's request) or 404 (a command, action or payload type this app does not handle: Bolt's answer);
- signed, fresh, but not a payload Slack sends (bad JSON, a payload that is not an object, a click without
  actions or user, ids that are not Slack ids, a response_url that is not http(s), bytes that are not UTF-8): 400;
- unsigned, badly signed, or signed more than five minutes away from now (past or future): 401;
- over 256 KB: 413;
- another method or path: 404; GET or HEAD /healthz: 200.

Never a 5xx, never a hang (every request has a 10 s timeout), never a crash in a handler (no ERROR in the logs).
Afterwards: /healthz is OK, the database holds its invariants, no message the bot sent carries a mention or link
that came from the fuzz (it plants canaries: <@U0CANARY>, <!subteam^S0CANARY>, <#C0CANARY>, links, broadcasts),
every message fits Slack's limits, and the bot still serves a real request from ask to grant.

The choices come from a seeded generator: set BREAKGLASS_FUZZ_SEED to replay a run (the seed is printed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import re
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from sqlalchemy import select

from bot.devtools.local_bot import PEOPLE, SIGNING_SECRET, LocalBot
from bot.devtools.slack_requests import TEAM_ID, block_action, slash_command
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.services.deps import Tuning
from bot.slack.ids import ActionId
from bot.store.models import AuditEvent, Request
from tests.e2e.helpers import ALICE, BOB, CAROL, DAVE, view
from tests.slack.test_rendering_properties import FRAGMENTS, slack_problems

SEED = int(os.environ.get("BREAKGLASS_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
REQUESTS = 300
TIMEOUT = 10.0
MAX_BODY = 256 * 1024
EVE = "U0EVE"  # signs in from the workspace but is in no directory, group or policy
CANARIES = [
    "<@U0CANARY>",
    "<@U0CANARY|alice>",
    "<!subteam^S0CANARY>",
    "<!subteam^S0CANARY|@leads>",
    "<#C0CANARY>",
    "<http://canary.example|Approve>",
    "<https://canary.example>",
    "<mailto:canary@example.com|x>",
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!date^1700000000^{date}|canary>",
    "@here",
    "@channel",
    "@everyone",
]
INTERMEDIATE = {Status.APPROVED, Status.GRANTING, Status.REVOKING}
ALLOWED_TOKEN = re.compile(
    r"<@[UW][A-Z0-9]{2,20}>|<!subteam\^S[A-Z0-9]{2,20}>|<!date\^\d+\^\{date_short_pretty\} at \{time\}\|[^<>|]*>"
    r"|<https://breakglass-test\.slack\.com/archives/[A-Z0-9]+/p\d+\|Open request #\d+>"  # the approval message's link
)
BROADCAST = re.compile(r"@(?:here|channel|everyone)\b", re.IGNORECASE)


@dataclass
class Sent:
    label: str
    expected: frozenset[int]
    status: int | None = None
    body: str = ""


@dataclass
class Fuzz:
    """Makes and sends the requests; remembers what it sent and what came back."""

    bot: LocalBot
    rng: random.Random
    sent: list[Sent] = field(default_factory=list)
    actors: set[str] = field(default_factory=set)
    last_signed: tuple[bytes, dict[str, str], Sent] | None = None
    names: Iterator[int] = field(default_factory=lambda: iter(range(1_000_000)))

    # -- what people type ------------------------------------------------------------------------------------

    def hostile_text(self) -> str:
        pieces = []
        for _ in range(self.rng.randint(1, 8)):
            roll = self.rng.random()
            if roll < 0.35:
                pieces.append(self.rng.choice(CANARIES))
            elif roll < 0.7:
                pieces.append(self.rng.choice(FRAGMENTS))
            elif roll < 0.9:
                pieces.append("".join(chr(self._code_point()) for _ in range(self.rng.randint(1, 12))))
            else:
                pieces.append(self.rng.choice(FRAGMENTS + CANARIES) * self.rng.randint(50, 800))
        return re.sub("[\ud800-\udfff]", "\ufffd", "".join(pieces))  # a form body is UTF-8: no lone surrogates

    def _code_point(self) -> int:
        ranges = [(0, 0x7F), (0x80, 0x2FFF), (0x2000, 0x206F), (0xD800, 0xDFFF), (0xE000, 0x10FFFF)]
        low, high = self.rng.choice(ranges)
        return self.rng.randint(low, high)

    def request_id(self) -> str:
        odd = ["0", "-1", "999999999999", "9" * 13, "\u00b2", "\u0664\u0662", "\uff14\uff12", "#1", ""]
        return self.rng.choice([str(i) for i in self._request_ids()] + odd)

    def _request_ids(self) -> list[int]:
        assert self.bot.runtime is not None
        with self.bot.runtime.deps.db.transaction() as session:
            return list(session.scalars(select(Request.id)))

    def command_text(self) -> str:
        rid = self.request_id()
        grammar = [
            lambda: f"orders-db 30m INC-{self.rng.randint(1, 9999)} {self.hostile_text()}",
            lambda: f"orders-db --emergency INC-{self.rng.randint(1, 9999)} {self.hostile_text()}",
            lambda: f"payments-admin 1h {self.hostile_text()}",
            lambda: f"revoke {rid}",
            lambda: f"extend {rid} {self.rng.choice(['30m', '1h', '0m', '9999d', '<!here>', self.hostile_text()])}",
            lambda: f"review {rid} {self.hostile_text()}",
            lambda: self.rng.choice(["mine", "list", "help", ""]),
            lambda: self.hostile_text(),
            lambda: " ".join([self.hostile_text(), self.rng.choice(["1h", "--emergency", "\u2014emergency"]), "x"]),
        ]
        return self.rng.choice(grammar)()

    # -- sending ---------------------------------------------------------------------------------------------

    def post(self, label: str, body: bytes, headers: dict[str, str], expected: set[int], path: str = "") -> Sent:
        url = (self.bot.base_url + path) if path else self.bot.sender.url
        return self._send(label, "POST", url, body, headers, expected)

    def signed(self, label: str, body: str | bytes, expected: set[int], content_type: str | None = None) -> Sent:
        raw = body.encode() if isinstance(body, str) else body
        stamp = int(time.time())
        headers = {
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": _sign(stamp, raw),
            "Content-Type": content_type or "application/x-www-form-urlencoded",
        }
        sent = self.post(label, raw, headers, expected)
        self.last_signed = (raw, headers, sent)
        return sent

    def _send(
        self, label: str, method: str, url: str, body: bytes, headers: dict[str, str], expected: set[int]
    ) -> Sent:
        sent = Sent(label, frozenset(expected))
        try:
            response = requests.request(method, url, data=body, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as error:  # a hang or a dropped connection is a failure too
            sent.body = f"no answer: {type(error).__name__}: {error}"
        else:
            sent.status, sent.body = response.status_code, response.text
        self.sent.append(sent)
        return sent

    def response_url(self) -> str:
        return self.bot.slack.response_url(f"fuzz{next(self.names)}")

    # -- the kinds of request --------------------------------------------------------------------------------

    def slash_command(self) -> None:
        user = self.rng.choice([BOB, BOB, BOB, ALICE, CAROL, DAVE, EVE, "W0GUEST"])
        self.actors.add(user)
        team = TEAM_ID if self.rng.random() < 0.9 else self.rng.choice(["T0OTHER", "E0GRID"])
        text = self.command_text()
        body = slash_command(
            text=text,
            user_id=user,
            user_name=self.hostile_text()[:40],
            channel_id=self.rng.choice(["C0INCIDENT", "C0APPROVALS", "D0DIRECT", "G0PRIVATE"]),
            channel_name=self.hostile_text()[:40],
            team_id=team,
            response_url=self.response_url(),
        )
        self.signed("slash command", body, {200})

    def other_command(self) -> None:
        body = slash_command(command=self.rng.choice(["/other", "/breakglass2", "/"]), text=self.command_text())
        self.signed("someone else's command", body, {404})

    def click(self) -> None:
        user = self.rng.choice([ALICE, CAROL, BOB, DAVE, EVE])
        self.actors.add(user)
        action = self.rng.choice([ActionId.APPROVE, ActionId.APPROVE_WITH_COMMENT, ActionId.DENY, ActionId.REVOKE])
        value = self.rng.choice([self.request_id(), self.hostile_text()[:100], "9" * 3000])
        body = block_action(
            action,
            value,
            user,
            self.rng.choice(["C0APPROVALS", "C0SECURITY", "C0INCIDENT"]),
            f"{1_700_000_000 + self.rng.randint(0, 10**6)}.000100",
            response_url=self.response_url(),
        )
        self.signed("click", body, {200})

    def unknown_click(self) -> None:
        action = self.rng.choice(["approve", "zzz", "revoke", "approve-request ", "APPROVE-REQUEST", "x" * 255])
        body = block_action(action, self.request_id(), ALICE, response_url=self.response_url())
        self.signed("click on a button that is not ours", body, {404})

    def malformed_click(self) -> None:
        payload = json.loads(_payload_of(block_action(ActionId.APPROVE, "1", ALICE, response_url=self.response_url())))
        mutations: list[Callable[[dict[str, Any]], None]] = [
            lambda p: p.pop("user"),
            lambda p: p.update(user=ALICE),
            lambda p: p.update(user=None),
            lambda p: p.update(user={"id": 42}),
            lambda p: p.update(user={"id": [ALICE]}),
            lambda p: p.update(user={"id": "U0" + "A" * 40}),
            lambda p: p.update(user={"id": "U0<!channel>"}),
            lambda p: p.update(actions=[]),
            lambda p: p.update(actions={"0": {}}),
            lambda p: p.update(actions="approve"),
            lambda p: p.update(actions=[None]),
            lambda p: p.update(actions=[7]),
            lambda p: p.update(actions=[{"value": "1"}]),
            lambda p: p.update(actions=[{"action_id": ActionId.APPROVE.value, "value": 1}]),
            lambda p: p.update(actions=[{"action_id": ActionId.APPROVE.value, "value": ["1"]}]),
            lambda p: p.update(actions=[{"action_id": ActionId.APPROVE.value, "value": None}]),
            lambda p: p.update(team="T0TEST"),
            lambda p: p.update(channel=["C0APPROVALS"]),
            lambda p: p.update(response_url=7),
            lambda p: p.update(response_url="file:///etc/passwd"),
            lambda p: p.update(response_url="not a url"),
        ]
        self.rng.choice(mutations)(payload)
        self.signed("malformed click", urlencode({"payload": json.dumps(payload)}), {400})

    def malformed_command(self) -> None:
        fields = dict(_form_of(slash_command(text=self.command_text(), response_url=self.response_url())))
        mutation = self.rng.choice(
            [
                ("user_id", None),
                ("user_id", ""),
                ("user_id", "U0<!here>"),
                ("user_id", "U" * 40),
                ("channel_id", "C0<#C0CANARY>"),
                ("team_id", "T" * 64),
                ("response_url", "file:///etc/passwd"),
                ("response_url", "javascript:alert(1)"),
            ]
        )
        key, value = mutation
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
        self.signed("malformed command", urlencode(fields), {400})

    def bad_json(self) -> None:
        body = self.rng.choice(
            [
                "payload=%7Bnot+json",
                "payload=%5B1%2C2%5D",
                "payload=null",
                "payload=%22text%22",
                "payload=5",
                "payload=%7B%7D&payload=%7B%7D",
                urlencode({"payload": json.dumps({"type": 5})}),
                urlencode({"payload": json.dumps({"type": "block_actions"})}),
            ]
        )
        self.signed("a payload that is not a Slack payload", body, {400})

    def json_body(self) -> None:
        unique = self.rng.randrange(10**9)  # the same body signed twice within a second is a replay
        event = {"type": "event_callback", "team_id": TEAM_ID, "event_id": f"Ev{unique}"}
        body, expected = self.rng.choice(
            [
                (f"{{bad json {unique}", {400}),
                (f"[1, {unique}]", {400}),
                (f'"{unique}"', {400}),
                (json.dumps({"unique": unique}), {400}),
                (json.dumps(event | {"event": "x"}), {400}),
                (json.dumps({"type": "url_verification", "challenge": f"{unique}{self.hostile_text()[:50]}"}), {200}),
                (json.dumps(event | {"event": {"type": "app_mention", "text": self.hostile_text()}}), {404}),
            ]
        )
        self.signed("a JSON body", body, expected, "application/json")

    def wrong_content_type(self) -> None:
        body = slash_command(text=self.command_text(), response_url=self.response_url())
        content_type, expected = self.rng.choice(
            [("application/json", {400}), ("text/plain", {200}), ("multipart/form-data; boundary=x", {200})]
        )
        self.signed(f"a command sent as {content_type}", body, expected, content_type)

    def random_form(self) -> None:
        pairs = [
            (self.rng.choice(["text", "token", "x", "type", "team_id", self.hostile_text()[:20]]), self.hostile_text())
            for _ in range(self.rng.randint(1, 6))
        ]
        self.signed("a form that is neither a command nor a payload", urlencode(pairs), {400})

    def random_bytes(self) -> None:
        raw = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 2000)))
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            self.signed("bytes that are not UTF-8", raw, {400})
        else:
            self.signed("random bytes", raw, {200, 400, 404})

    def empty(self) -> None:
        self.signed("an empty body", b"", {200})

    def too_large(self) -> None:
        body = slash_command(text="orders-db 1h INC-1 " + "x" * (MAX_BODY + self.rng.randint(1, 100_000)))
        self.signed("a body over 256 KB", body, {413})

    def replay(self) -> None:
        """The same signed request again, within its five minutes: answered as before, and ignored."""
        if self.last_signed is None:
            return
        raw, headers, first = self.last_signed
        expected = {first.status} if first.status in (400, 413) else {200}
        self.post("a replay of the last signed request", raw, headers, expected)

    def bad_signature(self) -> None:
        body = slash_command(text=self.command_text(), user_id=BOB, response_url=self.response_url()).encode()
        now = int(time.time())
        headers = self.rng.choice(
            [
                {},
                {"X-Slack-Request-Timestamp": str(now)},
                {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v0=" + "0" * 64},
                {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": _sign(now, body + b"x")},
                {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": _sign(now, body).upper()},
                {"X-Slack-Request-Timestamp": str(now - 301), "X-Slack-Signature": _sign(now - 301, body)},
                {"X-Slack-Request-Timestamp": str(now - 86400), "X-Slack-Signature": _sign(now - 86400, body)},
                {"X-Slack-Request-Timestamp": str(now + 301), "X-Slack-Signature": _sign(now + 301, body)},
                {"X-Slack-Request-Timestamp": "now", "X-Slack-Signature": _sign(now, body)},
                {"X-Slack-Request-Timestamp": f"{now}.0", "X-Slack-Signature": _sign(now, body)},
                {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": "v1=" + _sign(now, body)[3:]},
            ]
        )
        self.post("a request without a good signature", body, headers, {401})

    def odd_method_or_path(self) -> None:
        method = self.rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "POST"])
        path = self.rng.choice(
            ["/slack/events", "/", "/slack", "/slack/events/", "/healthz/x", "/admin", "/" + "a" * 4000, "/%00"]
        )
        if method == "POST" and path == "/slack/events":
            path = "/slack/event"
        url = self.bot.base_url + path
        self._send(f"{method} {path[:30]}", method, url, b"", {}, {400, 404} if "%00" in path else {404})

    def health(self) -> None:
        method = self.rng.choice(["GET", "HEAD"])
        self._send(f"{method} /healthz", method, self.bot.base_url + "/healthz", b"", {}, {200})


def _sign(stamp: int, body: bytes) -> str:
    """Slack's signature over the raw bytes (which need not be UTF-8)."""
    base = b"v0:" + str(stamp).encode() + b":" + body
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()


def _form_of(body: str) -> list[tuple[str, str]]:
    return parse_qsl(body, keep_blank_values=True)


def _payload_of(body: str) -> str:
    return dict(_form_of(body))["payload"]


KINDS: list[tuple[str, int]] = [
    ("slash_command", 30),
    ("click", 16),
    ("unknown_click", 3),
    ("malformed_click", 8),
    ("malformed_command", 5),
    ("other_command", 2),
    ("bad_json", 5),
    ("json_body", 5),
    ("wrong_content_type", 4),
    ("random_form", 4),
    ("random_bytes", 3),
    ("empty", 1),
    ("too_large", 1),
    ("replay", 3),
    ("bad_signature", 6),
    ("odd_method_or_path", 3),
    ("health", 1),
]


@pytest.fixture
def fuzz_bot(make_bot: Callable[..., LocalBot]) -> LocalBot:
    # Limits high enough that the fuzz reaches the handlers instead of the rate limiter.
    return make_bot(tuning=Tuning(grant_retry_pause=0.01, actions_per_minute=100_000, requests_per_hour=100_000))


def test_the_endpoint_survives_a_fuzz(
    fuzz_bot: LocalBot, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    print(f"fuzz seed {SEED} (BREAKGLASS_FUZZ_SEED={SEED} replays it)")
    caplog.set_level(logging.WARNING)
    fuzz = Fuzz(fuzz_bot, random.Random(SEED))
    names, weights = zip(*KINDS, strict=True)
    started = time.monotonic()
    for number in range(REQUESTS):
        getattr(fuzz, fuzz.rng.choices(names, weights)[0])()
        if number % 50 == 0:
            fuzz.health()
    elapsed = time.monotonic() - started

    wrong = [s for s in fuzz.sent if s.status not in s.expected]
    assert not wrong, f"seed {SEED}: unexpected answers:\n" + "\n".join(
        f"  {s.label}: {s.status} (expected {sorted(s.expected)}) {s.body[:200]!r}" for s in wrong[:20]
    )
    assert all(s.status is not None and s.status < 500 for s in fuzz.sent)

    _settle(fuzz_bot)
    health = requests.get(fuzz_bot.base_url + "/healthz", timeout=TIMEOUT)
    assert health.status_code == 200 and health.json()["ok"] is True

    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, f"seed {SEED}: handlers crashed:\n" + "\n".join(
        f"  {r.name}: {r.getMessage()[:300]}\n{_traceback(r)}" for r in crashes[:5]
    )
    _assert_database_invariants(fuzz_bot)
    _assert_nothing_forged(fuzz_bot, fuzz)
    _assert_still_serves_a_real_request(fuzz_bot, receiver)
    print(f"fuzz: {len(fuzz.sent)} requests in {elapsed:.1f} s; " + _summary(fuzz.sent))


def _traceback(record: logging.LogRecord) -> str:
    if not record.exc_info:
        return ""
    return "".join(traceback.format_exception(*record.exc_info)[-6:])


def _settle(bot: LocalBot, timeout: float = 60.0) -> None:
    """Wait until the work the fuzz set off is done: no request between states, no answer still coming."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        bot.sweep()
        calls = len(bot.slack.calls()) + len(bot.slack.responses())
        if calls == seen and not _between_states(bot):
            return
        seen = calls
        time.sleep(0.3)
    raise AssertionError(f"still busy after {timeout} s: {_between_states(bot)}")


def _between_states(bot: LocalBot) -> list[tuple[int, str]]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        rows = session.execute(select(Request.id, Request.status)).all()
    return [(rid, status) for rid, status in rows if Status(status) in INTERMEDIATE]


def _assert_database_invariants(bot: LocalBot) -> None:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        rows = session.scalars(select(Request)).all()
        requested = set(session.scalars(select(AuditEvent.request_id).where(AuditEvent.action == "requested")))
        for row in rows:
            status = Status(row.status)  # a value outside the enum raises here
            assert row.id in requested, f"request #{row.id} has no 'requested' audit event"
            assert status not in INTERMEDIATE, f"request #{row.id} stuck in {status}"
            if status is Status.ACTIVE:
                assert row.granted_at and row.expires_at and row.expires_at > row.granted_at
            assert row.resource in bot.policy.resources
            assert len(row.reason) <= 500


def _assert_nothing_forged(bot: LocalBot, fuzz: Fuzz) -> None:
    """Every <…> in what the bot said is a mention of a real actor or a date it wrote; no broadcast anywhere."""
    said: list[tuple[str, str | None, list[dict[str, Any]] | None]] = []
    for call in bot.slack.calls():
        if call.method.startswith("chat."):
            said.append((call.method, call.args.get("text"), call.args.get("blocks")))
    for body in bot.slack.responses():
        if isinstance(body, dict):
            said.append(("response_url", body.get("text"), body.get("blocks")))
    for sent in fuzz.sent:
        if sent.status == 200 and sent.body.startswith("{"):
            ack = json.loads(sent.body)
            said.append((f"ack of {sent.label}", ack.get("text"), ack.get("blocks")))
    assert said, "the fuzz made the bot say nothing at all"
    people = set(PEOPLE) | {a for a in fuzz.actors if re.fullmatch(r"[UW][A-Z0-9]{2,20}", a)}
    named = [*bot.policy.review.reviewers, *(a for r in bot.policy.grantables() for a in r.approvers)]
    groups = {entry for entry in named if entry.startswith("S")}
    for where, text, blocks in said:
        assert slack_problems(text, blocks) == [], (where, text)
        for token in re.findall(r"<[^<>]*>", text or "") + _block_tokens(blocks):
            assert ALLOWED_TOKEN.fullmatch(token), f"{where}: a token the bot did not write: {token!r}"
            mention = re.fullmatch(r"<@([A-Z0-9]+)>", token)
            assert mention is None or mention.group(1) in people, f"{where}: mentions {token}"
            group = re.fullmatch(r"<!subteam\^([A-Z0-9]+)>", token)  # a review's sign-off side, named by the policy
            assert group is None or group.group(1) in groups, f"{where}: mentions {token}"
        everything = json.dumps([text, blocks], ensure_ascii=False)
        assert not BROADCAST.search(everything), f"{where}: a broadcast word: {text!r}"


def _block_tokens(blocks: list[dict[str, Any]] | None) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.extend(re.findall(r"<[^<>]*>", node["text"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks or [])
    return found


def _assert_still_serves_a_real_request(bot: LocalBot, receiver: WebhookReceiver) -> None:
    _end_bobs_live_request(bot)
    before = len(receiver.calls)
    reply = bot.command(BOB, "orders-db 30m INC-4242 the payload service, after the fuzz")
    assert reply.status == 200 and "is with the approvers" in (reply.answer or ""), reply
    request_id = int(re.search(r"#(\d+)", reply.answer or "").group(1))  # type: ignore[union-attr]
    clicked = bot.click(ALICE, ActionId.APPROVE, request_id)
    assert clicked.status == 200 and "is recorded" in (clicked.answer or ""), clicked
    _settle(bot)
    assert view(bot, request_id).status is Status.ACTIVE
    assert any(call.body.get("grant_id") == view(bot, request_id).uid for call in receiver.calls[before:])


def _end_bobs_live_request(bot: LocalBot) -> None:
    """The fuzz may leave Bob a live request on orders-db, and a person holds one at a time: it ends first."""
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        live = select(Request.id, Request.status).where(
            Request.requester_id == BOB, Request.resource == "orders-db", Request.live_key.is_not(None)
        )
        found = session.execute(live).all()
    for request_id, status in found:
        bot.command(BOB if status == Status.PENDING else ALICE, f"revoke {request_id}")
    _settle(bot)


def _summary(sent: list[Sent]) -> str:
    counts: dict[int | None, int] = {}
    for s in sent:
        counts[s.status] = counts.get(s.status, 0) + 1
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items(), key=lambda item: str(item[0])))
