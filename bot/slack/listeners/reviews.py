"""The review form: "Write review" and "Sign off" open it (in a DM, the audit channel or the Home tab), and its
submission records the words as `/breakglass review <id> <notes…>` does.

A click opens the form only when the typed command would take the clicker's words now (``reviews.form``): the holder
whose account is not written yet, or someone who may sign off a written account of access that has ended. Anyone else
is answered privately why not, and an outsider's attempt is recorded, as the command's refusal is. The submission is
checked again in full (the review may have been written or signed off by someone else while the form was open):
words that will not do (none, too many) keep the form open with what is allowed; otherwise the form closes and the
outcome is told privately where the button was, worded as the command's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain.commands import clean
from bot.logs import log_context
from bot.services import reviews
from bot.services.deps import Deps
from bot.services.guard import RateLimiter
from bot.slack import review_form
from bot.slack.after_ack import Later
from bot.slack.ids import WORDS_BLOCK, WORDS_INPUT, ActionId, CallbackId
from bot.slack.listeners.clicks import clicked_in, listener, open_form, request_id
from bot.slack.listeners.views import NOT_OURS, BadForm, target, told
from bot.slack.replies import form_errors, record_slow_down


def register(app: App, deps: Deps, limiter: RateLimiter, later: Later) -> None:
    app.action(ActionId.WRITE_REVIEW.value)(listener(deps, limiter, later, _open))
    app.view(CallbackId.REVIEW.value)(_submit_listener(deps, limiter, later))


def _open(deps: Deps, client: WebClient, actor: str, body: dict[str, Any], action: dict[str, Any]) -> None:
    """Open the form, or refuse as the command would; None: the form is what the person sees next."""
    packet = reviews.form(deps, actor, request_id(action))
    form = review_form.review_form(packet, actor, clicked_in(body, actor))
    open_form(client, body.get("trigger_id"), form, what="the review form")


def notes(view: dict[str, Any]) -> str:
    """The words as they will be kept: control characters cleaned as in typed commands, ends stripped."""
    values = (view.get("state") or {}).get("values") or {}
    block = values.get(WORDS_BLOCK) if isinstance(values, dict) else None
    field = block.get(WORDS_INPUT) if isinstance(block, dict) else None
    raw = field.get("value") if isinstance(field, dict) else None
    text = clean(raw).strip() if isinstance(raw, str) else ""
    if not text:
        raise BadForm(f"Nothing is written yet: please write 1 to {reviews.MAX_NOTES} characters.")
    if len(text) > reviews.MAX_NOTES:
        raise BadForm(f"That is {len(text)} characters; at most {reviews.MAX_NOTES} are kept. Please shorten it.")
    return text


def _submit_listener(deps: Deps, limiter: RateLimiter, later: Later) -> Callable[..., None]:
    def on_submit(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        actor = body["user"]["id"]
        verdict = limiter.take(actor)
        if not verdict.allowed:
            ack(**form_errors(verdict.message(limiter.per_minute)))
            later(lambda: record_slow_down(deps, actor, verdict))
            return
        view = body.get("view")
        try:
            if not isinstance(view, dict):
                raise BadForm(NOT_OURS)
            request_id, channel = target(view)
            words = notes(view)
        except BadForm as problem:
            ack(**form_errors(str(problem)))
            return
        ack()  # closes the form; recording may take longer than Slack waits
        with log_context(request_id=request_id, actor=actor):
            record = lambda: review_form.recorded(reviews.record(deps, actor, request_id, words))  # noqa: E731
            later(lambda: told(client, channel, actor, record))

    return on_submit
