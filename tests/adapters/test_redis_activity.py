"""Activity capture of the redis adapter against a real Redis 7, read from a MONITOR stream the test turns on."""

# ruff: noqa: F811 -- the shared server, admin and bot user are test_redis's fixtures, imported and taken by name

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from bot.adapters import redis_activity, registry
from bot.adapters.base import MAX_ACTION, Activity, AdapterError, GrantContext, Receipt
from bot.adapters.redis_acl import RedisAdapter
from bot.adapters.redis_monitor import hide_secrets, parse_line, render
from bot.policy import PolicyError
from bot.testing.activity_contract import ActivityContract
from bot.testing.contract import grant_context
from tests.adapters.test_redis import (  # noqa: F401 -- fixtures, used by name
    BOT_PASSWORD,
    BOT_RULES,
    BOT_USER,
    RULES,
    RUN,
    WRONG_PASSWORD,
    RedisProbe,
    admin,
    bot_user,
    make_bot_user,
    params,
    server,
    user_client,
)

CAPTURE_RULES = ["+monitor", "+client|list"]  # what the docs add for capture
SETTLE = 15.0  # seconds the stream may take to deliver a line; the polls end as soon as it has


@pytest.fixture
def capture_bot(admin: redis.Redis, bot_user: str) -> Iterator[str]:
    make_bot_user(admin, BOT_USER, BOT_PASSWORD, [*BOT_RULES, *CAPTURE_RULES])
    yield BOT_USER
    make_bot_user(admin, BOT_USER, BOT_PASSWORD, BOT_RULES)


@pytest.fixture
def adapter(server: tuple[str, int], capture_bot: str) -> Iterator[RedisAdapter]:
    adapter = RedisAdapter(params(server, capture="monitor"))
    yield adapter
    adapter.close()


@pytest.fixture
def wrong_credentials(server: tuple[str, int], capture_bot: str) -> Iterator[RedisAdapter]:
    adapter = RedisAdapter(params(server, capture="monitor", password=WRONG_PASSWORD))
    yield adapter
    adapter.close()


class ActivityProbe(RedisProbe):
    """Acts through one session per grant, opened at its first act and kept until clean-up: a session Redis can
    still name when the stream shows its login. Connections that close at once are tested on their own below."""

    def __init__(self, adapter: RedisAdapter, server: tuple[str, int], admin: redis.Redis) -> None:
        super().__init__(adapter, server, admin)
        self.sessions: dict[str, redis.Redis] = {}

    def act(self, ctx: GrantContext, receipt: Receipt, marker: str) -> None:
        if ctx.grant_id not in self.sessions:
            self.sessions[ctx.grant_id] = self.connect(ctx, receipt)
        self.sessions[ctx.grant_id].get(f"orders:{marker}")

    def clean_up(self) -> None:
        for session in self.sessions.values():
            session.close()
        super().clean_up()


@pytest.fixture
def probe(adapter: RedisAdapter, server: tuple[str, int], admin: redis.Redis) -> Iterator[ActivityProbe]:
    probe = ActivityProbe(adapter, server, admin)
    yield probe
    probe.clean_up()


class TestRedisActivity(ActivityContract):
    pass


def until(
    adapter: RedisAdapter,
    ctx: GrantContext,
    receipt: Receipt,
    found: Callable[[list[Activity]], bool],
    since: datetime,
    cursor: str | None = None,
) -> tuple[list[Activity], str | None]:
    """Everything read until ``found`` holds for it (or SETTLE passes), following ``more``."""
    seen: list[Activity] = []
    give_up = time.monotonic() + SETTLE
    while True:
        page = adapter.activity(ctx, receipt, since, cursor)
        seen += page.items
        cursor = page.cursor
        if found(seen) or (not page.more and time.monotonic() > give_up):
            return seen, cursor
        if not page.more:
            time.sleep(0.05)


