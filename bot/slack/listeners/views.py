"""Submitted decision forms: a denial with its reason, an approval with its comment.

Each submission is answered within Slack's three seconds. Words that will not do (none, too many), a form that does
not name a request and a channel, or a person sending too much keep the form open with what is wrong and what is
allowed, and nothing is decided. Otherwise the form closes and the decision is taken afterwards, every rule checked
again as for a click (the form may have been open while the request was decided, withdrawn or lapsed). What came of
it is told to the person privately in the channel they clicked in, or in their DM when that fails.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.commands import clean
from bot.logs import log_context
from bot.services import decisions
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack.after_ack import Later
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, CallbackId
from bot.slack.modals import MAX_WORDS
from bot.slack.replies import form_errors, record_slow_down, said

log = logging.getLogger("breakglass.slack.views")

_CHANNEL = re.compile(r"[CDGUW][A-Z0-9]{1,31}")  # as Slack's ids are shaped; a user id stands for their DM
_MAX_REQUEST = 10**9  # PostgreSQL ids are int4, as for a button's value
NOT_OURS = "This form does not belong to a Breakglass request; nothing was done. Close it and click the button again."


class BadForm(ValueError):
    """Why a submission cannot be acted on; shown under the form's text input."""


@dataclass(frozen=True)
class Submitted:
    request_id: int
    channel: str  # where to answer
    words: str


def words(view: dict[str, Any], approve: bool) -> str:
    """The reason or comment as it will be kept: control characters cleaned as in typed commands, ends stripped."""
    values = (view.get("state") or {}).get("values") or {}
    block = values.get(WORDS_BLOCK) if isinstance(values, dict) else None
    field = block.get(WORDS_INPUT) if isinstance(block, dict) else None
    raw = field.get("value") if isinstance(field, dict) else None
    text = clean(raw).strip() if isinstance(raw, str) else ""
    if not text:
        if approve:
            raise BadForm(
                f"Please write a comment (1 to {MAX_WORDS} characters), or close this form and click Approve to "
                "approve without one."
            )
        raise BadForm(f"Please give a reason for denying (1 to {MAX_WORDS} characters): the requester is told it.")
    if len(text) > MAX_WORDS:
        raise BadForm(f"That is {len(text)} characters; at most {MAX_WORDS} are kept. Please shorten it.")
    return text


def target(view: dict[str, Any]) -> tuple[int, str]:
    """The request the form decides on and the channel to answer in, from the metadata the form was opened with."""
    try:
        data = json.loads(view.get("private_metadata") or "")
    except (TypeError, ValueError):
        raise BadForm(NOT_OURS) from None
    request = data.get("request") if isinstance(data, dict) else None
    channel = data.get("channel") if isinstance(data, dict) else None
    if type(request) is not int or not 0 < request < _MAX_REQUEST:  # bool is an int, and no request number
        raise BadForm(NOT_OURS)
    if not (isinstance(channel, str) and _CHANNEL.fullmatch(channel)):
        raise BadForm(NOT_OURS)
    return request, channel


def read(view: object, approve: bool) -> Submitted:
    if not isinstance(view, dict):
        raise BadForm(NOT_OURS)
    request_id, channel = target(view)
    return Submitted(request_id, channel, words(view, approve))


def register(app: App, deps: Deps, limiter: RateLimiter, later: Later) -> None:
    app.view(CallbackId.DENY.value)(_listener(deps, limiter, later, approve=False))
    app.view(CallbackId.APPROVE.value)(_listener(deps, limiter, later, approve=True))


def _listener(deps: Deps, limiter: RateLimiter, later: Later, approve: bool) -> Callable[..., None]:
    def on_submit(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        actor = body["user"]["id"]
        verdict = limiter.take(actor)
        if not verdict.allowed:
            ack(**form_errors(verdict.message(limiter.per_minute)))
            later(lambda: record_slow_down(deps, actor, verdict))
            return
        try:
            submitted = read(body.get("view"), approve)
        except BadForm as problem:
            ack(**form_errors(str(problem)))
            return
        ack()  # closes the form; the decision may take longer than Slack waits
        with log_context(request_id=submitted.request_id, actor=actor):
            later(lambda: told(client, submitted.channel, actor, lambda: _decide(deps, actor, submitted, approve)))

    return on_submit


def _decide(deps: Deps, actor: str, submitted: Submitted, approve: bool) -> str:
    view = decisions.decide(deps, actor, submitted.request_id, approve=approve, comment=submitted.words)
    if approve:
        return f"👍 Your approval of request #{view.id} is recorded, with your comment."
    return f"⛔ You denied request #{view.id}."


def told(client: WebClient, channel: str, user: str, work: Callable[[], str | None]) -> None:
    """Run a submitted form's work (after its ack) and tell ``user`` how it went, privately in ``channel``."""
    text = said(work)
    assert text is not None  # a submission's work always answers in words
    tell(client, channel, user, text)


def tell(client: WebClient, channel: str, user: str, text: str) -> None:
    """Say ``text`` to ``user`` alone: in ``channel`` (only they see it), else in their DM."""
    if channel[:1] not in ("U", "W"):
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
            return
        except Exception as error:  # not in that channel any more, or Slack is out of reach: the DM may still do
            log.warning("could not answer a form in its channel (%s); sending a DM", _why(error))
    try:
        client.chat_postMessage(channel=user, text=text)
    except Exception as error:  # the decision stands; the approval message shows it
        log.warning("could not answer a form at all (%s)", _why(error))


def _why(error: Exception) -> str:
    """An error's name and Slack's error code, never the request or response it carried."""
    if isinstance(error, SlackApiError):
        return f"{type(error).__name__}: {error.response.get('error')}"
    return type(error).__name__
