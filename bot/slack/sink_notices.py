"""What the audit channel reads about an audit sink: failing (once per outage), recovered once caught up, and the
trail interrupted below its mark (a hole or a rewrite: someone changed the database).

Rendered from the report bot/services/streaming.py owes. The error is the sink's own short text (a status, an errno),
already scrubbed of secrets, shown inert.
"""

from __future__ import annotations

from typing import Any

from bot.slack.text import escape

ERROR_SHOWN = 200  # characters of the sink's error in the message


def report(data: dict[str, Any]) -> str:
    sink = f"*{escape(str(data.get('sink')), 64)}* ({escape(str(data.get('type')), 16)})"
    since = escape(str(data.get("since") or "?"), 40)
    if data.get("state") == "audit_sink_recovered":
        return (
            f"✅ Audit sink {sink} has caught up: it has every event up to seq {data.get('last_seq')} "
            f"(it was failing when the alert went out at {since})."
        )
    if data.get("state") == "audit_sink_interrupted":
        return (
            f"🚨 The audit trail changed under audit sink {sink}: {escape(str(data.get('error')), 400)} "
            "Someone with write access to the database altered the trail; the receiver has what was sent before."
        )
    error = escape(str(data.get("error") or "no answer"), ERROR_SHOWN)
    return (
        f"📡 Audit sink {sink} has been failing since {since} ({data.get('failures')} attempts; last: {error}). "
        f"{data.get('waiting')} events are waiting for it; none is dropped, and they go out in order once it answers. "
        "The trail itself is intact (`breakglass audit verify`)."
    )
