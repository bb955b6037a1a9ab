"""JSON logs from the real bot carry the request they are about: a grant refused during an approver's click names the
request and the clicker, and a revoke that fails in the sweep names the request and its resource."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.devtools.local_bot import LocalBot
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.logs import JsonFormatter
from bot.slack.ids import ActionId
from bot.store.models import Request
from tests.e2e.helpers import ALICE, BOB, view


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def entries(stream: io.StringIO, starting: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [entry for entry in found if entry["message"].startswith(starting)]


def newest_request(bot: LocalBot) -> int:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        newest = session.scalar(select(func.max(Request.id)))
    assert newest is not None
    return int(newest)


def test_a_grant_refused_during_a_click_names_the_request_and_the_clicker(
    bot: LocalBot, receiver: WebhookReceiver, json_log: io.StringIO
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    request_id = newest_request(bot)
    receiver.fail_next(1, status=403)  # refused outright: no retry
    bot.click(ALICE, ActionId.APPROVE, request_id)
    assert view(bot, request_id).status is Status.GRANT_FAILED
    (entry,) = entries(json_log, f"grant of request {request_id} failed")
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == request_id
    assert entry["actor"] == ALICE


def test_a_revoke_failing_in_the_sweep_names_the_request_and_its_resource(
    bot: LocalBot, receiver: WebhookReceiver, json_log: io.StringIO
) -> None:
    bot.command(BOB, "orders-db 30m INC-1 fix")
    request_id = newest_request(bot)
    bot.click(ALICE, ActionId.APPROVE, request_id)
    assert view(bot, request_id).status is Status.ACTIVE
    receiver.fail_next(1, status=500)
    bot.advance(timedelta(minutes=31))
    failed = entries(json_log, f"revoke of request {request_id} failed")
    assert failed, json_log.getvalue()
    assert failed[0]["request_id"] == request_id
    assert failed[0]["resource"] == "orders-db"
    assert "actor" not in failed[0]  # the sweep acts for nobody in particular
