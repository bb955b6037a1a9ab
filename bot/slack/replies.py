"""Answers to a person when Breakglass cannot do what they asked at all: its database or Slack is out of reach.

Slack shows a slash command's HTTP response body to the person who typed it, privately; a click's response body is
shown to nobody, so a click is answered through its ``response_url`` instead. Either way the person hears within
Slack's three seconds that nothing was done and that trying again later is the remedy.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from urllib.parse import parse_qsl

from slack_sdk.webhook import WebhookClient

log = logging.getLogger("breakglass.slack.replies")

DATABASE_UNREACHABLE = (
    "⚠️ Breakglass cannot reach its database just now, so nothing was done. Please try again in a minute."
)
# After the ack an earlier step may already be recorded (a request filed, its message not yet posted), so "nothing
# was done" could be untrue there.
DATABASE_LOST_MIDWAY = (
    "⚠️ Breakglass cannot reach its database just now; whatever it had not yet recorded was not done. "
    "Please check `/breakglass mine` in a minute, then try again."
)
WORKSPACE_UNKNOWN = (
    "⚠️ Breakglass cannot reach Slack yet to learn which workspace it serves, so it acts on no request for now; "
    "nothing was done. Please try again in a few minutes."
)


def ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}


def tell_privately(response_url: str, text: str) -> None:
    """Post ``text`` to a ``response_url`` from a thread of its own, so the HTTP answer to Slack is not held up."""

    def post() -> None:
        try:
            WebhookClient(response_url, timeout=5).send_dict({**ephemeral(text), "replace_original": False})
        except Exception as error:  # the person may miss the answer; nothing else depends on it
            log.warning("could not answer through a response_url (%s)", type(error).__name__)

    threading.Thread(target=post, name="reply", daemon=True).start()


def refusal_for(body: bytes, content_type: str | None, text: str) -> tuple[int, dict[str, Any] | None]:
    """How to answer a signed, well-formed Slack request that cannot be served: (HTTP status, JSON body or None).

    A command gets ``text`` in its response; a click gets it through its response_url and an empty 200. Anything
    else (an event) gets 503, so Slack delivers it again later.
    """
    raw = body.decode("utf-8", "replace")
    if raw.startswith("{") or (content_type or "").lower().startswith("application/json"):
        return 503, None
    form = dict(parse_qsl(raw, keep_blank_values=True))
    if "command" in form:
        return 200, ephemeral(text)
    if "payload" in form:
        try:
            response_url = json.loads(form["payload"]).get("response_url")
        except (ValueError, AttributeError):
            response_url = None
        if isinstance(response_url, str) and response_url.startswith(("https://", "http://")):
            tell_privately(response_url, text)
        return 200, None
    return 503, None
