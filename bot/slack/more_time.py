"""The more-time form: how much longer the holder wants their access, and why.

A pure builder of the Slack modal ``ActionId.ASK_MORE_TIME`` opens. It offers only durations that fit the room the
grant's limits leave (and a free entry, checked on submit against the same room), so a person who never read the
README cannot pick what will be refused. It carries the request and the channel it was opened from in its
``private_metadata`` as the decision forms do (``modals.metadata``); its submission is read in
``bot/slack/listeners/more_time.py``. Every label fits Slack's limits (a title 24 characters).
"""

from __future__ import annotations

import json
from datetime import timedelta

from bot.domain.durations import format_duration
from bot.services.extension_asks import MAX_WHY, Room
from bot.services.snapshots import RequestView
from bot.slack.fields import Block, input_block, option, plain, section, static_select, text_input
from bot.slack.ids import MORE_PICK, MORE_PICK_BLOCK, MORE_TYPED, MORE_TYPED_BLOCK, WORDS_BLOCK, WORDS_INPUT, CallbackId
from bot.slack.modals import MAX_WORDS, View, metadata
from bot.slack.text import code, when, who

# What is offered, where it fits; the room left is always offered too, so there is a choice however little is left.
OFFERED = tuple(timedelta(minutes=m) for m in (15, 30, 60, 120, 240, 480, 720, 1440))
MAX_TYPED = 20  # characters of a typed duration: "1h30m" is five


def choices(left: timedelta) -> list[tuple[str, str]]:
    """(value, label) of every duration offered when ``left`` fits under the grant's limits, shortest first."""
    fitting = [d for d in OFFERED if d <= left]
    made = [(format_duration(d), format_duration(d)) for d in fitting]
    if left not in fitting:
        made.append((format_duration(left), f"{format_duration(left)} (all that is left)"))
    return made


def form(room: Room, channel: str) -> View:
    current = room.current
    left = format_duration(room.left)
    longest = format_duration(room.limits.limits[2])
    decides = (
        "Your access is extended at once, as you broke the glass (or were on call); security hears of it."
        if room.at_once
        else "The request's approvers decide it, with buttons in its thread; you hear here what they decide."
    )
    about = (
        f"*Request #{current.id}* · {code(current.label)} · ends {when(current.expires_at)}\n"
        f"Up to *{left}* more fits: {code(room.limits.label)} allows {longest} in all. {decides}"
    )
    options = [option(label, value) for value, label in choices(room.left)]
    blocks: list[Block] = [
        section(about),
        input_block(
            MORE_PICK_BLOCK,
            "How much more",
            static_select(MORE_PICK, options, placeholder="Choose a duration"),
            optional=True,  # a typed duration may be given instead; the submission says when neither is
        ),
        input_block(
            MORE_TYPED_BLOCK,
            "Or type a duration",
            text_input(MORE_TYPED, max_length=MAX_TYPED, placeholder="e.g. 45m or 1h30m"),
            hint=f"At most {left} more. A typed duration is used over the choice above.",
            optional=True,
        ),
        input_block(
            WORDS_BLOCK,
            "Why more time?",
            text_input(WORDS_INPUT, multiline=True, max_length=MAX_WHY, placeholder="What is left to do"),
            # Optional, as `/breakglass extend` asks for no words: the request's own reason (and ticket) still stands.
            hint="Optional. The approvers see it with your ask, beside the request's reason.",
            optional=True,
        ),
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.MORE_TIME.value,
        "private_metadata": metadata(current.id, channel),
        "title": plain("Ask for more time", 24),
        "submit": plain("Extend" if room.at_once else "Ask", 24),
        "close": plain("Cancel", 24),
        "clear_on_close": True,
        "notify_on_close": False,
        "blocks": blocks,
    }


def said_to(actor: str, view: RequestView) -> str:
    """What the person who asked for more time (or approved some) hears: typed or through the form alike."""
    if view.extension_seconds is None:
        return f"⏩ Request #{view.id} now lasts until {when(view.expires_at)}."
    more = format_duration(timedelta(seconds=view.extension_seconds))
    if actor == view.requester_id:
        return (
            f"⏳ You asked for {more} more on request #{view.id}. Its approvers were called on in the request's "
            "thread; you will hear here what they decide. Until then, access ends as planned."
        )
    step = view.step_name(view.waiting_step) if view.waiting_step is not None else "more approvals"
    return (
        f"⏳ Your approval of {more} more for #{view.id} is recorded. The extension waits for {step}; its approvers "
        "were called on in the request's thread."
    )


def deny_form(view: RequestView, channel: str) -> View:
    """Why the extension is denied: its asker is told it, as a denied requester is. The metadata names the round, so
    a form kept open while that extension was settled and another asked denies nothing."""
    more = format_duration(timedelta(seconds=view.extension_seconds or 0))
    about = (
        f"*Request #{view.id}* · {code(view.label)} · ends {when(view.expires_at)}\n"
        f"{who(view.requester_id)} asks for *{more}* more. Denied, access ends as planned."
    )
    data = json.loads(metadata(view.id, channel)) | {"round": view.extension_round}
    return {
        "type": "modal",
        "callback_id": CallbackId.DENY_EXTENSION.value,
        "private_metadata": json.dumps(data, separators=(",", ":")),
        "title": plain("Deny extension", 24),
        "submit": plain("Deny", 24),
        "close": plain("Cancel", 24),
        "clear_on_close": True,
        "notify_on_close": False,
        "blocks": [
            section(about),
            input_block(
                WORDS_BLOCK,
                "Why deny it?",
                text_input(WORDS_INPUT, multiline=True, max_length=MAX_WORDS),
                hint=f"The holder and the audit trail see this. At most {MAX_WORDS} characters.",
            ),
        ],
    }
