"""Replies in the thread of a request's approval message: everything that happens to it after the message, in words.

A reply calls on exactly the people its note names (``mentions``: the deciders of the step waiting, the backups);
everyone else, the requester and whoever acted included, is named without a mention, so a thread notifies only the
people it asks for something.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bot.domain.durations import format_duration
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.slack import notices
from bot.slack.blocks import mentions
from bot.slack.fields import actions, button, section
from bot.slack.ids import ActionId
from bot.slack.text import code, escape

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")


def _name(user_id: str | None, name: str | None = None) -> str:
    if name:
        return escape(name, 80)
    return code(user_id or "someone", 40)


def _quiet(text: str, view: RequestView) -> str:
    """A notice's words for the thread: the requester named instead of mentioned (their DM already told them)."""

    def named(match: re.Match[str]) -> str:
        user = match.group(1)  # only the requester is named: others mentioned there are whoever just acted
        return _name(user, view.requester_name) if user == view.requester_id else match.group(0)

    return _USER_MENTION.sub(named, text)


def _words(note: dict[str, Any]) -> str:
    words = note.get("words")
    return f": “{escape(str(words), 500)}”" if words else ""


def _calling(note: dict[str, Any]) -> str:
    ids = [str(entry) for entry in note.get("mentions") or []]
    return mentions(ids) if ids else "nobody left to ask: see the request's approvers in the policy"


def _step_approved(view: RequestView, note: dict[str, Any]) -> str:
    actor = _name(note.get("actor"), note.get("actor_name"))
    step = int(note.get("step") or 0)
    where = f" {view.step_name(step)}" if len(view.steps) > 1 else ""
    text = f"👍 {actor} approved{where}{_words(note)}."
    if note.get("next_step") is not None:
        done, following = view.step_name(step).capitalize(), view.step_name(int(note["next_step"]))
        return f"{text} ✅ {done} is done; now asking for {following}: {_calling(note)}"
    return f"{text} Still waiting: {_calling(note)}"


def _reminder(view: RequestView, note: dict[str, Any]) -> str:
    waited = format_duration(timedelta(seconds=int(note.get("waited") or 0)))
    step = f" for {view.step_name(view.waiting_step)}" if len(view.steps) > 1 and view.waiting_step is not None else ""
    return (
        f"⏰ Reminder: request #{view.id} ({view.label}) has waited {waited}{step}. {_calling(note)}, please decide "
        "above."
    )


def _escalated(view: RequestView, note: dict[str, Any]) -> str:
    waited = format_duration(timedelta(seconds=int(note.get("waited") or 0)))
    return (
        f"📈 No decision on request #{view.id} after {waited}: asking the backup approvers too. {_calling(note)}, "
        "you may decide it now."
    )


def _auto_approved(view: RequestView, note: dict[str, Any]) -> str:
    schedule = code(str(note.get("schedule") or "?"), 64)
    return (
        f"⚡ Approved at once: {_name(view.requester_id, view.requester_name)} is on call now for schedule {schedule} "
        "(`auto_approve`). No approver was asked."
    )


def _paged(view: RequestView, note: dict[str, Any]) -> str:
    schedule = code(str(note.get("schedule") or "?"), 64)
    if note.get("failed"):
        return f"⚠️ Could not page the on-call of schedule {schedule}: {escape(str(note['failed']), 300)}. Call them."
    url = str(note.get("url") or "")
    key = code(str(note.get("key") or ""), 80)
    page = f"<{url}|the page>" if url.startswith("https://") and not any(c in url for c in "<>| ") else f"page {key}"
    return f"📟 Breaking the glass paged the on-call of schedule {schedule}: {page}."


def _oncall_unknown(view: RequestView, note: dict[str, Any]) -> str:
    why = escape(str(note.get("why") or "no answer"), 200)
    if note.get("about") == "incident":
        return (
            f"⚠️ The on-call service could not say whether an incident is open ({why}). The glass was broken without "
            "that check, as an outage must not keep it whole: the review should confirm the emergency was real."
        )
    return (
        f"⚠️ The on-call service could not say who is on call ({why}), so "
        "nobody was approved or asked because of it: the listed approvers decide."
    )


def _extension_asked(view: RequestView, note: dict[str, Any]) -> str:
    more = format_duration(timedelta(seconds=view.extension_seconds or 0))
    actor = _name(note.get("actor"), note.get("actor_name"))
    if note.get("approved"):  # one approval of several: the extension still waits
        step = f" for {view.step_name(view.waiting_step)}" if view.waiting_step is not None else ""
        head = f"👍 {actor} approved {more} more on request #{view.id} ({view.label}); it still waits{step}."
    else:
        head = f"⏩ {actor} asks for {more} more on request #{view.id} ({view.label}), approved like the request."
    why = f"\nWhy{_words(note)}" if note.get("words") else ""  # last: nothing of ours follows the holder's words
    return (
        f"{head} {_calling(note)}: approve or deny it with the buttons here (or "
        f"`/breakglass extend {view.id} {more}`); unapproved, access ends as planned.{why}"
    )


def extension_buttons(view: RequestView) -> dict[str, Any]:
    """Approve / Deny of the extension that waits. Each carries ``<request id>:<round>``, so a button of an earlier
    extension of the same request can never decide a later one (bot/slack/listeners/more_time.py)."""
    value = f"{view.id}:{view.extension_round}"
    return actions(
        button(ActionId.APPROVE_EXTENSION, "Approve extension", value, style="primary"),
        button(ActionId.DENY_EXTENSION, "Deny extension", value, style="danger"),
        block_id=f"extension-{view.extension_round}",
    )


_REPLIES: dict[Notice, Callable[[RequestView, dict[str, Any]], str]] = {
    Notice.STEP_APPROVED: _step_approved,
    Notice.REMINDER: _reminder,
    Notice.ESCALATED: _escalated,
    Notice.AUTO_APPROVED: _auto_approved,
    Notice.PAGED: _paged,
    Notice.ONCALL_UNKNOWN: _oncall_unknown,
    Notice.EXTENSION_ASKED: _extension_asked,
}


THREAD_ONLY = frozenset(_REPLIES)  # said only in a thread; every other notice is also a DM or a channel notice


def reply_blocks(view: RequestView, notice: Notice, note: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The reply's blocks where it carries buttons (an extension that waits: the approvers decide it there); None
    for a reply of text alone."""
    if notice is not Notice.EXTENSION_ASKED or view.extension_seconds is None:
        return None
    return [section(reply(view, notice, note)), extension_buttons(view)]


def reply(view: RequestView, notice: Notice, note: dict[str, Any]) -> str:
    render = _REPLIES.get(notice)
    if render is not None:
        return render(view, note)
    return _quiet(notices.to_channel(view, notice), view)
