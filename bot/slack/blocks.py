"""Block Kit builders: pure functions from a stored request to a message, so any message can be rendered again
from the database at any time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from bot.domain.approvals import mention
from bot.domain.commands import USAGE
from bot.domain.durations import format_duration
from bot.domain.states import ReviewStatus, Status
from bot.services.requests import Offer
from bot.services.snapshots import RequestView
from bot.slack.ids import ActionId
from bot.slack.text import code, escape, placeholders, quote, when, who

Block = dict[str, Any]
FAILURE_SHOWN = 500  # characters of a backend's error shown in a message
MAX_LISTED = 25  # entries of each list in `/breakglass mine`


def _mrkdwn(text: str) -> Block:
    # verbatim: Slack links nothing by itself (typed URLs, #channel names, @names); only the bot's own <…> count.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _button(action: ActionId, label: str, request_id: int, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "action_id": action.value,
        "text": {"type": "plain_text", "text": label},
        "value": str(request_id),
    }
    if style:
        button["style"] = style
    return button


def title(view: RequestView) -> str:
    if view.emergency:
        return f"🚨 BREAK-GLASS: emergency access #{view.id}"
    return f"🔐 Access request #{view.id}"


def state_line(view: RequestView) -> str:
    """One line saying where the request stands and who made it so."""
    status = view.status
    approved = ", ".join(who(a) for a in view.approvers)
    if status is Status.PENDING:
        got = len(view.approvers)
        line = f"⏳ Waiting for approval ({got} of {view.approvals_required})"
        return f"{line}, approved so far by {approved}" if approved else line
    if status is Status.DENIED:
        denial = view.denial
        because = f": {_words(denial.comment)}" if denial and denial.comment else ""
        return f"⛔ Denied by {who(view.denier)}{because}"
    if status is Status.CANCELLED and view.superseded_by:
        return f"↩️ Superseded by emergency request #{view.superseded_by}"
    if status is Status.CANCELLED:
        return "↩️ Withdrawn by the requester"
    if status is Status.TIMED_OUT:
        return "⌛ No decision in time; the request lapsed"
    if view.emergency:
        decided = "granted at once without approval"
    elif view.auto_approved:
        decided = "approved at once: the requester was on call"
    else:
        decided = f"approved by {approved}"
    if status in (Status.APPROVED, Status.GRANTING):
        return f"⏳ {decided.capitalize()}; granting access…"
    if status is Status.GRANT_FAILED:
        return f"⚠️ {decided.capitalize()}, but the grant failed: {_failure(view)}"
    if status is Status.ACTIVE:
        return f"✅ Active until {when(view.expires_at)} · {decided}"
    if view.end_reason == "grant_failed" and status in (Status.REVOKING, Status.REVOKE_FAILED):
        return f"⚠️ The grant failed; making sure nothing was left on the backend. The backend said: {_failure(view)}"
    if status is Status.REVOKING:
        return f"⏳ Revoking access… · {decided}"
    if status is Status.REVOKE_FAILED:
        return f"⚠️ Revoke failing (attempt {view.revoke_attempts}), retrying: {_failure(view)}"
    if status is Status.EXPIRED:
        return f"⌛ Expired at {when(view.access_ended_at)}{_revoked_later(view)} · {decided}"
    return f"🛑 Revoked by {who(view.ended_by)} at {when(view.ended_at)} · {decided}"


def _revoked_later(view: RequestView) -> str:
    """When the revoke that enforced an expiry landed, if a reader would see a different minute from the expiry's."""
    ended, revoked = view.access_ended_at, view.ended_at
    if (
        ended is None
        or revoked is None
        or ended.replace(second=0, microsecond=0) == revoked.replace(second=0, microsecond=0)
    ):
        return ""
    return f", revoked {when(revoked)}"


def _failure(view: RequestView) -> str:
    """A backend's error: last on its line, so nothing of ours follows it."""
    return escape(view.failure or "unknown error", FAILURE_SHOWN)


def _words(text: str | None) -> str:
    """What a decider wrote, quoted and inert."""
    return f"“{escape(text or '', 300)}”"


def mentions(ids: Sequence[str]) -> str:
    """Mentions that notify: the only ones a message of ours carries, built from policy ids, never from typed text."""
    return " ".join(mention(entry) for entry in ids)


def requester_name(view: RequestView) -> str:
    """The requester, named without a mention: the approval message calls on its deciders and nobody else."""
    if view.requester_name:
        return f"{escape(view.requester_name, 80)} ({code(view.requester_id, 40)})"
    return code(view.requester_id, 40)