def granted(adapter: RedisAdapter, probe: RedisProbe) -> tuple[GrantContext, Receipt]:
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    adapter.watch(ctx, receipt)
    return ctx, receipt


def done(adapter: RedisAdapter, ctx: GrantContext, receipt: Receipt) -> None:
    adapter.revoke(ctx, receipt)
    adapter.unwatch(ctx, receipt)


def has(marker: str) -> Callable[[list[Activity]], bool]:
    return lambda seen: any(marker in item.action for item in seen)


# Reading the stream


def test_monitor_lines_are_parsed_with_their_escapes_and_time() -> None:
    line = '1796306373.030515 [3 127.0.0.1:45522] "SET" "k\\"ey\\nx" "\\xc3\\xa9 \\\\ \\t"'
    at, db, addr, args = parse_line(line) or (None, None, None, None)
    assert at == datetime(2026, 12, 3, 13, 59, 33, 30515, tzinfo=UTC)
    assert (db, addr, args) == (3, "127.0.0.1:45522", ["SET", 'k"ey\nx', "é \\ \t"])
    assert parse_line("OK") is None
    assert render(["get", "orders:1", "a b", ""]) == 'GET orders:1 "a b" ""'


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["AUTH", "pw"], ["AUTH", "(redacted)"]),
        (["auth", "bob", "pw"], ["auth", "(redacted)", "(redacted)"]),
        (
            ["HELLO", "3", "AUTH", "bob", "pw", "SETNAME", "x"],
            ["HELLO", "3", "AUTH", "(redacted)", "(redacted)", "SETNAME", "x"],
        ),
        (
            ["MIGRATE", "h", "1", "", "0", "5", "AUTH2", "bob", "pw"],
            ["MIGRATE", "h", "1", "", "0", "5", "AUTH2", "bob", "(redacted)"],
        ),
        (["ACL", "SETUSER", "bob", "on", ">pw", "~*"], ["ACL", "SETUSER", "bob", "on", "(redacted)", "~*"]),
        (["CONFIG", "SET", "masterauth", "pw"], ["CONFIG", "SET", "masterauth", "(redacted)"]),
        (["GET", ">pw"], ["GET", ">pw"]),
    ],
)
def test_password_arguments_are_blanked_by_position(args: list[str], shown: list[str]) -> None:
    assert hide_secrets(args) == shown


# Params and check


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"capture": "on"}, "capture"), ({"capture": "monitor", "capture_buffer": 5}, "capture_buffer")],
)
def test_capture_params_are_validated_with_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(PolicyError) as refused:
        registry.build("redis", {"host": "127.0.0.1", "rules": RULES, **changes}, "resources.cache", {})
    assert str(refused.value).startswith(f"resources.cache.params.{key}: ")


def test_capture_is_off_unless_turned_on(server: tuple[str, int], bot_user: str) -> None:
    assert not RedisAdapter(params(server)).watching()
    assert RedisAdapter(params(server)).check() == []  # no capture: MONITOR is not asked for


def test_check_names_the_privileges_capture_needs(server: tuple[str, int], bot_user: str) -> None:
    adapter = RedisAdapter(params(server, capture="monitor"))  # the bot user without +monitor +client|list
    problems = adapter.check()
    assert [problem.split(":")[0] for problem in problems] == [
        f"the bot's Redis user {BOT_USER} may not run MONITOR (activity capture needs it)",
        f"the bot's Redis user {BOT_USER} may not run CLIENT LIST (activity capture needs it)",
    ]
    ctx = grant_context("zoe" + RUN)
    with pytest.raises(AdapterError) as refused:
        adapter.watch(ctx, Receipt())
    assert not refused.value.retryable and "did not let the bot start the MONITOR stream" in str(refused.value)
    assert BOT_PASSWORD not in str(refused.value)
    adapter.close()


def test_check_is_clean_with_the_documented_privileges(adapter: RedisAdapter) -> None:
    assert adapter.check() == []


