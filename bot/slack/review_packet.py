"""The review packet (`/breakglass review <id>`), as one ephemeral message: a pure function of what was stored.

Everything a reviewer needs to sign off is in it (the request, its decisions, its review so far, its timeline, the
activity captured) and it always fits one Slack message: every piece of text nobody at Breakglass wrote goes through
bot/slack/text.py, bounded, and the lists stop at a budget, saying how much was left out.
"""

from __future__ import annotations

from bot.domain.durations import format_duration
from bot.domain.states import ReviewStatus
from bot.services.reviews import Action, Moment, Packet
from bot.services.snapshots import RequestView
from bot.slack.text import code, escape, placeholders, units, when, who

BUDGET = 12_000  # UTF-16 units for the whole packet; Slack takes 40,000, but a reviewer reads it on one screen
TIMELINE_HEAD, TIMELINE_TAIL = 10, 30  # a long timeline (reminders, extensions) keeps its start and its end
ACTION_SHOWN = 160  # characters of one captured action


def packet_text(packet: Packet) -> str:
    view = packet.request
    lines = [
        f"*📝 Review of request #{view.id}*" + (" · 🚨 emergency" if view.emergency else ""),
        f"*Request* {who(view.requester_id)} · {code(view.label)} · {format_duration(view.duration)} · "
        f"emergency: {'yes, glass broken' if view.emergency else 'no'} · {view.status.value.replace('_', ' ')}",
        f"*Reason* {escape(view.reason, 500)}",
        f"*Decisions* {_decisions(view)}",
        *_review(view),
        f"*Timeline* ({len(packet.timeline)} events)",
        *_timeline(packet.timeline),
        f"*Activity captured* {_activity_summary(packet)}",
    ]
    used = units("\n".join(lines))
    shown = 0
    for action in packet.shown:
        line = _action(action)
        if used + units(line) + 1 > BUDGET - 100:
            break
        lines.append(line)
        used += units(line) + 1
        shown += 1
    if shown < packet.kept:
        lines.append(f"• …and {packet.kept - shown} more kept actions not shown here")
    return "\n".join(lines)


def _decisions(view: RequestView) -> str:
    if not view.decisions:
        return "none: the glass was broken, access was given at once" if view.emergency else "none"
    return "; ".join(
        f"{'approved' if d.approve else 'denied'} by {who(d.approver_id)} at {when(d.at)}" for d in view.decisions
    )


def _review(view: RequestView) -> list[str]:
    review = view.review
    if review is None:
        return ["*Review* none owed; the holder may write one: " + placeholders(f"`/breakglass review {view.id} <…>`")]
    if review.author_id is None:
        account = f"*Account* awaited from {who(view.requester_id)}"
    else:
        written = f"*Account* by {who(review.author_id)} at {when(review.written_at)}"
        account = f"{written}: {escape(review.account or '', 1500)}"
    if review.status == ReviewStatus.DONE:
        signed = f"*Signed off* by {who(review.reviewer_id)} at {when(review.done_at)}"
        sign_off = f"{signed}: {escape(review.notes or '', 800)}"
    elif review.status == ReviewStatus.WRITTEN:
        sign_off = "*Sign-off* awaited from an approver of the resource or a reviewer: " + placeholders(
            f"`/breakglass review {view.id} <notes…>`"
        )
    else:
        sign_off = "*Sign-off* once the account is written"
    return [account, sign_off]


def _timeline(moments: tuple[Moment, ...]) -> list[str]:
    def line(moment: Moment) -> str:
        return f"• {when(moment.at)} {code(moment.action, 40)} by {who(moment.actor)}"

    if len(moments) <= TIMELINE_HEAD + TIMELINE_TAIL:
        return [line(m) for m in moments]
    left_out = len(moments) - TIMELINE_HEAD - TIMELINE_TAIL
    return [
        *(line(m) for m in moments[:TIMELINE_HEAD]),
        f"• …{left_out} events in between",
        *(line(m) for m in moments[-TIMELINE_TAIL:]),
    ]


def _activity_summary(packet: Packet) -> str:
    if packet.kept == 0 and packet.not_kept == 0:
        return "none (the backend recorded nothing, or does not record what grants do)"
    parts = [f"{packet.kept} actions kept, {packet.flagged} flagged"]
    if packet.not_kept:
        parts.append(f"{packet.not_kept} more seen but not kept")
    shown = "; below, the flagged ones first, then the most recent:" if packet.shown else ""
    return ", ".join(parts) + shown


def _action(action: Action) -> str:
    flag = f"⚠️ {code(action.flagged, 60)} " if action.flagged else ""
    return f"• {flag}{when(action.at)} {code(action.principal, 60)}: {escape(action.action, ACTION_SHOWN)}"