def steps_lines(view: RequestView) -> list[str]:
    """Each step of a multi-step approval: done, waiting, or still to come."""
    if len(view.steps) < 2 or view.emergency or view.auto_approved:  # no step was asked
        return []
    pending = view.status is Status.PENDING
    lines = []
    for index, step in enumerate(view.steps):
        if not pending and not step.approved_by:  # decided before this step was reached: it was never asked
            continue
        name = view.step_name(index).capitalize()
        by = ", ".join(who(person) for person in step.approved_by)
        if len(step.approved_by) >= step.required:
            lines.append(f"✅ {name}: approved by {by}")
        elif index == view.waiting_step or not pending:
            got = f", {len(step.approved_by)} of {step.required} so far by {by}" if by else ""
            lines.append(f"⏳ {name}: waiting for {step.required} approval{'s' if step.required > 1 else ''}{got}")
        else:
            lines.append(
                f"◻️ {name}: {step.required} approval{'s' if step.required > 1 else ''}, asked once the "
                "step before it is approved"
            )
    return lines


def asking_line(view: RequestView) -> str | None:
    """Who is asked to decide now, as mentions: the people of the step waiting (and on call, and the backups once
    escalated)."""
    if view.status is not Status.PENDING or not view.asking:
        return None
    step = f" for {view.step_name(view.waiting_step)}" if len(view.steps) > 1 and view.waiting_step is not None else ""
    escalated = " (escalated)" if view.escalated else ""
    return f"👋 Asking{step}{escalated}: {mentions(view.asking)}"


def review_line(view: RequestView) -> str | None:
    review = view.review
    if review is None:
        return None
    if review.status == ReviewStatus.DONE:
        return (
            f"📝 Review: ✅ account by {who(review.author_id)} at {when(review.written_at)} · ✅ signed off by "
            f"{who(review.reviewer_id)} at {when(review.done_at)}"
        )
    if review.status == ReviewStatus.WRITTEN:
        return (
            f"📝 Review: ✅ account by {who(review.author_id)} at {when(review.written_at)} · ⏳ sign-off awaited "
            "from an approver or a reviewer"
        )
    return f"📝 Review: ⏳ account due from {who(view.requester_id)} · then a sign-off by an approver or a reviewer"


def _as(view: RequestView) -> str:
    """The backend identity, when it is not just the Slack id: approvers should see who exactly gets in."""
    if not view.principal or view.principal == view.requester_id:
        return ""
    return f" as {escape(view.principal, 130)}"


def request_message(view: RequestView, alert: bool = False) -> tuple[str, list[Block]]:
    """The message in the approvals channel, or (``alert``) an emergency's alert in the audit channel. Edited in place
    on every change. It mentions the deciders of the step waiting (the alert: whoever must hear of broken glass),
    and nobody else: the requester is named, not mentioned."""
    calling = view.audit_mentions if alert else (view.asking if view.status is Status.PENDING else ())
    called = f" · {mentions(calling)}" if calling else ""
    summary = (
        f"{title(view)}: {escape(view.requester_name or view.requester_id, 80)} · {view.label} · "
        f"{format_duration(view.duration)} · {view.status.value.replace('_', ' ')}{called}"
    )
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(view)}},
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*Requester*\n{requester_name(view)}"),
                _mrkdwn(f"*Resource*\n{code(view.label)}{_as(view)}"),
                _mrkdwn(f"*Duration*\n{format_duration(view.duration)}"),
                _mrkdwn(f"*Emergency*\n{'yes, glass broken' if view.emergency else 'no'}"),
            ],
        },
        _section(f"*Reason*\n{escape(view.reason)}"),
    ]
    if view.lesser_levels:  # approvers see the choice: less access would have been enough?
        lesser = ", ".join(code(f"{view.resource}:{level}") for level in view.lesser_levels)
        more = f"🔎 This asks for more than the least: {lesser} was available."
        if view.status is Status.PENDING:
            more += " Approve only if that would not do."
        blocks.append(_context(more))
    if alert and view.audit_mentions:
        blocks.append(_context(f"📣 {mentions(view.audit_mentions)}"))
    if view.auto_approved:  # loud: nobody approved this but the schedule
        blocks.append(
            _section("⚡ *Approved at once without an approver*: the requester is on call now (`auto_approve`).")
        )
    for line in steps_lines(view):
        blocks.append(_context(line))
    blocks.append(_context(state_line(view)))
    for decision in view.comments:
        if decision.approve:
            blocks.append(_context(f"💬 {who(decision.approver_id)} approved: {_words(decision.comment)}"))
    asking = asking_line(view)
    if asking:
        blocks.append(_section(asking))
    review = review_line(view)
    if review:
        blocks.append(_context(review))
    if view.status is Status.PENDING:
        blocks.append(
            {
                "type": "actions",
                "block_id": "decision",
                "elements": [
                    _button(ActionId.APPROVE, "Approve", view.id, "primary"),
                    _button(ActionId.APPROVE_WITH_COMMENT, "Approve with comment", view.id),
                    _button(ActionId.DENY, "Deny…", view.id, "danger"),
                ],
            }
        )
    elif view.status is Status.ACTIVE:
        label = "Revoke now" if view.emergency else "Revoke"
        blocks.append(
            {
                "type": "actions",
                "block_id": "access",
                "elements": [_button(ActionId.REVOKE, label, view.id, "danger")],
            }
        )
    return summary, blocks


