"""More time: "Ask for more time" opens the form, its submission asks (or extends), and the approvers decide the ask
with "Approve extension" / "Deny extension" in the request's thread (Deny asks for the reason in a form first, as a
request's Deny does; the form remembers the round it was opened for).

The form opens only for the holder of active access with room left under its limits; a click that cannot succeed is
answered privately instead, and a stranger's is audited. The submission is checked before the ack against the same
room, and what will not do is said under its field (``response_action: errors``); the ask itself runs after the
ack, every rule checked again (the form may have been open while access ended). Decision buttons carry
``<request id>:<round>`` (a bare request id is taken as "the extension that waits now"), so a button of an earlier
extension never decides a later one. Every click and submission is rate limited.
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

from bot.domain.commands import clean
from bot.domain.durations import format_duration
from bot.domain.rules import Refused
from bot.logs import log_context
from bot.services import extension_asks
from bot.services.deadline import Overdue
from bot.services.deps import Deps
from bot.services.extension_asks import MAX_WHY
from bot.services.guard import RateLimiter
from bot.services.ports import MembershipUnknown
from bot.slack import more_time
from bot.slack.after_ack import Later, checked_in_time
from bot.slack.ids import (
    MORE_PICK,
    MORE_PICK_BLOCK,
    MORE_TYPED,
    MORE_TYPED_BLOCK,
    WORDS_BLOCK,
    WORDS_INPUT,
    ActionId,
    CallbackId,
)
from bot.slack.listeners.clicks import NOT_OURS, clicked_in, listener, open_form
from bot.slack.listeners.views import NOT_OURS as FORM_NOT_OURS
from bot.slack.listeners.views import BadForm, target, told, words
from bot.slack.replies import DATABASE_UNREACHABLE, record_slow_down
from bot.slack.text import when
from bot.store.reachability import unreachable

log = logging.getLogger("breakglass.slack.more_time")

_VALUE = re.compile(r"([0-9]{1,9})(?::([0-9]{1,9}))?")  # "<request id>" or "<request id>:<extension round>"


def register(app: App, deps: Deps, limiter: RateLimiter, later: Later) -> None:
    app.action(ActionId.ASK_MORE_TIME.value)(listener(deps, limiter, later, _open_form, logged=_logged_id))
    app.action(ActionId.APPROVE_EXTENSION.value)(listener(deps, limiter, later, _approve, logged=_logged_id))
    app.action(ActionId.DENY_EXTENSION.value)(listener(deps, limiter, later, _open_deny_form, logged=_logged_id))
    app.view(CallbackId.MORE_TIME.value)(_submitted(deps, limiter, later))
    app.view(CallbackId.DENY_EXTENSION.value)(_deny_submitted(deps, limiter, later))


def button_value(action: dict[str, Any]) -> tuple[int, int | None]:
    """The request and (for a decision button) the extension round a button was made for; Refused for anything else."""
    value = str(action.get("value") or "")
    found = _VALUE.fullmatch(value) if value.isascii() else None
    if found is None or int(found.group(1)) == 0 or (found.group(2) is not None and int(found.group(2)) == 0):
        raise Refused(NOT_OURS)  # ids and rounds count from 1
    return int(found.group(1)), int(found.group(2)) if found.group(2) is not None else None


def _logged_id(action: dict[str, Any]) -> int | None:
    try:
        return button_value(action)[0]
    except Refused:
        return None


# -- "Ask for more time": the form ----------------------------------------------------------------------------------


def _open_form(deps: Deps, client: WebClient, actor: str, body: dict[str, Any], action: dict[str, Any]) -> None:
    """Open the form, or refuse as the ask would; None: the form is what the person sees next."""
    request_id, _ = button_value(action)
    room = extension_asks.room(deps, actor, request_id)
    if room.current.extension_seconds is not None and not room.at_once:
        raise Refused(extension_asks.already_waiting(room.current))
    open_form(client, body.get("trigger_id"), more_time.form(room, clicked_in(body, actor)), what="a more-time form")


@dataclass(frozen=True)
class _Field(Exception):
    """What is wrong with one field of the form: shown under it, and the form stays open."""

    block: str
    text: str


@dataclass(frozen=True)
class _Asked:
    request_id: int
    channel: str
    typed: str
    why: str | None


def _errors(block: str, text: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block: text}}


def _value(view: dict[str, Any], block: str, input_id: str) -> dict[str, Any]:
    values = (view.get("state") or {}).get("values") or {}
    found = values.get(block) if isinstance(values, dict) else None
    field = found.get(input_id) if isinstance(found, dict) else None
    return field if isinstance(field, dict) else {}


def _text(view: dict[str, Any], block: str, input_id: str) -> str:
    raw = _value(view, block, input_id).get("value")
    return clean(raw).strip() if isinstance(raw, str) else ""  # cleaned as typed commands are


def read(deps: Deps, actor: str, view: object) -> _Asked:
    """The ask as submitted, checked as far as it can be before the ack: _Field says which field will not do."""
    if not isinstance(view, dict):
        raise _Field(MORE_PICK_BLOCK, FORM_NOT_OURS)
    try:
        request_id, channel = target(view)
    except BadForm as problem:
        raise _Field(MORE_PICK_BLOCK, str(problem)) from None
    why = _text(view, WORDS_BLOCK, WORDS_INPUT) or None
    if why is not None and len(why) > MAX_WHY:
        raise _Field(WORDS_BLOCK, f"That is {len(why)} characters; at most {MAX_WHY} are kept. Please shorten it.")
    typed = _text(view, MORE_TYPED_BLOCK, MORE_TYPED)
    block = MORE_TYPED_BLOCK
    if not typed:
        chosen = _value(view, MORE_PICK_BLOCK, MORE_PICK).get("selected_option")
        picked = chosen.get("value") if isinstance(chosen, dict) else None
        typed, block = (picked.strip() if isinstance(picked, str) else ""), MORE_PICK_BLOCK
    try:
        room = extension_asks.room(deps, actor, request_id)
        if room.current.extension_seconds is not None and not room.at_once:
            raise Refused(extension_asks.already_waiting(room.current))
        if not typed:
            raise _Field(
                MORE_PICK_BLOCK,
                f"Choose how much more, or type a duration such as 30m: at most {format_duration(room.left)} more.",
            )
        room.seconds(typed)
    except Refused as refusal:
        raise _Field(block, str(refusal)) from None
    return _Asked(request_id, channel, typed, why)


def _submitted(deps: Deps, limiter: RateLimiter, later: Later) -> Callable[..., None]:
    def on_submit(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        actor = body["user"]["id"]
        verdict = limiter.take(actor)
        if not verdict.allowed:
            ack(**_errors(MORE_PICK_BLOCK, verdict.message(limiter.per_minute)))
            later(lambda: record_slow_down(deps, actor, verdict))
            return
        try:
            asked = checked_in_time(read, deps, actor, body.get("view"))
        except Overdue:
            ack(**_errors(MORE_PICK_BLOCK, _NOT_IN_TIME))
            return
        except _Field as problem:
            ack(**_errors(problem.block, problem.text))
            return
        except MembershipUnknown:  # who may request the resource depends on a user group Slack did not list
            ack(**_errors(MORE_PICK_BLOCK, _NO_GROUPS))
            return
        except Exception as error:  # said in the form, which stays open: the person may simply submit again
            if not unreachable(error):
                log.exception("checking a more-time form failed")
            ack(**_errors(MORE_PICK_BLOCK, DATABASE_UNREACHABLE if unreachable(error) else _FAILED))
            return
        ack()  # closes the form; the ask (or the extension) may take longer than Slack waits
        with log_context(request_id=asked.request_id, actor=actor):
            later(lambda: told(client, asked.channel, actor, lambda: _ask(deps, actor, asked)))

    return on_submit


_FAILED = "Something went wrong on our side, so nothing was done. Please submit again in a moment."
_NOT_IN_TIME = (
    "Slack or the database did not answer in time while Breakglass checked this, so nothing was done. Try again."
)
_NO_GROUPS = "Breakglass could not check user-group membership with Slack just now, so nothing was done. Try again."


def _ask(deps: Deps, actor: str, asked: _Asked) -> str:
    return more_time.said_to(actor, extension_asks.more_time(deps, actor, asked.request_id, asked.typed, asked.why))


# -- the approvers' buttons -----------------------------------------------------------------------------------------


def _approve(deps: Deps, client: WebClient, actor: str, body: dict[str, Any], action: dict[str, Any]) -> str:
    request_id, round_ = button_value(action)
    return more_time.said_to(actor, extension_asks.approve(deps, actor, request_id, round_))


def _open_deny_form(deps: Deps, client: WebClient, actor: str, body: dict[str, Any], action: dict[str, Any]) -> None:
    """Ask for the reason, once the denial would not be refused anyway (who, and whether it still waits)."""
    request_id, round_ = button_value(action)
    current = extension_asks.decidable(deps, actor, request_id, round_)
    form = more_time.deny_form(current, clicked_in(body, actor))
    open_form(client, body.get("trigger_id"), form, what="an extension's deny form")


def _deny_submitted(deps: Deps, limiter: RateLimiter, later: Later) -> Callable[..., None]:
    def on_submit(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        actor = body["user"]["id"]
        verdict = limiter.take(actor)
        if not verdict.allowed:
            ack(**_errors(WORDS_BLOCK, verdict.message(limiter.per_minute)))
            later(lambda: record_slow_down(deps, actor, verdict))
            return
        view = body.get("view")
        try:
            if not isinstance(view, dict):
                raise BadForm(FORM_NOT_OURS)
            request_id, channel = target(view)
            round_ = _round(view)
            reason = words(view, approve=False)
        except BadForm as problem:
            ack(**_errors(WORDS_BLOCK, str(problem)))
            return
        ack()  # closes the form; every rule is checked again by the denial itself
        with log_context(request_id=request_id, actor=actor):
            later(lambda: told(client, channel, actor, lambda: _denied(deps, actor, request_id, round_, reason)))

    return on_submit


def _round(view: dict[str, Any]) -> int:
    """The extension round the deny form was opened for, from its metadata (``target`` has vouched for the rest)."""
    round_ = json.loads(view.get("private_metadata") or "{}").get("round")
    if type(round_) is not int or not 0 < round_ < 10**9:
        raise BadForm(FORM_NOT_OURS)
    return round_


def _denied(deps: Deps, actor: str, request_id: int, round_: int, reason: str) -> str:
    denied = extension_asks.deny(deps, actor, request_id, round_, reason)
    return f"⛔ You denied more time on request #{denied.id}; its access still ends {when(denied.expires_at)}."
