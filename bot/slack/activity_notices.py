"""What people are told about a grant's captured activity, in words: the digest in the approval thread, the alert for
a flagged statement in the audit channel, and capture's troubles. Everything the backend recorded is shown through
``bot.slack.text``, so a statement can never form a mention, a link or a broadcast."""

from __future__ import annotations

from datetime import datetime

from bot.services.activity_notes import ActivityNote, Note
from bot.services.snapshots import RequestView
from bot.slack.text import code, code_block, escape, placeholders, who

LINE_SHOWN = 200  # characters of one statement in a digest or an alert
ERROR_SHOWN = 500
FLAG = "⚑ "
UNFLAGGED = "  "


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment is not None else "??:??:??"


def _grant(view: RequestView, principal: str) -> str:
    return f"#{view.id} ({who(view.requester_id)} on *{view.label}* as {code(principal or '?', 100)})"


def _digest(view: RequestView, note: ActivityNote) -> str:
    actions = "1 action" if note.total == 1 else f"{note.total} actions"
    header = f"🔎 {_grant(view, note.principal)}: {actions} between {_clock(note.first)} and {_clock(note.last)} UTC"
    flagged = sum(1 for line in note.lines if line.flagged)
    if flagged:
        header += f", {flagged} flagged ({FLAG.strip()})"
    rows = [f"{FLAG if line.flagged else UNFLAGGED}{_clock(line.at)}  {line.action}" for line in note.lines]
    text = f"{header}\n{code_block(rows, LINE_SHOWN)}"
    if note.more:
        text += f"\n…and {note.more} more " + placeholders(f"(`/breakglass review {view.id}` shows the record)")
    return text


def _flagged(view: RequestView, note: ActivityNote) -> str:
    line = note.lines[0] if note.lines else None
    statement = code(line.action, LINE_SHOWN) if line else "`?`"
    pattern = code(line.flagged or "?", 120) if line else "`?`"
    text = (
        f"🚩 Flagged on grant {_grant(view, note.principal)}: {statement} matched {pattern} "
        f"at {_clock(line.at if line else None)} UTC."
    )
    if note.total > 1:
        text += f" One of {note.total} flagged in this read; the approval thread lists them."
    return text


def _capture_failed(view: RequestView, note: ActivityNote) -> str:
    return (
        f"⚠️ Activity capture could not start for {_grant(view, note.principal)}. The access stands, but what is done "
        f"with it is not being recorded. Why: {escape(note.error or 'no details', ERROR_SHOWN)}"
    )


def _read_failing(view: RequestView, note: ActivityNote) -> str:
    return (
        f"⚠️ The activity of {_grant(view, note.principal)} could not be read lately. Breakglass keeps trying and "
        f"skips nothing. Last error: {escape(note.error or 'no details', ERROR_SHOWN)}"
    )


_RENDER = {
    Note.DIGEST: _digest,
    Note.FLAGGED: _flagged,
    Note.CAPTURE_FAILED: _capture_failed,
    Note.READ_FAILING: _read_failing,
}


def activity(view: RequestView, note: ActivityNote) -> str:
    return _RENDER[note.note](view, note)