# What is recorded


def test_quotes_newlines_and_long_commands(adapter: RedisAdapter, probe: ActivityProbe) -> None:
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    marker = f"bgq{uuid.uuid4().hex[:8]}"
    awkward, long = f'orders:{marker}"it\'s"\n\tx', f"orders:{marker}long" + "z" * (MAX_ACTION * 2)
    client = probe.connect(ctx, receipt)
    try:
        client.get(awkward)
        client.get(long)
        seen, _ = until(adapter, ctx, receipt, has(marker + "long"), since)
    finally:
        client.close()
        done(adapter, ctx, receipt)
    actions = [item.action for item in seen]
    assert "GET " + json.dumps(awkward) in actions
    [cut] = [action for action in actions if marker + "long" in action]
    assert len(cut) == MAX_ACTION and cut.endswith("…") and cut.startswith(f"GET orders:{marker}longzzz")


def test_the_login_is_shown_without_the_password(adapter: RedisAdapter, probe: ActivityProbe) -> None:
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    probe.act(ctx, receipt, "login")
    try:
        seen, _ = until(adapter, ctx, receipt, has("orders:login"), since)
    finally:
        done(adapter, ctx, receipt)
    assert seen[0].action == "HELLO 3 AUTH (redacted) (redacted)"
    assert seen[0].principal == adapter.user_name(ctx.principal)
    assert receipt.credentials and not any(receipt.credentials in item.action for item in seen)


def test_a_session_opened_before_watch_is_recorded(adapter: RedisAdapter, probe: ActivityProbe) -> None:
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = adapter.grant(ctx)
    early = probe.connect(ctx, receipt)  # logged in before the stream existed: only CLIENT LIST can name it
    try:
        early.get(f"orders:before{RUN}")
        adapter.watch(ctx, receipt)
        early.get(f"orders:early{RUN}")
        seen, _ = until(adapter, ctx, receipt, has(f"orders:early{RUN}"), since)
        assert has(f"orders:early{RUN}")(seen)
    finally:
        early.close()
        done(adapter, ctx, receipt)


def test_a_scripts_commands_count_as_its_callers(adapter: RedisAdapter, probe: ActivityProbe) -> None:
    since = datetime.now(UTC)
    ctx = grant_context(probe.principal())
    receipt = RedisAdapter(adapter.params.model_copy(update={"rules": [*RULES, "+eval"]})).grant(ctx)
    adapter.watch(ctx, receipt)
    client = probe.connect(ctx, receipt)
    try:
        client.eval(f"return redis.call('get', 'orders:script{RUN}')", 0)
        seen, _ = until(adapter, ctx, receipt, has(f"GET orders:script{RUN}"), since)
    finally:
        client.close()
        done(adapter, ctx, receipt)
    [inner] = [item for item in seen if item.action == f"GET orders:script{RUN}"]
    assert inner.detail["by_script"] is True


def test_connections_that_close_at_once_are_attributed_or_noted_never_lost(
    adapter: RedisAdapter, probe: ActivityProbe
) -> None:
    """Log in, one command, disconnect, twenty times: each is read back as the user's or, where the connection was
    gone before Redis could name it, as a note; none is missing and none lands with another user."""
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    other, other_receipt = granted(adapter, probe)
    markers = [f"bgquick{index}x{uuid.uuid4().hex[:6]}" for index in range(20)]
    try:
        for marker in markers:
            client = probe.connect(ctx, receipt)
            client.get(f"orders:{marker}")
            client.close()
        probe.act(other, other_receipt, "sentinel")
        seen, _ = until(adapter, ctx, receipt, has(markers[-1]), since)
        theirs, _ = until(adapter, other, other_receipt, has("orders:sentinel"), since)
    finally:
        done(adapter, ctx, receipt)
        done(adapter, other, other_receipt)
    attributed = [marker for marker in markers if has(marker)(seen)]
    notes = [item for item in seen if item.detail.get("note") == "unattributed"]
    logins = [item for item in seen if item.action.startswith("HELLO")]
    assert len(logins) + len(notes) == len(markers)
    assert len(attributed) == len(logins), "a named connection lost a command"
    assert not any(has(marker)(theirs) for marker in markers)
    print(f"quick connections: {len(attributed)} of {len(markers)} attributed, {len(notes)} noted")