def help_text() -> str:
    return f"*Breakglass* gives you temporary access to production, approved by your peers.\n{placeholders(USAGE)}"


def asked_text(view: RequestView) -> str:
    """What came of an access request, typed or made with the form: said to the requester alone."""
    if view.status is Status.ACTIVE:
        text = f"✅ Access to `{view.label}` is active until {when(view.expires_at)} (request #{view.id})."
        if view.emergency:
            text = "🚨 Glass broken. " + text + " Security has been told; a review will be due."
        elif view.auto_approved:
            text = "⚡ Approved at once: you are on call now, and the approvers have been told. " + text
        if view.instructions:
            text += "\n" + quote(view.instructions, 2000)  # every line quoted: none can leave the quote
        return text
    if view.status is Status.GRANT_FAILED:
        failure = escape(view.failure or "no details", 500)  # last: nothing of ours follows it on the line
        return f"⚠️ Granting `{view.label}` failed; you do *not* have access. Why: {failure}"
    # Says what was understood, the reason included, so a word taken the wrong way is seen before approvers act.
    reason = escape(view.reason, 200)  # last: nothing of ours follows it on the line
    return (
        f"📨 Request #{view.id} for `{view.label}` ({format_duration(view.duration)}) is with the approvers. "
        f"Reason: {reason}"
    )


def offers_text(offers: list[Offer]) -> str:
    """`/breakglass list`."""
    lines = ["*Resources you may request*"]
    for offer in offers:
        if not offer.may_request:
            continue
        resource = offer.resource
        low, default, high = resource.limits
        extras = [f"{format_duration(low)} to {format_duration(high)}, default {format_duration(default)}"]
        if resource.required_approvals > 1:
            extras.append(f"{resource.required_approvals} approvals")
        if resource.emergency:
            extras.append("emergency allowed")
        if resource.reason_pattern:
            extras.append(f"reason must match {code(resource.reason_pattern)}")
        if resource.level is not None and not resource.lesser():
            extras.append(f"the default level: {code(resource.name)} asks for it")
        description = f" — {escape(resource.description, 300)}" if resource.description else ""
        lines.append(f"• {code(resource.label)} ({'; '.join(extras)}){description}")
    if len(lines) == 1:
        lines.append("None: you are not a requester of any resource. Ask your platform team.")
    return "\n".join(lines)


def mine_text(
    open_requests: Sequence[RequestView],
    reviews_owed: Sequence[RequestView],
    to_decide: Sequence[RequestView] = (),
    waiting: int | None = None,
    to_sign_off: Sequence[RequestView] = (),
) -> str:
    """`/breakglass mine`: only the person's own requests, and other people's that wait for their decision or
    their sign-off."""
    if not open_requests and not reviews_owed and not to_decide and not to_sign_off:
        return "You have no open requests, grants or reviews due, and nothing waits for your decision."
    lines = []
    if open_requests:
        lines.append("*Your open requests and grants*")
        lines += _listed(
            [f"• #{v.id} {code(v.label)} {format_duration(v.duration)} — {state_line(v)}" for v in open_requests]
        )
    if reviews_owed:
        lines.append(placeholders("*Reviews you owe* (`/breakglass review <id> <what happened and why…>`)"))
        lines += _listed([f"• #{v.id} {code(v.label)} — ended {when(v.access_ended_at)}" for v in reviews_owed])
    if to_sign_off:
        lines.append(placeholders("*Reviews waiting for your sign-off* (`/breakglass review <id>` to read)"))
        lines += _listed(
            [
                f"• #{v.id} {code(v.label)} by {who(v.requester_id)} — written "
                f"{when(v.review.written_at if v.review else None)}"
                for v in to_sign_off
            ]
        )
    if to_decide:
        lines.append("*Waiting for your decision* (in the approvals channel)")
        lines += _listed([_to_decide_line(v) for v in to_decide], total=waiting)
    return "\n".join(lines)


def _to_decide_line(view: RequestView) -> str:
    if view.status is Status.ACTIVE and view.extension_seconds is not None:
        more = format_duration(timedelta(seconds=view.extension_seconds))
        return f"• #{view.id} {code(view.label)} {more} more for {who(view.requester_id)} (an extension, in its thread)"
    return (
        f"• #{view.id} {code(view.label)} {format_duration(view.duration)} for {who(view.requester_id)}: "
        f"{escape(view.reason, 100)}"
    )


def _listed(lines: list[str], total: int | None = None) -> list[str]:
    """At most MAX_LISTED lines, and how many more there are (of ``total``, when only some lines were loaded): a
    long list must not outgrow a Slack message."""
    total = max(total or 0, len(lines))
    if total <= MAX_LISTED and total == len(lines):
        return lines
    shown = lines[:MAX_LISTED]
    return [*shown, f"• …and {total - len(shown)} more"]
