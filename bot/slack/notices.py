"""What people are told, in words: DMs to the requester and notices in channels."""

from __future__ import annotations

from collections.abc import Callable

from bot.domain.durations import format_duration
from bot.services.ports import Notice
from bot.services.snapshots import RequestView
from bot.slack.text import escape, placeholders, quote, secret, units, when, who

FAILURE_SHOWN = 500  # characters of a backend's error shown in a message
INSTRUCTIONS_SHOWN = 2000  # characters of an adapter's instructions
SECRET_SHOWN = 30_000  # UTF-16 units; Slack cuts a message at 40,000, and a cut secret is worse than none


def linked(text: str, view: RequestView) -> str:
    """A notice with a link to the request's approval message, where its whole story is (edits and thread)."""
    link = view.approval_link
    if not link or not link.startswith("https://") or any(c in link for c in "<>| "):
        return text
    return f"{text}\n<{link}|Open request #{view.id}>"


def _ref(view: RequestView) -> str:
    return f"#{view.id} ({view.label}, {format_duration(view.duration)})"


def _active(view: RequestView) -> str:
    text = f"✅ Your access to *{view.label}* is active until {when(view.expires_at)}. Request {_ref(view)}."
    return text + _how_to_use(view)


def _emergency(view: RequestView) -> str:
    text = (
        f"🚨 Glass broken: you have emergency access to *{view.label}* until {when(view.expires_at)}. "
        "The security channel has been told, and a post-incident review will be due when access ends: "
        + placeholders(f"`/breakglass review {view.id} <what happened>`.")
    )
    return text + _how_to_use(view)


def _how_to_use(view: RequestView) -> str:
    """The adapter's instructions, quoted line by line, last in the message."""
    return "\n" + quote(view.instructions, INSTRUCTIONS_SHOWN) if view.instructions else ""


def _failure(view: RequestView) -> str:
    """A backend's error, last in its message, so nothing of ours follows it."""
    return escape(view.failure or "no details", FAILURE_SHOWN)


def credentials(view: RequestView, one_time: str) -> str:
    """The one message that carries a one-time secret. Breakglass keeps no other copy."""
    shown = secret(one_time)
    if units(shown) > SECRET_SHOWN:
        shown = f"too long for a Slack message ({len(one_time)} characters), so not sent; ask the backend's owners"
    return (
        f"🔑 Your one-time credentials for *{view.label}* (request #{view.id}): {shown}\n"
        f"They stop working {when(view.expires_at)}. Breakglass keeps no copy: this message is the only one."
    )


def _because(view: RequestView) -> str:
    denial = view.denial
    return f": “{escape(denial.comment, 500)}”" if denial and denial.comment else "."


def _comments(view: RequestView) -> str:
    said = [f"\n💬 {who(d.approver_id)}: “{escape(d.comment or '', 500)}”" for d in view.comments if d.approve]
    return "".join(said)


def _extension_denied(v: RequestView) -> str:
    """Who said no to the extension last asked for (its round's denial), and when access ends now."""
    denial = next((d for d in reversed(v.decisions) if not d.approve and d.round == v.extension_round), None)
    by = f" by {who(denial.approver_id)}" if denial else ""
    words = f": “{escape(denial.comment, 500)}”" if denial and denial.comment else "."
    head = f"⛔ More time on request {_ref(v)} was denied{by}; access still ends {when(v.expires_at)}"
    return head + words  # last: the approver's words, so nothing of ours follows them


_TO_REQUESTER: dict[Notice, Callable[[RequestView], str]] = {
    Notice.RECEIVED: lambda v: f"📨 Request {_ref(v)} is with the approvers. You will hear here when they decide.",
    Notice.APPROVED: lambda v: f"👍 Request {_ref(v)} was approved; granting access now.{_comments(v)}",
    Notice.AUTO_APPROVED: lambda v: (
        f"⚡ Request {_ref(v)} was approved at once: you are on call now. This is recorded and shown to the approvers."
    ),
    Notice.EXTENSION_DENIED: _extension_denied,
    Notice.EXTENSION_DROPPED: lambda v: (
        f"⌛ Access of request {_ref(v)} ended before the more time you asked for was decided; that ask is dropped."
    ),
    Notice.DENIED: lambda v: f"⛔ Request {_ref(v)} was denied by {who(v.denier)}{_because(v)}",
    Notice.ACTIVE: _active,
    Notice.GRANT_FAILED: lambda v: (
        f"⚠️ Request {_ref(v)} was approved, but granting access failed. "
        f"You do *not* have access; the security channel has been told. Why: {_failure(v)}"
    ),
    Notice.EXPIRING: lambda v: f"⏰ Your access to *{v.label}* ends {when(v.expires_at)}. Request {_ref(v)}.",
    Notice.EXPIRED: lambda v: (
        f"⌛ Your access to *{v.label}* ended {when(v.access_ended_at)}: it has expired and was revoked. "
        f"Request {_ref(v)}."
    ),
    Notice.REVOKED: lambda v: f"🛑 Your access to *{v.label}* was revoked by {who(v.ended_by)}. Request {_ref(v)}.",
    Notice.CANCELLED: lambda v: f"⌛ Request {_ref(v)} got no decision in time and lapsed.",
    Notice.EMERGENCY: _emergency,
    Notice.REVIEW_DUE: lambda v: (
        f"📝 A post-incident review is due for request {_ref(v)}: write what happened and why with "
        + placeholders(f"`/breakglass review {v.id} <what happened, what you changed, what follows>`")
        + ". An approver or a reviewer then signs it off."
    ),
    Notice.REVIEW_REMINDER: lambda v: (
        f"📝 Reminder: your account for the post-incident review of request {_ref(v)} is still due. "
        + placeholders(f"`/breakglass review {v.id} <what happened and why…>`")
    ),
    Notice.EXTENDED: lambda v: (
        f"⏩ Your access to *{v.label}* now lasts until {when(v.expires_at)}. Request {_ref(v)}."
    ),
    Notice.REVIEW_DONE: lambda v: (
        f"📝 The review of request {_ref(v)} was signed off by {who(v.review.reviewer_id if v.review else None)}."
    ),
}