def test_two_grants_watched_at_once_and_one_unwatched(adapter: RedisAdapter, probe: ActivityProbe) -> None:
    since = datetime.now(UTC)
    first, first_receipt = granted(adapter, probe)
    second, second_receipt = granted(adapter, probe)
    try:
        adapter.watch(first, first_receipt)  # a repeated watch changes nothing
        done(adapter, first, first_receipt)
        probe.act(second, second_receipt, f"after{RUN}")
        seen, _ = until(adapter, second, second_receipt, has(f"orders:after{RUN}"), since)
        assert has(f"orders:after{RUN}")(seen), "unwatching one grant stopped the other's capture"
    finally:
        done(adapter, second, second_receipt)


def test_a_full_page_says_more_and_the_cursor_loses_nothing(adapter: RedisAdapter, probe: ActivityProbe) -> None:
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    client = probe.connect(ctx, receipt)
    try:
        pipe = client.pipeline(transaction=False)
        for index in range(700):
            pipe.get(f"orders:n{index}")
        pipe.execute()
        seen, _ = until(adapter, ctx, receipt, has("orders:n699"), since)
        first = adapter.activity(ctx, receipt, since, None)
        assert first.more and len(first.items) == 500
    finally:
        client.close()
        done(adapter, ctx, receipt)
    keys = [item.action.removeprefix("GET ") for item in seen if item.action.startswith("GET orders:n")]
    assert keys == [f"orders:n{index}" for index in range(700)]


def test_past_the_buffer_the_oldest_go_and_the_next_read_says_how_many(
    server: tuple[str, int], capture_bot: str, probe: ActivityProbe
) -> None:
    adapter = RedisAdapter(params(server, capture="monitor", capture_buffer=100))
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    client = probe.connect(ctx, receipt)
    try:
        first = adapter.activity(ctx, receipt, since, None)
        for index in range(150):  # on the one connection whose login ``first`` may or may not have read
            client.get(f"orders:b{index}")
        until(adapter, ctx, receipt, has("orders:b149"), since)  # reads without a cursor, to wait only
        page = adapter.activity(ctx, receipt, since, first.cursor)
    finally:
        client.close()
        done(adapter, ctx, receipt)
        adapter.close()
    assert page.items[0].detail["dropped"] == 151 - 100 - len(first.items)  # the login and 150 GETs, 100 kept
    assert [item.action for item in page.items[1:]] == [f"GET orders:b{index}" for index in range(50, 150)]


def test_a_cursor_from_another_process_starts_over_from_its_time(
    server: tuple[str, int], capture_bot: str, adapter: RedisAdapter, probe: ActivityProbe
) -> None:
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    probe.act(ctx, receipt, f"one{RUN}")
    _, cursor = until(adapter, ctx, receipt, has(f"orders:one{RUN}"), since)
    restarted = RedisAdapter(params(server, capture="monitor"))  # a new process knows nothing of the buffer
    try:
        page = restarted.activity(ctx, receipt, since, cursor)
        assert page.items[0].detail == {"note": "started"}
        probe.act(ctx, receipt, f"two{RUN}")
        seen, _ = until(restarted, ctx, receipt, has(f"orders:two{RUN}"), since, page.cursor)
        assert has(f"orders:two{RUN}")(seen) and not has(f"orders:one{RUN}")(seen)
        assert restarted.activity(ctx, receipt, since, "not json").cursor  # never a crash
    finally:
        done(adapter, ctx, receipt)
        restarted.unwatch(ctx, receipt)
        restarted.close()


