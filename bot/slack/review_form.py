"""The review form ("Write review", "Sign off"): the holder's account of what happened, or a signer's notes.

Pure builders of a Slack modal (``CallbackId.REVIEW``). Like the decision forms (bot/slack/modals.py) it carries the
request and the channel to answer in as its ``private_metadata`` and has one text input (``WORDS_BLOCK`` /
``WORDS_INPUT``), here of at most ``reviews.MAX_NOTES`` characters, the typed command's limit. Which form a person
gets follows who they are, as in `/breakglass review <id> <notes…>`: the holder writes the account; anyone else who
may sign off reads the review packet, as `/breakglass review <id>` shows it (inert, cut into sections Slack takes),
and signs off. Every label fits Slack's limits (a title 24 characters).
"""

from __future__ import annotations

from bot.domain.durations import format_duration
from bot.domain.states import ReviewStatus
from bot.services.reviews import MAX_NOTES, Packet
from bot.services.snapshots import RequestView
from bot.slack.fields import MAX_SECTION, Block, context, divider, input_block, plain, section, sections, text_input
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, CallbackId
from bot.slack.modals import View, metadata
from bot.slack.review_packet import packet_text
from bot.slack.text import code, escape, when

ACCOUNT_LABEL = "What happened, what you changed, what follows"
PACKET_BLOCKS = 20  # sections of the packet at most (its budget needs 5); the modal holds 100 blocks


def review_form(packet: Packet, actor: str, channel: str) -> View:
    """The form ``actor`` may fill in now (``reviews.form`` said so): the account for the holder, else the sign-off."""
    if actor == packet.request.requester_id:
        return account_form(packet.request, channel)
    return sign_off_form(packet, channel)


def account_form(view: RequestView, channel: str) -> View:
    ends = f" · ended {when(view.ended_at)}" if view.ended_at else ""
    about = [
        f"*Request #{view.id}* · {code(view.label)} for {format_duration(view.duration)}{ends}"
        + (" · 🚨 glass broken" if view.emergency else ""),
        f"*Reason* {escape(view.reason, 1000)}",  # last: nothing of ours follows it on the line
    ]
    return _form(
        view.id,
        channel,
        title="Write review",
        submit="Submit review",
        intro=[section("\n".join(about))],
        label=ACCOUNT_LABEL,
        hint=(
            "Your account of the post-incident review: the audit trail keeps it, and an approver of the resource or "
            f"a reviewer then signs it off. At most {MAX_NOTES} characters."
        ),
    )


def sign_off_form(packet: Packet, channel: str) -> View:
    shown = sections(packet_text(packet), MAX_SECTION)
    intro = shown[:PACKET_BLOCKS]
    if len(shown) > PACKET_BLOCKS:
        intro.append(context(f"…the rest is in `/breakglass review {packet.request.id}`."))
    return _form(
        packet.request.id,
        channel,
        title="Sign off review",
        submit="Sign off",
        intro=[*intro, divider()],
        label="Your notes on signing it off",
        hint=f"Recorded with your sign-off; the holder is told it is signed off. At most {MAX_NOTES} characters.",
    )


def _form(request_id: int, channel: str, *, title: str, submit: str, intro: list[Block], label: str, hint: str) -> View:
    element = text_input(WORDS_INPUT, multiline=True, max_length=MAX_NOTES)
    element["min_length"] = 1
    return {
        "type": "modal",
        "callback_id": CallbackId.REVIEW.value,
        "private_metadata": metadata(request_id, channel),
        "title": plain(title, 24),
        "submit": plain(submit, 24),
        "close": plain("Cancel", 24),
        "clear_on_close": True,
        "notify_on_close": False,
        "blocks": [*intro, input_block(WORDS_BLOCK, label, element, hint=hint)],
    }


def recorded(reviewed: RequestView) -> str:
    """What the person is told once their words are recorded, typed (`/breakglass review <id> <notes…>`) or sent
    with the form: the account is written, or the review signed off."""
    if reviewed.review is not None and reviewed.review.status == ReviewStatus.DONE:
        return f"📝 Review of request #{reviewed.id} signed off. Thank you."
    return (
        f"📝 Your review of request #{reviewed.id} is written. Thank you. An approver or a reviewer signs it "
        "off next; they have been told."
    )
