"""The Home tab: a pure function from a person's page (bot/services/home.py) to the view ``views.publish`` shows.

However many items there are, the view stays within Slack's limits: at most ``SHOWN`` items a list (the page says
how many there are in all, and that the most urgent come first), each item's text bounded, every button label within
75 characters; ``MAX_BLOCKS`` holds whatever the lists hold. Everything someone typed is made inert
(bot/slack/text.py); buttons carry only the request id, and every click is checked again when it arrives.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from bot.domain.durations import format_duration
from bot.domain.states import Status
from bot.services.home import Page, Section
from bot.services.snapshots import RequestView
from bot.slack.fields import Block, actions, button, context, divider, header, section
from bot.slack.ids import ActionId
from bot.slack.text import code, escape, placeholders, when, who

MAX_BLOCKS = 100  # Slack refuses a Home tab with more
REASON_SHOWN = 200  # characters of a reason on the page; the request's message has it all

INTRO = (
    "Breakglass gives you temporary access to production, approved by your peers, and takes it back when the time "
    "is up. Press *Request access* (or type `/breakglass`) to ask; what you ask for, and what waits for you, shows "
    "up here."
)
MORE = placeholders("`/breakglass mine` lists them in a message.")


def _left(now: datetime, end: datetime | None) -> str:
    """Time left, in whole minutes rounded up (never "0s" while access lasts)."""
    if end is None:
        return ""
    seconds = (end - now).total_seconds()
    if seconds <= 0:
        return "ending now"
    return f"{format_duration(timedelta(minutes=math.ceil(seconds / 60)))} left"


def _reason(item: RequestView) -> str:
    return escape(item.reason, REASON_SHOWN)  # last on its line: nothing of ours follows it


def _grant(item: RequestView, now: datetime) -> list[Block]:
    line = f"*#{item.id}* {code(item.label, 100)}"
    if item.status is Status.ACTIVE:
        line += f" · ends {when(item.expires_at)} · *{_left(now, item.expires_at)}*"
    elif item.status in (Status.APPROVED, Status.GRANTING):
        line += " · ⏳ access is being granted"
    elif item.status is Status.REVOKING:
        line += " · ⏳ access is being revoked"
    elif item.status is Status.REVOKE_FAILED:
        line += f" · ⚠️ revoke failing (attempt {item.revoke_attempts}), retrying"
    if item.emergency:
        line += " · 🚨 emergency"
    blocks = [section(f"{line}\n{_reason(item)}")]
    if item.status is Status.ACTIVE:
        blocks.append(
            actions(
                button(ActionId.REVOKE, "Revoke now", item.id, "danger"),
                button(ActionId.ASK_MORE_TIME, "Ask for more time", item.id),
            )
        )
    return blocks


def _pending(item: RequestView, now: datetime) -> list[Block]:
    got = f"{len(item.approvers)} of {item.approvals_required} approvals"
    line = f"*#{item.id}* {code(item.label, 100)} for {format_duration(item.duration)} · asked {when(item.created_at)}"
    return [
        section(f"{line} · ⏳ {got}\n{_reason(item)}", accessory=button(ActionId.WITHDRAW, "Withdraw", item.id)),
    ]


def _to_decide(item: RequestView, now: datetime) -> list[Block]:
    if item.status is Status.ACTIVE and item.extension_seconds is not None:
        return _extension_to_decide(item, now)
    line = (
        f"*#{item.id}* {who(item.requester_id)} asks for {code(item.label, 100)} for {format_duration(item.duration)}"
        f" · asked {when(item.created_at)}"
    )
    if item.emergency:
        line += " · 🚨 emergency"
    return [
        section(f"{line}\n{_reason(item)}"),
        actions(
            button(ActionId.APPROVE, "Approve", item.id, "primary"),
            button(ActionId.DENY, "Deny…", item.id, "danger"),
        ),
    ]


def _extension_to_decide(item: RequestView, now: datetime) -> list[Block]:
    """An ask for more time: its buttons name the round, as the thread's do, so a late click never decides a later
    ask."""
    more = format_duration(timedelta(seconds=item.extension_seconds or 0))
    line = (
        f"*#{item.id}* {who(item.requester_id)} asks for {more} more on {code(item.label, 100)}"
        f" · ends {when(item.expires_at)} · {_left(now, item.expires_at)}"
    )
    value = f"{item.id}:{item.extension_round}"
    return [
        section(f"{line}\n{_reason(item)}"),
        actions(
            button(ActionId.APPROVE_EXTENSION, "Approve extension", value, "primary"),
            button(ActionId.DENY_EXTENSION, "Deny extension", value, "danger"),
        ),
    ]


def _owed(item: RequestView, now: datetime) -> list[Block]:
    line = f"*#{item.id}* {code(item.label, 100)} · access ended {when(item.ended_at)}"
    return [section(line, accessory=button(ActionId.WRITE_REVIEW, "Write review", item.id, "primary"))]


def _sign_off(item: RequestView, now: datetime) -> list[Block]:
    written = item.review.written_at if item.review else None
    line = f"*#{item.id}* {code(item.label, 100)} held by {who(item.requester_id)} · account written {when(written)}"
    return [section(line, accessory=button(ActionId.WRITE_REVIEW, "Sign off", item.id))]


LISTS: list[tuple[str, str, str, Any]] = [
    # (the page's field, its title, what an empty list says, how an item is drawn)
    ("grants", "🔓 Your access", "No access right now.", _grant),
    ("pending", "⏳ Your requests waiting for approval", "None waiting.", _pending),
    ("to_decide", "👋 Waiting for your decision", "Nothing waits for your decision.", _to_decide),
    ("reviews_owed", "📝 Reviews you owe", "None owed.", _owed),
    ("to_sign_off", "✅ Reviews waiting for your sign-off", "None waiting.", _sign_off),
]


def _list(title: str, empty: str, listed: Section, draw: Any, now: datetime) -> list[Block]:
    if not listed.total:
        return [context(f"*{title}* · {empty}")]
    blocks = [section(f"*{title}* ({listed.total})")]
    for item in listed.shown:
        blocks += draw(item, now)
    if listed.total > len(listed.shown):
        blocks.append(context(f"Showing {len(listed.shown)} of {listed.total}, the most urgent first. {MORE}"))
    return blocks


def home_view(page: Page) -> dict[str, Any]:
    """The view to publish for ``page.user_id``."""
    blocks: list[Block] = [header("Breakglass")]
    if page.first_visit or page.empty:
        blocks.append(section(INTRO))
    blocks.append(actions(button(ActionId.OPEN_REQUEST_FORM, "Request access", style="primary")))
    for field, title, empty, draw in LISTS:
        blocks.append(divider())
        blocks += _list(title, empty, getattr(page, field), draw, page.now)
    if len(blocks) > MAX_BLOCKS:  # not with SHOWN as it is; kept as the last guard, should the lists grow
        blocks = [*blocks[: MAX_BLOCKS - 1], context(f"The page is full. {MORE}")]
    return {"type": "home", "blocks": blocks}