def test_a_broken_stream_is_restarted_and_the_gap_is_said(
    adapter: RedisAdapter, probe: ActivityProbe, admin: redis.Redis
) -> None:
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    try:
        admin.execute_command("CLIENT", "KILL", "USER", BOT_USER)  # the bot's MONITOR and CLIENT LIST connections
        seen, _ = until(
            adapter, ctx, receipt, lambda items: any(i.detail.get("note") == "interrupted" for i in items), since
        )
        assert any(item.detail.get("note") == "interrupted" for item in seen)
        probe.act(ctx, receipt, f"again{RUN}")
        seen, _ = until(adapter, ctx, receipt, has(f"orders:again{RUN}"), since)
        assert has(f"orders:again{RUN}")(seen)
    finally:
        done(adapter, ctx, receipt)


def test_the_bots_own_commands_are_never_read(adapter: RedisAdapter, probe: ActivityProbe) -> None:
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    probe.act(ctx, receipt, f"own{RUN}")
    try:
        adapter.verify(ctx, receipt)
        adapter.holdings(everything=False)
        seen, _ = until(adapter, ctx, receipt, has(f"orders:own{RUN}"), since)
    finally:
        done(adapter, ctx, receipt)
    assert {item.principal for item in seen} == {adapter.user_name(ctx.principal)}
    assert not any(item.action.startswith(("ACL", "CLIENT", "MONITOR")) for item in seen)


def test_two_replicas_watching_hand_the_cursor_on_without_repeats(
    server: tuple[str, int], capture_bot: str, adapter: RedisAdapter, probe: ActivityProbe
) -> None:
    since = datetime.now(UTC)
    ctx, receipt = granted(adapter, probe)
    replica = RedisAdapter(params(server, capture="monitor"))  # another process, watching from the grant on too
    replica.watch(ctx, receipt)
    try:
        probe.act(ctx, receipt, f"first{RUN}")
        until(replica, ctx, receipt, has(f"orders:first{RUN}"), since)  # the replica has it buffered as well
        _, cursor = until(adapter, ctx, receipt, has(f"orders:first{RUN}"), since)
        probe.act(ctx, receipt, f"second{RUN}")
        seen, _ = until(replica, ctx, receipt, has(f"orders:second{RUN}"), since, cursor)
        assert [item.action for item in seen] == [f"GET orders:second{RUN}"]
    finally:
        done(adapter, ctx, receipt)
        replica.unwatch(ctx, receipt)
        replica.close()


def monitors(admin: redis.Redis) -> int:
    """The bot user's MONITOR connections, as the server lists them."""
    return sum(1 for client in admin.client_list() if "O" in client["flags"] and client["user"] == BOT_USER)


def test_the_stream_closes_when_nothing_is_watched_or_the_grant_has_long_ended(
    adapter: RedisAdapter, probe: ActivityProbe, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, receipt = granted(adapter, probe)
    assert monitors(admin) == 1
    done(adapter, ctx, receipt)
    assert wait_for(lambda: monitors(admin) == 0), "unwatching the last grant left MONITOR running"

    ended = grant_context(probe.principal(), expires_in=-timedelta(seconds=1))  # and a replica missed the unwatch
    adapter.watch(ended, Receipt())
    assert monitors(admin) == 1
    assert not wait_for(lambda: monitors(admin) == 0, within=2), "a watch ended while its grace was not over"
    monkeypatch.setattr(redis_activity, "GRACE", timedelta(0))  # expired long ago, unread for long: both are over
    assert wait_for(lambda: monitors(admin) == 0), "a watch outlived its grant's expiry and grace"


def wait_for(check: Callable[[], bool], within: float = SETTLE) -> bool:
    give_up = time.monotonic() + within
    while not check():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.05)
    return True
