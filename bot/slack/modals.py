"""The forms an approver fills in to decide with words: a denial's reason, an approval's comment.

Pure builders of Slack modal views. A form carries the request it decides on and the channel it was opened from in
its ``private_metadata`` (read back by ``bot/slack/listeners/views.py``), has one text input (``WORDS_BLOCK`` /
``WORDS_INPUT``) that cannot be left empty and holds at most ``MAX_WORDS`` characters, and shows what is being
decided on with everything the requester wrote made inert. Every label fits Slack's limits (a title 24 characters).
"""

from __future__ import annotations

import json
from typing import Any

from bot.domain.durations import format_duration
from bot.services.snapshots import RequestView
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, CallbackId
from bot.slack.text import code, escape, who

MAX_WORDS = 500  # characters of a reason or comment: enough for a sentence or three, short enough to show in full

View = dict[str, Any]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def metadata(request_id: int, channel: str) -> str:
    """What the form remembers: the request, and where to answer the person once it is submitted."""
    return json.dumps({"request": request_id, "channel": channel}, separators=(",", ":"))


def _about(view: RequestView) -> dict[str, Any]:
    """The request as the approver saw it on the message: who asks, for what, how long, and why."""
    lines = [
        f"*Request #{view.id}* · {code(view.label)} for {format_duration(view.duration)}",
        f"*Requester* {who(view.requester_id)}",
        f"*Reason* {escape(view.reason, 1000)}",  # last: nothing of ours follows it on the line
    ]
    return {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}


def _form(
    view: RequestView, channel: str, *, callback: CallbackId, title: str, submit: str, label: str, hint: str
) -> View:
    return {
        "type": "modal",
        "callback_id": callback.value,
        "private_metadata": metadata(view.id, channel),
        "title": _plain(title),
        "submit": _plain(submit),
        "close": _plain("Cancel"),
        "clear_on_close": True,
        "notify_on_close": False,
        "blocks": [
            _about(view),
            {
                "type": "input",
                "block_id": WORDS_BLOCK,
                "optional": False,  # the plain Approve button is there for a decision without words
                "label": _plain(label),
                "hint": _plain(hint),
                "element": {
                    "type": "plain_text_input",
                    "action_id": WORDS_INPUT,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": MAX_WORDS,
                },
            },
        ],
    }


def deny_form(view: RequestView, channel: str) -> View:
    """Deny with a reason: the requester is told it, so they can ask again better or not at all."""
    return _form(
        view,
        channel,
        callback=CallbackId.DENY,
        title="Deny request",
        submit="Deny",
        label="Why deny it?",
        hint=f"The requester and the audit trail see this. At most {MAX_WORDS} characters.",
    )


def approve_form(view: RequestView, channel: str) -> View:
    """Approve with a comment (a condition, a caution): it is recorded with the approval."""
    return _form(
        view,
        channel,
        callback=CallbackId.APPROVE,
        title="Approve with comment",
        submit="Approve",
        label="Your comment",
        hint=f"The requester and the audit trail see this. At most {MAX_WORDS} characters.",
    )