def _mention(entry: str) -> str:
    """A user or a user group from the policy, called on by name: a group's mention reaches its members."""
    return f"<!subteam^{entry}>" if entry.startswith("S") and entry.isalnum() else who(entry)


def _signers(v: RequestView) -> str:
    signers = v.review.signers if v.review else ()
    return ", ".join(_mention(s) for s in signers[:20]) or "an approver or a reviewer"


def _sign_off_how(v: RequestView) -> str:
    return f"`/breakglass review {v.id}` shows the request, decisions, timeline and activity; " + placeholders(
        f"`/breakglass review {v.id} <notes…>` signs it off."
    )


_TO_CHANNEL: dict[Notice, Callable[[RequestView], str]] = {
    Notice.RECEIVED: lambda v: f"🔐 {who(v.requester_id)} asked for access to *{v.label}* (request #{v.id}).",
    Notice.ACTIVE: lambda v: (
        f"✅ {who(v.requester_id)} has access to *{v.label}* until {when(v.expires_at)} (#{v.id})."
    ),
    Notice.EMERGENCY: lambda v: (
        f"🚨 {who(v.requester_id)} broke the glass on *{v.label}*: access until {when(v.expires_at)} (#{v.id})."
    ),
    Notice.DENIED: lambda v: f"⛔ Access to *{v.label}* for {who(v.requester_id)} was denied (#{v.id}).",
    Notice.EXPIRED: lambda v: (
        f"⌛ Access to *{v.label}* for {who(v.requester_id)} ended {when(v.access_ended_at)} (#{v.id})."
    ),
    Notice.REVOKED: lambda v: f"🛑 Access to *{v.label}* for {who(v.requester_id)} was revoked (#{v.id}).",
    Notice.GRANT_FAILED: lambda v: (
        f"⚠️ Granting {who(v.requester_id)} access to *{v.label}* failed (#{v.id}): {_failure(v)}"
    ),
    Notice.REVOKE_FAILED: lambda v: (
        f"🚨 Revoking {who(v.requester_id)}'s access to *{v.label}* keeps failing (#{v.id}, "
        f"{v.revoke_attempts} attempts). Breakglass keeps retrying; check the backend. Last error: {_failure(v)}"
    ),
    Notice.EXTENDED: lambda v: (
        f"⏩ {who(v.requester_id)}'s access to *{v.label}* was extended until {when(v.expires_at)} (#{v.id})."
    ),
    Notice.APPROVED: lambda v: f"👍 Request #{v.id} ({v.label}) for {who(v.requester_id)} was approved.{_comments(v)}",
    Notice.AUTO_APPROVED: lambda v: (
        f"⚡ {who(v.requester_id)} is on call now, so their request #{v.id} for *{v.label}* was approved at once "
        "(`auto_approve`)."
    ),
    Notice.CANCELLED: lambda v: f"⌛ Request #{v.id} ({v.label}) for {who(v.requester_id)} got no decision in time.",
    Notice.REVIEW_DUE: lambda v: (
        f"📝 A post-incident review of request #{v.id} ({v.label}) is due from {who(v.requester_id)}; an approver or "
        "a reviewer signs it off once it is written."
    ),
    Notice.EXPIRING: lambda v: f"⏰ {who(v.requester_id)}'s access to *{v.label}* ends {when(v.expires_at)} (#{v.id}).",
    Notice.REVOKE_RECOVERED: lambda v: (
        f"✅ Access to *{v.label}* for {who(v.requester_id)} is revoked at last (#{v.id})."
    ),
    Notice.REVIEW_OVERDUE: lambda v: (
        f"📝 The post-incident review of request #{v.id} ({v.label}, {who(v.requester_id)}) is overdue: "
        "the holder's account is not written yet."
    ),
    Notice.REVIEW_WRITTEN: lambda v: (
        f"📝 {who(v.requester_id)} wrote the review of request #{v.id} ({v.label}). Sign-off awaited from "
        f"{_signers(v)}: {_sign_off_how(v)}"
    ),
    Notice.REVIEW_SIGN_OFF: lambda v: (
        f"📝 Reminder: the review of request #{v.id} ({v.label}, {who(v.requester_id)}) is written and still awaits "
        f"a sign-off from {_signers(v)}: {_sign_off_how(v)}"
    ),
}


def to_requester(view: RequestView, notice: Notice) -> str:
    return _TO_REQUESTER[notice](view)


def to_channel(view: RequestView, notice: Notice) -> str:
    render = _TO_CHANNEL.get(notice)
    return render(view) if render else to_requester(view, notice)
