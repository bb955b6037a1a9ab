"""Reading what Slack holds, for assertions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.devtools.local_bot import LocalBot
from bot.services.common import load_view
from bot.services.snapshots import RequestView
from bot.store.models import AuditEvent

BOB, ALICE, CAROL, DAVE = "U0BOB", "U0ALICE01", "U0CAROL", "U0DAVE"


def buttons(message: dict[str, Any] | None) -> list[str]:
    assert message is not None, "no such message"
    return [
        element["action_id"]
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def state(message: dict[str, Any] | None) -> str:
    """The request message's status lines."""
    assert message is not None, "no such message"
    return "\n".join(
        element["text"] for block in message["blocks"] if block["type"] == "context" for element in block["elements"]
    )


def dm_texts(bot: LocalBot, user: str) -> list[str]:
    return [str(call.args.get("text")) for call in bot.slack.dms(user)]


def channel_texts(bot: LocalBot, channel: str) -> list[str]:
    return [str(call.args.get("text")) for call in bot.slack.posts_to(channel)]


def view(bot: LocalBot, request_id: int) -> RequestView:
    assert bot.runtime is not None
    found = load_view(bot.runtime.deps, request_id)
    assert found is not None
    return found


def audit_actions(bot: LocalBot, request_id: int | None = None) -> list[tuple[str, str]]:
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        statement = select(AuditEvent).order_by(AuditEvent.id)
        if request_id is not None:
            statement = statement.where(AuditEvent.request_id == request_id)
        return [(event.action, event.actor) for event in session.scalars(statement)]
