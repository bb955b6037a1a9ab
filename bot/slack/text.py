"""Making text safe and readable in Slack mrkdwn."""

from __future__ import annotations

from datetime import datetime


def escape(text: str, limit: int = 1000) -> str:
    """User-typed text, made inert: no <!channel> pings, no forged <links|…>, no mentions.

    Slack's own rule: only &, < and > are control characters in message text.
    """
    cleaned = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t")
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def who(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id else "someone"


def when(moment: datetime | None) -> str:
    """A time every reader sees in their own time zone, with a UTC fallback for clients that cannot."""
    if moment is None:
        return "an unknown time"
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"
