"""Answers to a person: what came of their command, click or form, and why nothing was done when Breakglass cannot
act at all (its database or Slack is out of reach, they are sending too much).

Whatever happens, the person hears about it privately, and an unexpected failure is told as a reference the logs
hold, never as its details. Slack shows a slash command's HTTP response body to the person who typed it; a click's
response body is shown to nobody, so a click is answered through its ``response_url``; a form's submission is
answered in the form itself, which stays open. Either way the person hears within Slack's three seconds that nothing
was done and that trying again later is the remedy.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot.domain.actions import AuditAction
from bot.domain.rules import Refused
from bot.services import guard
from bot.services.deps import Deps
from bot.services.guard import RateLimiter, Verdict
from bot.services.ports import MembershipUnknown
from bot.slack.ids import WORDS_BLOCK
from bot.store.reachability import database_outage, unreachable

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
            payload = json.loads(form["payload"])
            kind, response_url = payload.get("type"), payload.get("response_url")
        except (ValueError, AttributeError):
            kind = response_url = None
        if kind == "view_submission":  # a form has no response_url: said in the form, which stays open
            return 200, form_errors(text)
        if isinstance(response_url, str) and response_url.startswith(("https://", "http://")):
            tell_privately(response_url, text)
        return 200, None
    return 503, None


def form_errors(text: str) -> dict[str, Any]:
    """The ack of a form's submission that keeps the form open and shows ``text`` under its text input."""
    return {"response_action": "errors", "errors": {WORDS_BLOCK: text}}


def said(work: Callable[[], str | None]) -> str | None:
    """Run the work after the ack and say what came of it: its own answer, or why it was not done."""
    try:
        return work()
    except Refused as refusal:
        return f"❌ {refusal}"
    except MembershipUnknown:
        return (
            "⚠️ Breakglass could not check user-group membership with Slack just now, so nothing was done. "
            "Try again in a minute."
        )
    except Exception as error:
        if unreachable(error):
            database_outage.failed(log, "a person's command", error)
            return DATABASE_LOST_MIDWAY
        incident = uuid.uuid4().hex[:8]
        log.exception("command failed (ref %s)", incident)
        return f"⚠️ Something went wrong on our side (ref `{incident}`); nothing was changed that is not shown."


Tell = Callable[[str], None]


def privately(body: dict[str, Any], respond: Respond, client: WebClient) -> Tell:
    """How to answer the person behind a command or click: through its response_url (only they see it), or, for a
    click on the Home tab or in a modal (Slack gives those none), in their DM with the bot."""
    if isinstance(body.get("response_url"), str) and body["response_url"]:

        def through_response_url(text: str) -> None:
            respond(text=text, response_type="ephemeral", replace_original=False)

        return through_response_url
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, dict) else body.get("user_id")

    def in_dm(text: str) -> None:
        try:
            client.chat_postMessage(channel=str(user_id), text=text)
        except Exception as error:  # what they did stands, and the page or message they acted on shows it
            log.warning("could not answer a click in a DM (%s)", type(error).__name__)

    return in_dm


def answer(tell: Respond | Tell, work: Callable[[], str | None]) -> None:
    """Run the work after the ack; whatever happens, the person hears about it privately. Work that answers None
    has already shown the person what follows (a form), so nothing more is said. ``tell``: a command's ``respond``,
    or what ``privately`` chose for a click."""
    text = said(work)
    if text is not None:
        _say(tell, text)


def _say(tell: Respond | Tell, text: str) -> None:
    if isinstance(tell, Respond):
        tell(text=text, response_type="ephemeral", replace_original=False)
    else:
        tell(text)


def slowed_down(deps: Deps, limiter: RateLimiter, actor: str, tell: Respond | Tell) -> bool:
    """For listeners that have already acknowledged: True, and the person told why, when they must wait."""
    verdict = limiter.take(actor)
    if verdict.allowed:
        return False
    _say(tell, verdict.message(limiter.per_minute))
    record_slow_down(deps, actor, verdict)
    return True


def record_slow_down(deps: Deps, actor: str, verdict: Verdict) -> None:
    """Written after the person was answered: the trail may wait, Slack's three seconds may not."""
    if verdict.first_refusal:  # one audit event per burst, not one per click of a flood
        why = f"more than {deps.tuning.actions_per_minute} Slack actions in a minute"
        try:
            guard.refused(deps, actor, AuditAction.RATE_LIMITED, why)
        except Exception as error:
            database_outage.failed(log, "recording a rate-limited person", error)
