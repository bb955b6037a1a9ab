"""How `breakglass grants` and `breakglass show` print: rich tables for people, JSON with stable keys for programs.

Every string that came from a person or a backend (reasons, names, captured statements, audit details) is cleaned of
control characters before it reaches the terminal, and goes into rich as plain ``Text``, never as markup: a reason
holding an escape sequence or ``[link=...]`` prints as the characters it is.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from bot.domain.commands import clean
from bot.domain.durations import format_duration
from bot.services.offline import Dossier
from bot.services.snapshots import RequestView, to_data

# `grants --json`: one object per request, always with every one of these keys (null when unknown).
GRANT_KEYS = (
    "id",
    "resource",
    "level",
    "label",
    "state",
    "emergency",
    "requester_id",
    "requester_name",
    "principal",
    "reason",
    "created_at",
    "granted_at",
    "expires_at",
)


def plain(value: object, limit: int = 2000) -> str:
    """One line of text fit for a terminal: no control characters, no line breaks, at most ``limit`` characters."""
    text = " ".join(clean("" if value is None else str(value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stamp(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(moment: datetime, now: datetime) -> str:
    """``in 42m`` or ``3h5m ago``: the two largest units, which is all a person reads at a glance."""
    seconds = int(abs((moment - now).total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    span = "".join(parts[:2]) or "0s"
    return f"in {span}" if moment >= now else f"{span} ago"


def when(moment: datetime | None, now: datetime) -> Text:
    if moment is None:
        return Text("-")
    return Text(f"{stamp(moment)}\n{relative(moment, now)}")


def person(user_id: str | None, name: str | None = None) -> str:
    if not user_id:
        return "-"
    return f"{plain(name, 80)} ({plain(user_id, 40)})" if name else plain(user_id, 40)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# -- grants --------------------------------------------------------------------------------------------------------


def grant_data(view: RequestView) -> dict[str, Any]:
    return {
        "id": view.id,
        "resource": view.resource,
        "level": view.level,
        "label": view.label,
        "state": view.status.value,
        "emergency": view.emergency,
        "requester_id": view.requester_id,
        "requester_name": view.requester_name,
        "principal": view.principal,
        "reason": view.reason,
        "created_at": iso(view.created_at),
        "granted_at": iso(view.granted_at),
        "expires_at": iso(view.expires_at),
    }


def grants_json(views: list[RequestView]) -> str:
    return json.dumps([grant_data(v) for v in views], ensure_ascii=True, indent=2)


def grants_table(views: list[RequestView], now: datetime) -> RenderableType:
    table = Table(title=f"{len(views)} request(s) live or waiting, at {stamp(now)}", title_justify="left")
    for column in ("ID", "Access", "Requester", "Principal", "State", "Asked", "Granted", "Expires", "Emergency"):
        table.add_column(column, no_wrap=column in ("ID", "State"))
    for view in views:
        table.add_row(
            Text(str(view.id)),
            Text(plain(view.label)),
            Text(person(view.requester_id, view.requester_name)),
            Text(plain(view.principal or "-")),
            Text(view.status.value),
            when(view.created_at, now),
            when(view.granted_at, now),
            when(view.expires_at, now),
            Text("EMERGENCY" if view.emergency else ""),
        )
    return table


# -- show ----------------------------------------------------------------------------------------------------------


def show_data(found: Dossier) -> dict[str, Any]:
    """`show --json`: the request (the snapshot's fields and those only the row has), its decisions, its timeline, its
    captured activity, its review, and how many Slack messages it still owes."""
    request = to_data(found.view)
    decisions = request.pop("decisions")
    review = request.pop("review")
    request.update(
        requester_email=found.requester_email,
        decided_at=iso(found.decided_at),
        claimed_by=found.claimed_by,
        lease_until=iso(found.lease_until),
        next_attempt_at=iso(found.next_attempt_at),
        receipt=found.receipt,
        label=found.view.label,
    )
    return {
        "request": request,
        "decisions": decisions,
        "timeline": [
            {"seq": e.seq, "at": iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
            for e in found.timeline
        ],
        "activity": {
            "watching": found.watching,
            "seen": found.activity_seen,
            "kept": [
                {"at": iso(a.at), "principal": a.principal, "action": a.action, "flagged": a.flagged}
                for a in found.activity
            ],
        },
        "review": review,
        "slack_owed": found.owed,
    }


def show_json(found: Dossier) -> str:
    return json.dumps(show_data(found), ensure_ascii=True, indent=2)


def _fields(found: Dossier, now: datetime) -> Table:
    view = found.view
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, str | Text | None]] = [
        ("State", view.status.value + (" (EMERGENCY)" if view.emergency else "")),
        ("Requester", person(view.requester_id, view.requester_name)),
        ("Email", plain(found.requester_email) if found.requester_email else None),
        ("Principal", plain(view.principal) if view.principal else None),
        ("Reason", plain(view.reason)),
        ("Duration asked", format_duration(view.duration)),
        ("Asked", when(view.created_at, now)),
        ("Decided", when(found.decided_at, now) if found.decided_at else None),
        ("Lapses", when(view.lapses_at, now) if view.lapses_at and view.status.value == "pending" else None),
        ("Granted", when(view.granted_at, now) if view.granted_at else None),
        ("Expires", when(view.expires_at, now) if view.expires_at else None),
        ("Ended", when(view.ended_at, now) if view.ended_at else None),
        ("Ending", _ending(view)),
        ("Failure", plain(view.failure) if view.failure else None),
        ("Revoke attempts", str(view.revoke_attempts) if view.revoke_attempts else None),
        ("Next attempt", when(found.next_attempt_at, now) if found.next_attempt_at else None),
        ("Claimed by", _claim(found)),
        ("Approval", _steps(view)),
        ("Extension", _extension(view)),
        ("Superseded by", f"#{view.superseded_by}" if view.superseded_by else None),
        ("Receipt", plain(json.dumps(found.receipt, sort_keys=True)) if found.receipt else None),
        ("Instructions", plain(view.instructions) if view.instructions else None),
        ("Slack message", _message(view)),
        ("Slack owed", f"{found.owed} message(s) not delivered yet" if found.owed else "nothing"),
    ]
    for name, value in rows:
        if value is not None:
            grid.add_row(name, value if isinstance(value, Text) else Text(value))
    return grid


def _ending(view: RequestView) -> str | None:
    if view.end_reason is None:
        return None
    by = f" by {plain(view.ended_by, 40)}" if view.ended_by else ""
    return f"{view.end_reason}{by}"


def _claim(found: Dossier) -> str | None:
    if not found.claimed_by:
        return None
    lease = f" (lease until {stamp(found.lease_until)})" if found.lease_until else ""
    return plain(found.claimed_by) + lease


def _steps(view: RequestView) -> str | None:
    if not view.steps:
        return None
    parts = []
    for index, step in enumerate(view.steps):
        who = ", ".join(plain(p, 40) for p in step.approved_by) or "nobody yet"
        waiting = " (waiting)" if view.waiting_step == index else ""
        parts.append(f"{view.step_name(index)}: {len(step.approved_by)}/{step.required} by {who}{waiting}")
    return "; ".join(parts)


def _extension(view: RequestView) -> str | None:
    if view.extension_seconds is None:
        return None
    asked = format_duration(timedelta(seconds=view.extension_seconds))
    return f"{asked} more asked by {plain(view.extension_by or '-', 40)} (round {view.extension_round}), waiting"


def _message(view: RequestView) -> str | None:
    if not view.approval_channel:
        return "not posted yet"
    link = f" {plain(view.approval_link)}" if view.approval_link else ""
    return f"{plain(view.approval_channel)} {plain(view.approval_ts)}{link}"


def _decisions(found: Dossier) -> RenderableType:
    decisions = found.view.decisions
    if not decisions:
        return Text("Decisions: none")
    table = Table(title="Decisions", title_justify="left")
    for column in ("Who", "Decision", "Step", "Round", "When", "Via", "Words"):
        table.add_column(column)
    for d in decisions:
        table.add_row(
            Text(plain(d.approver_id, 40)),
            Text("approved" if d.approve else "denied"),
            Text(found.view.step_name(d.step)),
            Text("request" if d.round == 0 else f"extension {d.round}"),
            Text(stamp(d.at)),
            Text(plain(d.via or "-")),
            Text(plain(d.comment or "", 500)),
        )
    return table


def _detail(detail: dict[str, Any]) -> str:
    return plain(", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in detail.items()), 600)


def _timeline(found: Dossier) -> RenderableType:
    table = Table(title="Timeline (audit events, in order)", title_justify="left")
    for column in ("Seq", "When", "Action", "Actor", "Details"):
        table.add_column(column, no_wrap=column in ("Seq", "Action"))
    for event in found.timeline:
        table.add_row(
            Text("-" if event.seq is None else str(event.seq)),
            Text(stamp(event.at)),
            Text(plain(event.action, 40)),
            Text(plain(event.actor, 64)),
            Text(_detail(event.detail)),
        )
    return table


def _activity(found: Dossier, limit: int) -> RenderableType:
    kept = found.activity
    status = "still watched" if found.watching else "not watched"
    head = f"Activity: {found.activity_seen} action(s) seen, {len(kept)} kept ({status})"
    if not kept:
        return Text(head)
    shown = kept[-limit:] if limit > 0 else ()
    table = Table(title=f"{head}; the last {len(shown)}", title_justify="left")
    for column in ("When", "Principal", "Action", "Flagged"):
        table.add_column(column)
    for action in shown:
        table.add_row(
            Text(stamp(action.at)),
            Text(plain(action.principal, 80)),
            Text(plain(action.action, 500)),
            Text(plain(action.flagged or "")),
        )
    return table


def _review(found: Dossier) -> Text:
    review = found.view.review
    if review is None:
        return Text("Review: none owed")
    parts = [f"Review: {review.status}"]
    if review.author_id:
        parts.append(f"account by {plain(review.author_id, 40)} at {stamp(review.written_at)}: {plain(review.account)}")
    if review.reviewer_id:
        parts.append(f"signed off by {plain(review.reviewer_id, 40)} at {stamp(review.done_at)}: {plain(review.notes)}")
    elif review.status != "done":
        parts.append(f"{review.reminders_sent} reminder(s) sent")
    return Text("; ".join(parts))


def show_page(found: Dossier, now: datetime, activity_limit: int) -> RenderableType:
    view = found.view
    title = Text(f"Request #{view.id} · {plain(view.label)} · {view.status.value}", style="bold")
    return Group(
        title,
        _fields(found, now),
        _decisions(found),
        _timeline(found),
        _activity(found, activity_limit),
        _review(found),
    )


def console() -> Console:
    """A console on the current stdout (typer's test runner swaps it), never colouring what is not a terminal."""
    return Console(highlight=False, soft_wrap=False)
